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
layers, so an attention map (raw attention, rollout, rel-att, grad-att) would leave out how
the convolution layers move information between positions: the attention methods are
**refused** in one line (:class:`~egg_interp.errors.UnsupportedModelError`, naming the
layers), see :meth:`Lfm2VlAdapter.attention_implementation`. Positions are 1-D; with left
padding the convolution layers zero the padded states, so batched rows equal single prompts.

Pixel-space methods are refused: ``pixel_values`` holds flattened, padded patches.

Without torchvision: transformers' ``Lfm2VlImageProcessor`` imports torchvision when its
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
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from transformers import Lfm2VlProcessor
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.image_transforms import split_to_tiles
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD
from transformers.processing_utils import ImagesKwargs
from transformers.utils import is_torchvision_available

from egg_interp.errors import UnsupportedModelError
from egg_interp.models.base import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
    VLMAdapter,
    regular_cell_boxes,
)

_TILE_MARKER = re.compile(r"<\|img_row_(\d+)_col_(\d+)\|>")


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
        built with :class:`Lfm2VlImageProcessor`."""
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

    @contextmanager
    def attention_implementation(self, impl: str) -> Iterator[None]:
        """As the base, but eager attention (which only the attention methods ask for) is
        refused: the convolution layers mix positions without attention weights."""
        if impl == "eager":
            n = self.num_lm_layers
            raise UnsupportedModelError(
                f"{self.name or 'LFM2-VL'}: attention maps are refused: its language model mixes "
                f"positions by short convolutions in {n - len(self.attention_layers)} of {n} "
                f"layers and has attention weights only in layers {self.attention_layers}, so an "
                "attention map would leave the convolutions out; use a gradient method (e.g. 'egg')"
            )
        with super().attention_implementation(impl):
            yield
