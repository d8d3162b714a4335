"""LFM2-VL's image processor in torch, for machines without torchvision.

Transformers' ``Lfm2VlImageProcessor`` imports torchvision when its
module is imported, so none of it can be reused. :class:`Lfm2VlImageProcessor` here
re-implements its steps (transformers 5.24, ``image_processing_lfm2_vl.py``) with torch:
``smart_resize``, the tile-grid choice, ``split_to_tiles`` (transformers' own function), the
bilinear antialiased resize as torchvision computes it on a byte tensor without native
uint8 kernels (float, round; torchvision's native uint8 kernel on AVX2 CPUs can differ by one
grey level), fused rescale and normalisation, patches, padding. ``Lfm2VlProcessor`` (marker
and placeholder expansion) is transformers' own class. With torchvision installed,
``load_model`` uses ``AutoProcessor`` as is.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from transformers import Lfm2VlProcessor
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.image_transforms import split_to_tiles
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD
from transformers.processing_utils import ImagesKwargs


class Lfm2VlImageProcessorKwargs(ImagesKwargs, total=False):
    """The settings of transformers' ``Lfm2VlImageProcessor`` (same names and meanings)."""

    downsample_factor: int
    do_image_splitting: bool
    min_tiles: int
    max_tiles: int
    use_thumbnail: bool
    min_image_tokens: int
    max_image_tokens: int
    encoder_patch_size: int
    tile_size: int
    max_pixels_tolerance: float
    do_pad: bool
    return_row_col_info: bool


def smart_resize(
    height: int, width: int, factor: int, min_tokens: int, max_tokens: int, patch: int
) -> tuple[int, int]:
    """``(height, width)`` rounded to multiples of ``patch * factor``, rescaled into
    ``[min_tokens, max_tokens] * (patch * factor)^2`` pixels (LFM2-VL's ``smart_resize``).

    Examples
    --------
    >>> smart_resize(100, 150, 2, 4, 16, 4)
    (24, 32)
    >>> smart_resize(30, 30, 2, 4, 16, 4)
    (32, 32)
    """
    unit = patch * factor
    lo, hi = min_tokens * unit * unit, max_tokens * unit * unit
    h_bar = max(unit, round(height / unit) * unit)
    w_bar = max(unit, round(width / unit) * unit)
    if h_bar * w_bar > hi:
        beta = math.sqrt(height * width / hi)
        h_bar = max(unit, math.floor(height / beta / unit) * unit)
        w_bar = max(unit, math.floor(width / beta / unit) * unit)
    elif h_bar * w_bar < lo:
        beta = math.sqrt(lo / (height * width))
        h_bar = math.ceil(height * beta / unit) * unit
        w_bar = math.ceil(width * beta / unit) * unit
    return h_bar, w_bar


def tile_grid(
    height: int, width: int, min_tiles: int, max_tiles: int, tile: int
) -> tuple[int, int]:
    """``(cols, rows)`` of tiles whose aspect is closest to the image's; on a tie, the later
    (larger) grid when the image covers more than half of its area (LFM2-VL's rule).

    Examples
    --------
    >>> tile_grid(100, 150, 2, 10, 32), tile_grid(96, 96, 2, 10, 32)
    ((3, 2), (3, 3))
    """
    ratios = sorted(
        {
            (w, h)
            for n in range(min_tiles, max_tiles + 1)
            for w in range(1, n + 1)
            for h in range(1, n + 1)
            if min_tiles <= w * h <= max_tiles
        },
        key=lambda r: r[0] * r[1],
    )
    aspect, best, best_diff = width / height, (1, 1), float("inf")
    for w, h in ratios:
        diff = abs(aspect - w / h)
        if diff < best_diff:
            best, best_diff = (w, h), diff
        elif diff == best_diff and width * height > 0.5 * tile * tile * w * h:
            best = (w, h)
    return best


