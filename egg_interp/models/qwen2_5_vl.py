"""Adapter for ``qwen2_5_vl`` checkpoints (Qwen2.5-VL, dynamic resolution).

Layout: the processor resizes each image with ``smart_resize`` to ``rh x rw``, multiples of
``patch * merge`` (28) within ``[min_pixels, max_pixels]`` (slightly anisotropic: aspect is
not exactly kept, and nothing is padded or cropped), cuts it into 14 px patches
(``image_grid_thw = (1, rh/14, rw/14)``), and the merger joins every 2x2 block of patches
into one token. An image thus gives ``(rh/28) x (rw/28)`` tokens, row-major, between
``<|vision_start|>`` and ``<|vision_end|>``; token ``(r, c)`` covers
``x in [28 c W / rw, 28 (c+1) W / rw)``, likewise y. The geometry is read from the
``image_grid_thw`` the processor returned, so it follows any processor setting.

Hook: ``get_image_features(...).pooler_output`` (one tensor per image, already back in
row-major order; ``visual.merger`` outputs in window-attention order). The language model
uses 3-D rotary positions computed from ``input_ids``, ``image_grid_thw`` and
``mm_token_type_ids``: all three are passed on every forward (without
``mm_token_type_ids`` the model silently falls back to 1-D positions), answer tokens
appended by :meth:`extend` get type 0 (text), and the cached ``rope_deltas`` are reset
before every unrelated forward and before generation.

Pixel-space methods are not supported: ``pixel_values`` holds flattened patches, not an
image-shaped tensor.

Video: the video processor resizes every frame alike (Qwen2-VL and Qwen2.5-VL: the image
``smart_resize`` per frame; :func:`~egg_interp.models.video_inputs.qwen2_frame_size`) and joins
each two consecutive frames into one temporal patch (``temporal_patch_size`` 2: the patch
embedding is a 3-D convolution over ``2 x 14 x 14`` voxels; an odd frame count repeats the last
frame). ``video_grid_thw = (t, gh, gw)`` gives ``t`` temporal slices of ``(gh/2) x (gw/2)``
tokens, slice after slice, each row-major over the whole frame like an image's; every token of
slice ``k`` spans frames ``2k`` and ``2k+1`` (so a map cannot tell those two frames apart), and
its rectangle is the image rule's. Placeholders: ``<|vision_start|>`` + ``<|video_pad|>`` x
``t h w / 4`` + ``<|vision_end|>``; the temporal rotary position advances by
``second_per_grid_ts x tokens_per_second`` per slice (Qwen2.5-VL; Qwen2-VL by 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from egg_interp.models.base import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
    VLMAdapter,
    regular_cell_boxes,
)
from egg_interp.models.video_inputs import qwen2_frame_size
from egg_interp.video import Video


def merged_grid_view(
    size: tuple[int, int],
    patch_grid: tuple[int, int],
    patch: int,
    merge: int,
    first_token: int = 0,
    name: str = "base",
) -> ViewLayout:
    """The token grid of one image (or one temporal slice of a video) of a Qwen-style model.

    Parameters
    ----------
    size : (width, height)
        The original image's size in pixels.
    patch_grid : (rows, cols)
        Patches per side of the resized image (``image_grid_thw[1:]``), multiples of
        ``merge``: the resized image is ``rows * patch`` x ``cols * patch`` pixels, the whole
        original image squashed to it (no crop, no padding).
    patch, merge : int
        Patch side in pixels and merge factor per side (a token covers ``patch * merge``
        resized pixels).
    first_token : int
        Feature row of the grid's first token (a video's later slices start further on).
    name : str
        The view's name.

    Returns
    -------
    ViewLayout
        ``(rows / merge, cols / merge)`` tokens, row-major from ``first_token``; token
        ``(r, c)`` covers ``x in [c s W / rw, (c+1) s W / rw)`` with ``s = patch * merge`` and
        ``rw = cols * patch``, likewise y, in original pixels.
    """
    gh, gw = patch_grid
    width, height = size
    rows, cols = gh // merge, gw // merge
    cell = patch * merge
    sx, sy = width / (gw * patch), height / (gh * patch)
    boxes = regular_cell_boxes(rows, cols, 0.0, 0.0, cell * sx, cell * sy)
    index = first_token + np.arange(rows * cols).reshape(rows, cols)
    return ViewLayout(name, index, boxes)


class Qwen2_5_VLAdapter(VLMAdapter):
    """Qwen2.5-VL: one view per image, the merged token grid over the whole image."""

    model_types = ("qwen2_5_vl",)
    image_token = "<|image_pad|>"

    @property
    def merge_size(self) -> int:
        return int(self.model.config.vision_config.spatial_merge_size)

    @property
    def patch_size(self) -> int:
        return int(self.model.config.vision_config.patch_size)

    def fallback_prompt(self, n_images: int, text: str) -> str:
        image = "<|vision_start|><|image_pad|><|vision_end|>"
        return f"<|im_start|>user\n{image * n_images}{text}<|im_end|>\n<|im_start|>assistant\n"

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        out = []
        for im, thw in zip(images, batch["image_grid_thw"].tolist(), strict=True):
            t, gh, gw = (int(v) for v in thw)
            if t != 1:
                raise RuntimeError(f"an image with {t} temporal patches: only still images work")
            view = merged_grid_view(im.size, (gh, gw), self.patch_size, self.merge_size)
            out.append(ImageLayout(im.size, view.token_index.size, [view]))
        return out

    @property
    def temporal_patch_size(self) -> int:
        """Frames per temporal patch of a video (2): every token of a slice spans them."""
        return int(self.model.config.vision_config.temporal_patch_size)

    def video_frame_size(
        self, n_frames: int, height: int, width: int, settings: dict[str, Any]
    ) -> tuple[int, int]:
        return qwen2_frame_size(n_frames, height, width, settings)

    def video_layouts(self, videos: Sequence[Video], batch: dict[str, Any]) -> list[ImageLayout]:
        """One layout per temporal slice: the image grid over the whole frame, its tokens
        spanning the slice's ``temporal_patch_size`` frames."""
        out = []
        grids = batch["video_grid_thw"].tolist()
        tp = self.temporal_patch_size
        for v, (video, (t, gh, gw)) in enumerate(zip(videos, grids, strict=True)):
            if t != -(-video.n_frames // tp):
                raise RuntimeError(f"{video.n_frames} frames gave {t} temporal patches of {tp}")
            width, height = video.size
            for k in range(t):
                frames = tuple(range(k * tp, min((k + 1) * tp, video.n_frames)))
                view = merged_grid_view(video.size, (gh, gw), self.patch_size, self.merge_size)
                times = tuple(video.timestamps[f] for f in frames)
                box = (0.0, 0.0, float(width), float(height))
                lay = ImageLayout(video.size, view.token_index.size, [view], box, frames, times, v)
                out.append(lay)
        return out

    def compute_video_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        out = self.model.model.get_video_features(
            pixel_values_videos=inputs.batch["pixel_values_videos"],
            video_grid_thw=inputs.batch["video_grid_thw"],
            return_dict=True,
        )
        return list(out.pooler_output)

    def reset_positions(self) -> None:
        """Forget the rotary position offsets cached by the previous forward or generation."""
        self.model.model.rope_deltas = None

    def saved_positions(self) -> torch.Tensor | None:
        """The rotary offsets (``rope_deltas``) of the last forward's prompt."""
        return self.model.model.rope_deltas

    def restore_positions(self, state: torch.Tensor | None) -> None:
        self.model.model.rope_deltas = state

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            pixel_values=inputs.batch["pixel_values"],
            image_grid_thw=inputs.batch["image_grid_thw"],
            return_dict=True,
        )
        return list(out.pooler_output)

    def position_kwargs(self, batch: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """3-D rotary positions come from ``mm_token_type_ids`` and ``image_grid_thw``;
        only the cached ``rope_deltas`` of an earlier prompt must go."""
        self.reset_positions()
        return kwargs

    def forward(self, inputs: PromptInputs, **kwargs: Any) -> Any:
        self.reset_positions()
        return super().forward(inputs, **kwargs)

    def generate(self, inputs: PromptInputs, max_new_tokens: int = 20) -> str:
        self.reset_positions()
        return super().generate(inputs, max_new_tokens)

    def extend_extra(self, batch: dict[str, Any], n: int) -> dict[str, Any]:
        types = batch.get("mm_token_type_ids")
        if types is not None:
            pad = torch.zeros((types.shape[0], n), dtype=types.dtype, device=types.device)
            batch["mm_token_type_ids"] = torch.cat([types, pad], dim=1)
        return batch
