"""What replaces the removed cells of a deletion or insertion curve, in an image.

Pure numpy/scipy: which pixels a map cell covers (:func:`cell_labels`,
:func:`cells_to_pixels`), the substrates that do not depend on the mask (blur, mean colour,
zeros: :func:`substrate_image`), ROAD's noisy linear imputation, which does
(:func:`noisy_linear_imputation`), and :func:`apply_substrate` for one mask. The token-space
baselines (the image's mean visual token, zeros, dropping the token) live with the model wiring
(:mod:`egg_interp.faithfulness`); :data:`SUBSTRATES` names them all.

Conventions: images ``(H, W, C)`` floats; cell boxes ``(x0, y0, x1, y1)`` in the image's
pixels, x the column direction, x1/y1 exclusive.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.sparse import csc_matrix, lil_matrix
from scipy.sparse.linalg import spsolve

from egg_interp.errors import InputError


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


def cell_labels(cell_boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The cell of every pixel: int ``ndarray of shape (H, W)``, the flat cell index, -1 where
    no cell covers the pixel (e.g. the border a centre crop leaves out).

    A pixel belongs to the cell whose box holds its centre ``(x + 0.5, y + 0.5)``.

    Parameters
    ----------
    cell_boxes : ndarray of shape (rows, cols, 4)
        ``(x0, y0, x1, y1)`` of each cell in the image's pixels (a map view's ``cell_boxes``).
    size : (int, int)
        ``(width, height)`` of the image.

    >>> boxes = np.array([[[0, 0, 2, 2], [2, 0, 4, 2]]], dtype=float)
    >>> cell_labels(boxes, (5, 2)).tolist()
    [[0, 0, 1, 1, -1], [0, 0, 1, 1, -1]]
    """
    width, height = int(size[0]), int(size[1])
    labels = np.full((height, width), -1, dtype=np.int64)
    boxes = np.asarray(cell_boxes, dtype=np.float64).reshape(-1, 4)
    xs, ys = np.arange(width) + 0.5, np.arange(height) + 0.5
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        cols = (xs >= x0) & (xs < x1)
        rows = (ys >= y0) & (ys < y1)
        labels[np.ix_(rows, cols)] = index
    return labels


def substrate_image(
    image: np.ndarray, substrate: Literal["zeros", "blur", "mean"] = "blur", sigma: float = 5.0
) -> np.ndarray:
    """What removed pixels are replaced by, for substrates that do not depend on the mask.

    ``"zeros"``: 0 everywhere; ``"blur"``: the image blurred per channel by
    ``scipy.ndimage.gaussian_filter`` with standard deviation ``sigma`` pixels (RISE blurs its
    insertion start with sigma 5); ``"mean"``: the image's mean colour per channel.

    Returns
    -------
    ndarray of shape (H, W, C), float64
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3:
        raise InputError(f"image must have shape (H, W, C), got {img.shape}")
    if substrate == "zeros":
        return np.zeros_like(img)
    if substrate == "blur":
        return gaussian_filter(img, sigma=(sigma, sigma, 0))
    if substrate == "mean":
        return np.broadcast_to(img.mean(axis=(0, 1), keepdims=True), img.shape).copy()
    raise InputError(f"unknown substrate {substrate!r}; use 'zeros', 'blur', 'mean' or 'road'")


ROAD_NEIGHBOURS = (
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
)
"""ROAD's imputation weights: ``((d_row, d_col), weight)``, 1/6 direct and 1/12 diagonal."""


