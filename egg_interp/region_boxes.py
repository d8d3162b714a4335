"""Pixel-box geometry for evidence regions: cells to boxes, aspect cap, margin, clipping.

A *box* is a tuple of floats ``(x0, y0, x1, y1)`` in pixels of one image (x along columns, y
along rows, ``x1``/``y1`` exclusive); ``image_size`` is ``(width, height)``. Every function is
pure and returns a new tuple. :mod:`egg_interp.regions` re-exports the public ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from egg_interp.errors import InputError

Box = tuple[float, float, float, float]


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


def clip_box(box: Sequence[float], image_size: Sequence[float]) -> Box:
    """Clip a box to ``[0, width] x [0, height]``.

    Raises
    ------
    InputError
        When the box lies wholly outside the image, or is under one pixel wide or high after
        clipping.
    """
    b = as_box(box)
    size = as_image_size(image_size)
    if not _overlaps(b, size):
        raise InputError(f"box {b} lies wholly outside the image of size {tuple(image_size)}")
    x0, y0 = max(b[0], 0.0), max(b[1], 0.0)
    x1, y1 = min(b[2], size[0]), min(b[3], size[1])
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise InputError(f"box {b} degenerates to under one pixel inside the image")
    return (x0, y0, x1, y1)
