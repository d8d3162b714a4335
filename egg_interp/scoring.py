"""Score one map or one answer of one sample: thin composition of :mod:`egg_interp.metrics`.

:func:`score_map` turns an :class:`~egg_interp.maps.AttributionMap` and the sample's evidence
boxes into the map scores declared in :mod:`egg_interp.metrics.registry`, a summary of the
map and its ranked regions; :func:`score_answer` scores an answer with the dataset's answer
score from the same registry. Both return plain JSON-able values (NaN = skipped; see each
score's NaN policy). :func:`reference_scores`
scores the reference pointers of :data:`POINTERS` (a centre point, a uniform-random map, a
random object of the scene, and whether a map's peak hits any object) beside a map;
:func:`crop_pointing_game` scores the top crop an answer pipeline chose.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from egg_interp.data.sample import Sample
from egg_interp.entropy import shannon_entropy, spatial_entropy
from egg_interp.errors import DegenerateMapError, InputError
from egg_interp.geometry import Box
from egg_interp.maps import AttributionMap
from egg_interp.metrics import box_hits, pointing_game
from egg_interp.metrics.localisation import boxes_to_mask
from egg_interp.metrics.registry import MAP_INPUTS, Score, get_score, scores
from egg_interp.regions import DEFAULT_SIGMA, find_regions

SIZE_BUCKETS = (("small", 0.005), ("medium", 0.05), ("large", math.inf))
"""Evidence-size buckets by the share of the image the evidence covers (upper bounds, strict)."""


def evidence_area_fraction(boxes: Sequence[Box], size: tuple[int, int]) -> float:
    """Share of the image's pixels covered by the union of the evidence boxes.

    Boxes are rasterised as the localisation metrics do (see
    :func:`egg_interp.metrics.localisation.boxes_to_mask`). NaN when there is no box.
    """
    if not boxes:
        return float("nan")
    w, h = size
    return float(boxes_to_mask(boxes, (h, w)).mean())


def size_bucket(fraction: float | None) -> str:
    """``"small"`` (< 0.5 %), ``"medium"`` (< 5 %), ``"large"``, or ``"none"`` (no evidence).

    >>> size_bucket(0.001), size_bucket(0.01), size_bucket(0.2), size_bucket(float("nan"))
    ('small', 'medium', 'large', 'none')
    """
    if fraction is None or not math.isfinite(fraction):
        return "none"
    return next(name for name, upper in SIZE_BUCKETS if fraction < upper)


def _filled(heat: np.ndarray) -> np.ndarray:
    """Pixels no token covers (NaN) get the lowest relevance: 0, or the minimum if negative."""
    finite = heat[np.isfinite(heat)]
    if finite.size == 0:
        return heat
    return np.where(np.isnan(heat), min(0.0, float(finite.min())), heat)


def _map_summary(amap: AttributionMap) -> dict[str, Any]:
    """Grid shape, views, min/max/mean/sum of the original image's primary grid."""
    grid = amap.images[0].primary.values
    finite = np.isfinite(grid).any()
    return {
        "grid_shape": list(grid.shape),
        "n_views": len(amap.images[0].views),
        "min": float(np.nanmin(grid)) if finite else float("nan"),
        "max": float(np.nanmax(grid)) if finite else float("nan"),
        "mean": float(np.nanmean(grid)) if finite else float("nan"),
        "sum": float(np.nansum(grid)),
        "degenerate": "",
    }


_FROM_THE_MAP = {"heat", "regions"}
"""Inputs of map scores that :func:`score_map` derives from the map itself."""


def _written_scores(given: Mapping[str, Any]) -> list[Score]:
    """The map scores of the registry whose inputs are all given or derived from the map."""
    available = set(given) | _FROM_THE_MAP
    return [s for s in scores("map") if available.issuperset(s.needs)]


def _compute(written: Sequence[Score], inputs: dict[str, Any]) -> dict[str, float]:
    """Each score on its inputs; NaN without calling it when it needs boxes and there are none."""
    no_boxes = not inputs["boxes"]
    return {
        s.name: math.nan if no_boxes and "boxes" in s.needs else s.compute(inputs) for s in written
    }


def _regions_json(regions: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"box": [float(v) for v in r.box], "score": float(r.score), "rank": int(r.rank)}
        for r in regions
    ]


