"""Evidence regions from a token-grid relevance map: pure numpy/scipy/scikit-image functions.

Conventions used throughout this module:

- a *grid* is an ``ndarray of shape (rows, cols)`` of finite, non-negative relevance, indexed
  ``(row, col)``;
- ``cell_boxes`` is an ``ndarray of shape (rows, cols, 4)`` giving, for each cell, the rectangle
  ``(x0, y0, x1, y1)`` it covers in the pixels of its image (x along columns, y along rows,
  ``x1``/``y1`` exclusive). The cells need not cover the whole image (LLaVA-1.5 centre-crops);
- ``image_size`` is ``(width, height)`` in pixels;
- a *box* is a tuple of floats ``(x0, y0, x1, y1)`` in pixels of the image the grid belongs to.

The pipeline of :func:`find_regions` is: smooth -> threshold -> mask -> connected components ->
scores on the *unsmoothed* map -> top-k -> pixel boxes -> aspect cap -> margin / minimum side ->
clip. The box geometry (cells to a box, aspect cap, margins, clipping) is
:mod:`egg_interp.geometry`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu as _skimage_otsu
from skimage.measure import label as _skimage_label

from egg_interp.errors import DegenerateMapError, InputError
from egg_interp.geometry import (
    Box,
    as_box,
    as_image_size,
    cap_aspect,
    cells_to_box,
    clip_box,
    expand_box,
)

DEFAULT_SIGMA = 1.5
"""Smoothing in grid cells: the paper's, on LLaVA-1.5's 24 x 24 grid (a model may recommend
its own: :attr:`egg_interp.models.VLMAdapter.region_sigma`)."""

SMOOTHING_MODE = "normalised"
"""Border handling of :func:`smooth`: normalised convolution (see there for why)."""


def smooth(grid: np.ndarray, sigma: float = DEFAULT_SIGMA) -> np.ndarray:
    """Gaussian-smooth a token grid by normalised convolution.

    Parameters
    ----------
    grid : ndarray of shape (rows, cols)
        Relevance per token.
    sigma : float, default 1.5
        Standard deviation in cells, the same along rows and columns. ``0`` returns a copy.

    Returns
    -------
    ndarray of shape (rows, cols), float64
        The smoothed grid: the grid smoothed with zero padding, divided by the all-ones grid
        smoothed the same way. Every cell is thus a Gaussian-weighted mean of *real* cells
        (the kernel is renormalised where it overhangs the border): a uniform map stays
        uniform and every value lies between the grid's minimum and maximum.

    Notes
    -----
    Border handling is a deliberate choice; the paper does not state one. On a 24 x 24 grid
    it barely matters, but on small grids (the organism's 8 x 8) it decides rankings. A
    mirroring border (``scipy.ndimage``'s default ``"reflect"``) counts an edge cell's own
    value again in place of the missing neighbours, so an edge cell keeps most of its value
    while a centre cell is averaged with its neighbours: on an 8 x 8 grid with sigma 1.5 an
    isolated corner cell keeps 0.23 of its value against 0.07 in the centre, and a 0.47 edge
    cell outranked a 0.83 centre cell. Zero padding instead drags blobs at the border toward
    zero. Normalised convolution (a corner keeps 0.18, an edge 0.11, the centre 0.07) still
    lets a lone border cell average fewer neighbours, but invents no mass.

    >>> smooth(np.full((3, 4), 2.0)).round(6).tolist()[0]
    [2.0, 2.0, 2.0, 2.0]
    """
    arr = np.asarray(grid, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"expected a 2-D grid, got shape {arr.shape}")
    if not np.isfinite(sigma) or sigma < 0:
        raise InputError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if sigma == 0:
        return arr.copy()
    blurred = ndimage.gaussian_filter(arr, sigma=float(sigma), mode="constant", cval=0.0)
    weight = ndimage.gaussian_filter(np.ones_like(arr), sigma=float(sigma), mode="constant")
    return blurred / weight


def _values(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise InputError("cannot compute a threshold of an empty array")
    if not np.all(np.isfinite(arr)):
        raise DegenerateMapError("cannot compute a threshold of values containing NaN or inf")
    return arr


def threshold_elbow(values: np.ndarray) -> float:
    """Elbow of the sorted values by the chord method.

    The values are sorted ascending and drawn as points ``(i, v_i)``; the chord joins the first
    and last point; the value of the point farthest (perpendicular distance, either side) from the
    chord is returned. Both axes are normalised to ``[0, 1]`` before measuring (index by
    ``n - 1``, value by its range). That choice does not change the result: every point's
    distance to a chord is its cross product with the chord divided by the chord's length, which
    is the same for all points, so any rescaling of either axis keeps the farthest point. Ties go
    to the lowest index (the smaller value).

    Parameters
    ----------
    values : ndarray of any shape
        Finite values (flattened).

    Returns
    -------
    float
        The elbow value; for fewer than three values, or a straight (e.g. constant) curve, the
        smallest value.

    Examples
    --------
    >>> threshold_elbow([0, 0, 0, 0, 1, 5, 10])
    1.0
    """
    v = np.sort(_values(values))
    n = v.size
    span = v[-1] - v[0]
    if n < 3 or span == 0:
        return float(v[0])
    x = np.arange(n, dtype=np.float64) / (n - 1)
    y = (v - v[0]) / span
    # Chord from (0, 0) to (1, 1): the distance of (x, y) is |x - y| / sqrt(2).
    return float(v[int(np.argmax(np.abs(x - y)))])


def threshold_otsu(values: np.ndarray) -> float:
    """Otsu's threshold (``skimage.filters.threshold_otsu``) of the values, flattened.

    Pixels strictly above the result are foreground. Constant input returns that constant.
    """
    return float(_skimage_otsu(_values(values)))


def threshold_quantile(values: np.ndarray, q: float = 0.9) -> float:
    """The ``q``-quantile of the values (linear interpolation), ``0 <= q <= 1``."""
    if not 0.0 <= q <= 1.0:
        raise InputError(f"quantile q must lie in [0, 1], got {q!r}")
    return float(np.quantile(_values(values), q))


THRESHOLDS: dict[str, Callable[[np.ndarray], float]] = {
    "elbow": threshold_elbow,
    "otsu": threshold_otsu,
    "quantile": threshold_quantile,
}
"""Threshold functions by name; each maps an array of values to one float."""


def label_components(mask: np.ndarray, connectivity: int = 4) -> np.ndarray:
    """Label the connected components of a boolean mask (``skimage.measure.label``).

    Parameters
    ----------
    mask : ndarray of shape (rows, cols), bool
    connectivity : {4, 8}
        4: cells sharing an edge are connected; 8: corners count too.

    Returns
    -------
    ndarray of shape (rows, cols), int
        0 for background, ``1..n`` for the components in raster order of their first cell; the
        number of components is ``labels.max()``.
    """
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, got {connectivity!r}")
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise InputError(f"expected a 2-D mask, got shape {m.shape}")
    return _skimage_label(m, background=0, connectivity=1 if connectivity == 4 else 2)


_SCORERS = {"sum": ndimage.sum_labels, "peak": ndimage.maximum, "mean": ndimage.mean}


def component_scores(raw: np.ndarray, labels: np.ndarray, how: str = "sum") -> np.ndarray:
    """Score each labelled component on the *unsmoothed* relevance.

    Parameters
    ----------
    raw : ndarray of shape (rows, cols)
        Unsmoothed relevance.
    labels : ndarray of shape (rows, cols), int
        Output of :func:`label_components`.
    how : {"sum", "peak", "mean"}
        Sum, maximum or mean of ``raw`` over the component's cells.

    Returns
    -------
    ndarray of shape (n_components,), float64
        Entry ``i`` scores the component labelled ``i + 1``.
    """
    if how not in _SCORERS:
        raise InputError(f"unknown score {how!r}; valid: {', '.join(_SCORERS)}")
    raw = np.asarray(raw, dtype=np.float64)
    labels = np.asarray(labels)
    if raw.shape != labels.shape:
        raise InputError(f"raw map {raw.shape} and labels {labels.shape} differ in shape")
    n = int(labels.max(initial=0))
    if n == 0:
        return np.zeros(0)
    return np.asarray(_SCORERS[how](raw, labels, np.arange(1, n + 1)), dtype=np.float64)


@dataclass
class Region:
    """One evidence region of one image.

    Attributes
    ----------
    score : float
        Component score on the unsmoothed map (see ``score`` of :func:`find_regions`).
    rank : int
        Position in its ranked list, 0 = best.
    cells : ndarray of shape (rows, cols), bool
        The component's cells.
    grid_box : (r0, c0, r1, c1)
        Bounding rows/columns of the cells, ``r1``/``c1`` exclusive (slice convention).
    box : (x0, y0, x1, y1)
        Final pixel box in the image the grid belongs to (after cap, margin and clipping).
    image_index : int
        Which image of the sequence the region was found in (set by the caller).
    view : str
        Free label for the caller (e.g. ``"original"`` or ``"crop 1"``).
    """

    score: float
    rank: int
    cells: np.ndarray
    grid_box: tuple[int, int, int, int]
    box: Box
    image_index: int = 0
    view: str = ""

    @property
    def area(self) -> float:
        """Pixel area of :attr:`box`."""
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (JSON-serialisable; ``cells`` as nested lists of bool)."""
        return {
            "score": float(self.score),
            "rank": int(self.rank),
            "cells": np.asarray(self.cells, dtype=bool).tolist(),
            "grid_box": [int(v) for v in self.grid_box],
            "box": [float(v) for v in self.box],
            "image_index": int(self.image_index),
            "view": str(self.view),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Region:
        """Inverse of :meth:`to_dict`."""
        return cls(
            score=float(data["score"]),
            rank=int(data["rank"]),
            cells=np.asarray(data["cells"], dtype=bool),
            grid_box=tuple(int(v) for v in data["grid_box"]),  # type: ignore[arg-type]
            box=as_box(data["box"]),
            image_index=int(data.get("image_index", 0)),
            view=str(data.get("view", "")),
        )


def check_grid(grid: np.ndarray) -> np.ndarray:
    """Validate a relevance grid and return it as float64.

    Raises
    ------
    InputError
        Not 2-D, empty, or with negative entries.
    DegenerateMapError
        Any NaN/inf, or all zeros: such a map cannot rank anything.
    """
    arr = np.asarray(grid, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"expected a non-empty 2-D grid (rows, cols), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DegenerateMapError("relevance map contains NaN or inf; it cannot rank regions")
    if np.any(arr < 0):
        raise InputError("relevance must be non-negative (apply abs or ReLU explicitly first)")
    if not np.any(arr > 0):
        raise DegenerateMapError("relevance map is all zeros; it cannot rank regions")
    return arr


def _threshold_value(smoothed: np.ndarray, threshold: str | float) -> float:
    if isinstance(threshold, str):
        if threshold not in THRESHOLDS:
            raise InputError(f"unknown threshold {threshold!r}; valid: {', '.join(THRESHOLDS)}")
        return THRESHOLDS[threshold](smoothed)
    t = float(threshold)
    if not np.isfinite(t):
        raise InputError(f"an explicit threshold must be finite, got {threshold!r}")
    return t


def find_regions(
    grid: np.ndarray,
    cell_boxes: np.ndarray,
    image_size: Sequence[float],
    top_k: int | None = 2,
    sigma: float = DEFAULT_SIGMA,
    threshold: str | float = "elbow",
    connectivity: int = 4,
    score: str = "sum",
    max_aspect: float | None = 3.0,
    margin: float = 0.0,
    min_side: float = 0.0,
    *,
    image_index: int = 0,
    view: str = "",
) -> list[Region]:
    """Top-k evidence regions of one image's token grid.

    Steps: :func:`smooth` -> threshold of the smoothed values -> mask ``smoothed > t`` (when that
    is empty, e.g. a constant map, ``smoothed >= t``) -> :func:`label_components` ->
    :func:`component_scores` on the *unsmoothed* grid -> the ``top_k`` best (ties: raster order
    of the component's first cell) -> :func:`cells_to_box` -> :func:`cap_aspect` ->
    :func:`expand_box` -> :func:`clip_box`.

    Parameters
    ----------
    grid : ndarray of shape (rows, cols)
        Non-negative relevance.
    cell_boxes : ndarray of shape (rows, cols, 4)
        Pixel rectangle ``(x0, y0, x1, y1)`` of each cell in the image.
    image_size : (width, height)
        Size of that image in pixels.
    top_k : int or None, default 2
        How many regions to keep; ``None`` keeps all.
    sigma : float, default 1.5
        Smoothing in cells.
    threshold : {"elbow", "otsu", "quantile"} or float, default "elbow"
        A name from :data:`THRESHOLDS`, or an absolute value on the smoothed map. An explicit
        value above the smoothed maximum gives no region (an empty list).
    connectivity : {4, 8}, default 4
    score : {"sum", "peak", "mean"}, default "sum"
    max_aspect : float or None, default 3.0
        ``None`` leaves the aspect ratio alone.
    margin, min_side : float
        See :func:`expand_box`.
    image_index, view
        Copied onto every returned :class:`Region`.

    Returns
    -------
    list of Region
        Sorted by score, best first, with ``rank`` 0, 1, ...

    Raises
    ------
    DegenerateMapError
        The grid is all zeros or holds NaN/inf. (Falling back to the whole image is the
        caller's policy.)
    InputError
        Bad shapes, negative relevance, unknown names, or a box degenerating to under a pixel.
    """
    raw = check_grid(grid)
    boxes = np.asarray(cell_boxes, dtype=np.float64)
    if boxes.shape != raw.shape + (4,):
        raise InputError(f"cell_boxes has shape {boxes.shape}, expected {raw.shape + (4,)}")
    if top_k is not None and top_k < 1:
        raise InputError(f"top_k must be >= 1 or None, got {top_k!r}")
    size = as_image_size(image_size)
    smoothed = smooth(raw, sigma)
    t = _threshold_value(smoothed, threshold)
    mask = smoothed > t
    if not mask.any():
        mask = smoothed >= t
    labels = label_components(mask, connectivity)
    scores = component_scores(raw, labels, score)
    order = np.argsort(-scores, kind="stable")
    if top_k is not None:
        order = order[:top_k]
    regions = []
    for rank, i in enumerate(order):
        cells = labels == i + 1
        rows, cols = np.nonzero(cells)
        grid_box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
        box = cells_to_box(cells, boxes)
        if max_aspect is not None:
            box = cap_aspect(box, max_aspect, size)
        box = clip_box(expand_box(box, margin, min_side, size), size)
        regions.append(Region(float(scores[i]), rank, cells, grid_box, box, image_index, view))
    return regions


def rank_regions(
    regions_lists: Iterable[Iterable[Region]], top_k: int | None = None
) -> list[Region]:
    """Merge per-image region lists and rank them all together by score.

    Ties keep the input order (earlier list first). Returns copies with ``rank`` renumbered
    0, 1, ...; ``image_index`` and ``view`` are left as the caller set them (pass them to
    :func:`find_regions`), so set them before merging.

    Parameters
    ----------
    regions_lists : iterable of iterables of Region
        One list per image.
    top_k : int or None
        Keep only the best ``top_k``; ``None`` keeps all.
    """
    merged = [r for regions in regions_lists for r in regions]
    merged.sort(key=lambda r: -r.score)
    if top_k is not None:
        merged = merged[:top_k]
    return [replace(r, rank=i) for i, r in enumerate(merged)]
