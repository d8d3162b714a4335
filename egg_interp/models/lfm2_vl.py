"""Adapter for ``lfm2_vl`` checkpoints (LFM2-VL: SigLIP2 NaFlex tiles, a thumbnail, LFM2).

Layout. The image processor rounds the image to multiples of ``s = patch * 2`` (32 px for
LFM2-VL: SigLIP2 patch 16, pixel unshuffle x2) within ``[min_image_tokens, max_image_tokens]``
tokens (``smart_resize``, aspect nearly kept). An image "too large" for one pass (more than
``max_pixels_tolerance`` times the token budget) is instead squashed onto a canvas of
``cols x rows`` tiles of ``tile_size`` px (512; the grid whose aspect is closest to the
image's, between ``min_tiles`` and ``max_tiles``) and cut into tiles, row-major, followed by
a **thumbnail**: the whole image at its ``smart_resize`` size. Each tile or single image
gives ``(h / s) x (w / s)`` tokens, row-major, token ``(r, c)`` covering ``[c s, (c + 1) s) x
[r s, (r + 1) s)`` of its tile or resized image. In the prompt: ``<|image_start|>``, per tile
``<|img_row_R_col_C|>`` + its ``<image>`` tokens, then ``<|img_thumbnail|>`` + the
thumbnail's, ``<|image_end|>``; a single image has no markers between start and end.

Views: ``"tiles"``, the tiles' grids stitched into one grid over the whole image (the finer
view), and ``"thumbnail"``; or ``"image"`` alone when the image was not split. The tile grid
is read from the ``<|img_row_R_col_C|>`` markers of the built prompt and each grid's shape
from ``spatial_shapes`` (patches per side of every tile and thumbnail), so the layout is what
the processor decided. The tiles tile the image exactly; the thumbnail's rounding to
multiples of ``s`` stretches the image slightly, which the cell boxes follow (each token's
rectangle is its cell scaled by the image's size over the resized size).

Hook: ``get_image_features(...).pooler_output`` (one tensor per tile or thumbnail), joined
per image. The features replace the ``<image>`` placeholders (masked scatter).

Language model: LFM2, a hybrid of short causal convolutions and grouped-query attention
(10 of 16 layers are convolutions in LFM2-VL-1.6B). Gradients, hence EGG and the gradient
baselines, pass through both kinds of layer. Attention weights exist only in the attention
layers (:attr:`Lfm2VlAdapter.attention_layers`): raw attention, rel-att and grad-att read
those layers only and say so in the map's metadata (``attention_layers``,
``attention_note``), as on Qwen3.5; they cannot show how the convolution layers move
information between positions. Attention rollout, which needs every layer's mixing, is
refused in one line. Positions are 1-D; with left padding the convolution layers zero the
padded states, so batched rows equal single prompts.

Pixel-space methods are refused: ``pixel_values`` holds flattened, padded patches.

Without torchvision, transformers' ``Lfm2VlProcessor`` is built with the torch
re-implementation of its image processor in :mod:`egg_interp.models.lfm2_vl_image_processing`
(transformers' own module imports torchvision); with torchvision installed, ``load_model``
uses ``AutoProcessor`` as is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from transformers.utils import is_torchvision_available

from egg_interp.models.base import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
    VLMAdapter,
    regular_cell_boxes,
)
from egg_interp.models.lfm2_vl_image_processing import load_processor_without_torchvision

_TILE_MARKER = re.compile(r"<\|img_row_(\d+)_col_(\d+)\|>")


class Lfm2VlAdapter(VLMAdapter):
    """LFM2-VL: tiles with row/column markers and a thumbnail, or one resized image."""

    model_types = ("lfm2_vl",)
    image_token = "<image>"
    images_nested_per_prompt = True
    pixel_keys: ClassVar[tuple[str, ...]] = (
        "pixel_values",
        "pixel_attention_mask",
        "spatial_shapes",
    )

    @classmethod
    def load_processor(cls, source: str, model_type: str) -> Any:
        """``AutoProcessor`` with torchvision; without it, transformers' ``Lfm2VlProcessor``
        built with :class:`~egg_interp.models.lfm2_vl_image_processing.Lfm2VlImageProcessor`."""
        if is_torchvision_available():
            return super().load_processor(source, model_type)
        return load_processor_without_torchvision(source)

    @property
    def input_side(self) -> int:
        """The tile side (512 for LFM2-VL), as ViCrop sizes its crops."""
        return int(self.processor.image_processor.tile_size)

    @property
    def attention_layers(self) -> list[int]:
        """Decoder layers with attention weights (the others are short convolutions)."""
        types = self.model.config.get_text_config().layer_types
        return [i for i, t in enumerate(types) if t != "conv"]

    def fallback_prompt(self, n_images: int, text: str) -> str:
        images = self.image_token * n_images
        return f"<|im_start|>user\n{images}{text}<|im_end|>\n<|im_start|>assistant\n"

    def tile_grids(self, batch: dict[str, Any]) -> list[tuple[int, int, bool]]:
        """``(rows, cols, thumbnail)`` of every image of the batch, from the prompt markers;
        ``(1, 1, False)`` for an image that was not split."""
        tok = self.tokenizer
        start, end, thumb = (
            tok.convert_tokens_to_ids(getattr(self.processor, name))
            for name in ("image_start_token", "image_end_token", "image_thumbnail_token")
        )
        out = []
        for ids in batch["input_ids"].tolist():
            inside, rows, cols, has_thumb = False, 1, 1, False
            for i in ids:
                if i == start:
                    inside, rows, cols, has_thumb = True, 1, 1, False
                elif i == end and inside:
                    out.append((rows, cols, has_thumb))
                    inside = False
                elif i == thumb:
                    has_thumb = True
                elif inside and i != self.image_token_id:
                    match = _TILE_MARKER.fullmatch(tok.convert_ids_to_tokens(i) or "")
                    if match:
                        rows, cols = max(rows, int(match[1])), max(cols, int(match[2]))
        return out

    def image_layout(
        self, image: Image.Image, rows: int, cols: int, shapes: Sequence[Sequence[int]]
    ) -> ImageLayout:
        """Views of one image from its tile grid and the patch shapes of its tiles (and of
        the thumbnail, last) or of its single resized image."""
        width, height = image.size
        f = int(self.model.config.downsample_factor)
        grids = [(int(h) // f, int(w) // f) for h, w in shapes]
        if rows * cols == 1:
            (th, tw), *_ = grids
            boxes = regular_cell_boxes(th, tw, 0.0, 0.0, width / tw, height / th)
            index = np.arange(th * tw).reshape(th, tw)
            return ImageLayout((width, height), th * tw, [ViewLayout("image", index, boxes)])
        t, _ = grids[0]
        if any(g != (t, t) for g in grids[: rows * cols]):
            raise RuntimeError(f"Lfm2VlAdapter: tiles of unequal shapes {grids}")
        # token (r, c) of the stitched grid: tile (r // t, c // t), cell (r % t, c % t)
        r, c = np.meshgrid(np.arange(rows * t), np.arange(cols * t), indexing="ij")
        index = ((r // t) * cols + c // t) * t * t + (r % t) * t + c % t
        boxes = regular_cell_boxes(
            rows * t, cols * t, 0.0, 0.0, width / (cols * t), height / (rows * t)
        )
        views = [ViewLayout("tiles", index, boxes)]
        n = rows * cols * t * t
        if len(grids) > rows * cols:
            th, tw = grids[rows * cols]
            thumb = n + np.arange(th * tw).reshape(th, tw)
            views.append(
                ViewLayout(
                    "thumbnail",
                    thumb,
                    regular_cell_boxes(th, tw, 0.0, 0.0, width / tw, height / th),
                )
            )
            n += th * tw
        return ImageLayout((width, height), n, views)

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        grids = self.tile_grids(batch)
        if len(grids) != len(images):
            raise RuntimeError(
                f"Lfm2VlAdapter: the prompt holds {len(grids)} images, {len(images)} were given "
                "(the processor's image start/end markers are needed)"
            )
        shapes = batch["spatial_shapes"].tolist()
        out, k = [], 0
        for im, (rows, cols, thumb) in zip(images, grids, strict=True):
            n = rows * cols + (1 if thumb and rows * cols > 1 else 0)
            out.append(self.image_layout(im, rows, cols, shapes[k : k + n]))
            k += n
        if k != len(shapes):
            raise RuntimeError(f"Lfm2VlAdapter: {len(shapes)} tiles returned, {k} laid out")
        return out

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            pixel_values=inputs.batch["pixel_values"],
            spatial_shapes=inputs.batch["spatial_shapes"],
            pixel_attention_mask=inputs.batch["pixel_attention_mask"],
            return_dict=True,
        )
        flat = torch.cat(list(out.pooler_output))
        return list(torch.split(flat, [lay.n_tokens for lay in inputs.layouts]))
