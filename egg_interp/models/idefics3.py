"""Adapters for ``idefics3`` and ``smolvlm`` checkpoints (SmolVLM has Idefics3's layout).

Layout: the image processor resizes the image (aspect kept) so its longest side is
``size["longest_edge"]``, then stretches it slightly so both sides are multiples of the tile
side T (``max_image_size["longest_edge"]``, 364 for Idefics3 / 384 or 512 for SmolVLM) and
cuts it into ``rows x cols`` tiles, row-major; a global image (the whole image squashed to
T x T) comes last. Without splitting (or when the image fits one tile) there is only the
global image. Each tile gives ``(T / patch / scale_factor)^2`` tokens after the connector's
pixel shuffle, row-major within the tile. In the prompt, each tile's ``<image>`` run is
preceded by ``<fake_token_around_image><row_r_col_c>`` and the global run by
``<fake_token_around_image><global-img>``; those marker tokens are text, not visual tokens.

Views: ``"tiles"``, the tiles' grids stitched into one ``(rows * s) x (cols * s)`` grid over
the whole image (the finer view, :attr:`~egg_interp.maps.ImageMap.primary`), and
``"global"``, an ``s x s`` grid over the whole image (coarse fallback; the only view when
the image is not split). ``rows`` and ``cols`` are read from the ``<row_r_col_c>`` markers of
the built prompt, so the layout is exactly what the processor decided.

Hook: ``get_image_features(...).pooler_output`` (all frames of a prompt row, concatenated),
split here per image.

SmolVLM (``SmolVLMForConditionalGeneration``) has the same tiles, markers, pixel shuffle and
hook; :class:`SmolVLMAdapter` only names its ``model_type``. Its processor needs the
``num2words`` package.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling

from egg_interp.models.base import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
    VLMAdapter,
    regular_cell_boxes,
)

_MARKER = re.compile(r"<row_(\d+)_col_(\d+)>")


class Idefics3Adapter(VLMAdapter):
    """Idefics3: tiles with row/column markers plus a global image."""

    model_types = ("idefics3",)
    image_token = "<image>"

    @property
    def tokens_per_side(self) -> int:
        """Tokens per tile side after the pixel shuffle."""
        vc = self.model.config.vision_config
        return int(vc.image_size // vc.patch_size // self.model.config.scale_factor)

    @property
    def input_side(self) -> int:
        """The tile side T (the vision tower's square input), e.g. 364 for Idefics3."""
        return int(self.model.config.vision_config.image_size)

    def tile_grids(self, batch: dict[str, Any]) -> list[tuple[int, int]]:
        """``(rows, cols)`` of tiles of every image of the batch, read from the prompt markers.

        ``(0, 0)`` for an image that was not split (global image only).
        """
        global_tag = getattr(self.processor, "global_image_token", None) or "<global-img>"
        global_id = self.tokenizer.convert_tokens_to_ids(global_tag)
        out = []
        for ids in batch["input_ids"].tolist():
            rows = cols = 0
            for k in range(1, len(ids)):
                if ids[k] != self.image_token_id or ids[k - 1] == self.image_token_id:
                    continue  # only the first token of each run of image tokens
                if ids[k - 1] == global_id:
                    out.append((rows, cols))
                    rows = cols = 0
                    continue
                match = _MARKER.fullmatch(self.tokenizer.convert_ids_to_tokens(ids[k - 1]) or "")
                if match is None:
                    raise RuntimeError("Idefics3Adapter: an image run without a row/col marker")
                rows, cols = max(rows, int(match[1])), max(cols, int(match[2]))
        return out

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        grids = self.tile_grids(batch)
        if len(grids) != len(images):
            raise RuntimeError(
                f"Idefics3Adapter: the prompt holds {len(grids)} images, {len(images)} were given"
            )
        s = self.tokens_per_side
        per_tile = s * s
        out = []
        for im, (rows, cols) in zip(images, grids, strict=True):
            width, height = im.size
            views, n_tiles = [], rows * cols
            if n_tiles:
                # token (r, c) of the stitched grid: tile (r // s, c // s), cell (r % s, c % s)
                r, c = np.meshgrid(np.arange(rows * s), np.arange(cols * s), indexing="ij")
                index = ((r // s) * cols + c // s) * per_tile + (r % s) * s + c % s
                boxes = regular_cell_boxes(
                    rows * s, cols * s, 0.0, 0.0, width / (cols * s), height / (rows * s)
                )
                views.append(ViewLayout("tiles", index, boxes))
            glob = n_tiles * per_tile + np.arange(per_tile).reshape(s, s)
            views.append(
                ViewLayout(
                    "global", glob, regular_cell_boxes(s, s, 0.0, 0.0, width / s, height / s)
                )
            )
            out.append(ImageLayout((width, height), (n_tiles + 1) * per_tile, views))
        return out

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            pixel_values=inputs.batch["pixel_values"],
            pixel_attention_mask=inputs.batch.get("pixel_attention_mask"),
            return_dict=True,
        )
        flat = torch.cat([f.reshape(-1, f.shape[-1]) for f in out.pooler_output])
        return list(torch.split(flat, [lay.n_tokens for lay in inputs.layouts]))

    pixel_keys: ClassVar[tuple[str, ...]] = ("pixel_values", "pixel_attention_mask")

    def encoder_outputs(self, features: Sequence[torch.Tensor]) -> BaseModelOutputWithPooling:
        """All images' tokens in one tensor, as the model's own image features come."""
        return BaseModelOutputWithPooling(pooler_output=torch.cat(list(features), dim=0))

    def pixel_relevance_to_tokens(
        self, inputs: PromptInputs, pixel_map: torch.Tensor
    ) -> list[torch.Tensor]:
        """Mean-pool ``pixel_map`` (rows, frames, H, W) over each token's square of its frame.

        Frames that are batch padding (beyond a row's images) are skipped.
        """
        s = self.tokens_per_side
        k = pixel_map.shape[-1] // s
        pooled = torch.nn.functional.avg_pool2d(pixel_map.float(), k).flatten(2)  # (B, F, s*s)
        out = []
        for row, layouts in enumerate(inputs.row_layouts()):
            n_frames = sum(lay.n_tokens for lay in layouts) // (s * s)
            flat = pooled[row, :n_frames].flatten()
            out.extend(torch.split(flat, [lay.n_tokens for lay in layouts]))
        return out


class SmolVLMAdapter(Idefics3Adapter):
    """SmolVLM (``smolvlm``): Idefics3's layout and hooks under their own model classes."""

    images_nested_per_prompt = True

    model_types = ("smolvlm",)

    def prompt_text(self, n_images: int, question: str) -> str:
        """As the base, but without a video processor (no torchvision) the chat template is
        applied by ``ProcessorMixin`` itself: ``SmolVLMProcessor.apply_chat_template`` only
        adds its video processor's frame defaults, which images do not use."""
        if getattr(self.processor, "video_processor", None) is not None or not getattr(
            self.processor, "chat_template", None
        ):
            return super().prompt_text(n_images, question)
        from transformers import ProcessorMixin

        text = question if not self.prompt_suffix else f"{question} {self.prompt_suffix}"
        content: list[dict[str, str]] = [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": text})
        messages = [{"role": "user", "content": content}]
        return ProcessorMixin.apply_chat_template(
            self.processor, messages, add_generation_prompt=True
        )
