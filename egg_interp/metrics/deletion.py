"""Deletion and insertion curves (RISE, Petsiuk et al. 2018; ROAD, Rong et al. 2022).

Model-agnostic and pure: the caller supplies the model as a score function over keep masks
(True = the cell is kept / revealed) over the relevance grid's cells. This module orders the
cells (most relevant first, least relevant first, or a seeded random order), builds the
masks of every step, evaluates each distinct mask once (:func:`curves_from_batch`: one call
of ``score_batch`` for all curves, so a model can run them as batched forwards) and
integrates by the trapezoid rule over the changed fraction in [0, 1].
:func:`cell_labels`, :func:`substrate_image` and :func:`noisy_linear_imputation` are the
pieces a caller needs to turn a keep mask into an image; :class:`FaithfulnessSettings` holds
every choice, recordable in a run's configuration. The VLM wiring is
:mod:`egg_interp.faithfulness`.

Conventions: grids and masks are ``(rows, cols)``; images ``(H, W, C)`` floats; cell boxes
``(x0, y0, x1, y1)`` in the image's pixels, x the column direction, x1/y1 exclusive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.sparse import csc_matrix, lil_matrix
from scipy.sparse.linalg import spsolve

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


ORDERS = ("morf", "lerf", "random")
"""Cell orders: most relevant first, least relevant first, a seeded random order (control)."""
CURVES = ("deletion", "insertion")


def cell_order(relevance: np.ndarray, order: str = "morf", seed: int = 0) -> np.ndarray:
    """Flat cell indices in the order they are changed.

    ``"morf"``: decreasing relevance; ``"lerf"``: increasing; ties in row-major order for
    both. ``"random"``: ``numpy.random.default_rng(seed).permutation`` (the same for every
    map of one grid shape, so it is a control independent of the map).

    >>> cell_order(np.array([[1.0, 3.0], [2.0, 3.0]]), "lerf").tolist()
    [0, 2, 1, 3]
    """
    flat = relevance_order(relevance)  # checks the grid
    if order == "morf":
        return flat
    arr = np.asarray(relevance, dtype=np.float64).ravel()
    if order == "lerf":
        return np.argsort(arr, kind="stable")
    if order == "random":
        return np.random.default_rng(seed).permutation(arr.size)
    raise InputError(f"unknown order {order!r}; valid: {', '.join(ORDERS)}")


def step_counts(n_cells: int, n_steps: int | None = None) -> np.ndarray:
    """Cells changed at each step: ``round(i * N / n_steps)`` for ``i = 0 .. n_steps``.

    ``n_steps`` defaults to ``N`` (one cell per step) and is clipped to ``1 .. N``.

    >>> step_counts(64, 16)[:4].tolist()
    [0, 4, 8, 12]
    """
    steps = n_cells if n_steps is None else min(max(int(n_steps), 1), n_cells)
    return np.rint(np.arange(steps + 1) * n_cells / steps).astype(int)


def step_masks(
    order: np.ndarray, shape: tuple[int, int], counts: np.ndarray, curve: str
) -> np.ndarray:
    """Keep masks of every step: bool ``ndarray of shape (len(counts), rows, cols)``.

    Deletion keeps all but the first ``counts[i]`` cells of ``order``; insertion keeps only
    those.
    """
    if curve not in CURVES:
        raise InputError(f"curve must be 'deletion' or 'insertion', got {curve!r}")
    n = int(np.prod(shape))
    rank = np.empty(n, dtype=int)
    rank[np.asarray(order)] = np.arange(n)
    changed = rank[None, :] < np.asarray(counts)[:, None]
    keep = ~changed if curve == "deletion" else changed
    return keep.reshape(len(counts), *shape)


def deletion_insertion_curve(
    relevance: np.ndarray,
    score_fn: Callable[[np.ndarray], float],
    mode: Literal["deletion", "insertion"] = "deletion",
    n_steps: int | None = None,
    order: str = "morf",
    seed: int = 0,
) -> Curve:
    """Probability of the original answer as the cells are removed or added, one at a time.

    Parameters
    ----------
    relevance : ndarray of shape (rows, cols)
        Relevance per grid cell (e.g. a token grid). Cells are taken in :func:`cell_order`
        (``order``: ``"morf"`` decreasing, equal values in row-major order, so a constant
        grid gives the row-major sweep; ``"lerf"``; ``"random"`` with ``seed``).
    score_fn : callable
        ``score_fn(keep)`` with ``keep`` a bool ``ndarray of shape (rows, cols)``
        (True = revealed) returns the probability of the model's original answer. It is
        called ``n_steps + 1`` times, each time with a fresh array.
    mode : {"deletion", "insertion"}
        Deletion starts with every cell kept and removes cells in order (lower area is
        better under MoRF); insertion starts with none and reveals them (higher is better).
    n_steps : int, optional
        Number of steps (:func:`step_counts`); default one cell per step.

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
    if mode not in CURVES:
        raise InputError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    cells = cell_order(relevance, order, seed)
    counts = step_counts(cells.size, n_steps)
    masks = step_masks(cells, np.shape(relevance), counts, mode)
    scores = np.array([float(score_fn(m.copy())) for m in masks])
    fractions = counts / cells.size
    return Curve(fractions, scores, trapezoid(scores, fractions))


