"""Phi-4-multimodal's image processor in torch, for machines without torchvision.

Transformers' ``Phi4MultimodalImageProcessor`` imports torchvision when its module is
imported, so none of it can be reused. :class:`Phi4MultimodalImageProcessor` here
re-implements its steps (transformers 5.24, ``image_processing_phi4_multimodal.py``) with
torch, for PIL images:

* ``dynamic_preprocess``: a canvas of ``ceil(W / S) x ceil(H / S)`` crops of S px (or, above
  ``dynamic_hd`` crops, the grid of closest aspect); the image resized to fit it with its
  aspect kept (torchvision's default: bilinear, antialiased, computed in float and rounded
  to bytes as torchvision does without its native uint8 kernel, which AVX2 CPUs use and which
  can differ by one grey level) and padded with white at the right and bottom; a patch mask
  marking the padding;
* fused rescale and normalisation;
* the global view: the whole padded canvas resized to S x S (bicubic, no antialias, float);
* the crops, row-major, after the global view; the token count
  ``256 + 1 + mask tokens + mask rows + 16`` (the 16 x 16 global grid with a separator per
  row, the global separator, the useful high-resolution tokens with one per row).

``Phi4MultimodalProcessor`` (placeholder expansion) is transformers' own class; the audio
processor is transformers' ``Phi4MultimodalFeatureExtractor`` (it needs no torchvision).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.processing_utils import ImagesKwargs


class Phi4MultimodalImageProcessorKwargs(ImagesKwargs, total=False):
    """The settings of transformers' ``Phi4MultimodalImageProcessor`` (same meanings)."""

    patch_size: int
    dynamic_hd: int


def crop_grid(height: int, width: int, side: int, max_crops: int) -> tuple[int, int]:
    """``(cols, rows)`` of S x S crops of the high-resolution canvas (Phi-4's rule).

    Examples
    --------
    >>> crop_grid(100, 150, 128, 36), crop_grid(300, 200, 128, 36)
    ((2, 1), (2, 3))
    """
    cols, rows = math.ceil(width / side), math.ceil(height / side)
    if cols * rows <= max_crops:
        return cols, rows
    ratios = sorted(
        {
            (i, j)
            for n in range(1, max_crops + 1)
            for i in range(1, n + 1)
            for j in range(1, n + 1)
            if 1 <= i * j <= max_crops
        },
        key=lambda r: r[0] * r[1],
    )
    aspect, best, best_diff = width / height, (1, 1), float("inf")
    for i, j in ratios:
        diff = abs(aspect - i / j)
        if diff < best_diff:
            best, best_diff = (i, j), diff
        elif diff == best_diff and width * height > 0.5 * side * side * i * j:
            best = (i, j)
    return best


def fitted_size(height: int, width: int, cols: int, rows: int, side: int) -> tuple[int, int]:
    """``(new_height, new_width)`` of the image resized into the ``cols x rows`` canvas with
    its aspect kept (the rest is white padding at the right or bottom).

    Examples
    --------
    >>> fitted_size(100, 150, 2, 1, 128)
    (128, 192)
    """
    target_w, target_h = side * cols, side * rows
    ratio_w, ratio_h = target_w / width, target_h / height
    if ratio_w < ratio_h:
        return int(height * ratio_w), target_w
    return target_h, int(width * ratio_h)


