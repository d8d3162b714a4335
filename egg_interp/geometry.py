"""Box geometry, the one home for it: boxes, clipping, crops, crop <-> original, cell boxes.

A *box* (:data:`Box`) is a tuple of floats ``(x0, y0, x1, y1)`` in pixels of one image (x along
columns, y along rows, ``x1``/``y1`` exclusive); ``image_size`` is ``(width, height)``. Unless a
function says otherwise, boxes are in *original-image* pixels. Every function is pure and
returns a new tuple (or array); none imports model code.

Contents:

- validation and parsing: :func:`as_box`, :func:`as_image_size`, :func:`parse_boxes`;
- clipping and fitting: :func:`clip_box` (strict, or lenient with ``strict=False``),
  :func:`clip_boxes`, :func:`pixel_box` (outwards to whole pixels);
- region boxes: :func:`cells_to_box`, :func:`cap_aspect`, :func:`expand_box`;
- crops: :func:`crop_image`, :func:`to_original` / :func:`to_crop` (a box between a crop's
  pixels and the original's), :func:`square_crop`, :func:`square_around`,
  :func:`random_boxes_like`, :func:`tile_boxes`;
- token cells: :func:`regular_cell_boxes`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from egg_interp.errors import InputError

Box = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in pixels, ``x1``/``y1`` exclusive."""


def as_box(box: Sequence[float]) -> Box:
    """Validate four finite numbers and return them as a float tuple (:class:`InputError`)."""
    b = tuple(float(v) for v in box)
    if len(b) != 4 or not all(np.isfinite(b)):
        raise InputError(f"a box is four finite numbers (x0, y0, x1, y1), got {box!r}")
    return b  # type: ignore[return-value]


def as_image_size(image_size: Sequence[float]) -> tuple[float, float]:
    """Validate ``(width, height)``, both positive and finite (:class:`InputError`)."""
    if len(image_size) != 2 or not all(np.isfinite(s) and s > 0 for s in image_size):
        raise InputError(f"image_size is (width, height) > 0, got {image_size!r}")
    return float(image_size[0]), float(image_size[1])


def cells_to_box(cell_mask: np.ndarray, cell_boxes: np.ndarray) -> Box:
    """Pixel box of a set of cells: the union (bounding box) of their rectangles.

    Parameters
    ----------
    cell_mask : ndarray of shape (rows, cols), bool
        The cells of one component; at least one must be set.
    cell_boxes : ndarray of shape (rows, cols, 4)
        ``(x0, y0, x1, y1)`` of every cell in image pixels.

    Returns
    -------
    tuple of float
        ``(x0, y0, x1, y1)``.
    """
    m = np.asarray(cell_mask, dtype=bool)
    cb = np.asarray(cell_boxes, dtype=np.float64)
    if cb.shape != m.shape + (4,):
        raise InputError(f"cell_boxes has shape {cb.shape}, expected {m.shape + (4,)}")
    if not m.any():
        raise InputError("cells_to_box needs at least one cell")
    sel = cb[m]
    return as_box((sel[:, 0].min(), sel[:, 1].min(), sel[:, 2].max(), sel[:, 3].max()))


def _overlaps(box: Box, size: tuple[float, float]) -> bool:
    x0, y0, x1, y1 = box
    return x1 > 0 and y1 > 0 and x0 < size[0] and y0 < size[1]


def _fit_inside(box: Box, image_size: Sequence[float]) -> Box:
    """Shift the box inside the image along each axis where it fits, else clip that axis."""
    size = as_image_size(image_size)
    if not _overlaps(box, size):
        raise InputError(f"box {box} lies wholly outside the image of size {image_size}")
    out = list(box)
    for lo, limit in ((0, size[0]), (1, size[1])):
        a, b = out[lo], out[lo + 2]
        if b - a >= limit:
            a, b = 0.0, limit
        elif a < 0:
            a, b = 0.0, b - a
        elif b > limit:
            a, b = a - (b - limit), limit
        out[lo], out[lo + 2] = a, b
    return as_box(out)


def _widen(lo: float, hi: float, side: float) -> tuple[float, float]:
    centre = (lo + hi) / 2.0
    return centre - side / 2.0, centre + side / 2.0