def curves_from_batch(
    relevance: np.ndarray,
    score_batch: Callable[[np.ndarray], np.ndarray],
    curves: Sequence[str] = CURVES,
    orders: Sequence[str] = ORDERS,
    n_steps: int | None = 16,
    seed: int = 0,
) -> dict[tuple[str, str], Curve]:
    """Every requested curve with each distinct keep mask scored once.

    The masks of all curves and orders are gathered, duplicates dropped, and ``score_batch``
    is called once with the rest: every curve shares the full and the empty mask, and
    insertion under MoRF keeps, step by step, the cells that deletion under LeRF keeps (and
    vice versa), so MoRF and LeRF deletion and insertion at ``n`` steps need ``2n`` masks,
    not ``4(n + 1)``.

    Parameters
    ----------
    relevance : ndarray of shape (rows, cols)
    score_batch : callable
        ``score_batch(masks) -> ndarray of shape (M,)`` for bool ``masks`` of shape
        ``(M, rows, cols)``: the tracked value of each (e.g. the answer's log-probability).
    curves : sequence of {"deletion", "insertion"}
    orders : sequence of {"morf", "lerf", "random"}
    n_steps : int or None, default 16
        Steps per curve (:func:`step_counts`).
    seed : int, default 0
        Seed of the random order.

    Returns
    -------
    dict
        ``(curve, order) -> Curve``.

    Examples
    --------
    >>> rel = np.array([[3.0, 2.0], [1.0, 0.0]])
    >>> calls = []
    >>> score = lambda m: calls.append(len(m)) or m[:, 0, 0].astype(float)
    >>> out = curves_from_batch(rel, score, orders=["morf", "lerf"], n_steps=4)
    >>> out["deletion", "morf"].scores.tolist(), out["deletion", "lerf"].scores.tolist()
    ([1.0, 0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 0.0])
    >>> calls  # 4 curves x 5 masks, 8 distinct (insertion MoRF keeps what deletion LeRF keeps)
    [8]
    """
    shape = np.shape(relevance)
    n = int(np.prod(shape))
    counts = step_counts(n, n_steps)
    requested = [(c, o) for c in curves for o in orders]
    masks = {
        key: step_masks(cell_order(relevance, key[1], seed), shape, counts, key[0])
        for key in requested
    }
    if not masks:
        return {}
    stacked = np.concatenate(list(masks.values()))
    unique, inverse = np.unique(stacked.reshape(len(stacked), -1), axis=0, return_inverse=True)
    values = np.asarray(score_batch(unique.reshape(-1, *shape)), dtype=np.float64)
    if values.shape != (len(unique),):
        raise ValueError(f"score_batch returned shape {values.shape}, expected ({len(unique)},)")
    per_mask = values[np.asarray(inverse).ravel()].reshape(len(requested), len(counts))
    fractions = counts / n
    return {
        key: Curve(fractions, row, trapezoid(row, fractions))
        for key, row in zip(requested, per_mask)
    }


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