def _resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear, antialiased resize of ``(N, C, H, W)`` bytes, as torchvision does it in float."""
    out = torch.nn.functional.interpolate(
        image.float(), size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    return out.round_().to(image.dtype)


class Lfm2VlImageProcessor(BaseImageProcessor):
    """LFM2-VL's image processor in torch, without torchvision (see the module docstring).

    Settings, defaults and outputs are those of transformers' ``Lfm2VlImageProcessor``:
    ``pixel_values`` of shape ``(tiles, max_patches, patch * patch * 3)``,
    ``pixel_attention_mask`` ``(tiles, max_patches)``, ``spatial_shapes`` ``(tiles, 2)`` (patch
    rows and columns), and with ``return_row_col_info`` the tile rows, columns and resized
    size of every image. Saved checkpoints name ``Lfm2VlImageProcessor``.
    """

    model_input_names: ClassVar[list[str]] = [
        "pixel_values",
        "pixel_attention_mask",
        "spatial_shapes",
    ]
    valid_kwargs = Lfm2VlImageProcessorKwargs
    downsample_factor = 2
    do_image_splitting = True
    min_tiles = 2
    max_tiles = 10
    use_thumbnail = True
    min_image_tokens = 64
    max_image_tokens = 256
    encoder_patch_size = 16
    tile_size = 512
    max_pixels_tolerance = 2.0
    do_resize = True
    size: ClassVar[dict[str, int]] = {"height": 512, "width": 512}
    resample = 2  # PILImageResampling.BILINEAR
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_pad = True
    return_row_col_info = False
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._set_attributes(**kwargs)

    def process_image(self, image: Any, **_: Any) -> torch.Tensor:
        """A PIL image as a ``(3, H, W)`` byte tensor."""
        if not isinstance(image, Image.Image):
            raise TypeError(
                f"Lfm2VlImageProcessor without torchvision takes PIL images, not {type(image)}"
            )
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()

    def _too_large(self, height: int, width: int, o: dict[str, Any]) -> bool:
        unit = o["encoder_patch_size"] * o["downsample_factor"]
        h_bar = max(o["encoder_patch_size"], round(height / unit) * unit)
        w_bar = max(o["encoder_patch_size"], round(width / unit) * unit)
        budget = o["max_image_tokens"] * unit * unit * o["max_pixels_tolerance"]
        return h_bar * w_bar > budget

    def resize_and_split(
        self, image: torch.Tensor, o: dict[str, Any]
    ) -> tuple[list[torch.Tensor], int, int, list[int]]:
        """One ``(3, H, W)`` image -> its tiles (+ thumbnail) or its resized self, with the
        tile rows and columns and the ``smart_resize`` size ``[height, width]``."""
        height, width = image.shape[-2:]
        new_h, new_w = smart_resize(
            height,
            width,
            o["downsample_factor"],
            o["min_image_tokens"],
            o["max_image_tokens"],
            o["encoder_patch_size"],
        )
        splitting = not (o["min_tiles"] == o["max_tiles"] == 1)
        if not (splitting and self._too_large(height, width, o)):
            return [_resize(image[None], new_h, new_w)[0]], 1, 1, [new_h, new_w]
        tile = o["tile_size"]
        cols, rows = tile_grid(height, width, o["min_tiles"], o["max_tiles"], tile)
        canvas = _resize(image[None], rows * tile, cols * tile)
        tiles = list(split_to_tiles(canvas, num_tiles_height=rows, num_tiles_width=cols)[0])
        if o["use_thumbnail"] and rows * cols != 1:
            tiles.append(_resize(image[None], new_h, new_w)[0])
        return tiles, rows, cols, [new_h, new_w]

    def _patches(self, tile: torch.Tensor, o: dict[str, Any], max_patches: int) -> tuple:
        """Normalised ``(max_patches, p * p * 3)`` patches (row-major, padded), the mask, and
        the ``(rows, cols)`` of patches."""
        mean = torch.tensor(o["image_mean"]) / o["rescale_factor"]
        std = torch.tensor(o["image_std"]) / o["rescale_factor"]
        x = (tile.float() - mean.view(-1, 1, 1)) / std.view(-1, 1, 1)
        p = o["encoder_patch_size"]
        c, h, w = x.shape
        patches = x.reshape(c, h // p, p, w // p, p).permute(1, 3, 2, 4, 0).reshape(-1, p * p * c)
        mask = torch.zeros(max_patches, dtype=torch.int32)
        mask[: len(patches)] = 1
        padded = torch.nn.functional.pad(patches, (0, 0, 0, max_patches - len(patches)))
        return padded, mask, [h // p, w // p]

    def _preprocess(self, images: list[torch.Tensor], **o: Any) -> BatchFeature:
        if not (o["do_resize"] and o["do_rescale"] and o["do_normalize"] and o["do_pad"]):
            raise ValueError(
                "Lfm2VlImageProcessor without torchvision always resizes, "
                "rescales, normalises and pads"
            )
        if not o["do_image_splitting"]:
            o = {**o, "min_tiles": 1, "max_tiles": 1}
        max_patches = o["max_image_tokens"] * o["downsample_factor"] ** 2
        if o["do_image_splitting"]:
            max_patches = max(max_patches, (o["tile_size"] // o["encoder_patch_size"]) ** 2)
        split = [self.resize_and_split(image, o) for image in images]
        patches = [self._patches(tile, o, max_patches) for tiles, *_ in split for tile in tiles]
        values, masks, shapes = zip(*patches, strict=True)
        data: dict[str, Any] = {
            "pixel_values": torch.stack(values),
            "pixel_attention_mask": torch.stack(masks),
            "spatial_shapes": torch.tensor(shapes),
        }
        if o["return_row_col_info"]:
            data["image_rows"] = [rows for _, rows, _, _ in split]
            data["image_cols"] = [cols for _, _, cols, _ in split]
            data["image_sizes"] = [size for *_, size in split]
        return BatchFeature(data=data, tensor_type=o.get("return_tensors"))


def load_processor_without_torchvision(source: str) -> Any:
    """The checkpoint's ``Lfm2VlProcessor`` built with :class:`Lfm2VlImageProcessor`."""
    from transformers import AutoTokenizer

    processor_dict, kwargs = Lfm2VlProcessor.get_processor_dict(source)
    args = [Lfm2VlImageProcessor.from_pretrained(source), AutoTokenizer.from_pretrained(source)]
    return Lfm2VlProcessor.from_args_and_dict(args, processor_dict, **kwargs)
