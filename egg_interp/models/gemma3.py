"""Adapter for ``gemma3`` checkpoints (Gemma 3, the vision-language models).

Layout. The image processor squashes each image to an S x S square (896 px in the released
models; aspect not kept), the SigLIP tower cuts it into ``S / patch`` patches per side
(patch 14: 64 x 64), and the projector average-pools them to an ``n x n`` grid
(``n = sqrt(mm_tokens_per_image)``, 16: a token averages 4 x 4 patches, 56 x 56 pixels)
before its RMSNorm and linear map. In the prompt the placeholder ``<start_of_image>``
becomes ``\\n\\n<start_of_image>`` + ``n^2`` ``<image_soft_token>`` + ``<end_of_image>\\n\\n``;
the soft tokens are row-major over the grid, so token ``(r, c)`` covers
``[c W / n, (c + 1) W / n) x [r H / n, (r + 1) H / n)`` of a ``W x H`` original.

Pan and scan (off by default; on when the processor's ``images_kwargs`` set
``do_pan_and_scan``, e.g. ``adapter.processor.images_kwargs = {**adapter.processor.
images_kwargs, "do_pan_and_scan": True}``): an image whose aspect ratio reaches
``pan_and_scan_min_ratio_to_activate`` is also cut into 2 to ``pan_and_scan_max_num_crops``
side-by-side (or stacked) crops of equal size (the last one shorter), each squashed to S x S
and encoded like the original, after it, with its own ``n^2`` tokens. The crops are
disjoint and cover the image, so every pixel is in the global view and in exactly one crop:
views ``"global"`` (``n x n`` over the whole image) and ``"crops"`` (the crops' grids
stitched, ``n x (k n)`` or ``(k n) x n``; cells of the last crop are narrower). How many
crops each image got is read from the prompt (frames = runs of soft tokens) and the crop
rectangles from the image processor's own ``pan_and_scan`` run on the image's coordinates.

Hook: ``get_image_features(...).pooler_output`` (one ``(n^2, D)`` block per frame), regrouped
per image. Positions are 1-D. Each frame's soft tokens form a bidirectional attention block
(``token_type_ids`` = 1 on soft tokens; the released models slide a 1024-token window in 5
of 6 layers, where the block is cut by the window); appended answer tokens are text (type
0), so they attend causally, as in ``generate``.

What maps cannot show: anything finer than a token's 4 x 4 patches, and (the image being
squashed) the aspect ratio: on a wide image a token is a wide rectangle. Pixel-space methods
pool the per-pixel map over each token's square of its S x S frame.

Attention heuristics (raw attention, rel-att, grad-att, rollout) read one layer's answer
row. At a sliding-window layer (``config.text_config.layer_types``) that row sees only the
last ``sliding_window`` positions (1024 in the released models): on a long prompt (crops,
pan and scan) the earlier image tokens get exactly 0 there and rel-att 0 / 0 = NaN. The
default middle layer is a full-attention one in Gemma 3 4B (layer 17 of 34) but a sliding
one in 12B and 27B; pass ``layers=`` a full-attention layer (every sixth: 5, 11, ...) to read
every token. Gradient maps (EGG) are unaffected: every token reaches the answer through the
full-attention layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling

from egg_interp.geometry import Box
from egg_interp.models.base import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
    VLMAdapter,
    regular_cell_boxes,
)


def extend_token_types(batch: dict[str, Any], key: str, n: int, value: int) -> dict[str, Any]:
    """``batch[key]`` (per-token types) lengthened by ``n`` appended tokens of type ``value``."""
    types = batch.get(key)
    if types is not None:
        tail = torch.full((types.shape[0], n), value, dtype=types.dtype, device=types.device)
        batch[key] = torch.cat([types, tail], dim=1)
    return batch


def runs_of(ids: torch.Tensor, token_id: int) -> list[int]:
    """Lengths of the runs of ``token_id`` in each row of ``ids``, rows in order."""
    out = []
    for row in ids.tolist():
        length = 0
        for t in [*row, None]:
            if t == token_id:
                length += 1
            elif length:
                out.append(length)
                length = 0
    return out


class Gemma3Adapter(VLMAdapter):
    """Gemma 3: a pooled square grid per image, optional pan-and-scan crops after it."""

    model_types = ("gemma3",)
    batch_by_repeating_prompt = True
    image_token = "<start_of_image>"
    images_nested_per_prompt = True

    @property
    def tokens_per_side(self) -> int:
        """Side ``n`` of the pooled token grid of one frame."""
        return int(round(self.model.config.mm_tokens_per_image**0.5))

    def pan_and_scan_settings(self) -> dict[str, Any] | None:
        """The processor's pan-and-scan settings, or ``None`` when it is off.

        The processor's ``images_kwargs`` (its defaults, passed on every call) win over the
        image processor's own attributes, as in ``ProcessorMixin._merge_kwargs``.
        """
        given = dict(getattr(self.processor, "images_kwargs", None) or {})
        ip = self.processor.image_processor

        def setting(name: str) -> Any:
            value = given.get(name)
            return getattr(ip, name, None) if value is None else value

        if not setting("do_pan_and_scan"):
            return None
        names = ("min_crop_size", "max_num_crops", "min_ratio_to_activate")
        return {f"pan_and_scan_{n}": setting(f"pan_and_scan_{n}") for n in names}

    def crop_boxes(self, image: Image.Image) -> list[Box]:
        """The pan-and-scan crops of ``image`` as ``(x0, y0, x1, y1)`` original pixels, in
        prompt order (row-major); empty when pan and scan is off or does not trigger.

        Runs the image processor's own pan and scan (``pan_and_scan`` of the PIL processor,
        ``pan_and_scan_batched`` of the torchvision one: the same crops) on read-only
        broadcast arrays of the pixels' x and y coordinates: each crop's first element is its
        offset.
        """
        settings = self.pan_and_scan_settings()
        if settings is None:
            return []
        width, height = image.size
        ip = self.processor.image_processor
        scan = getattr(ip, "pan_and_scan", None) or ip.pan_and_scan_batched
        xs = np.broadcast_to(np.arange(width)[None, None, :], (1, height, width))
        ys = np.broadcast_to(np.arange(height)[None, :, None], (1, height, width))
        boxes = []
        for cx, cy in zip(scan(xs, **settings), scan(ys, **settings), strict=True):
            x0, y0 = int(cx[0, 0, 0]), int(cy[0, 0, 0])
            boxes.append((float(x0), float(y0), float(x0 + cx.shape[2]), float(y0 + cx.shape[1])))
        return boxes

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        n = self.tokens_per_side
        crops = [self.crop_boxes(im) for im in images]
        frames = runs_of(batch["input_ids"], self.image_token_id)
        if sum(1 + len(c) for c in crops) != len(frames) or any(f != n * n for f in frames):
            raise RuntimeError(
                f"Gemma3Adapter: the prompt holds {len(frames)} image frames, the pan-and-scan "
                f"settings predict {sum(1 + len(c) for c in crops)} of {n * n} tokens each"
            )
        return [self.image_layout(im.size, boxes) for im, boxes in zip(images, crops)]

    def image_layout(self, size: tuple[int, int], crops: Sequence[Box]) -> ImageLayout:
        """Views of one ``size = (width, height)`` image with these crop rectangles."""
        n = self.tokens_per_side
        width, height = size
        index = np.arange(n * n).reshape(n, n)
        views = [
            ViewLayout("global", index, regular_cell_boxes(n, n, 0.0, 0.0, width / n, height / n))
        ]
        if crops:
            views.append(stitched_crops(crops, n))
        return ImageLayout((width, height), n * n * (1 + len(crops)), views)

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            pixel_values=inputs.batch["pixel_values"], return_dict=True
        )
        flat = out.pooler_output.reshape(-1, out.pooler_output.shape[-1])
        return list(torch.split(flat, [lay.n_tokens for lay in inputs.layouts]))

    def encoder_outputs(self, features: Sequence[torch.Tensor]) -> BaseModelOutputWithPooling:
        """All images' tokens in one ``(tokens, D)`` tensor (the model scatters them in order)."""
        return BaseModelOutputWithPooling(pooler_output=torch.cat(list(features), dim=0))

    def extend_extra(self, batch: dict[str, Any], n: int) -> dict[str, Any]:
        """Answer tokens are text: ``token_type_ids`` 0 (causal, outside every image block)."""
        return extend_token_types(batch, "token_type_ids", n, 0)

    def pixel_relevance_to_tokens(
        self, inputs: PromptInputs, pixel_map: torch.Tensor
    ) -> list[torch.Tensor]:
        """Mean-pool ``pixel_map`` (frames, S, S) over each token's square of its frame."""
        n = self.tokens_per_side
        k = pixel_map.shape[-1] // n
        pooled = torch.nn.functional.avg_pool2d(pixel_map.float().unsqueeze(1), k)
        return list(torch.split(pooled.flatten(), [lay.n_tokens for lay in inputs.layouts]))


def stitched_crops(crops: Sequence[Box], n: int) -> ViewLayout:
    """The crops' ``n x n`` grids stitched into one view over the image.

    ``crops`` are the rectangles in prompt order (row-major over ``rows x cols`` crops); the
    feature rows of crop ``j`` follow the global view's ``n^2`` rows, ``n^2`` per crop.
    """
    cols = len({c[0] for c in crops})
    rows = len(crops) // cols
    r, c = np.meshgrid(np.arange(rows * n), np.arange(cols * n), indexing="ij")
    crop = (r // n) * cols + c // n
    index = n * n * (1 + crop) + (r % n) * n + c % n
    boxes = np.zeros((rows * n, cols * n, 4))
    for j, (x0, y0, x1, y1) in enumerate(crops):
        cell = regular_cell_boxes(n, n, x0, y0, (x1 - x0) / n, (y1 - y0) / n)
        jr, jc = divmod(j, cols)
        boxes[jr * n : (jr + 1) * n, jc * n : (jc + 1) * n] = cell
    return ViewLayout("crops", index, boxes)