def cap_aspect(
    box: Sequence[float], max_aspect: float = 3.0, image_size: Sequence[float] | None = None
) -> Box:
    """Limit a box's aspect ratio by widening its short side around the centre.

    Afterwards ``long / short <= max_aspect``. With ``image_size``, the box is then brought
    inside the image: along each axis it is *shifted* (size kept) when that side fits in the
    image, and clipped to the whole image side otherwise. Only in that last case (a region
    spanning the whole of an elongated image) can the result exceed ``max_aspect``; the long
    side is never shortened, so no evidence is cut away.

    Parameters
    ----------
    box : (x0, y0, x1, y1)
        Pixels, positive width and height.
    max_aspect : float, default 3.0
        At least 1; ``inf`` disables the cap.
    image_size : (width, height), optional
        When given, the box must overlap the image (else :class:`InputError`).

    Returns
    -------
    tuple of float
    """
    x0, y0, x1, y1 = as_box(box)
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        raise InputError(f"box {box!r} has no area")
    if not max_aspect >= 1:
        raise InputError(f"max_aspect must be >= 1, got {max_aspect!r}")
    if w > max_aspect * h:
        y0, y1 = _widen(y0, y1, w / max_aspect)
    elif h > max_aspect * w:
        x0, x1 = _widen(x0, x1, h / max_aspect)
    out = (x0, y0, x1, y1)
    return out if image_size is None else _fit_inside(out, image_size)


def expand_box(
    box: Sequence[float],
    margin: float = 0.0,
    min_side: float = 0.0,
    image_size: Sequence[float] | None = None,
) -> Box:
    """Add a context margin and enforce a minimum side, around the box's centre.

    Each side grows by ``margin`` times its length at *both* ends (a side ``s`` becomes
    ``(1 + 2 * margin) * s``); a side still shorter than ``min_side`` pixels is widened to
    ``min_side``. With ``image_size`` the result is brought inside the image as in
    :func:`cap_aspect` (shifted where it fits, clipped to the image side otherwise).

    Parameters
    ----------
    box : (x0, y0, x1, y1)
    margin : float, default 0.0
        Fraction of each side, ``>= 0``.
    min_side : float, default 0.0
        Pixels, ``>= 0``.
    image_size : (width, height), optional

    Returns
    -------
    tuple of float
    """
    if not (np.isfinite(margin) and margin >= 0 and np.isfinite(min_side) and min_side >= 0):
        raise InputError(f"margin and min_side must be >= 0, got {margin!r}, {min_side!r}")
    x0, y0, x1, y1 = as_box(box)
    x0, x1 = _widen(x0, x1, max((x1 - x0) * (1 + 2 * margin), min_side))
    y0, y1 = _widen(y0, y1, max((y1 - y0) * (1 + 2 * margin), min_side))
    out = (x0, y0, x1, y1)
    return out if image_size is None else _fit_inside(out, image_size)


def clip_box(
    box: Sequence[float], image_size: Sequence[float], *, strict: bool = True
) -> Box | None:
    """Clip a box to ``[0, width] x [0, height]``.

    Parameters
    ----------
    box : (x0, y0, x1, y1)
    image_size : (width, height)
    strict : bool, default True
        True: a box wholly outside the image, or under one pixel wide or high after clipping,
        raises. False (what dataset loaders use): such a box -- anything left without positive
        area -- gives ``None``.

    Raises
    ------
    InputError
        With ``strict``, when the box lies wholly outside the image, or is under one pixel
        wide or high after clipping.

    >>> clip_box((-5, 2, 30, 8), (20, 10))
    (0.0, 2.0, 20.0, 8.0)
    >>> clip_box((25, 2, 30, 8), (20, 10), strict=False) is None
    True
    """
    b = as_box(box)
    size = as_image_size(image_size)
    if not strict:
        x0, x1 = max(0.0, min(b[0], size[0])), max(0.0, min(b[2], size[0]))
        y0, y1 = max(0.0, min(b[1], size[1])), max(0.0, min(b[3], size[1]))
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
    if not _overlaps(b, size):
        raise InputError(f"box {b} lies wholly outside the image of size {tuple(image_size)}")
    x0, y0 = max(b[0], 0.0), max(b[1], 0.0)
    x1, y1 = min(b[2], size[0]), min(b[3], size[1])
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise InputError(f"box {b} degenerates to under one pixel inside the image")
    return (x0, y0, x1, y1)


