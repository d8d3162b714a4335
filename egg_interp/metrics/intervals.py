"""Confidence intervals of the figures a summary reports: one helper, :func:`interval`.

Every figure of ``summary.json`` comes with its sample count and a 95 % interval:

* a **proportion** (values all 0 or 1: accuracy, pointing-game hits) gets the Wilson score
  interval (Wilson 1927), which stays inside [0, 1] and is sensible at 0 or n hits;
* any other **mean** (or a statistic of several paired arrays, e.g. a ratio of means) gets a
  percentile bootstrap over the samples (:func:`bootstrap_interval`, seeded: deterministic).

NaN policy: NaN values are dropped and not counted; with no value left the figure and both
bounds are NaN and ``n`` is 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Z95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95 % interval."""


def wilson_interval(hits: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``hits / n``.

    >>> lo, hi = wilson_interval(8, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.4902, 0.9433)
    >>> wilson_interval(0, 0)
    (nan, nan)
    """
    if n <= 0:
        return (math.nan, math.nan)
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_interval(
    statistic: Callable[..., float],
    *arrays: Sequence[float],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling samples (rows).

    The arrays are paired (same length, one entry per sample); each resample draws the same
    rows from all of them. Resamples whose statistic is not finite are dropped.
    """
    cols = [np.asarray(a, dtype=float) for a in arrays]
    n = len(cols[0]) if cols else 0
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    stats = np.array([statistic(*(c[i] for c in cols)) for i in idx], dtype=float)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return (math.nan, math.nan)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return (float(lo), float(hi))


def interval(values: Sequence[float], proportion: bool | None = None) -> dict[str, Any]:
    """A figure as ``{"mean", "n", "ci95": [lo, hi]}``: Wilson for 0/1 values, else bootstrap.

    ``proportion``: ``None`` (default) decides by the values (all 0 or 1: Wilson); ``False``
    always bootstraps the mean, for counts or durations that may happen to be all 0 or 1
    (e.g. the loop's steps under ``fixed:1``); ``True`` always takes Wilson (the values must
    be 0 or 1).

    >>> interval([1, 1, 0, 1, float("nan")])["n"]
    4
    >>> interval([])
    {'mean': nan, 'n': 0, 'ci95': [nan, nan]}
    >>> interval([1, 1, 1], proportion=False)["ci95"]
    [1.0, 1.0]
    """
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[~np.isnan(arr)]
    n = int(arr.size)
    if n == 0:
        return {"mean": math.nan, "n": 0, "ci95": [math.nan, math.nan]}
    mean = float(arr.mean())
    binary = bool(np.isin(arr, (0.0, 1.0)).all())
    if proportion and not binary:
        raise ValueError("a proportion's values are 0 or 1")
    wilson = binary if proportion is None else proportion
    if wilson:
        lo, hi = wilson_interval(float(arr.sum()), n)
    else:
        lo, hi = bootstrap_interval(np.mean, arr)
    return {"mean": mean, "n": n, "ci95": [lo, hi]}


__all__ = ["Z95", "bootstrap_interval", "interval", "wilson_interval"]
