"""Pictures embedded in the explorer page, each as a ``data:`` URI.

Three kinds, each with a size that bounds its bytes: the sample's image (JPEG, longer side
``image_px``), a crop of the original image (JPEG, longer side ``crop_px``, cut from the
full-resolution image so the detail the model saw stays legible) and a map overlay (RGBA PNG,
longer side ``map_px``; the browser scales it up smoothly to the image's size).

Overlay convention: the heat map on the original image (``AttributionMap.heatmap``; NaN where
no token looks) is min-max normalised over its finite pixels (a named step: the page shows
where a map is high relative to itself, not its absolute values) and stored as a grey level
with an alpha channel (pixels without a token are fully transparent): a third of the bytes of
a coloured PNG. The page colours it with a colormap and sets the overlay's opacity.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

Box = Sequence[float]


def data_uri(image: Image.Image, fmt: str = "JPEG", quality: int = 80) -> str:
    """``image`` encoded as a ``data:image/...;base64,`` URI (JPEG or PNG)."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buf, "JPEG", quality=quality, optimize=True)
        mime = "jpeg"
    else:
        image.save(buf, "PNG", optimize=True)
        mime = "png"
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def fit_size(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """``(width, height)`` scaled down so the longer side is at most ``longest`` (never up).

    >>> fit_size((640, 480), 320), fit_size((100, 50), 320)
    ((320, 240), (100, 50))
    """
    w, h = size
    scale = min(1.0, longest / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def thumbnail(image: Image.Image, longest: int = 320, quality: int = 80) -> str:
    """The image, longer side at most ``longest`` pixels, as a JPEG data URI."""
    return data_uri(
        image.convert("RGB").resize(fit_size(image.size, longest), Image.BICUBIC), quality=quality
    )


def crop_uri(image: Image.Image, box: Box, longest: int = 112, quality: int = 80) -> str:
    """The crop ``box`` = (x0, y0, x1, y1) in original-image pixels (clipped to the image),
    longer side at most ``longest`` pixels (small crops are enlarged to it), as a JPEG URI."""
    w, h = image.size
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x1 <= x0 or y1 <= y0:
        x0, y0, x1, y1 = 0, 0, w, h
    crop = image.convert("RGB").crop((x0, y0, x1, y1))
    cw, ch = crop.size
    scale = longest / max(cw, ch)
    crop = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.BICUBIC)
    return data_uri(crop, quality=quality)


def overlay_pixels(heat: np.ndarray) -> np.ndarray:
    """Grey level and alpha, uint8 of shape (H, W, 2), from a heat map of shape (H, W).

    Grey: the map min-max normalised over its finite pixels to 0..255 (a constant map gives
    0). Alpha: 0 where the map is NaN (no token looks there), else 255.

    >>> overlay_pixels(np.array([[0.0, 2.0], [1.0, np.nan]]))[..., 0].tolist()
    [[0, 255], [128, 0]]
    """
    heat = np.asarray(heat, dtype=np.float64)
    finite = np.isfinite(heat)
    grey = np.zeros(heat.shape, dtype=np.float64)
    if finite.any():
        lo, hi = float(heat[finite].min()), float(heat[finite].max())
        if hi > lo:
            grey = np.where(finite, (np.where(finite, heat, lo) - lo) / (hi - lo), 0.0)
    alpha = np.where(finite, 255, 0).astype(np.uint8)
    return np.stack([np.round(grey * 255).astype(np.uint8), alpha], axis=-1)


def overlay_uri(heat: np.ndarray) -> str:
    """A heat map (already at its output size) as a grey+alpha PNG data URI; the page
    colours it (see :func:`overlay_pixels`)."""
    return data_uri(Image.fromarray(overlay_pixels(heat), "LA"), fmt="PNG")
