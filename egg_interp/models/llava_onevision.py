"""Adapter for ``llava_onevision`` checkpoints (LLaVA-OneVision: SigLIP, anyres, Qwen2).

Layout of one image's feature rows, in the order the ``<image>`` placeholders are filled.
S is the tile side (384), p the patch (14) and g = S // p the tokens per tile side (27):

* **one image in the prompt** ("anyres", as LLaVA-1.6):

  1. the **base** view: the whole image squashed to S x S (aspect not kept), g x g tokens
     row-major (729);
  2. the **high-resolution** grid: the image is resized, keeping its aspect, into the best
     canvas of ``image_grid_pinpoints`` (``select_best_resolution``), padded to it centred,
     cut into S x S tiles, and the tiles' g x g grids are stitched into one grid; the model
     "unpads" it at feature level (drops the rows or columns it computes to lie in the
     padding), and when the rest holds more than ``1.1^2 * n`` tiles' worth of tokens
     (``vision_aspect_ratio = "anyres_max_n"``, n = 9) shrinks it bilinearly by
     ``sqrt(cells / (n g^2))``; it is read row-major with one learned ``image_newline``
     after every row;

* **several images in one prompt** (the originals and crops of the zoom loop): no tiling;
  each image is padded to a square (centred, in the mean colour), squashed to S x S, and
  gives g x g tokens plus one ``image_newline`` (730). The processor switches by the number
  of images of the prompt (``batch_num_images``), so an image's map has two views alone and
  one view next to others.

What each token covers, read from the processor's geometry (tested by perturbing pixels):

* the tower sees only the first ``g * p`` pixels of every S x S input (378 of 384): the last
  ``S - g p`` pixel rows and columns of the base view, of every tile and of the padded square
  reach no token (their strip of the image has no base token; a tile seam has no
  high-resolution token for a strip of ``(S - g p)`` canvas pixels);
* a high-resolution token covers its patch, ``p`` canvas pixels; the canvas maps back to the
  image by the resize. Unpadding keeps whole feature rows computed with S / g pixels per
  token, not p, so the outer kept rows may lie partly in the padding (their boxes are
  clipped to the image) and image rows beyond them get no high-resolution token (e.g. 13 of
  13.5 rows kept);
* after the bilinear shrink (``align_corners=False``, no antialiasing) a token blends up to
  2 x 2 neighbouring features: its box is the hull of the patches with non-zero weight
  (about 2 p wide at a pitch of ``p * ratio``), so neighbouring boxes overlap; on a tile
  seam the hull also spans the unseen strip between the two patches it blends;
* newline tokens cover nothing: their feature rows (the learned ``image_newline``) stay in
  the image's features, so methods see and differentiate them, but no view points at them;
  nor at the outer rows and columns wholly in padding (a padded square's bands), while the
  boxes of those partly in it are clipped to the image.

Hook: ``get_image_features(...).pooler_output`` (one tensor per image, newlines included),
with ``batch_num_images`` so the multi-image path matches the prompt. Positions are 1-D.
Pixel-space maps pool each token's patch of ``pixel_values`` (the high-resolution grid
stitched, unpadded and shrunk like the features).

Video: the video processor squashes every frame to S x S (aspect not kept;
:func:`~egg_interp.models.video_inputs.squashed_frame_size`); the tower's g x g features of a
frame are pooled bilinearly to ``ceil(g / 2)`` per side (14 x 14 of 27 x 27; ``align_corners``
off, so a pooled token blends about 2 x 2 features: its box is their hull, two patches wide,
and neighbouring boxes overlap by a patch or so), frame after frame, then one learned newline
after the last frame (no timestamps: the prompt is ``<video>`` repeated). Each frame is one
layout of its own (every token sees one frame); the newline's feature row belongs to the last
frame's layout and to no view. Hook: ``get_video_features(...).pooler_output`` (one tensor per
video, newline included).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import select_best_resolution
from transformers.modeling_outputs import BaseModelOutputWithPooling

from egg_interp.models.base import ImageLayout, PromptInputs, ViewLayout, VLMAdapter
from egg_interp.models.video_inputs import squashed_frame_size
from egg_interp.video import Video


def seen_edges(n_tiles: int, tile: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel span of each feature along one axis of ``n_tiles`` stitched tiles.

    Feature ``k`` comes from patch ``k % g`` of tile ``k // g`` (``g = tile // patch``) and
    covers ``[start[k], end[k])`` of the stitched input; the last ``tile - g * patch``
    pixels of every tile reach no feature.
    """
    g = tile // patch
    k = np.arange(n_tiles * g)
    start = (k // g) * tile + (k % g) * patch
    return start.astype(np.float64), (start + patch).astype(np.float64)


def bilinear_hull(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last input cell that each output cell of a bilinear resize blends.

    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` from ``n_in``
    to ``n_out`` cells along one axis: output ``i`` reads source position
    ``max((i + 0.5) n_in / n_out - 0.5, 0)`` and blends its floor and the next cell (the
    next one only with a non-zero weight). Identity when ``n_in == n_out``.
    """
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    first = np.floor(src).astype(np.int64)
    weighted = (src - first) > 1e-6
    last = np.where(weighted, np.minimum(first + 1, n_in - 1), first)
    return first, last


def _boxes(xs: tuple[np.ndarray, np.ndarray], ys: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``(rows, cols, 4)`` boxes of a separable grid from per-axis ``(start, end)`` arrays."""
    (x0, x1), (y0, y1) = xs, ys
    rows, cols = len(y0), len(x0)
    return np.stack(
        np.broadcast_arrays(x0[None, :], y0[:, None], x1[None, :], y1[:, None]), axis=-1
    ).reshape(rows, cols, 4)


def without_padding(index: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A grid less its outer rows and columns whose boxes have no area (wholly padding)."""
    rows = np.flatnonzero((boxes[..., 3] > boxes[..., 1]).any(axis=1))
    cols = np.flatnonzero((boxes[..., 2] > boxes[..., 0]).any(axis=0))
    keep = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return index[keep], boxes[keep]


def squashed_view(
    width: int, height: int, tile: int, patch: int, pad_to_square: bool = False
) -> np.ndarray:
    """Boxes of the g x g tokens of an image squashed to ``tile x tile`` (optionally padded to
    a centred square first), in the image's pixels, clipped to it (padding: no area)."""
    side = max(width, height) if pad_to_square else None
    pad_x = (side - width) // 2 if side else 0
    pad_y = (side - height) // 2 if side else 0
    sx, sy = (side or width) / tile, (side or height) / tile
    ex0, ex1 = seen_edges(1, tile, patch)
    boxes = _boxes((ex0 * sx - pad_x, ex1 * sx - pad_x), (ex0 * sy - pad_y, ex1 * sy - pad_y))
    boxes[..., 0::2] = boxes[..., 0::2].clip(0, width)
    boxes[..., 1::2] = boxes[..., 1::2].clip(0, height)
    return boxes


def anyres_grid(
    width: int, height: int, pinpoints: Sequence[Sequence[int]], tile: int, patch: int, max_n: int
) -> dict[str, Any]:
    """Where the high-resolution tokens of a ``width x height`` image come from.

    Mirrors the processor (aspect-kept resize into the best canvas, centred padding, S x S
    tiles) and the model (feature-level unpadding, bilinear shrink above ``max_n`` tiles).

    Returns
    -------
    dict
        ``tiles`` (rows, cols of tiles), ``kept`` (first and end row, first and end column of
        the stitched feature grid kept by unpadding), ``shape`` (rows, cols of tokens after the
        shrink) and ``boxes`` (``(rows, cols, 4)`` in image pixels: each token's hull).
    """
    canvas_h, canvas_w = select_best_resolution((height, width), [list(p) for p in pinpoints])
    scale_w, scale_h = canvas_w / width, canvas_h / height
    if scale_w < scale_h:
        new_w, new_h = canvas_w, min(math.ceil(height * scale_w), canvas_h)
    else:
        new_h, new_w = canvas_h, min(math.ceil(width * scale_h), canvas_w)
    paste_x, paste_y = (canvas_w - new_w) // 2, (canvas_h - new_h) // 2
    g = tile // patch
    n_rows, n_cols = canvas_h // tile, canvas_w // tile
    rows, cols = n_rows * g, n_cols * g
    r0, r1, c0, c1 = 0, rows, 0, cols
    if width / height > cols / rows:  # the model's unpad_image, in feature units
        pad = (rows - int(round(height * (cols / width), 7))) // 2
        r0, r1 = pad, rows - pad
    else:
        pad = (cols - int(round(width * (rows / height), 7))) // 2
        c0, c1 = pad, cols - pad
    h, w = r1 - r0, c1 - c0
    ratio = math.sqrt(h * w / (max_n * g**2))
    out_h, out_w = (int(h // ratio), int(w // ratio)) if ratio > 1.1 else (h, w)

    def axis(n_tiles: int, lo: int, n_in: int, n_out: int, paste: int, scale: float):
        start, end = seen_edges(n_tiles, tile, patch)
        first, last = bilinear_hull(n_in, n_out)
        return (start[lo + first] - paste) * scale, (end[lo + last] - paste) * scale

    boxes = _boxes(
        axis(n_cols, c0, w, out_w, paste_x, width / new_w),
        axis(n_rows, r0, h, out_h, paste_y, height / new_h),
    )
    boxes[..., 0::2] = boxes[..., 0::2].clip(0, width)
    boxes[..., 1::2] = boxes[..., 1::2].clip(0, height)
    return dict(tiles=(n_rows, n_cols), kept=(r0, r1, c0, c1), shape=(out_h, out_w), boxes=boxes)


class LlavaOnevisionAdapter(VLMAdapter):
    """LLaVA-OneVision: base view plus the anyres grid alone, one padded square per image in
    a prompt with several (see the module docstring)."""

    model_types = ("llava_onevision",)
    images_nested_per_prompt = True  # the processor picks the multi-image path per prompt

    @property
    def patch_size(self) -> int:
        return int(self.model.config.vision_config.patch_size)

    @property
    def tile_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    @property
    def max_tiles(self) -> int:
        """The ``n`` of the model's ``vision_aspect_ratio = "anyres_max_<n>"``."""
        return int(str(self.model.config.vision_aspect_ratio).removeprefix("anyres_max_"))

    def image_layout(self, image: Image.Image, alone: bool) -> ImageLayout:
        """Token layout of one image: alone in its prompt (anyres) or next to others."""
        if self.model.config.vision_feature_select_strategy != "full":
            raise RuntimeError(
                "LlavaOnevisionAdapter supports vision_feature_select_strategy='full'"
            )
        width, height = image.size
        s, p = self.tile_size, self.patch_size
        g = s // p
        index, boxes = without_padding(
            np.arange(g * g).reshape(g, g), squashed_view(width, height, s, p, not alone)
        )
        base = ViewLayout("base", index, boxes)
        if not alone:  # g * g tokens, then one newline
            return ImageLayout((width, height), g * g + 1, [base])
        grid = anyres_grid(
            width, height, self.model.config.image_grid_pinpoints, s, p, self.max_tiles
        )
        rows, cols = grid["shape"]
        # row r starts after the base tokens and r earlier rows of cols tokens + newline
        index = g * g + np.arange(rows)[:, None] * (cols + 1) + np.arange(cols)[None, :]
        highres = ViewLayout("highres", *without_padding(index, grid["boxes"]), grid)
        return ImageLayout((width, height), g * g + rows * (cols + 1), [base, highres])

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        counts = batch.get("batch_num_images")
        counts = [1] * len(images) if counts is None else [int(n) for n in counts]
        alone = [n == 1 for n in counts for _ in range(n)]
        return [self.image_layout(im, a) for im, a in zip(images, alone, strict=True)]

    video_packing = "frames"

    def video_frame_size(
        self, n_frames: int, height: int, width: int, settings: dict[str, Any]
    ) -> tuple[int, int]:
        return squashed_frame_size(n_frames, height, width, settings)

    def video_layouts(self, videos: Sequence[Video], batch: dict[str, Any]) -> list[ImageLayout]:
        """One layout per frame: its pooled grid (``ceil(g / 2)`` per side) over the squashed
        frame, each token the hull of the features it blends; the video's newline row ends the
        last frame's layout (in no view)."""
        s, p = self.tile_size, self.patch_size
        g = s // p
        n = math.ceil(g / 2)
        first, last = bilinear_hull(g, n)
        index = np.arange(n * n).reshape(n, n)
        out = []
        for v, video in enumerate(videos):
            width, height = video.size
            seen = squashed_view(width, height, s, p)
            boxes = _boxes(
                (seen[0, first, 0], seen[0, last, 2]), (seen[first, 0, 1], seen[last, 0, 3])
            )
            box = (0.0, 0.0, float(width), float(height))
            for f, t in enumerate(video.timestamps):
                newline = int(f == video.n_frames - 1)
                view = ViewLayout("frame", index, boxes)
                out.append(ImageLayout(video.size, n * n + newline, [view], box, (f,), (t,), v))
        return out

    def compute_video_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        cfg = self.model.config
        out = self.model.model.get_video_features(
            pixel_values_videos=inputs.batch["pixel_values_videos"],
            vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
            return_dict=True,
        )
        return list(out.pooler_output)

    def visual_encoder_outputs(
        self, inputs: PromptInputs, features: Sequence[torch.Tensor]
    ) -> dict[str, Any]:
        """As the base, with the videos' features stacked ``(videos, tokens, hidden)``: the
        model flattens that tensor (its images it concatenates from a tuple)."""
        out = super().visual_encoder_outputs(inputs, features)
        if "video" in out:
            stacked = torch.stack(list(out["video"].pooler_output))
            out["video"] = BaseModelOutputWithPooling(pooler_output=stacked)
        return out

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        b = inputs.batch
        out = self.model.model.get_image_features(
            pixel_values=b["pixel_values"],
            image_sizes=b["image_sizes"],
            batch_num_images=b.get("batch_num_images"),
            return_dict=True,
        )
        return list(out.pooler_output)

    def pixel_relevance_to_tokens(
        self, inputs: PromptInputs, pixel_map: torch.Tensor
    ) -> list[torch.Tensor]:
        """Mean-pool ``pixel_map`` (n_images, tiles, S, S) over each token's patch.

        The unseen strip of every tile is left out (as the tower does); the base tile gives
        the base tokens; the other tiles are stitched, unpadded and shrunk like the features,
        and a zero stands for every newline token.
        """
        g = self.tile_size // self.patch_size
        pooled = torch.nn.functional.avg_pool2d(pixel_map.float(), self.patch_size)
        out = []
        for i, lay in enumerate(inputs.layouts):
            base = pooled[i, 0, :g, :g].flatten()
            if len(lay.views) == 1:  # several images in the prompt: base + one newline
                out.append(torch.cat([base, base.new_zeros(1)]))
                continue
            grid = lay.views[1].pixel_slices
            (nr, nc), (r0, r1, c0, c1) = grid["tiles"], grid["kept"]
            tiles = pooled[i, 1 : 1 + nr * nc, :g, :g].reshape(nr, nc, g, g)
            hi = tiles.permute(0, 2, 1, 3).reshape(nr * g, nc * g)[r0:r1, c0:c1]
            if tuple(hi.shape) != grid["shape"]:
                hi = torch.nn.functional.interpolate(hi[None, None], grid["shape"], mode="bilinear")
                hi = hi[0, 0]
            hi = torch.cat([hi, hi.new_zeros(hi.shape[0], 1)], dim=1)
            out.append(torch.cat([base, hi.flatten()]))
        return out