def clip_boxes(
    boxes: Iterable[Sequence[float]], image_size: Sequence[float]
) -> tuple[list[Box], int]:
    """Leniently clip every box; return the kept boxes and how many were dropped as empty."""
    kept, dropped = [], 0
    for box in boxes:
        clipped = clip_box(box, image_size, strict=False)
        if clipped is None:
            dropped += 1
        else:
            kept.append(clipped)
    return kept, dropped


def parse_boxes(text: str | None) -> list[Box]:
    """Boxes from ``"x0,y0,x1,y1;x0,y0,x1,y1"`` (original-image pixels); empty text -> ``[]``.

    >>> parse_boxes("10,20,30,40; 0,0,5,5")
    [(10.0, 20.0, 30.0, 40.0), (0.0, 0.0, 5.0, 5.0)]
    """
    boxes: list[Box] = []
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        try:
            values = [float(v) for v in part.split(",")]
        except ValueError:
            values = []
        if len(values) != 4 or values[2] <= values[0] or values[3] <= values[1]:
            raise InputError(f"box {part.strip()!r} is not 'x0,y0,x1,y1' with x0 < x1 and y0 < y1")
        boxes.append((values[0], values[1], values[2], values[3]))
    return boxes


# ---------------------------------------------------------------- crops


def pixel_box(box: Sequence[float], image_size: Sequence[int]) -> Box:
    """The box grown outwards to whole pixels and cut to the image.

    >>> pixel_box((2.5, 3.2, 10.1, 9.0), (8, 20))
    (2.0, 3.0, 8.0, 9.0)
    """
    x0, y0, x1, y1 = box
    return (
        float(max(0, math.floor(x0))),
        float(max(0, math.floor(y0))),
        float(min(image_size[0], math.ceil(x1))),
        float(min(image_size[1], math.ceil(y1))),
    )


def crop_image(image: Image.Image, box: Sequence[float]) -> Image.Image:
    """Crop ``box`` (original pixels) to whole pixels (:func:`pixel_box`), at least 1x1.

    Raises :class:`InputError` when the box lies outside the image or has no area.
    """
    w, h = image.size
    ix0, iy0, ix1, iy1 = (int(v) for v in pixel_box([float(v) for v in box], (w, h)))
    if ix1 - ix0 < 1 or iy1 - iy0 < 1:
        raise InputError(f"crop {tuple(box)} degenerates to under one pixel in a {w}x{h} image")
    return image.crop((ix0, iy0, ix1, iy1))


def to_original(box: Sequence[float], origin_box: Sequence[float], size: Sequence[int]) -> Box:
    """Map a box in a crop's pixels to original-image pixels.

    ``origin_box`` is where the crop lies in the original; ``size`` is the crop's own
    ``(width, height)`` in pixels (it may be resized relative to ``origin_box``).

    >>> to_original((10, 5, 30, 25), (50, 20, 150, 70), (100, 50))
    (60.0, 25.0, 80.0, 45.0)
    """
    ox0, oy0, ox1, oy1 = (float(v) for v in origin_box)
    sx, sy = (ox1 - ox0) / size[0], (oy1 - oy0) / size[1]
    x0, y0, x1, y1 = (float(v) for v in box)
    return (ox0 + x0 * sx, oy0 + y0 * sy, ox0 + x1 * sx, oy0 + y1 * sy)


def to_crop(box: Sequence[float], origin_box: Sequence[float], size: Sequence[int]) -> Box:
    """Map a box in original-image pixels into a crop's pixels (inverse of :func:`to_original`).

    >>> to_crop((60, 25, 80, 45), (50, 20, 150, 70), (100, 50))
    (10.0, 5.0, 30.0, 25.0)
    """
    ox0, oy0, ox1, oy1 = (float(v) for v in origin_box)
    sx, sy = size[0] / (ox1 - ox0), size[1] / (oy1 - oy0)
    x0, y0, x1, y1 = (float(v) for v in box)
    return ((x0 - ox0) * sx, (y0 - oy0) * sy, (x1 - ox0) * sx, (y1 - oy0) * sy)


