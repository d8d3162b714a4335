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
