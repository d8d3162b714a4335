"""Localisation scores of a relevance map against ground-truth evidence boxes.

Conventions shared by every function here:

* A map (``saliency``) is an ``ndarray of shape (H, W)`` on the *original* image's pixel
  grid (upsample token grids first); row = y, column = x.
* Boxes are ``(x0, y0, x1, y1)`` in original-image pixels, x1/y1 exclusive, floats allowed.
  Pixel ``(row r, col c)`` covers ``[c, c + 1) x [r, r + 1)``; :func:`boxes_to_mask` marks
  every pixel a box overlaps with positive area, clipped to the image. Wherever ``boxes``
  is accepted, a precomputed ``bool`` mask of shape ``(H, W)`` is accepted too.
* NaN policy: an empty ground truth (no box pixel inside the image) gives NaN, never a hit;
  a map containing NaN or +-inf gives NaN. Aggregate with ``np.nanmean`` and report the
  number of skipped samples. Each function states its own extra cases.

Each score is declared (direction, inputs, NaN policy, label) in
:mod:`egg_interp.metrics.registry`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from egg_interp.errors import InputError

BoxesLike = Sequence[Sequence[float]] | np.ndarray
"""Boxes ``(x0, y0, x1, y1)``: a sequence of 4-sequences, an array of shape (N, 4), or one box."""


def as_boxes(boxes: BoxesLike) -> np.ndarray:
    """Return boxes as a float ``ndarray of shape (N, 4)`` (a single box becomes N = 1).

    Raises
    ------
    InputError
        If the input is not a list of 4-tuples or holds a non-finite coordinate.
    """
    arr = np.asarray(boxes, dtype=float)
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(f"boxes must be (x0, y0, x1, y1) tuples, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError("boxes contain NaN or inf")
    return arr


def boxes_to_mask(boxes: BoxesLike, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise boxes into a pixel mask.

    Parameters
    ----------
    boxes : sequence of (x0, y0, x1, y1)
        Original-image pixels, x1/y1 exclusive, floats allowed. x indexes columns, y rows.
    shape : (H, W)
        Image size in pixels (rows, cols).

    Returns
    -------
    ndarray of bool, shape (H, W)
        True on every pixel the union of boxes overlaps with positive area: columns
        ``floor(x0) .. ceil(x1) - 1`` and rows ``floor(y0) .. ceil(y1) - 1``, clipped to the
        image. Empty and inverted boxes (x1 <= x0 or y1 <= y0) mark nothing.

    Examples
    --------
    >>> boxes_to_mask([(1, 0, 3, 1)], (2, 4)).astype(int)
    array([[0, 1, 1, 0],
           [0, 0, 0, 0]])
    """
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in as_boxes(boxes):
        if x1 <= x0 or y1 <= y0:
            continue
        c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), w)
        r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), h)
        if c1 > c0 and r1 > r0:
            mask[r0:r1, c0:c1] = True
    return mask


def _ground_truth(boxes: BoxesLike, shape: tuple[int, ...]) -> np.ndarray:
    """A bool mask of shape ``shape`` from boxes or from a mask given directly."""
    if isinstance(boxes, np.ndarray) and boxes.dtype == bool and boxes.ndim == 2:
        if boxes.shape != tuple(shape):
            raise InputError(f"mask shape {boxes.shape} differs from map shape {tuple(shape)}")
        return boxes
    return boxes_to_mask(boxes, (shape[0], shape[1]))


def _as_map(saliency: np.ndarray) -> np.ndarray:
    arr = np.asarray(saliency, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"a map must have shape (H, W), got {arr.shape}")
    return arr


def argmax_point(saliency: np.ndarray) -> tuple[int, int] | None:
    """The (row, col) of the map's maximum, or None when the map cannot point anywhere.

    Ties go to the first maximum in row-major order (``np.argmax`` on the flattened map).
    Returns None for a map with NaN/inf or a constant map (every pixel ties).
    """
    arr = _as_map(saliency)
    if arr.size == 0 or not np.isfinite(arr).all() or arr.max() == arr.min():
        return None
    r, c = np.unravel_index(int(np.argmax(arr)), arr.shape)
    return int(r), int(c)


def pointing_game(saliency: np.ndarray, boxes: BoxesLike, tolerance: float = 15.0) -> float:
    """Pointing-game hit of the map's maximum (Zhang et al. 2016; TorchRay's definition).

    Parameters
    ----------
    saliency : ndarray of shape (H, W)
        Map on the original image's pixel grid.
    boxes : sequence of (x0, y0, x1, y1), or bool ndarray of shape (H, W)
        Ground truth (the union of the boxes).
    tolerance : float, default 15.0
        Hit radius in pixels; strict: a ground-truth pixel at distance exactly
        ``tolerance`` does not count. ``tolerance=1`` asks for the point itself to lie
        inside the ground truth.

    Returns
    -------
    float
        1.0 (hit: some ground-truth pixel at Euclidean distance < tolerance from the
        argmax pixel), 0.0 (miss), or NaN when the ground truth is empty (skipped), the
        map holds NaN/inf, or the map is constant (it points nowhere). Ties between
        maxima go to the first in row-major order (see :func:`argmax_point`).
    """
    if tolerance <= 0:
        raise InputError(f"tolerance must be > 0 pixels, got {tolerance}")
    arr = _as_map(saliency)
    gt = _ground_truth(boxes, arr.shape)
    point = argmax_point(arr)
    if not gt.any() or point is None:
        return float("nan")
    rows, cols = np.nonzero(gt)
    d2 = (rows - point[0]) ** 2 + (cols - point[1]) ** 2
    return float(d2.min() < tolerance**2)


