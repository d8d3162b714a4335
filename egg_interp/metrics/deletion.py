"""Deletion and insertion curves (RISE, Petsiuk et al. 2018; ROAD, Rong et al. 2022).

Model-agnostic and pure: the caller supplies the model as a score function over keep masks
(True = the cell is kept / revealed) over the relevance grid's cells. This module orders the
cells (most relevant first, least relevant first, or a seeded random order), builds the
masks of every step, evaluates each distinct mask once (:func:`curves_from_batch`: one call
of ``score_batch`` for all curves, so a model can run them as batched forwards) and
integrates by the trapezoid rule over the changed fraction in [0, 1].
:class:`FaithfulnessSettings` holds every choice, recordable in a run's configuration. What
replaces a removed cell in an image is :mod:`egg_interp.metrics.substrates` (its functions
are re-exported here); the VLM wiring is :mod:`egg_interp.faithfulness`.

Conventions: grids and masks are ``(rows, cols)``, row-major.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, NamedTuple

import numpy as np

from egg_interp.errors import DegenerateMapError, InputError
from egg_interp.metrics.substrates import (  # noqa: F401 (re-exported)
    SUBSTRATES,
    apply_substrate,
    cell_labels,
    cells_to_pixels,
    noisy_linear_imputation,
    substrate_image,
)


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
    not ``4(n + 1)`` (on a grid without tied values: tied cells go in row-major order under
    both orders, so a grid with ties needs more, up to ``4n - 2``).

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
        insertion under MoRF keeps, step by step, what deletion under LeRF keeps (on a map
        without tied cells), so its curve is that one read backwards and their areas are
        equal; RISE deletes to a flat
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
    rows_per_forward : int, default 0
        Masked inputs per batched forward (speed and memory; never changes a score beyond
        rounding, so it is not hashed); 0: 8 on a CPU, 32 on other devices (measured on 2
        CPU cores with the LLaVA-1.5-shaped bench model: 32 masked inputs in chunks of 8 take
        0.75x the time of two 17-row forwards, in one chunk of 32 1.27x).
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
    rows_per_forward: int = 0

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
        for name, least in (
            ("steps", 1),
            ("road_side", 1),
            ("max_answer_tokens", 1),
            ("rows_per_forward", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(f"{name} must be an integer >= {least}, got {value!r}")
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

    def hashed(self) -> dict[str, Any]:
        """What a run's config records and hashes: :meth:`to_dict` less ``rows_per_forward``
        (memory only: batched rows score as single rows do, like a run's batch size)."""
        return {k: v for k, v in self.to_dict().items() if k != "rows_per_forward"}

    def substrate_of(self, curve: str) -> str:
        """The substrate a curve uses (:attr:`insertion_substrate` for insertion)."""
        return self.insertion_substrate if curve == "insertion" else self.substrate

    def score_names(self) -> list[str]:
        """The per-map scores :func:`egg_interp.faithfulness.faithfulness_scores` returns:
        ``<curve>_auc`` (MoRF), ``<curve>_auc_lerf``, ``<curve>_auc_random``, and
        ``<curve>_gap`` when both MoRF and LeRF are run: the order in which
        :mod:`egg_interp.metrics.registry` declares them, with their directions."""
        names = []
        for curve in self.curves:
            names += [auc_name(curve, order) for order in self.orders]
            if "morf" in self.orders and "lerf" in self.orders:
                names.append(f"{curve}_gap")
        return names


def auc_name(curve: str, order: str) -> str:
    """``deletion_auc`` (MoRF), ``deletion_auc_lerf``, ``insertion_auc_random``, ..."""
    return f"{curve}_auc" if order == "morf" else f"{curve}_auc_{order}"


def area_input(curve: str, order: str) -> str:
    """The map-score input holding the area of ``curve`` under ``order`` (what a run gives
    :func:`egg_interp.scoring.score_map`): ``deletion_morf``, ``insertion_random``, ...

    >>> area_input("deletion", "morf")
    'deletion_morf'
    """
    return f"{curve}_{order}"


def morf_lerf_gap(curve: str, morf_area: float, lerf_area: float) -> float:
    """How much better the map's order does than its reverse (higher is better for both
    curves): ``lerf - morf`` for deletion (MoRF should fall faster), ``morf - lerf`` for
    insertion (MoRF should rise faster).

    >>> morf_lerf_gap("deletion", 0.25, 0.75), morf_lerf_gap("insertion", 0.5, 0.25)
    (0.5, 0.25)
    """
    return lerf_area - morf_area if curve == "deletion" else morf_area - lerf_area
