"""How alike two relevance maps are: the similarities and settings of the randomisation checks.

Adebayo et al. (2018) compare a method's map on the trained model with its map after the
weights are randomised by Spearman rank correlation (with and without absolute values), SSIM
and others; quantus' ``MPRT`` uses the same functions on flattened maps. All functions take two
grids of one shape, ``(rows, cols)``, and return a float; NaN when either map is constant (a
rank correlation is undefined) or holds NaN/inf.

>>> a = np.array([[0.0, 1.0], [2.0, 3.0]])
>>> round(spearman(a, a[::-1]), 6), spearman(a, -a), topk_intersection(a, a, k=2)
(-0.6, -1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from egg_interp.errors import InputError
from egg_interp.metrics.intervals import interval

SIMILARITIES = ("spearman", "spearman_abs", "ssim", "topk")
"""The similarities :func:`map_similarities` returns."""


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise InputError(f"maps must be (rows, cols) grids of one shape, got {a.shape}, {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    return a, b


def spearman(a: np.ndarray, b: np.ndarray, absolute: bool = False) -> float:
    """Spearman rank correlation of the cells' values (of ``|a|``, ``|b|`` with ``absolute``).

    Ties take their mean rank; NaN when either map is constant.
    """
    pair = _pair(a, b)
    if pair is None:
        return math.nan
    a, b = (np.abs(x) for x in pair) if absolute else pair
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of the two maps, each min-max normalised to [0, 1] first (as the
    sanity-checks paper normalises before comparing), by ``skimage.metrics.structural_similarity``
    with ``data_range=1`` and the largest odd window up to 7 that fits the grid.

    NaN when either map is constant or the grid is smaller than 3 x 3.
    """
    pair = _pair(a, b)
    if pair is None:
        return math.nan
    if np.ptp(pair[0]) == 0 or np.ptp(pair[1]) == 0:
        return math.nan
    a, b = ((x - x.min()) / np.ptp(x) for x in pair)
    win = min(7, *a.shape)
    win -= 1 - win % 2  # odd
    if win < 3:
        return math.nan
    return float(structural_similarity(a, b, win_size=win, data_range=1.0))


