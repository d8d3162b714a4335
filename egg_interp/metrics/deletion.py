"""Deletion and insertion curves (RISE, Petsiuk et al. 2018), model-agnostic.

The caller supplies ``score_fn(keep) -> float``: given a bool ``ndarray of shape
(rows, cols)`` over the relevance grid's cells (True = the cell is revealed / kept), it
returns the model's probability of its original answer. This module only orders the
cells, builds the masks and integrates; :func:`cells_to_pixels` and
:func:`apply_substrate` are the pieces a caller needs to turn a keep-mask into an image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter

from egg_interp.errors import DegenerateMapError, InputError


class Curve(NamedTuple):
    """A deletion or insertion curve.

    Attributes
    ----------
    fractions : ndarray of shape (n_steps + 1,)
        Share of grid cells removed (deletion) or revealed (insertion), from 0 to 1.
    scores : ndarray of shape (n_steps + 1,)
        ``score_fn`` at each step.
    area : float
        Trapezoid-rule area under ``scores`` over ``fractions`` on [0, 1].
    """

    fractions: np.ndarray
    scores: np.ndarray
    area: float


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Area under ``y(x)`` by the trapezoid rule (``x`` increasing)."""
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def relevance_order(relevance: np.ndarray) -> np.ndarray:
    """Flat cell indices from most to least relevant; ties keep row-major order.

    Raises
    ------
    DegenerateMapError
        If the grid holds NaN or inf (it cannot rank the cells).
    """
    arr = np.asarray(relevance, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"relevance must be a non-empty (rows, cols) grid, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise DegenerateMapError("relevance grid contains NaN or inf")
    return np.argsort(-arr.ravel(), kind="stable")


def deletion_insertion_curve(
    relevance: np.ndarray,
    score_fn: Callable[[np.ndarray], float],
    mode: Literal["deletion", "insertion"] = "deletion",
    n_steps: int | None = None,
) -> Curve:
    """Probability of the original answer as the most relevant cells are removed or added.

    Parameters
    ----------
    relevance : ndarray of shape (rows, cols)
        Relevance per grid cell (e.g. a token grid). Cells are taken in decreasing order;
        equal values in row-major order, so a constant grid gives the row-major sweep.
    score_fn : callable
        ``score_fn(keep)`` with ``keep`` a bool ``ndarray of shape (rows, cols)``
        (True = revealed) returns the probability of the model's original answer. It is
        called ``n_steps + 1`` times, each time with a fresh array.
    mode : {"deletion", "insertion"}
        Deletion starts with every cell kept and removes the most relevant first (lower
        area is better); insertion starts with none and reveals the most relevant first
        (higher area is better).
    n_steps : int, optional
        Number of steps; step ``i`` has ``round(i * N / n_steps)`` cells changed, with
        ``N = rows * cols``. Default ``N`` (one cell per step). Clipped to ``1 .. N``.

    Returns
    -------
    Curve
        ``fractions`` (changed cells / N, 0 to 1), ``scores``, and ``area`` (trapezoid
        rule on [0, 1]).

    Raises
    ------
    DegenerateMapError
        If the relevance holds NaN or inf.

    Examples
    --------
    >>> rel = np.array([[2.0, 1.0]])
    >>> deletion_insertion_curve(rel, lambda keep: float(keep[0, 0]), "deletion").area
    0.25
    """
    if mode not in ("deletion", "insertion"):
        raise InputError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    order = relevance_order(relevance)
    shape = np.shape(relevance)
    n = order.size
    steps = n if n_steps is None else min(max(int(n_steps), 1), n)
    counts = np.rint(np.arange(steps + 1) * n / steps).astype(int)
    scores = np.empty(steps + 1)
    for i, count in enumerate(counts):
        changed = np.zeros(n, dtype=bool)
        changed[order[:count]] = True
        keep = ~changed if mode == "deletion" else changed
        scores[i] = float(score_fn(keep.reshape(shape)))
    fractions = counts / n
    return Curve(fractions, scores, trapezoid(scores, fractions))


def cells_to_pixels(keep: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Spread a cell mask over an image: ``(rows, cols)`` -> bool ``ndarray (H, W)``.

    The grid is stretched over the whole image: pixel ``(r, c)`` takes the cell
    ``(floor((r + 0.5) * rows / H), floor((c + 0.5) * cols / W))`` (its centre's cell).
    """
    keep = np.asarray(keep, dtype=bool)
    h, w = int(shape[0]), int(shape[1])
    rows = np.floor((np.arange(h) + 0.5) * keep.shape[0] / h).astype(int)
    cols = np.floor((np.arange(w) + 0.5) * keep.shape[1] / w).astype(int)
    return keep[np.ix_(rows, cols)]


def apply_substrate(
    image: np.ndarray,
    keep: np.ndarray,
    substrate: Literal["zeros", "blur", "mean"] | np.ndarray = "blur",
    sigma: float = 5.0,
) -> np.ndarray:
    """Replace the pixels not kept by a substrate.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), float
        The original image (any value range; it is not rescaled).
    keep : bool ndarray of shape (H, W)
        True where the original pixel stays (see :func:`cells_to_pixels`).
    substrate : {"zeros", "blur", "mean"} or ndarray of shape (H, W, 3)
        "zeros": 0 everywhere; "blur": the image blurred per channel by
        ``scipy.ndimage.gaussian_filter`` with standard deviation ``sigma`` pixels
        (RISE blurs its insertion start with sigma 5); "mean": the image's mean colour
        per channel; an array is used as given.
    sigma : float, default 5.0
        Blur width in original-image pixels, used only by "blur".

    Returns
    -------
    ndarray of shape (H, W, 3)
        A new float array; ``image`` is not modified.
    """
    img = np.asarray(image)
    img = img if np.issubdtype(img.dtype, np.floating) else img.astype(np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"image must have shape (H, W, 3), got {img.shape}")
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != img.shape[:2]:
        raise InputError(f"keep mask shape {keep.shape} differs from image {img.shape[:2]}")
    if isinstance(substrate, np.ndarray):
        if substrate.shape != img.shape:
            raise InputError(f"substrate shape {substrate.shape} differs from {img.shape}")
        fill = substrate.astype(img.dtype)
    elif substrate == "zeros":
        fill = np.zeros_like(img)
    elif substrate == "blur":
        fill = gaussian_filter(img, sigma=(sigma, sigma, 0))
    elif substrate == "mean":
        fill = np.broadcast_to(img.mean(axis=(0, 1), keepdims=True), img.shape)
    else:
        raise InputError(f"unknown substrate {substrate!r}; use 'zeros', 'blur' or 'mean'")
    return np.where(keep[..., None], img, fill).astype(img.dtype)
