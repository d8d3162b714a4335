"""The one map type every attribution method returns.

An :class:`AttributionMap` holds, for each image of the prompt (the original first, then
any crops), one or more token grids (:class:`GridView`) with the pixel rectangle each
token covers. That geometry is all that is needed to draw the map on the image at any
size, to extract regions, and to score it against ground-truth boxes.

A video is several entries of :attr:`AttributionMap.images`, one per temporal slice (the
frames whose tokens form one grid), each an :class:`ImageMap` of one frame's size that names
its ``frames`` and their ``timestamps``; a Qwen-style token spans two frames (temporal patch
2), so its slice lists both. :meth:`AttributionMap.frame_maps` gives each sampled frame its
grid and :meth:`AttributionMap.relevance_over_time` the relevance of each slice.

Conventions: grids are ``float32`` arrays of shape ``(rows, cols)`` on the CPU; boxes are
``(x0, y0, x1, y1)`` in pixels with x the column direction and x1/y1 exclusive; image sizes
are ``(width, height)`` as PIL gives them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from egg_interp.errors import DegenerateMapError
from egg_interp.geometry import Box
from egg_interp.io import atomic_path


@dataclass
class GridView:
    """One token grid of one image.

    Attributes
    ----------
    values : ndarray of shape (rows, cols), float32
        Relevance of each visual token, row-major as the model reads them.
    cell_boxes : ndarray of shape (rows, cols, 4), float64
        The rectangle ``(x0, y0, x1, y1)`` of the image (in that image's pixels) each token
        covers. Cells of one view tile a rectangle that need not be the whole image (LLaVA-1.5
        centre-crops: border pixels belong to no token).
    name : str
        ``"base"`` for single-view layouts; e.g. ``"highres"``, ``"thumbnail"`` otherwise.
    """

    values: np.ndarray
    cell_boxes: np.ndarray
    name: str = "base"

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        self.cell_boxes = np.asarray(self.cell_boxes, dtype=np.float64)
        if self.values.ndim != 2 or self.cell_boxes.shape != (*self.values.shape, 4):
            raise ValueError(
                f"values {self.values.shape} and cell_boxes {self.cell_boxes.shape} "
                "must be (rows, cols) and (rows, cols, 4)"
            )

    def __repr__(self) -> str:
        rows, cols = self.values.shape
        return f"GridView({self.name!r}, {rows}x{cols})"

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the grid."""
        return self.values.shape  # type: ignore[return-value]

    @property
    def extent(self) -> Box:
        """The rectangle covered by the whole grid, ``(x0, y0, x1, y1)``."""
        b = self.cell_boxes
        return (
            float(b[..., 0].min()),
            float(b[..., 1].min()),
            float(b[..., 2].max()),
            float(b[..., 3].max()),
        )

    @property
    def cell_area(self) -> float:
        """Mean pixel area of one cell (smaller = finer view)."""
        b = self.cell_boxes
        return float(np.mean((b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])))