def square_crop(box: Sequence[float], scale: float, size: tuple[int, int]) -> Box:
    """A square around ``box`` with side ``scale`` times its longer side, inside the image.

    The side is rounded to whole pixels, at least 1 and at most the image's shorter side;
    the square is centred on the box and shifted (not shrunk) to fit inside the image.

    >>> square_crop((10, 10, 30, 20), 1.5, (100, 80))
    (5.0, 0.0, 35.0, 30.0)
    """
    w, h = size
    x0, y0, x1, y1 = (float(v) for v in box)
    side = int(min(max(round(max(x1 - x0, y1 - y0) * scale), 1), w, h))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = float(round(min(max(cx - side / 2, 0), w - side)))
    top = float(round(min(max(cy - side / 2, 0), h - side)))
    return (left, top, left + side, top + side)


def square_around(center: tuple[float, float], side: float, image_size: Sequence[int]) -> Box:
    """Square of ``side`` pixels centred on ``(x, y)``, shifted inside the image, then clipped.

    >>> square_around((5.0, 95.0), 32, (100, 100))
    (0.0, 68.0, 32.0, 100.0)
    """
    w, h = image_size
    out = []
    for c, extent in ((center[0], w), (center[1], h)):
        lo = min(max(c - side / 2, 0.0), max(extent - side, 0.0))
        out.append((float(lo), float(min(lo + side, extent))))
    (x0, x1), (y0, y1) = out
    return (x0, y0, x1, y1)


def random_boxes_like(
    boxes: Sequence[Sequence[float]], size: tuple[int, int], seed: int, key: str
) -> list[Box]:
    """Boxes of the same sizes as ``boxes`` at uniformly random places inside the image.

    Deterministic for a given ``(seed, key)`` (e.g. the sample id), so a sharded or resumed
    run draws the same boxes as an uninterrupted one.
    """
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    w, h = size
    out = []
    for x0, y0, x1, y1 in boxes:
        bw, bh = int(round(x1 - x0)), int(round(y1 - y0))
        left = float(rng.integers(0, w - bw + 1))
        top = float(rng.integers(0, h - bh + 1))
        out.append((left, top, left + bw, top + bh))
    return out


def tile_boxes(image_size: Sequence[int], max_side: int = 1024) -> list[Box]:
    """Equal tiles (row-major) of at most ``max_side`` pixels a side; one tile when it fits.

    >>> tile_boxes((2000, 800))
    [(0.0, 0.0, 1000.0, 800.0), (1000.0, 0.0, 2000.0, 800.0)]
    """
    w, h = image_size
    if max(w, h) <= max_side:
        return [(0.0, 0.0, float(w), float(h))]
    nx, ny = math.ceil(w / max_side), math.ceil(h / max_side)
    xs = [round(i * w / nx) for i in range(nx + 1)]
    ys = [round(j * h / ny) for j in range(ny + 1)]
    return [
        (float(xs[i]), float(ys[j]), float(xs[i + 1]), float(ys[j + 1]))
        for j in range(ny)
        for i in range(nx)
    ]


# ---------------------------------------------------------------- token cells


def regular_cell_boxes(
    rows: int,
    cols: int,
    x0: float,
    y0: float,
    cell_w: float,
    cell_h: float,
    clip: tuple[float, float] | None = None,
) -> np.ndarray:
    """Boxes of a regular ``rows x cols`` tiling starting at ``(x0, y0)``.

    Returns ndarray of shape (rows, cols, 4), ``(x0, y0, x1, y1)`` per cell; with
    ``clip=(width, height)`` the boxes are clipped to the image (cells wholly outside get
    zero area).
    """
    c = np.arange(cols, dtype=np.float64)
    r = np.arange(rows, dtype=np.float64)
    bx0 = np.broadcast_to(x0 + c * cell_w, (rows, cols))
    by0 = np.broadcast_to((y0 + r * cell_h)[:, None], (rows, cols))
    boxes = np.stack([bx0, by0, bx0 + cell_w, by0 + cell_h], axis=-1)
    if clip is not None:
        w, h = clip
        boxes[..., 0::2] = boxes[..., 0::2].clip(0, w)
        boxes[..., 1::2] = boxes[..., 1::2].clip(0, h)
    return boxes