def energy_pointing_game(saliency: np.ndarray, boxes: BoxesLike) -> float:
    """Share of the map's non-negative mass inside the ground truth (Score-CAM).

    Negative values are set to 0 first. Returns a value in [0, 1]; NaN when the ground
    truth is empty, the map holds NaN/inf, or the clipped map has zero mass.
    """
    arr = _as_map(saliency)
    gt = _ground_truth(boxes, arr.shape)
    if not gt.any() or not np.isfinite(arr).all():
        return float("nan")
    pos = np.clip(arr, 0.0, None)
    total = pos.sum()
    return float(pos[gt].sum() / total) if total > 0 else float("nan")


def relevance_mass_accuracy(saliency: np.ndarray, boxes: BoxesLike) -> float:
    """Relevance inside the ground truth over all relevance (Arras et al. 2022).

    The map is used as given: pool or clip it first (Arras et al. keep the positive
    part, e.g. ``np.clip(m, 0, None)``), in which case this equals
    :func:`energy_pointing_game`. With negative values the ratio can leave [0, 1].
    NaN when the ground truth is empty, the map holds NaN/inf, or its total is <= 0.
    """
    arr = _as_map(saliency)
    gt = _ground_truth(boxes, arr.shape)
    if not gt.any() or not np.isfinite(arr).all():
        return float("nan")
    total = arr.sum()
    return float(arr[gt].sum() / total) if total > 0 else float("nan")


def _top_k_share(arr: np.ndarray, gt: np.ndarray, k: int) -> float:
    """Expected share of the top-k pixels inside ``gt``, ties at the k-th value shared."""
    flat, inside = arr.ravel(), gt.ravel()
    kth = np.partition(flat, flat.size - k)[flat.size - k]
    above, tied = flat > kth, flat == kth
    need = k - int(above.sum())
    hits = inside[above].sum() + need * inside[tied].sum() / tied.sum()
    return float(hits / k)


def top_k_intersection(saliency: np.ndarray, boxes: BoxesLike, k: int) -> float:
    """Share of the map's ``k`` highest pixels that lie inside the ground truth (Quantus).

    Ties at the k-th highest value are shared: the tied pixels fill the remaining slots
    in proportion, i.e. the expected share under a random order of ties. The result does
    not depend on pixel order, and a constant map scores ``|mask| / (H * W)`` (chance).
    NaN when the ground truth is empty or the map holds NaN/inf.

    Raises
    ------
    InputError
        If ``k`` is not in ``1 .. H * W``.
    """
    arr = _as_map(saliency)
    if not 1 <= k <= arr.size:
        raise InputError(f"k must be in 1..{arr.size}, got {k}")
    gt = _ground_truth(boxes, arr.shape)
    if not gt.any() or not np.isfinite(arr).all():
        return float("nan")
    return _top_k_share(arr, gt, int(k))


def relevance_rank_accuracy(saliency: np.ndarray, boxes: BoxesLike) -> float:
    """Share of the top-K pixels inside the ground truth with K = |mask| (Arras et al. 2022).

    Equal to :func:`top_k_intersection` with ``k`` the number of ground-truth pixels
    (same tie sharing). NaN when the ground truth is empty or the map holds NaN/inf.
    """
    arr = _as_map(saliency)
    gt = _ground_truth(boxes, arr.shape)
    if not gt.any() or not np.isfinite(arr).all():
        return float("nan")
    return _top_k_share(arr, gt, int(gt.sum()))


def auc(saliency: np.ndarray, boxes: BoxesLike) -> float:
    """ROC AUC of the map as a detector of ground-truth pixels.

    The probability that a random ground-truth pixel outscores a random background pixel,
    ties counting one half (Mann-Whitney U with average ranks from
    ``scipy.stats.rankdata``): 1.0 for a perfect map, 0.5 for a constant one.
    NaN when the mask is empty or covers the whole image, or the map holds NaN/inf.
    """
    arr = _as_map(saliency)
    gt = _ground_truth(boxes, arr.shape).ravel()
    n_pos = int(gt.sum())
    n_neg = gt.size - n_pos
    if n_pos == 0 or n_neg == 0 or not np.isfinite(arr).all():
        return float("nan")
    ranks = rankdata(arr.ravel(), method="average")
    u = ranks[gt].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))