def score_map(
    amap: AttributionMap,
    sample_boxes: Sequence[Box],
    tolerance: float = 15.0,
    top_k: int = 2,
    region_kwargs: dict[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Scores of the registry, a summary and the top regions of the original image's map.

    Parameters
    ----------
    amap : AttributionMap
        A map whose first image is the original (its ``heatmap()`` is on the original pixels).
    sample_boxes : sequence of (x0, y0, x1, y1)
        Evidence boxes in original-image pixels (may be empty: every score that needs them
        is then NaN).
    tolerance : float, default 15.0
        Pointing-game radius in original-image pixels (strict).
    top_k : int, default 2
        Regions kept (:func:`egg_interp.regions.find_regions`); ``all_boxes_covered`` asks
        whether they cover every evidence box.
    region_kwargs : dict, optional
        More arguments of ``find_regions``; its ``sigma`` also smooths the spatial entropy.
    inputs : mapping, optional
        More inputs of map scores (keys of :data:`egg_interp.metrics.registry.MAP_INPUTS`),
        for scores that need more than the map and the boxes (e.g. curves that cost forwards).

    Returns
    -------
    dict
        ``scores``: every map score of :data:`egg_interp.metrics.registry.SCORES` whose
        inputs are given, in declaration order (by default the localisation scores:
        ``pointing_game``, ``energy_pointing_game``, ``relevance_mass_accuracy``,
        ``relevance_rank_accuracy``, ``auc``, ``region_iou``, ``region_hit`` (IoU >= 0.5),
        ``any_box_hit`` and ``all_boxes_covered`` (top-k regions cover >= 50 % of every
        box)); ``map``: grid shape, min/max/mean/sum, spatial and Shannon entropy,
        ``degenerate`` (why the map cannot rank anything, else ``""``), ``nan_fraction``
        (pixels no token covers); ``regions``: list of ``{box, score, rank}``.

    Notes
    -----
    The heat map (the token grid bilinearly resized onto the pixels its tokens cover) has
    NaN where no token looks (e.g. LLaVA-1.5's centre crop); those pixels are filled with
    the map's lowest relevance (0 for non-negative maps) before scoring, so they can be
    neither the pointing-game maximum nor carry mass. A degenerate map (NaN or all zeros)
    scores NaN everywhere and has no regions.
    """
    unknown = sorted(set(inputs or {}) - set(MAP_INPUTS))
    if unknown:
        raise InputError(f"unknown map-score inputs {unknown}; valid: {sorted(MAP_INPUTS)}")
    summary = _map_summary(amap)
    given = {"boxes": list(sample_boxes), "tolerance": tolerance, "top_k": top_k, **(inputs or {})}
    written = _written_scores(given)
    try:
        amap.check()
    except DegenerateMapError as exc:
        summary.update(degenerate=str(exc), spatial_entropy=math.nan, shannon_entropy=math.nan)
        return {"scores": {s.name: math.nan for s in written}, "map": summary, "regions": []}
    view = amap.images[0].primary
    sigma = (region_kwargs or {}).get("sigma", DEFAULT_SIGMA)
    summary["spatial_entropy"] = spatial_entropy(view.values, sigma=sigma)
    summary["shannon_entropy"] = shannon_entropy(view.values)
    heat = amap.heatmap()
    summary["nan_fraction"] = float(np.isnan(heat).mean())
    regions = find_regions(
        view.values,
        view.cell_boxes,
        amap.images[0].image_size,
        top_k=top_k,
        **(region_kwargs or {}),
    )
    derived = {"heat": _filled(heat), "regions": [r.box for r in regions]}
    return {
        "scores": _compute(written, {**given, **derived}),
        "map": summary,
        "regions": _regions_json(regions),
    }


def score_answer(metric: str, prediction: str, sample: Sample) -> float:
    """Score one answer with a dataset's answer metric (see ``egg_interp.data.registry``).

    ``metric`` names an answer score of :mod:`egg_interp.metrics.registry`; ``"pope"`` is
    scored per question by ``yes_no`` (its mean is POPE accuracy; precision, recall and F1
    are computed over a dataset by the report). NaN when the sample has no answer.
    """
    name = "yes_no" if metric == "pope" else metric
    valid = [s.name for s in scores("answer")]
    if name not in valid:
        raise InputError(f"unknown answer metric {metric!r}; valid: {sorted(valid)}")
    inputs = {"prediction": prediction, "answers": sample.answers, "options": sample.options}
    return get_score(name).compute(inputs)


def crop_pointing_game(
    crops: Sequence[Sequence[float]], boxes: Sequence[Box], tolerance: float = 15.0
) -> float:
    """Pointing game of a pipeline's top crop: its centre within ``tolerance`` px of a box.

    ``crops`` as an answer line records them (original-image pixels, best first; the loop's
    kept crops). 1.0 or 0.0; NaN when there is no crop (the answer came from the original
    alone) or no evidence box.

    >>> crop_pointing_game([[0, 0, 20, 20]], [(20, 0, 30, 10)])  # centre 10 px from the box
    1.0
    >>> crop_pointing_game([[0, 0, 20, 20]], [(40, 0, 50, 10)])
    0.0
    >>> crop_pointing_game([], [(30, 0, 40, 10)])
    nan
    """
    if not crops:
        return math.nan
    x0, y0, x1, y1 = (float(v) for v in crops[0])
    return _point_hit(((x0 + x1) / 2, (y0 + y1) / 2), boxes, tolerance)


# ---------------------------------------------------------------- reference pointers

PointerFn = Callable[[Sample, np.ndarray, float, np.random.Generator], float]
"""``fn(sample, heat, tolerance, rng) -> hit``: 1.0, 0.0 or NaN (skipped), where ``heat`` is
the scored map on the original image's pixels (NaN filled) and ``rng`` is seeded by the
sample id and the run's seed."""

POINTERS: dict[str, PointerFn] = {}
"""Reference pointer name -> function; scored on every map line (``reference``)."""


def register_pointer(name: str) -> Callable[[PointerFn], PointerFn]:
    """Decorator adding a reference pointer to :data:`POINTERS` under ``name``."""

    def register(fn: PointerFn) -> PointerFn:
        POINTERS[name] = fn
        return fn

    return register


def _object_boxes(sample: Sample) -> list[Box]:
    """The boxes of every object of the scene (``meta["objects"]``; empty when not known)."""
    return [tuple(o["box"]) for o in sample.meta.get("objects", []) if "box" in o]


def _point_hit(point: tuple[float, float], boxes: Sequence[Box], tolerance: float) -> float:
    return float(box_hits(point, boxes, tolerance=tolerance).any()) if boxes else math.nan


@register_pointer("centre")
def centre_pointer(sample: Sample, heat: np.ndarray, tolerance: float, rng: Any) -> float:
    """The image centre as the point."""
    h, w = heat.shape
    return _point_hit((w / 2, h / 2), sample.boxes, tolerance)


@register_pointer("random")
def random_map_pointer(sample: Sample, heat: np.ndarray, tolerance: float, rng: Any) -> float:
    """The peak of a uniform-random map."""
    if not sample.boxes:
        return math.nan
    return pointing_game(rng.random(heat.shape), sample.boxes, tolerance)


@register_pointer("random_object")
def random_object_pointer(sample: Sample, heat: np.ndarray, tolerance: float, rng: Any) -> float:
    """The centre of an object of the scene drawn at random (the bar separating grounding from
    object saliency); NaN when the sample lists no objects."""
    objects = _object_boxes(sample)
    if not objects:
        return math.nan
    x0, y0, x1, y1 = objects[int(rng.integers(len(objects)))]
    return _point_hit(((x0 + x1) / 2, (y0 + y1) / 2), sample.boxes, tolerance)


@register_pointer("any_object")
def any_object_pointer(sample: Sample, heat: np.ndarray, tolerance: float, rng: Any) -> float:
    """Whether the *map's* peak hits some object of the scene (objects, not background)."""
    objects = _object_boxes(sample)
    return pointing_game(heat, objects, tolerance) if objects else math.nan


def reference_scores(
    sample: Sample, amap: AttributionMap, tolerance: float = 15.0, seed: int = 0
) -> dict[str, float]:
    """Pointing game of every reference pointer of :data:`POINTERS` on one sample.

    Each pointer gets its own generator, seeded by ``seed``, the sample id and its name, so
    a pointer's draws do not depend on which others are registered. NaN where the map is
    degenerate (for ``any_object``) or the sample lacks what a pointer needs.
    """
    heat = amap.heatmap()
    usable = np.isfinite(heat).any()
    heat = _filled(heat) if usable else np.zeros_like(heat)
    out = {}
    for name, fn in POINTERS.items():
        digest = hashlib.sha1(f"{seed}:{sample.id}:{name}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        out[name] = float(fn(sample, heat, tolerance, rng))
    if not usable:
        out["any_object"] = math.nan
    return out