class Phi4MultimodalImageProcessor(BaseImageProcessor):
    """Phi-4-multimodal's image processor in torch (see the module docstring).

    Outputs as transformers' class: ``image_pixel_values`` ``(images, 1 + max crops, 3, S, S)``
    (the global view first, zero crops padding the batch), ``image_sizes`` ``(images, 2)`` (the
    canvas height and width), ``image_attention_mask`` ``(images, 1 + max crops, S / p, S / p)``
    and ``num_img_tokens``. Saved checkpoints name ``Phi4MultimodalImageProcessor``.
    """

    model_input_names: ClassVar[list[str]] = [
        "image_pixel_values",
        "image_sizes",
        "image_attention_mask",
    ]
    valid_kwargs = Phi4MultimodalImageProcessorKwargs
    resample = 3  # PILImageResampling.BICUBIC
    size: ClassVar[dict[str, int]] = {"height": 448, "width": 448}
    patch_size = 14
    dynamic_hd = 36
    image_mean: ClassVar[list[float]] = [0.5, 0.5, 0.5]
    image_std: ClassVar[list[float]] = [0.5, 0.5, 0.5]
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._set_attributes(**kwargs)

    def process_image(self, image: Any, **_: Any) -> torch.Tensor:
        """A PIL image as a ``(3, H, W)`` byte tensor."""
        if not isinstance(image, Image.Image):
            raise TypeError(f"{type(self).__name__} without torchvision takes PIL images")
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()

    def dynamic_preprocess(
        self, image: torch.Tensor, side: int, patch: int, max_crops: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The padded high-resolution canvas (bytes) and its patch mask (1 = image)."""
        height, width = image.shape[-2:]
        cols, rows = crop_grid(height, width, side, max_crops)
        new_h, new_w = fitted_size(height, width, cols, rows, side)
        if min(new_h, new_w) < 10:
            raise ValueError(f"the aspect ratio is very extreme {(new_w, new_h)}")
        pad_w, pad_h = side * cols - new_w, side * rows - new_h
        cells = side // patch
        mask = torch.ones(cells * rows, cells * cols)
        if pad_w >= patch:
            mask[:, -(pad_w // patch) :] = 0
        if pad_h >= patch:
            mask[-(pad_h // patch) :, :] = 0
        resized = torch.nn.functional.interpolate(
            image[None].float(), size=(new_h, new_w), mode="bilinear", antialias=True
        )[0]
        resized = resized.round_().to(image.dtype)
        canvas = torch.nn.functional.pad(resized, (0, pad_w, 0, pad_h), value=255)
        return canvas, mask

    def _one_image(self, image: torch.Tensor, o: dict[str, Any]) -> tuple:
        side, patch = int(o["size"].height), int(o["patch_size"])
        cells = side // patch
        canvas, mask = self.dynamic_preprocess(image, side, patch, int(o["dynamic_hd"]))
        mean = torch.tensor(o["image_mean"]).view(-1, 1, 1) / o["rescale_factor"]
        std = torch.tensor(o["image_std"]).view(-1, 1, 1) / o["rescale_factor"]
        x = (canvas.float() - mean) / std
        glob = torch.nn.functional.interpolate(
            x[None], size=(side, side), mode="bicubic", align_corners=False, antialias=False
        )
        height, width = x.shape[-2:]
        crops = x.reshape(3, height // side, side, width // side, side).permute(1, 3, 0, 2, 4)
        crops = crops.reshape(-1, 3, side, side)
        masks = mask.reshape(height // side, cells, width // side, cells).transpose(1, 2)
        masks = masks.reshape(-1, cells, cells)
        down = masks[:, 0::2, 0::2]  # one entry per 2x2-pooled token
        grid = down.reshape(height // side, width // side, *down.shape[1:]).transpose(1, 2)
        grid = grid.reshape(grid.shape[0] * grid.shape[1], -1)
        n_tokens = 256 + 1 + int(grid.sum()) + int(grid[:, 0].sum()) + 16
        pixels = torch.cat([glob, crops])
        return pixels, torch.cat([torch.ones(1, cells, cells), masks]), n_tokens, [height, width]

    def _preprocess(self, images: list[torch.Tensor], **o: Any) -> BatchFeature:
        if o["size"].height != o["size"].width:
            raise ValueError("Phi4MultimodalImageProcessor only supports square sizes.")
        if not (o["do_rescale"] and o["do_normalize"]):
            raise ValueError(f"{type(self).__name__} always rescales and normalises")
        done = [self._one_image(image, o) for image in images]
        most = max(p.shape[0] for p, *_ in done)
        pixels = [torch.cat([p, p.new_zeros(most - len(p), *p.shape[1:])]) for p, *_ in done]
        masks = [torch.cat([m, m.new_ones(most - len(m), *m.shape[1:])]) for _, m, *_ in done]
        data = {
            "image_pixel_values": torch.stack(pixels),
            "image_sizes": torch.tensor([size for *_, size in done], dtype=torch.long),
            "image_attention_mask": torch.stack(masks),
            "num_img_tokens": [n for _, _, n, _ in done],
        }
        return BatchFeature(data=data, tensor_type=o.get("return_tensors"))