def topk_intersection(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Share of ``a``'s ``k`` highest cells that are among ``b``'s ``k`` highest.

    Each map's top ``k`` is taken in decreasing order with ties in row-major order (the
    deletion curves' order).
    """
    pair = _pair(a, b)
    if pair is None:
        return math.nan
    a, b = pair
    if not 1 <= k <= a.size:
        raise InputError(f"k must be in 1..{a.size}, got {k}")
    top_a = np.argsort(-a.ravel(), kind="stable")[:k]
    top_b = np.argsort(-b.ravel(), kind="stable")[:k]
    return len(set(top_a.tolist()) & set(top_b.tolist())) / k


def top_count(n_cells: int, fraction: float) -> int:
    """``k`` for a share of the cells: ``ceil(fraction * n_cells)``, at least 1.

    >>> top_count(64, 0.1)
    7
    """
    return max(1, min(n_cells, math.ceil(fraction * n_cells - 1e-9)))


def map_similarities(a: np.ndarray, b: np.ndarray, top_fraction: float = 0.1) -> dict[str, float]:
    """Every similarity of :data:`SIMILARITIES` between two grids of one shape.

    ``topk`` uses ``k = top_count(cells, top_fraction)``.
    """
    k = top_count(int(np.size(a)), top_fraction)
    return {
        "spearman": spearman(a, b),
        "spearman_abs": spearman(a, b, absolute=True),
        "ssim": ssim(a, b),
        "topk": topk_intersection(a, b, k),
    }


ORDERS = ("cascading", "bottom_up", "independent")
"""Randomisation orders: cascading from the top of the language model down (then the
projector, then the vision tower), cascading from the bottom up, one block at a time."""
GRANULARITIES = ("layers", "parts")
"""Blocks: every layer (plus each part's embeddings and head), or the three parts whole."""


@dataclass(frozen=True)
class SanitySettings:
    """Every choice of a randomisation sanity check, checked when built (no torch).

    Attributes
    ----------
    orders : tuple of {"cascading", "bottom_up", "independent"}
    granularity : {"layers", "parts"}
        ``"layers"``: one block per layer of the vision tower and the language model, plus
        each part's embeddings (``pre``) and final norm or head (``post``) and the projector;
        ``"parts"``: vision tower, projector, language model.
    seed : int
        Block ``i`` is re-initialised under ``torch.manual_seed(seed + i)`` (its index in
        data-flow order, whatever the order), so the three orders draw the same weights.
    top_fraction : float, default 0.1
        ``topk`` compares each map's top ``ceil(top_fraction * cells)`` cells.
    random_answer : bool
        Also map a random other answer token (methods whose target names an answer).
    noise_control : bool
        Add ``noise``: a map of fresh uniform noise at every call, which a naive check passes
        (it changes under randomisation) and :func:`passes` must fail (it is not reproducible).
    reproducible_min, changed_max : float
        The pass rule (:func:`passes`): Spearman of a map with itself recomputed on the
        trained model at least ``reproducible_min``, and the upper end of the 95 % interval of
        the Spearman at full randomisation at most ``changed_max``. The paper sets no
        threshold; these are this toolkit's, stated in every report.
    """

    orders: tuple[str, ...] = ORDERS
    granularity: str = "layers"
    seed: int = 0
    top_fraction: float = 0.1
    random_answer: bool = True
    noise_control: bool = True
    reproducible_min: float = 0.9
    changed_max: float = 0.5

    def __post_init__(self) -> None:
        orders = tuple(self.orders)
        if not orders or any(o not in ORDERS for o in orders) or len(set(orders)) < len(orders):
            raise InputError(f"orders must be distinct names of {ORDERS}, got {orders!r}")
        object.__setattr__(self, "orders", orders)
        if self.granularity not in GRANULARITIES:
            raise InputError(
                f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}"
            )
        if not 0 < self.top_fraction <= 1:
            raise InputError(f"top_fraction must be in (0, 1], got {self.top_fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError(f"seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def summarise(per_sample: Sequence[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Each similarity over samples as ``{"mean", "n", "ci95"}`` (bootstrap; NaN skipped).

    >>> summarise([{"spearman": 0.5}, {"spearman": 0.7}])["spearman"]["mean"]
    0.6
    """
    names = [n for n in SIMILARITIES if any(n in row for row in per_sample)]
    return {
        n: interval([row.get(n, math.nan) for row in per_sample], proportion=False) for n in names
    }


def passes(rerun: dict[str, Any], full: dict[str, Any], settings: SanitySettings) -> bool:
    """The pass rule of :class:`SanitySettings`: reproducible on the trained model, and
    changed once every block is randomised (``rerun`` and ``full`` as :func:`summarise`
    gives them).

    >>> ok = {"spearman": {"mean": 1.0, "ci95": [1.0, 1.0]}}
    >>> passes(ok, {"spearman": {"mean": 0.1, "ci95": [0.0, 0.2]}}, SanitySettings())
    True
    >>> passes(ok, {"spearman": {"mean": 0.8, "ci95": [0.7, 0.9]}}, SanitySettings())
    False
    """
    again, after = rerun["spearman"]["mean"], full["spearman"]["ci95"][1]
    if not (math.isfinite(again) and math.isfinite(after)):
        return False
    return again >= settings.reproducible_min and after <= settings.changed_max


__all__ = [
    "GRANULARITIES",
    "ORDERS",
    "SIMILARITIES",
    "SanitySettings",
    "passes",
    "summarise",
    "map_similarities",
    "spearman",
    "ssim",
    "top_count",
    "topk_intersection",
]
