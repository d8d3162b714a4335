"""The ViCrop baseline (Zhang et al., ICLR 2025, "MLLMs know where to look") as a pipeline.

One map (``rel_att`` by default; any registered method works) -> one crop chosen by ViCrop's
multi-scale sliding window -> the crop fed back to the model as an extra image after the
original. Beside EGG's zoom-and-reground loop (:mod:`egg_interp.loop`) it answers the same
question with the same model, so the two pipelines compare on the same sample.

Crop choice (:func:`choose_crop`): with ``s`` the model's native input side in pixels (336 for
LLaVA-1.5) and each scale ``r`` in 1, 1.2, ..., 2, a window of ``s * r`` original pixels,
counted in whole grid cells (at most the grid), slides over the token grid with stride one
cell; its score is the sum of the map inside. Sharpness of a scale = (best window sum - mean
of the sums of its (up to) 4 neighbouring windows) / window area in cells; a scale whose
window fills the whole grid has no neighbours and is skipped. The sharpest scale wins (ties:
the smaller scale); the crop is the square of ``s * r`` original pixels centred on its best
window, shifted to lie inside the image (and clipped when the image is smaller).

High-resolution images (:func:`tile_boxes`): when the longer side exceeds 1024 px the image is
split into a grid of equal tiles of at most 1024 px a side; each tile gets its own map (the
tile alone as the prompt's image) and the maps are stitched into one grid over the original
image before the crop choice. The tile maps are stitched raw (not renormalised per tile).

Conventions: grids are ``(rows, cols)``, windows ``(row0, col0, row1, col1)`` in cells with
exclusive ends, boxes ``(x0, y0, x1, y1)`` in original-image pixels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from egg_interp.errors import DegenerateMapError, InputError, UnsupportedModelError
from egg_interp.geometry import Box, crop_image, regular_cell_boxes, square_around, tile_boxes
from egg_interp.loop import answer_with_crops
from egg_interp.maps import AttributionMap, GridView, ImageMap
from egg_interp.methods import get_method
from egg_interp.methods.base import AttributionMethod
from egg_interp.models.base import VLMAdapter

SCALES: tuple[float, ...] = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
"""ViCrop's crop scales, in multiples of the model's input side."""

MAX_SIDE = 1024
"""Images with a longer side above this are tiled (ViCrop's high-resolution mode)."""


# ----------------------------------------------------------------------------- pure functions
def window_sums(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sum of ``grid`` in every ``height x width`` window, stride 1 (integral image).

    Returns
    -------
    ndarray of shape (rows - height + 1, cols - width + 1), float64
        Entry ``(r, c)`` is the window whose top-left cell is ``(r, c)``.

    >>> window_sums(np.arange(9.0).reshape(3, 3), 2, 2)
    array([[ 8., 12.],
           [20., 24.]])
    """
    g = np.asarray(grid, dtype=np.float64)
    rows, cols = g.shape
    if not (1 <= height <= rows and 1 <= width <= cols):
        raise InputError(f"window {height}x{width} does not fit a {rows}x{cols} grid")
    integral = np.zeros((rows + 1, cols + 1))
    integral[1:, 1:] = g.cumsum(0).cumsum(1)
    return (
        integral[height:, width:]
        - integral[:-height, width:]
        - integral[height:, :-width]
        + integral[:-height, :-width]
    )


@dataclass
class ScaleScore:
    """The best window of one scale.

    Attributes
    ----------
    scale : float
    window : (int, int, int, int)
        ``(row0, col0, row1, col1)`` in cells, ends exclusive.
    score : float
        Sum of the map in the window.
    sharpness : float
        ``(score - mean of the neighbouring windows' sums) / window area``; NaN when the
        window fills the grid (no neighbours: the scale is skipped).
    """

    scale: float
    window: tuple[int, int, int, int]
    score: float
    sharpness: float

    def to_dict(self) -> dict[str, Any]:
        sharp = self.sharpness if math.isfinite(self.sharpness) else None
        return {
            "scale": self.scale,
            "window": list(self.window),
            "score": self.score,
            "sharpness": sharp,
        }


def best_window(grid: np.ndarray, height: int, width: int, scale: float = 1.0) -> ScaleScore:
    """The highest-sum window (ties: first in raster order) and its sharpness."""
    sums = window_sums(grid, height, width)
    r, c = np.unravel_index(int(np.argmax(sums)), sums.shape)
    neighbours = [
        sums[rr, cc]
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
        if 0 <= rr < sums.shape[0] and 0 <= cc < sums.shape[1]
    ]
    best = float(sums[r, c])
    sharp = (best - float(np.mean(neighbours))) / (height * width) if neighbours else math.nan
    return ScaleScore(scale, (int(r), int(c), int(r) + height, int(c) + width), best, sharp)


@dataclass
class CropChoice:
    """ViCrop's crop for one map: the box, the winning scale and every scale's score."""

    box: Box
    scale: float | None
    window: tuple[int, int, int, int] | None
    scales: list[ScaleScore] = field(default_factory=list)

    @property
    def sharpness(self) -> float:
        return next((s.sharpness for s in self.scales if s.scale == self.scale), math.nan)


def choose_crop(
    grid: np.ndarray,
    cell_boxes: np.ndarray,
    image_size: Sequence[int],
    base_side: float,
    scales: Sequence[float] = SCALES,
) -> CropChoice:
    """ViCrop's multi-scale sliding-window crop (module docstring).

    Parameters
    ----------
    grid : ndarray of shape (rows, cols)
        The map (any real values; NaN/inf are refused).
    cell_boxes : ndarray of shape (rows, cols, 4)
        Pixel rectangle of each cell in the image.
    image_size : (width, height)
    base_side : float
        The model's input side ``s`` in pixels.
    scales : sequence of float

    Returns
    -------
    CropChoice
        With ``scale=None`` and the whole image as ``box`` when every scale's window fills the
        grid (the image is no larger than the crops).
    """
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 2 or not np.all(np.isfinite(g)):
        raise DegenerateMapError("ViCrop needs a finite 2-D map")
    boxes = np.asarray(cell_boxes, dtype=np.float64)
    rows, cols = g.shape
    x0, y0 = boxes[..., 0].min(), boxes[..., 1].min()
    cell_w, cell_h = (boxes[..., 2].max() - x0) / cols, (boxes[..., 3].max() - y0) / rows
    table = []
    for r in scales:
        bw = max(1, min(int(base_side * r / cell_w), cols))
        bh = max(1, min(int(base_side * r / cell_h), rows))
        table.append(best_window(g, bh, bw, r))
    usable = [s for s in table if math.isfinite(s.sharpness)]
    if not usable:
        return CropChoice((0.0, 0.0, float(image_size[0]), float(image_size[1])), None, None, table)
    best = max(usable, key=lambda s: s.sharpness)  # first (smallest scale) among ties
    r0, c0, r1, c1 = best.window
    center = (
        (boxes[r0, c0, 0] + boxes[r1 - 1, c1 - 1, 2]) / 2,
        (boxes[r0, c0, 1] + boxes[r1 - 1, c1 - 1, 3]) / 2,
    )
    box = square_around(center, base_side * best.scale, image_size)
    return CropChoice(box, best.scale, best.window, table)


def stitch(views: Sequence[GridView], tiles: Sequence[Box]) -> GridView:
    """One grid over the original image from the tiles' grids (row-major tiles).

    Cell boxes are shifted by each tile's origin. Tiles whose grids differ in shape from the
    first are resampled (bilinear) onto its shape over their own extent.
    """
    from skimage.transform import resize

    xs = sorted({t[0] for t in tiles})
    ys = sorted({t[1] for t in tiles})
    shape = views[0].shape
    values, boxes = [], []
    for view, (tx, ty, _, _) in zip(views, tiles, strict=True):
        vals, cells = view.values, view.cell_boxes.copy()
        if view.shape != shape:
            ex0, ey0, ex1, ey1 = view.extent
            vals = resize(vals.astype(np.float64), shape, order=1, mode="edge")
            cells = regular_cell_boxes(
                shape[0], shape[1], ex0, ey0, (ex1 - ex0) / shape[1], (ey1 - ey0) / shape[0]
            )
        cells[..., 0::2] += tx
        cells[..., 1::2] += ty
        values.append(vals)
        boxes.append(cells)
    nx = len(xs)
    rows_v = [np.concatenate(values[j * nx : (j + 1) * nx], axis=1) for j in range(len(ys))]
    rows_b = [np.concatenate(boxes[j * nx : (j + 1) * nx], axis=1) for j in range(len(ys))]
    return GridView(np.concatenate(rows_v, axis=0), np.concatenate(rows_b, axis=0), "stitched")


# ----------------------------------------------------------------------------- the pipeline
def native_side(adapter: VLMAdapter) -> int:
    """The model's native input side ``s`` (:attr:`VLMAdapter.input_side`), or a clear error."""
    try:
        return adapter.input_side
    except NotImplementedError as exc:
        raise UnsupportedModelError(
            f"ViCrop needs the model's native input side: {exc}; pass base_side= (pixels)"
        ) from exc


@dataclass
class ViCropResult:
    """What ViCrop chose and answered for one image and question.

    ``box`` is ``None`` when no crop was made (a degenerate map, or an image no larger than
    the crop); then the answer comes from the original image alone.
    """

    question: str
    image_size: tuple[int, int]
    method: str
    box: Box | None
    choice: CropChoice | None
    map: AttributionMap
    tiles: list[Box]
    seconds: float
    degenerate: str = ""
    answer: str | None = None
    base_answer: str | None = None

    @property
    def crops(self) -> list[Box]:
        return [] if self.box is None else [self.box]

    def plot(
        self, image: Image.Image, gt_boxes: Sequence[Box] = (), ax: Any = None
    ) -> tuple[Any, Any]:
        """The map over ``image`` with the crop (dashed cyan) and any ground truth (green).

        The title holds the question and, when answered, the base answer (original image
        alone) and ViCrop's answer, each wrapped to a few lines; a colour bar and a legend
        say what the colours are.
        """
        from matplotlib.lines import Line2D

        from egg_interp.figures.drawing import draw_boxes, wrap

        fig, ax = self.map.plot(image=image, ax=ax, boxes=list(gt_boxes), title="")
        bar = fig.colorbar(ax.images[-1], ax=ax, fraction=0.046, pad=0.02)
        bar.set_label(f"{self.method} relevance", fontsize=7)
        draw_boxes(ax, self.crops, color="cyan", linestyle="--")
        handles = [Line2D([], [], color="cyan", linestyle="--", label="ViCrop crop")]
        if len(gt_boxes):
            handles.insert(0, Line2D([], [], color="lime", label="evidence (ground truth)"))
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=7)
        scale = (
            "" if self.choice is None or self.choice.scale is None else f", r={self.choice.scale:g}"
        )
        lines = [wrap(self.question, 50, 4)]
        if self.base_answer is not None:
            lines.append(wrap(f"base: {self.base_answer!r}", 50, 2))
        if self.answer is not None:
            lines.append(wrap(f"ViCrop ({self.method}{scale}): {self.answer!r}", 50, 2))
        else:
            lines.append(f"ViCrop ({self.method}{scale})")
        ax.set_title("\n".join(lines), fontsize=8)
        return fig, ax

    def to_dict(self) -> dict[str, Any]:
        choice = self.choice
        return {
            "question": self.question,
            "image_size": list(self.image_size),
            "method": self.method,
            "answer": self.answer,
            "base_answer": self.base_answer,
            "crops": [list(b) for b in self.crops],
            "scale": None if choice is None else choice.scale,
            "window": None if choice is None or choice.window is None else list(choice.window),
            "scales": [] if choice is None else [s.to_dict() for s in choice.scales],
            "tiles": [list(t) for t in self.tiles],
            "degenerate": self.degenerate,
            "seconds": self.seconds,
        }


def vicrop_map(
    adapter: VLMAdapter,
    image: Image.Image,
    question: str,
    method: str | AttributionMethod = "rel_att",
    max_side: int = MAX_SIDE,
) -> tuple[AttributionMap, list[Box]]:
    """The map ViCrop searches: one map of the image, or tile maps stitched (module docstring).

    Returns the map over the original image (one view; for tiled images the stitched grid)
    and the tiles.
    """
    method_obj = get_method(method)
    method_obj.check_supported(adapter)
    tiles = tile_boxes(image.size, max_side)
    if len(tiles) == 1:
        amap = method_obj.attribute(adapter, [image], question)
        im = amap.images[0]
        single = ImageMap([im.primary], im.image_size, im.origin_box)
        return AttributionMap([single], amap.method, amap.target, amap.meta), tiles
    maps = [method_obj.attribute(adapter, [crop_image(image, t)], question) for t in tiles]
    view = stitch([m.images[0].primary for m in maps], tiles)
    full = (0.0, 0.0, float(image.width), float(image.height))
    meta = {"tiles": len(tiles), "seconds": sum(m.meta.get("seconds", 0.0) for m in maps)}
    stitched = ImageMap([view], image.size, full)
    return AttributionMap([stitched], maps[0].method, maps[0].target, meta), tiles


def vicrop(
    adapter: VLMAdapter,
    image: Image.Image,
    question: str,
    method: str | AttributionMethod = "rel_att",
    scales: Sequence[float] = SCALES,
    base_side: float | None = None,
    max_side: int = MAX_SIDE,
) -> ViCropResult:
    """ViCrop's crop for one image and question (no answering).

    Parameters
    ----------
    adapter : VLMAdapter
    image : PIL.Image.Image
    question : str
    method : str or AttributionMethod
        Any registered map (``"rel_att"``, ``"grad_att"``, ``"pure_grad"`` are ViCrop's).
    scales : sequence of float
        Crop sides in multiples of ``base_side``.
    base_side : float, optional
        Default :attr:`VLMAdapter.input_side` (the model's native input side).
    max_side : int
        Tiling threshold (longer side in pixels).

    Returns
    -------
    ViCropResult
        Degenerate maps (all zeros, NaN/inf) give no crop; ``degenerate`` says why.
    """
    start = time.perf_counter()
    side = float(base_side if base_side is not None else native_side(adapter))
    amap, tiles = vicrop_map(adapter, image, question, method, max_side)
    view = amap.images[0].primary
    degenerate, choice, box = "", None, None
    try:
        amap.check()
        choice = choose_crop(view.values, view.cell_boxes, image.size, side, scales)
        box = None if choice.scale is None else choice.box
    except DegenerateMapError as exc:
        degenerate = str(exc)
    seconds = time.perf_counter() - start
    return ViCropResult(
        question, image.size, amap.method, box, choice, amap, tiles, seconds, degenerate
    )


def vicrop_answer(
    adapter: VLMAdapter,
    image: Image.Image,
    question: str,
    method: str | AttributionMethod = "rel_att",
    max_new_tokens: int = 20,
    base_answer: bool = False,
    **options: Any,
) -> ViCropResult:
    """The whole ViCrop pipeline: map, crop, then the answer with the crop as an extra image.

    ``options`` go to :func:`vicrop` (``scales``, ``base_side``, ``max_side``); with
    ``base_answer`` the answer from the original alone is recorded too.
    """
    result = vicrop(adapter, image, question, method, **options)
    result.answer = answer_with_crops(adapter, image, question, result.crops, max_new_tokens)
    if base_answer:
        result.base_answer = adapter.answer(image, question, max_new_tokens=max_new_tokens)
    return result