@dataclass
class ImageMap:
    """The views of one image of the prompt.

    Attributes
    ----------
    views : list of GridView
    image_size : (int, int)
        ``(width, height)`` of this image in its own pixels.
    origin_box : Box
        Where this image lies in the original image, in original pixels (the whole image
        for the original; the crop rectangle for a crop).
    frames : tuple of int
        For a temporal slice of a video: the sampled frames (0-based, in the video's sampled
        order) every token of these grids sees; two for a Qwen-style temporal patch of 2
        (one when the last frame is repeated to fill it). Empty for a still image.
    timestamps : tuple of float
        Time in seconds of each of :attr:`frames`.
    video_index : int
        Which video of the prompt the slice belongs to (``-1`` for a still image).
    """

    views: list[GridView]
    image_size: tuple[int, int]
    origin_box: Box
    frames: tuple[int, ...] = ()
    timestamps: tuple[float, ...] = ()
    video_index: int = -1

    @property
    def is_video(self) -> bool:
        """Whether this entry is a temporal slice of a video."""
        return self.video_index >= 0

    @property
    def primary(self) -> GridView:
        """The finest view (smallest cells); regions are found on it."""
        return min(self.views, key=lambda v: v.cell_area)

    def view(self, name: str) -> GridView:
        """The view called ``name`` (``KeyError`` listing the names otherwise)."""
        for v in self.views:
            if v.name == name:
                return v
        raise KeyError(f"no view {name!r}; views are {[v.name for v in self.views]}")

    def heatmap(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The map drawn on this image's pixels.

        Each view's grid is bilinearly resized onto the rectangle its cells cover; where
        views overlap, the finer view wins (the coarse view is the fallback where no finer
        token exists). Pixels no token covers are NaN.

        Parameters
        ----------
        size : (width, height), optional
            Output size; defaults to :attr:`image_size`. The geometry is scaled to it.

        Returns
        -------
        ndarray of shape (height, width), float32
        """
        from skimage.transform import resize

        width, height = size or self.image_size
        sx, sy = width / self.image_size[0], height / self.image_size[1]
        out = np.full((height, width), np.nan, dtype=np.float32)
        for v in sorted(self.views, key=lambda v: -v.cell_area):
            x0, y0, x1, y1 = v.extent
            c0, r0 = int(round(x0 * sx)), int(round(y0 * sy))
            c1, r1 = int(round(x1 * sx)), int(round(y1 * sy))
            c0, r0 = max(c0, 0), max(r0, 0)
            c1, r1 = min(c1, width), min(r1, height)
            if c1 <= c0 or r1 <= r0:
                continue
            patch = resize(
                v.values.astype(np.float64),
                (r1 - r0, c1 - c0),
                order=1,
                mode="edge",
                anti_aliasing=False,
            )
            out[r0:r1, c0:c1] = patch
        return out


@dataclass(frozen=True)
class SliceRelevance:
    """How much relevance one temporal slice of a video holds.

    Attributes
    ----------
    image_index : int
        Its entry of :attr:`AttributionMap.images`.
    frames, timestamps : tuple
        The sampled frames its tokens see and their times in seconds.
    total : float
        Sum of its primary grid's values.
    peak : float
        Largest value of that grid.
    share : float
        ``total`` over the sum of the video's slices' totals (NaN when a total is negative or
        the sum is not positive, e.g. a signed map).
    """

    image_index: int
    frames: tuple[int, ...]
    timestamps: tuple[float, ...]
    total: float
    peak: float
    share: float

    @property
    def time(self) -> float:
        """The slice's mean time in seconds."""
        return float(np.mean(self.timestamps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_index": self.image_index,
            "frames": list(self.frames),
            "timestamps": list(self.timestamps),
            "total": self.total,
            "peak": self.peak,
            "share": self.share,
        }


@dataclass
class AttributionMap:
    """Per-image token-grid relevance plus the geometry to draw it.

    Attributes
    ----------
    images : list of ImageMap
        One per image of the prompt, in prompt order (the original first).
    method : str
        Registered method name that produced it (``"egg"``, ``"saliency"``, ...).
    target : str
        What was attributed (``"entropy"``, ``"logprob"``, ...).
    meta : dict
        JSON-serialisable extras (objective value, top-1 token and probability, timings).
    """

    images: list[ImageMap]
    method: str = ""
    target: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Short: method, target and each image's size and grids, never the arrays.

        >>> from egg_interp.geometry import regular_cell_boxes
        >>> view = GridView(np.zeros((8, 8)), regular_cell_boxes(8, 8, 0, 0, 8, 8))
        >>> AttributionMap([ImageMap([view], (64, 64), (0, 0, 64, 64))], "egg", "entropy")
        AttributionMap(method='egg', target='entropy', images=[64x64 px: base 8x8])
        """
        images = ", ".join(
            f"{im.image_size[0]}x{im.image_size[1]} px"
            + (f" (frames {', '.join(map(str, im.frames))})" if im.is_video else "")
            + ": "
            + " + ".join(f"{v.name} {v.shape[0]}x{v.shape[1]}" for v in im.views)
            for im in self.images
        )
        return f"AttributionMap(method={self.method!r}, target={self.target!r}, images=[{images}])"

    @property
    def grid(self) -> np.ndarray:
        """The primary grid of the first (original) image, ``(rows, cols)`` float32."""
        return self.images[0].primary.values

    def heatmap(self, image_index: int = 0, size: tuple[int, int] | None = None) -> np.ndarray:
        """Image-space map of one image; see :meth:`ImageMap.heatmap`."""
        return self.images[image_index].heatmap(size)

    def video_slices(self, video: int = 0) -> list[int]:
        """Indices into :attr:`images` of video ``video``'s temporal slices, in time order
        (empty for a map of still images only)."""
        return [i for i, im in enumerate(self.images) if im.video_index == video]

    def frame_maps(self, video: int = 0) -> list[tuple[int, float, ImageMap]]:
        """One ``(frame, time in seconds, ImageMap)`` per sampled frame of video ``video``, in
        time order: the slice whose tokens see that frame (both frames of a Qwen temporal
        patch get the same grids)."""
        out = []
        for i in self.video_slices(video):
            im = self.images[i]
            out += [(f, t, im) for f, t in zip(im.frames, im.timestamps, strict=True)]
        return out

    def relevance_over_time(self, video: int = 0) -> list[SliceRelevance]:
        """The relevance of each temporal slice of video ``video`` (its primary grid), in time
        order; see :class:`SliceRelevance`."""
        slices = self.video_slices(video)
        totals = [float(self.images[i].primary.values.sum()) for i in slices]
        grand = sum(totals)
        out = []
        for i, total in zip(slices, totals, strict=True):
            im = self.images[i]
            share = total / grand if grand > 0 and min(totals) >= 0 else float("nan")
            peak = float(im.primary.values.max())
            out.append(SliceRelevance(i, im.frames, im.timestamps, total, peak, share))
        return out

    def check(self) -> AttributionMap:
        """Raise :class:`DegenerateMapError` if any grid is NaN/inf or all zeros; return self."""
        for i, im in enumerate(self.images):
            for v in im.views:
                if not np.all(np.isfinite(v.values)):
                    raise DegenerateMapError(
                        f"{self.method} map of image {i} ({v.name}) contains NaN or inf"
                    )
                if not np.any(v.values != 0):
                    raise DegenerateMapError(
                        f"{self.method} map of image {i} ({v.name}) is all zeros "
                        "(e.g. a saturated softmax gives a zero entropy gradient)"
                    )
        return self

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the map to a ``.npz`` file (atomically: temporary file, then rename)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        header: dict[str, Any] = {
            "method": self.method,
            "target": self.target,
            "meta": self.meta,
            "images": [],
        }
        for i, im in enumerate(self.images):
            entry = {
                "image_size": list(im.image_size),
                "origin_box": list(im.origin_box),
                "views": [],
            }
            if im.is_video:
                entry.update(
                    frames=list(im.frames),
                    timestamps=list(im.timestamps),
                    video_index=im.video_index,
                )
            for j, v in enumerate(im.views):
                arrays[f"values_{i}_{j}"] = v.values
                arrays[f"boxes_{i}_{j}"] = v.cell_boxes
                entry["views"].append(v.name)
            header["images"].append(entry)
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> AttributionMap:
        """Read a map written by :meth:`save`."""
        with np.load(Path(path)) as data:
            header = json.loads(data["header"].tobytes().decode())
            images = []
            for i, entry in enumerate(header["images"]):
                views = [
                    GridView(data[f"values_{i}_{j}"], data[f"boxes_{i}_{j}"], name)
                    for j, name in enumerate(entry["views"])
                ]
                video = (
                    tuple(entry.get("frames", ())),
                    tuple(entry.get("timestamps", ())),
                    int(entry.get("video_index", -1)),
                )
                images.append(
                    ImageMap(views, tuple(entry["image_size"]), tuple(entry["origin_box"]), *video)
                )
        return cls(images, header["method"], header["target"], header["meta"])

    # ------------------------------------------------------------------ drawing
    def plot(
        self,
        image: Any = None,
        ax: Any = None,
        image_index: int = 0,
        alpha: float = 0.5,
        cmap: str = "inferno",
        boxes: list[Box] | None = None,
        title: str | None = None,
        vmax: float | None = None,
    ) -> tuple[Any, Any]:
        """Draw the map (over ``image`` when given) and optional boxes.

        Parameters
        ----------
        image : PIL.Image.Image or ndarray, optional
            The image the map belongs to (``images[image_index]``).
        ax : matplotlib Axes, optional
            Drawn into when given; otherwise a new figure is made.
        boxes : list of Box, optional
            Drawn as green rectangles (e.g. ground-truth evidence).
        vmax : float, optional
            Top of the colour scale (default: this image's largest value); one value for
            several images draws them on one scale.

        Returns
        -------
        (fig, ax)
        """
        from egg_interp.figures.drawing import draw_boxes, new_axes

        fig, ax = new_axes(ax)
        heat = self.heatmap(image_index)
        if image is not None:
            ax.imshow(np.asarray(image))
        finite = heat[np.isfinite(heat)]
        if vmax is None:
            vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        ax.imshow(
            np.ma.masked_invalid(heat),
            cmap=cmap,
            alpha=alpha if image is not None else 1.0,
            vmin=0.0,
            vmax=vmax,
        )
        if boxes:
            draw_boxes(ax, boxes, color="lime")
        ax.set_title(title if title is not None else f"{self.method} ({self.target})")
        ax.set_axis_off()
        return fig, ax
