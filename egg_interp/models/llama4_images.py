"""Llama 4's image preprocessing without torchvision (transformers' own needs it).

:class:`Llama4ImageProcessorPil` does what ``Llama4ImageProcessor`` (transformers 5.24,
torchvision backend) does, on PIL/numpy: pick the best canvas of ``rows x cols`` tiles of
``size`` px (at most ``max_patches`` tiles), resize the image onto it keeping its aspect
(never above what the canvas needs; small images grow until one side fills a tile), paste it
top-left and pad right and bottom with black, cut the canvas into tiles (row-major), and
when there is more than one tile append a global tile: the whole image squashed to one
tile. Pixel values are rescaled and normalised in bfloat16, as the original. Only the
resampling differs: PIL's bilinear filter instead of torchvision's (values, not the layout).

The canvas helpers follow the source's definitions (checked against its documented examples
in the tests): :func:`supported_resolutions`, :func:`best_fit`,
:func:`max_size_without_distortion`, and :func:`resized_size` combines them as the processor
does. Saved, the processor names ``Llama4ImageProcessor``, so the checkpoint loads the real
one where torchvision is installed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_transforms import split_to_tiles
from transformers.image_utils import PILImageResampling, SizeDict
from transformers.processing_utils import ImagesKwargs


def supported_resolutions(max_tiles: int, tile: int) -> list[tuple[int, int]]:
    """Every canvas of at most ``max_tiles`` tiles, ``(height, width)`` in pixels.

    Listed as transformers' ``find_supported_resolutions`` lists them (grouped by aspect
    ratio in order of first appearance, from ``max_tiles`` tiles down to one), which decides
    ties in :func:`best_fit`.
    """
    by_ratio: dict[float, list[tuple[int, int]]] = defaultdict(list)
    for n in range(max_tiles, 0, -1):
        for rows in sorted(d for d in range(1, n + 1) if n % d == 0):
            by_ratio[rows / (n // rows)].append((rows, n // rows))
    return [(r * tile, c * tile) for group in by_ratio.values() for r, c in group]


def best_fit(
    size: tuple[int, int], resolutions: list[tuple[int, int]], to_max_canvas: bool = False
) -> tuple[int, int]:
    """The canvas ``(height, width)`` an image of ``size = (height, width)`` goes onto.

    The scale that fits the image into each canvas without distortion is the smaller of its
    two side ratios; among canvases that upscale (scale >= 1) the smallest such scale wins
    (the largest with ``to_max_canvas``), else the largest downscale; ties go to the
    smallest area, then to the first listed. Computed in float32 torch, as the source does.
    """
    res = torch.tensor(resolutions)
    scale_w, scale_h = res[:, 1] / size[1], res[:, 0] / size[0]
    scales = torch.where(scale_h > scale_w, scale_w, scale_h)
    up = scales[scales >= 1]
    if len(up) > 0:
        chosen = up.max() if to_max_canvas else up.min()
    else:
        chosen = scales[scales < 1].max()
    canvases = res[scales == chosen]
    best = canvases[torch.argmin(canvases[:, 0] * canvases[:, 1])]
    return int(best[0]), int(best[1])


def max_size_without_distortion(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """The largest ``(height, width)`` with ``size``'s aspect that fits ``target``, the other
    side floored (as the source computes it: the side times the limiting scale)."""
    (h, w), (th, tw) = size, target
    scale_w, scale_h = tw / w, th / h
    if scale_w < scale_h:
        return min(math.floor(h * scale_w), th), tw
    return th, min(math.floor(w * scale_h), tw)


def resized_size(
    size: tuple[int, int], tile: int, max_tiles: int, to_max_canvas: bool = False
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where an image of ``size = (height, width)`` goes: ``(canvas, resized)``, both
    ``(height, width)``; the resized image sits at the canvas' top-left corner.

    Without ``to_max_canvas`` the image grows at most until a side reaches one tile (or the
    canvas), so an image between one tile and its canvas is not resized at all.
    """
    canvas = best_fit(size, supported_resolutions(max_tiles, tile), to_max_canvas)
    target = canvas
    if not to_max_canvas:
        target = (min(max(size[0], tile), canvas[0]), min(max(size[1], tile), canvas[1]))
    h, w = max_size_without_distortion(size, target)
    return canvas, (max(h, 1), max(w, 1))


class Llama4ImagesKwargs(ImagesKwargs, total=False):
    """``max_patches``: most tiles per image; ``resize_to_max_canvas``: take the largest
    canvas that upscales instead of the smallest."""

    max_patches: int
    resize_to_max_canvas: bool


class Llama4ImageProcessorPil(PilBackend):
    """Llama 4's image processor on PIL/numpy (see the module docstring).

    Returns ``pixel_values`` of shape ``(total tiles, 3, size, size)`` in bfloat16 (each
    image's tiles row-major, then its global tile when it has several) and ``aspect_ratios``
    ``(n_images, 2)``, the tile rows and columns of each image.
    """

    model_input_names = ["pixel_values", "aspect_ratios"]
    valid_kwargs = Llama4ImagesKwargs
    resample = PILImageResampling.BILINEAR
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.5, 0.5, 0.5]
    size = {"height": 336, "width": 336}
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    max_patches = 16
    resize_to_max_canvas = False

    def _normalised(self, image: np.ndarray, scale: float, mean: Any, std: Any) -> torch.Tensor:
        """Rescale and normalise in bfloat16, as the original implementation does."""
        t = torch.from_numpy(np.ascontiguousarray(image)).to(torch.bfloat16) * scale
        mean_t = torch.as_tensor(mean, dtype=t.dtype).view(-1, 1, 1)
        std_t = torch.as_tensor(std, dtype=t.dtype).view(-1, 1, 1)
        return (t - mean_t) / std_t

    def _preprocess(
        self,
        images: list[np.ndarray],
        size: SizeDict,
        resample: Any,
        rescale_factor: float,
        image_mean: Any,
        image_std: Any,
        max_patches: int,
        resize_to_max_canvas: bool,
        return_tensors: Any = None,
        **kwargs: Any,
    ) -> BatchFeature:
        if not all(kwargs.get(k, True) for k in ("do_resize", "do_rescale", "do_normalize")):
            raise ValueError(
                "Llama4ImageProcessorPil resizes, rescales and normalises always (as the "
                "released checkpoints do)"
            )
        tile = int(size.height)
        pixel_values, aspect_ratios = [], []
        for image in images:
            canvas, (h, w) = resized_size(
                tuple(image.shape[-2:]), tile, max_patches, resize_to_max_canvas
            )
            resized = self.resize(image, SizeDict(height=h, width=w), resample=resample)
            padded = np.zeros((image.shape[0], *canvas), dtype=resized.dtype)
            padded[:, :h, :w] = resized
            norm = self._normalised(padded, rescale_factor, image_mean, image_std)
            rows, cols = canvas[0] // tile, canvas[1] // tile
            tiles = split_to_tiles(norm[None], rows, cols)[0]
            if rows * cols > 1:
                whole = self.resize(image, SizeDict(height=tile, width=tile), resample=resample)
                whole = self._normalised(whole, rescale_factor, image_mean, image_std)
                tiles = torch.cat([tiles, whole[None]])
            pixel_values.append(tiles)
            aspect_ratios.append([rows, cols])
        data = {"pixel_values": pixel_values, "aspect_ratios": torch.tensor(aspect_ratios)}
        if return_tensors:
            data["pixel_values"] = torch.cat(pixel_values)
        return BatchFeature(data=data)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["image_processor_type"] = "Llama4ImageProcessor"
        return out