@dataclass(frozen=True)
class FaithfulnessSettings:
    """Every choice of a deletion/insertion measurement, checked when built.

    Recorded in a run's configuration (:meth:`to_dict`); :mod:`egg_interp.faithfulness`
    runs it on a VLM.

    Attributes
    ----------
    curves : tuple of {"deletion", "insertion"}
    orders : tuple of {"morf", "lerf", "random"}
        The gap needs ``"morf"`` and ``"lerf"``; ``"random"`` is the map-free control.
    space : {"pixels", "tokens"}
        ``"pixels"``: the map's cells are painted over in the image, which is processed
        and seen by the vision tower again; ``"tokens"``: the visual token embeddings are
        replaced (or dropped) in the language model's input.
    substrate : str
        What replaces a removed cell (:data:`SUBSTRATES`); ``""``: the space's default
        (``"blur"``; ``"mean"`` for tokens).
    insertion_substrate : str
        The substrate insertion starts from; ``""``: :attr:`substrate`. With one substrate,
        insertion under MoRF keeps, step by step, what deletion under LeRF keeps, so its
        curve is that one read backwards and their areas are equal; RISE deletes to a flat
        fill and inserts on a blurred image (e.g. ``substrate="mean"``,
        ``insertion_substrate="blur"``), which makes the two curves differ.
    steps : int, default 16
        Steps per curve; ``x`` is the changed fraction in [0, 1], the area the trapezoid rule.
    track : {"prob", "logprob"}
        What the areas integrate: the probability of the original answer (RISE), or its
        log-probability (both are in the curves). Teacher-forced: the sum over the answer's
        tokens; the probability is its exponential.
    seed : int
        Seed of the random order and of ROAD's noise.
    blur_sigma : float, default 0.0223
        Blur's standard deviation as a fraction of the image's longer side (RISE: 5 px on
        224 px inputs).
    road_noise : float, default 0.01
        ROAD's noise, in units of the image's 0-1 intensity.
    road_side : int, default 224
        ROAD imputes on the image scaled to fit this side (the reference's input size; its
        sparse solve grows with the pixel count), then scales the imputed pixels back.
    max_answer_tokens : int, default 16
        Longest original answer tracked.
    rows_per_forward : int, default 32
        Masked inputs per batched forward (memory).
    """

    curves: tuple[str, ...] = CURVES
    orders: tuple[str, ...] = ORDERS
    space: str = "pixels"
    substrate: str = ""
    insertion_substrate: str = ""
    steps: int = 16
    track: str = "prob"
    seed: int = 0
    blur_sigma: float = 5 / 224
    road_noise: float = 0.01
    road_side: int = 224
    max_answer_tokens: int = 16
    rows_per_forward: int = 32

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        for name, valid in (("curves", CURVES), ("orders", ORDERS)):
            values = tuple(getattr(self, name))
            if not values or any(v not in valid for v in values) or len(set(values)) < len(values):
                raise InputError(f"{name} must be distinct names of {valid}, got {values!r}")
            put(name, values)
        if self.space not in SUBSTRATES:
            raise InputError(f"space must be 'pixels' or 'tokens', got {self.space!r}")
        put("substrate", self.substrate or SUBSTRATES[self.space][0])
        put("insertion_substrate", self.insertion_substrate or self.substrate)
        for name in ("substrate", "insertion_substrate"):
            if getattr(self, name) not in SUBSTRATES[self.space]:
                raise InputError(
                    f"{name} {getattr(self, name)!r} is not one of the {self.space} "
                    f"substrates {SUBSTRATES[self.space]}"
                )
        if self.track not in ("prob", "logprob"):
            raise InputError(f"track must be 'prob' or 'logprob', got {self.track!r}")
        for name in ("steps", "road_side", "max_answer_tokens", "rows_per_forward"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("blur_sigma", "road_noise"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InputError(f"{name} must be a number >= 0, got {value!r}")

    def replace(self, **changes: Any) -> FaithfulnessSettings:
        """A copy with some fields changed (checked again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (a run's configuration)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FaithfulnessSettings:
        """Inverse of :meth:`to_dict` (unknown keys raise :class:`InputError`)."""
        fields = set(cls.__dataclass_fields__)
        unknown = set(values) - fields
        if unknown:
            raise InputError(f"unknown faithfulness settings: {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def substrate_of(self, curve: str) -> str:
        """The substrate a curve uses (:attr:`insertion_substrate` for insertion)."""
        return self.insertion_substrate if curve == "insertion" else self.substrate

    def score_names(self) -> list[str]:
        """The per-map scores :func:`egg_interp.faithfulness.faithfulness_scores` returns:
        ``<curve>_auc`` (MoRF), ``<curve>_auc_lerf``, ``<curve>_auc_random``, and
        ``<curve>_gap`` when both MoRF and LeRF are run (see :data:`SCORE_DIRECTION`)."""
        names = []
        for curve in self.curves:
            names += [auc_name(curve, order) for order in self.orders]
            if "morf" in self.orders and "lerf" in self.orders:
                names.append(f"{curve}_gap")
        return names


def auc_name(curve: str, order: str) -> str:
    """``deletion_auc`` (MoRF), ``deletion_auc_lerf``, ``insertion_auc_random``, ..."""
    return f"{curve}_auc" if order == "morf" else f"{curve}_auc_{order}"


def morf_lerf_gap(curve: str, morf_area: float, lerf_area: float) -> float:
    """How much better the map's order does than its reverse (higher is better for both
    curves): ``lerf - morf`` for deletion (MoRF should fall faster), ``morf - lerf`` for
    insertion (MoRF should rise faster).

    >>> morf_lerf_gap("deletion", 0.25, 0.75), morf_lerf_gap("insertion", 0.5, 0.25)
    (0.5, 0.25)
    """
    return lerf_area - morf_area if curve == "deletion" else morf_area - lerf_area


SCORE_DIRECTION: dict[str, str] = {
    "deletion_auc": "lower",
    "insertion_auc": "higher",
    "deletion_auc_lerf": "higher",
    "insertion_auc_lerf": "lower",
    "deletion_auc_random": "none",
    "insertion_auc_random": "none",
    "deletion_gap": "higher",
    "insertion_gap": "higher",
}
"""Which way is better for each score (the random order is a control: no direction)."""