def noisy_linear_imputation(
    image: np.ndarray,
    keep: np.ndarray,
    noise: float = 0.01,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """ROAD's noisy linear imputation (Rong et al., ICML 2022; tleemann/road_evaluation).

    Every removed pixel takes the weighted mean of its 8 neighbours (:data:`ROAD_NEIGHBOURS`,
    renormalised at the border), removed neighbours being unknowns of the same sparse linear
    system, so a removed region is filled smoothly from its rim; then Gaussian noise of
    standard deviation ``noise`` is added to the filled pixels. This removes most of the
    class information the shape of a deleted region leaks.

    Parameters
    ----------
    image : ndarray of shape (H, W, C)
    keep : bool ndarray of shape (H, W)
        True where the pixel stays.
    noise : float, default 0.01
        In the image's units (ROAD uses 0.01 on images in [0, 1]-like units).
    rng : numpy Generator, optional
        Source of the noise (default: seeded 0, so a mask always gives the same image).

    Returns
    -------
    ndarray of shape (H, W, C), float64; the kept pixels unchanged.

    >>> img = np.zeros((1, 3, 1)); img[0, 2, 0] = 3.0
    >>> noisy_linear_imputation(img, np.array([[True, False, True]]), noise=0.0)[0, :, 0].tolist()
    [0.0, 1.5, 3.0]
    """
    img = np.asarray(image, dtype=np.float64)
    keep = np.asarray(keep, dtype=bool)
    if img.ndim != 3 or keep.shape != img.shape[:2]:
        raise InputError(f"image {img.shape} must be (H, W, C) and keep {keep.shape} (H, W)")
    height, width = keep.shape
    flat_keep, values = keep.ravel(), img.reshape(height * width, -1)
    unknown = np.flatnonzero(~flat_keep)
    if unknown.size == 0:
        return img.copy()
    variable = np.zeros(flat_keep.size, dtype=np.int64)
    variable[unknown] = np.arange(unknown.size)
    rows, cols = np.divmod(unknown, width)
    system = lil_matrix((unknown.size, unknown.size))
    rhs = np.zeros((unknown.size, values.shape[1]))
    weight_sum = np.zeros(unknown.size)
    for (d_row, d_col), weight in ROAD_NEIGHBOURS:
        r, c = rows + d_row, cols + d_col
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        eq = np.flatnonzero(inside)
        neighbour = r[inside] * width + c[inside]
        weight_sum[eq] += weight
        known = flat_keep[neighbour]
        rhs[eq[known]] -= weight * values[neighbour[known]]
        system[eq[~known], variable[neighbour[~known]]] = weight
    system[np.arange(unknown.size), np.arange(unknown.size)] = -weight_sum
    solved = np.asarray(spsolve(csc_matrix(system), rhs)).reshape(unknown.size, -1)
    rng = np.random.default_rng(0) if rng is None else rng
    out = values.copy()
    out[unknown] = solved + noise * rng.standard_normal(solved.shape)
    return out.reshape(img.shape)


def apply_substrate(
    image: np.ndarray,
    keep: np.ndarray,
    substrate: Literal["zeros", "blur", "mean", "road"] | np.ndarray = "blur",
    sigma: float = 5.0,
    noise: float = 0.01,
) -> np.ndarray:
    """Replace the pixels not kept by a substrate.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), float
        The original image (any value range; it is not rescaled).
    keep : bool ndarray of shape (H, W)
        True where the original pixel stays (see :func:`cells_to_pixels`).
    substrate : {"zeros", "blur", "mean", "road"} or ndarray of shape (H, W, 3)
        ``"zeros"``, ``"blur"``, ``"mean"``: :func:`substrate_image`; ``"road"``:
        :func:`noisy_linear_imputation` with ``noise``; an array is used as given.
    sigma : float, default 5.0
        Blur width in original-image pixels, used only by "blur".
    noise : float, default 0.01
        ROAD's noise, used only by "road".

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
    elif substrate == "road":
        return noisy_linear_imputation(img, keep, noise).astype(img.dtype)
    else:
        fill = substrate_image(img, substrate, sigma)
    return np.where(keep[..., None], img, fill).astype(img.dtype)


SUBSTRATES = {"pixels": ("blur", "mean", "road", "zeros"), "tokens": ("mean", "zeros", "drop")}
"""What replaces a removed cell, per space (the first is the default): pixel substrates
(:func:`substrate_image`, :func:`noisy_linear_imputation`) and token baselines (the image's
mean visual token embedding, zeros, or dropping the token from the sequence)."""


__all__ = [
    "ROAD_NEIGHBOURS",
    "SUBSTRATES",
    "apply_substrate",
    "cell_labels",
    "cells_to_pixels",
    "noisy_linear_imputation",
    "substrate_image",
]
