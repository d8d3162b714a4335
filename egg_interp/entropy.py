"""Entropies of a token-grid relevance map: spatial entropy (Kang et al.) and Shannon entropy.

Pure numpy functions on an ``ndarray of shape (rows, cols)``; natural logarithms throughout.
"""

from __future__ import annotations

import math

import numpy as np

from egg_interp.errors import DegenerateMapError, InputError
from egg_interp.regions import DEFAULT_SIGMA, label_components, smooth, threshold_elbow

__all__ = ["shannon_entropy", "spatial_entropy"]


def _finite_grid(grid: np.ndarray) -> np.ndarray:
    arr = np.asarray(grid, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"expected a non-empty 2-D grid (rows, cols), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DegenerateMapError("map contains NaN or inf; its entropy is undefined")
    return arr


def spatial_entropy(
    grid: np.ndarray, sigma: float = DEFAULT_SIGMA, threshold: float | None = None
) -> float:
    """Spatial entropy of a relevance map (Kang et al., CVPR 2025); lower = more focused.

    With ``S`` the map smoothed by :func:`egg_interp.regions.smooth` (``sigma`` cells):

    1. ``B = max(S - 2 * mean(S), 0)``;
    2. mask = ``B > t``, where ``t`` is ``threshold`` if given, else the elbow threshold of
       ``S`` (:func:`egg_interp.regions.threshold_elbow`) -- of ``S``, not of ``B``, as the
       reference code passes it;
    3. connected components of the mask with 8-connectivity;
    4. ``p_i = sum(B in component i) / sum(B over the whole map)``, so the ``p_i`` sum to less
       than 1 when some of ``B``'s mass lies outside every component;
    5. ``H = -sum_i p_i log p_i``; components with ``p_i = 0`` contribute nothing.

    Parameters
    ----------
    grid : ndarray of shape (rows, cols)
        Relevance (finite; any sign is accepted).
    sigma : float, default 1.5
        Smoothing in cells; ``0`` uses the map as is.
    threshold : float, optional
        Explicit ``t``; default: elbow of ``S``.

    Returns
    -------
    float
        ``H >= 0``. ``+inf`` when ``sum(B) == 0`` (e.g. a constant or all-zero map: nothing
        stands out). ``0.0`` when one component holds all of ``B``'s mass, and also when no cell
        of ``B`` exceeds ``t`` (the sum over components is empty).

    Raises
    ------
    DegenerateMapError
        The map holds NaN or inf.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.zeros((5, 5)); g[1, 1] = g[3, 3] = 1.0
    >>> round(spatial_entropy(g, sigma=0), 6) == round(float(np.log(2)), 6)
    True
    """
    s = smooth(_finite_grid(grid), sigma)
    b = np.maximum(s - 2.0 * s.mean(), 0.0)
    total = float(b.sum())
    if total <= 0.0:
        return math.inf
    t = threshold_elbow(s) if threshold is None else float(threshold)
    labels = label_components(b > t, connectivity=8)
    n = int(labels.max(initial=0))
    if n == 0:
        return 0.0
    mass = np.bincount(labels.ravel(), weights=b.ravel(), minlength=n + 1)[1:]
    p = mass[mass > 0] / total
    return float(max(-(p * np.log(p)).sum(), 0.0))


def shannon_entropy(grid: np.ndarray) -> float:
    """Shannon entropy of the map normalised to sum 1: ``-sum p log p`` over all cells.

    The normalisation (division by the total) is this function's only step; cells with
    ``p = 0`` contribute nothing. The value lies in ``[0, log(rows * cols)]``.

    Parameters
    ----------
    grid : ndarray of shape (rows, cols)
        Non-negative relevance.

    Returns
    -------
    float

    Raises
    ------
    DegenerateMapError
        NaN or inf anywhere, or a total of zero (no distribution to normalise): never a NaN
        result.
    InputError
        Negative entries (not a distribution; apply abs or ReLU explicitly first).
    """
    arr = _finite_grid(grid)
    if np.any(arr < 0):
        raise InputError("Shannon entropy needs non-negative values")
    total = float(arr.sum())
    if total <= 0.0:
        raise DegenerateMapError("map sums to zero; its Shannon entropy is undefined")
    p = arr[arr > 0] / total
    return float(max(-(p * np.log(p)).sum(), 0.0))
