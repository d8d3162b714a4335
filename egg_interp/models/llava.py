"""Adapter for ``llava`` checkpoints (LLaVA-1.5 and the model organism).

Layout: one image -> ``(S / patch)^2`` tokens (576 for LLaVA-1.5's 336 px input and patch
14), row-major over the square grid of the processed image. The processor resizes the
shortest edge to S and centre-crops S x S (borders of non-square images get no token), or
with ``do_pad`` pads the image to a square first (padding cells are clipped to zero area).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from egg_interp.models.base import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
    VLMAdapter,
    regular_cell_boxes,
)


def _size_field(size: Any, name: str) -> Any:
    if size is None:
        return None
    return size.get(name) if isinstance(size, dict) else getattr(size, name, None)


class LlavaAdapter(VLMAdapter):
    """LLaVA-1.5: CLIP tower, layer -2 features without CLS, MLP projector."""

    model_types = ("llava",)
    batch_by_repeating_prompt = True

    @property
    def patch_size(self) -> int:
        return int(self.model.config.vision_config.patch_size)

    def processed_geometry(self, width: int, height: int) -> dict[str, float]:
        """How the processor maps an image of this size to its model input.

        Returns the padded size, the resized size, the crop offsets and size, so that a
        processed pixel ``u`` (column) comes from original ``x = (u + left) * Wp / rw - pad_x``.
        """
        ip = self.processor.image_processor
        pad_x = pad_y = 0
        wp, hp = width, height
        if getattr(ip, "do_pad", False) and width != height:
            m = max(width, height)
            pad_x, pad_y = (m - width) // 2, (m - height) // 2
            wp = hp = m
        rw, rh = wp, hp
        if getattr(ip, "do_resize", True):
            short_edge = _size_field(ip.size, "shortest_edge")
            if short_edge:
                short, long = min(wp, hp), max(wp, hp)
                new_long = int(short_edge * long / short)
                rw, rh = (short_edge, new_long) if wp <= hp else (new_long, short_edge)
            else:
                rh, rw = _size_field(ip.size, "height"), _size_field(ip.size, "width")
        ch, cw = rh, rw
        top = left = 0
        if getattr(ip, "do_center_crop", False):
            ch, cw = _size_field(ip.crop_size, "height"), _size_field(ip.crop_size, "width")
            top = (rh - ch) // 2 if rh >= ch else -math.ceil((ch - rh) / 2)
            left = (rw - cw) // 2 if rw >= cw else -math.ceil((cw - rw) / 2)
        return dict(
            pad_x=pad_x, pad_y=pad_y, wp=wp, hp=hp, rw=rw, rh=rh, top=top, left=left, ch=ch, cw=cw
        )

    def image_layout(self, image: Image.Image) -> ImageLayout:
        """Token grid of one image and the original-image rectangle of every token."""
        width, height = image.size
        g = self.processed_geometry(width, height)
        p = self.patch_size
        rows, cols = int(g["ch"]) // p, int(g["cw"]) // p
        sx, sy = g["wp"] / g["rw"], g["hp"] / g["rh"]
        boxes = regular_cell_boxes(
            rows,
            cols,
            x0=g["left"] * sx - g["pad_x"],
            y0=g["top"] * sy - g["pad_y"],
            cell_w=p * sx,
            cell_h=p * sy,
            clip=(width, height),
        )
        index = torch.arange(rows * cols).reshape(rows, cols).numpy()
        return ImageLayout((width, height), rows * cols, [ViewLayout("base", index, boxes)])

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        return [self.image_layout(im) for im in images]

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            pixel_values=inputs.batch["pixel_values"], return_dict=True
        )
        feats = out.pooler_output
        if torch.is_tensor(feats):
            feats = list(feats)
        return [f.reshape(-1, f.shape[-1]) for f in feats]

    def pixel_relevance_to_tokens(
        self, inputs: PromptInputs, pixel_map: torch.Tensor
    ) -> list[torch.Tensor]:
        p = self.patch_size
        pooled = torch.nn.functional.avg_pool2d(pixel_map.float().unsqueeze(1), p).squeeze(1)
        return [pooled[i].flatten() for i in range(pooled.shape[0])]
