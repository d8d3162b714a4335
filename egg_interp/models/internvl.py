"""Adapter for ``internvl`` checkpoints (HF-native InternVL3 / InternVL3.5, the ``-hf`` ones).

Layout: the image processor picks a canvas of ``cols x rows`` tiles whose aspect is closest
to the image's (``get_optimal_tiled_canvas`` between ``min_patches`` and ``max_patches``),
squashes the whole image onto it (``cols * S`` by ``rows * S``, S = 448, aspect not exactly
kept, nothing padded or cropped) and cuts it into S x S tiles, row-major; when there is more
than one tile a thumbnail (the whole image squashed to S x S) comes last. Each tile gives
``(S / patch * downsample)^2`` tokens (256: 32x32 patches of 14 px, pixel shuffle 0.5),
row-major within the tile, each covering 28 x 28 tile pixels. Per image the prompt holds
``<img>`` + ``<IMG_CONTEXT>`` x (256 x tiles) + ``</img>``.

Views: ``"tiles"``, the tiles' grids stitched into one ``(rows * 16) x (cols * 16)`` grid
over the whole image (the finer view, :attr:`~egg_interp.maps.ImageMap.primary`), and
``"thumbnail"``, a 16 x 16 grid over the whole image (the coarse fallback), only when there
is more than one tile.

Hook: ``get_image_features(...).pooler_output``, one ``(total_tiles, 256, D)`` tensor for all
images of the prompt, split here per image by its tile count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

from egg_interp.models.base import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
    VLMAdapter,
    regular_cell_boxes,
)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, dict):
        return int(v["height"]), int(v["width"])
    if hasattr(v, "height"):
        return int(v.height), int(v.width)
    if isinstance(v, (list, tuple)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


class InternVLAdapter(VLMAdapter):
    """InternVL3/3.5 (HF-native): tiles stitched over the canvas plus a thumbnail."""

    model_types = ("internvl",)
    image_token = "<IMG_CONTEXT>"

    @property
    def tokens_per_side(self) -> int:
        """Tokens per tile side after the pixel shuffle (16 for 448 px tiles, patch 14)."""
        vc = self.model.config.vision_config
        side = _pair(vc.image_size)[0] // _pair(vc.patch_size)[0]
        return int(side * self.model.config.downsample_ratio)

    def fallback_prompt(self, n_images: int, text: str) -> str:
        images = f"{self.image_token}\n" * n_images
        return f"<|im_start|>user\n{images}{text}<|im_end|>\n<|im_start|>assistant\n"

    def tile_grid(self, width: int, height: int) -> tuple[int, int]:
        """``(cols, rows)`` of tiles the processor makes of a ``width x height`` image."""
        ip = self.processor.image_processor
        crop = getattr(self.processor, "images_kwargs", {}).get("crop_to_patches")
        crop = getattr(ip, "crop_to_patches", False) if crop is None else crop
        if not crop or ip.max_patches <= 1:
            return 1, 1
        tile_h, tile_w = _pair(ip.size)
        return get_optimal_tiled_canvas(
            (height, width), (tile_h, tile_w), ip.min_patches, ip.max_patches
        )

    def image_layout(self, image: Image.Image) -> ImageLayout:
        """Token layout of one image: stitched tiles, then the thumbnail if any."""
        width, height = image.size
        cols, rows = self.tile_grid(width, height)
        s = self.tokens_per_side
        per_tile = s * s
        # token (r, c) of the stitched grid: tile (r // s, c // s), cell (r % s, c % s)
        r, c = np.meshgrid(np.arange(rows * s), np.arange(cols * s), indexing="ij")
        index = ((r // s) * cols + c // s) * per_tile + (r % s) * s + c % s
        boxes = regular_cell_boxes(
            rows * s, cols * s, 0.0, 0.0, width / (cols * s), height / (rows * s)
        )
        views = [ViewLayout("tiles", index, boxes)]
        n_tiles = rows * cols
        if n_tiles > 1:
            thumb = n_tiles * per_tile + np.arange(per_tile).reshape(s, s)
            views.append(
                ViewLayout(
                    "thumbnail", thumb, regular_cell_boxes(s, s, 0.0, 0.0, width / s, height / s)
                )
            )
            n_tiles += 1
        return ImageLayout((width, height), n_tiles * per_tile, views)

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        out = [self.image_layout(im) for im in images]
        n_tiles = sum(lay.n_tokens for lay in out) // self.tokens_per_side**2
        if n_tiles != batch["pixel_values"].shape[0]:
            raise RuntimeError(
                f"InternVLAdapter: the processor made {batch['pixel_values'].shape[0]} tiles but "
                f"the layout predicts {n_tiles}; its tiling settings are not understood"
            )
        return out

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            pixel_values=inputs.batch["pixel_values"], return_dict=True
        )
        flat = out.pooler_output.reshape(-1, out.pooler_output.shape[-1])
        return list(torch.split(flat, [lay.n_tokens for lay in inputs.layouts]))

    def encoder_outputs(self, features: Sequence[torch.Tensor]) -> BaseModelOutputWithPooling:
        """All images' tokens in one tensor, as the model's own image features come."""
        return BaseModelOutputWithPooling(pooler_output=torch.cat(list(features), dim=0))

    def pixel_relevance_to_tokens(
        self, inputs: PromptInputs, pixel_map: torch.Tensor
    ) -> list[torch.Tensor]:
        """Mean-pool ``pixel_map`` (total_tiles, H, W) over each token's square of its tile."""
        s = self.tokens_per_side
        k = pixel_map.shape[-1] // s
        pooled = torch.nn.functional.avg_pool2d(pixel_map.float().unsqueeze(1), k).flatten(1)
        return list(torch.split(pooled.flatten(), [lay.n_tokens for lay in inputs.layouts]))
