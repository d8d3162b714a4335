"""Summaries of the runner's result lines: one row per sample, figures with counts and CIs.

The one evaluation path is :func:`egg_interp.runner.evaluate` (lines in a JSONL file); what
the demo, the organism tests and ``analyses/`` report is derived here from those lines:

* :func:`current_records` keeps the lines of one run's configs (a results file may also hold
  lines of other options, weights or code versions);
* :func:`sample_rows` joins the map and answer lines of each sample into one flat row;
* :func:`figure_by` groups a row value and gives each group's mean, count and 95 % interval
  (:func:`egg_interp.metrics.intervals.interval`);
* :func:`pipeline_figures` gives one answer pipeline's accuracy, crop pointing game, loop
  steps and seconds per sample, each with its interval (e.g. one row of a table comparing
  runs of the same pipeline under different options);
* :func:`entropy_bins` bins a row value by the step-0 next-token entropy (quantile bins);
* :func:`step_values` reads one field of an answer line's step log (e.g. the loop's
  spatial entropy per step).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from egg_interp.data.sample import Sample
from egg_interp.io import read_number
from egg_interp.metrics.intervals import interval
from egg_interp.results import dedupe, is_error
from egg_interp.scoring import crop_pointing_game

Row = dict[str, Any]


def current_records(
    records: Iterable[Mapping[str, Any]],
    config_hashes: Mapping[tuple[str, str], str] | Iterable[str],
    sample_ids: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """The lines of the given configs (and samples), deduplicated, errors dropped.

    ``config_hashes`` is :attr:`egg_interp.runner.RunSummary.config_hashes` (or several
    runs' hashes as a plain iterable).
    """
    wanted = set(config_hashes.values() if isinstance(config_hashes, Mapping) else config_hashes)
    ids = set(sample_ids) if sample_ids is not None else None
    return [
        r
        for r in dedupe(records)
        if r["config_hash"] in wanted and not is_error(r) and (ids is None or r["sample_id"] in ids)
    ]


def _new_row(r: Mapping[str, Any]) -> Row:
    return {
        "id": r["sample_id"],
        "family": r.get("family"),
        "n_objects": None,
        "n_boxes": len(r.get("boxes") or []),
        "correct": {},
        "seconds": {},
        "crop_pointing": {},
        "answers": {},
        "pointing": {},
        "reference": {},
        "top2_cover_all": math.nan,
        "entropy": math.nan,
        "steps": math.nan,
    }


def _add_answer(row: Row, r: Mapping[str, Any], loop_pipeline: str, tolerance: float) -> None:
    """An answer line's score, seconds, crop pointing game and answer; the loop's steps and
    step-0 entropy when it is ``loop_pipeline``'s."""
    name = r["name"]
    row["correct"][name] = read_number(r.get("score"))
    row["seconds"][name] = read_number((r.get("timing") or {}).get("total"))
    row["crop_pointing"][name] = crop_pointing_game(
        r.get("crops") or [], r.get("boxes") or [], tolerance
    )
    row["answers"][name] = r.get("answer", "")
    if name == loop_pipeline:
        steps = r.get("steps") or []
        row["steps"] = float((r.get("info") or {}).get("n_steps", len(steps)))
        if steps and math.isnan(row["entropy"]):
            row["entropy"] = read_number(steps[0].get("next_token_entropy"))


def _add_map(row: Row, r: Mapping[str, Any], loop_method: str) -> None:
    """A map line's pointing game; the references, top-2 cover and the next-token entropy
    when it is ``loop_method``'s."""
    scores = r.get("scores") or {}
    row["pointing"][r["name"]] = read_number(scores.get("pointing_game"))
    if r["name"] != loop_method:
        return
    row["reference"] = {k: read_number(v) for k, v in (r.get("reference") or {}).items()}
    if row["n_boxes"] > 1:
        row["top2_cover_all"] = read_number(scores.get("all_boxes_covered"))
    entropy = read_number((r.get("meta") or {}).get("next_token_entropy"))
    if not math.isnan(entropy):
        row["entropy"] = entropy


def sample_rows(
    records: Iterable[Mapping[str, Any]],
    samples: Sequence[Sample] | None = None,
    loop_method: str = "egg",
    loop_pipeline: str = "egg",
    tolerance: float = 15.0,
) -> list[Row]:
    """One row per sample from its result lines (in the order of ``samples`` when given).

    Row fields: ``id``, ``family``, ``n_objects`` (``meta["n_objects"]`` of the sample, else
    None), ``n_boxes``; ``correct`` (pipeline -> answer score); ``seconds`` (pipeline ->
    ``timing.total`` of its line: with ``batch_size > 1`` the sample's share of its batch);
    ``crop_pointing`` (pipeline -> :func:`egg_interp.scoring.crop_pointing_game` of its top
    crop at ``tolerance`` px, NaN without crops); ``pointing`` (map method ->
    pointing game) and ``reference`` (pointer -> hit, from the ``loop_method`` map line);
    ``top2_cover_all`` (the ``loop_method`` map's top regions cover every box; NaN with
    fewer than two boxes); ``entropy`` (next-token entropy of the answer distribution on
    the original image: the ``loop_method`` map's, else step 0 of ``loop_pipeline``);
    ``steps`` (loop steps of ``loop_pipeline``); ``answers`` (pipeline -> answer). Numbers
    are read by :func:`egg_interp.io.read_number`.
    """
    by_id: dict[str, Row] = {}
    for r in records:
        row = by_id.setdefault(r["sample_id"], _new_row(r))
        if r["kind"] == "answer":
            _add_answer(row, r, loop_pipeline, tolerance)
        else:
            _add_map(row, r, loop_method)
    if samples is None:
        return list(by_id.values())
    rows = []
    for s in samples:
        if s.id in by_id:
            by_id[s.id]["n_objects"] = s.meta.get("n_objects")
            rows.append(by_id[s.id])
    return rows


def figure_by(
    rows: Iterable[Row], value: Callable[[Row], float], key: Callable[[Row], Any]
) -> dict[Any, dict[str, Any]]:
    """``{group: {"mean", "n", "ci95"}}`` of ``value(row)`` grouped by ``key(row)``.

    Rows whose value is NaN (or whose key is None) are left out of their group's count.
    """
    groups: dict[Any, list[float]] = defaultdict(list)
    for row in rows:
        k = key(row)
        if k is not None:
            groups[k].append(value(row))
    return {k: interval(v) for k, v in sorted(groups.items(), key=lambda kv: str(kv[0]))}


def pipeline_figures(rows: Iterable[Row], pipeline: str = "egg") -> dict[str, dict[str, Any]]:
    """One answer pipeline's figures over sample rows, each ``{"mean", "n", "ci95"}``.

    ``accuracy`` (mean answer score; Wilson for 0/1 scores), ``crop_pointing_game`` (over the
    samples with a crop and evidence), ``steps`` (mean loop steps, bootstrap) and ``seconds``
    (per sample, bootstrap). ``steps`` reads the rows' ``steps``, which are those of the
    ``loop_pipeline`` given to :func:`sample_rows`: build the rows with
    ``loop_pipeline=pipeline``. Rows without a line of ``pipeline`` are left out.
    """
    rows = [r for r in rows if pipeline in r["correct"]]
    return {
        "accuracy": interval([r["correct"][pipeline] for r in rows]),
        "crop_pointing_game": interval(
            [r["crop_pointing"].get(pipeline, math.nan) for r in rows], proportion=True
        ),
        "steps": interval([r["steps"] for r in rows], proportion=False),
        "seconds": interval([r["seconds"].get(pipeline, math.nan) for r in rows], proportion=False),
    }


def step_values(record: Mapping[str, Any], name: str = "spatial_entropy") -> list[float]:
    """Field ``name`` of every step of an answer line's step log, as floats.

    The line stores non-finite numbers as JSON allows (:func:`egg_interp.io.to_json`):
    ``null`` (NaN, e.g. a degenerate map) and ``"inf"`` (a spatial entropy without focus)
    come back as ``nan`` and ``inf`` (:func:`egg_interp.io.read_number`). No steps (a
    pipeline without a loop): ``[]``.

    >>> step_values({"steps": [{"spatial_entropy": 1.5}, {"spatial_entropy": None},
    ...                        {"spatial_entropy": "inf"}]})
    [1.5, nan, inf]
    """
    return [read_number(step.get(name)) for step in record.get("steps") or []]


def entropy_bins(
    rows: Sequence[Row], value: Callable[[Row], float], n_bins: int = 3
) -> list[dict[str, Any]]:
    """``value(row)`` in ``n_bins`` quantile bins of the rows' step-0 next-token entropy.

    Returns one dict per bin, lowest entropy first: ``range`` (``[lo, hi]`` in nats, hi
    inclusive for the last bin) and the bin's ``mean``, ``n``, ``ci95``. Rows without an
    entropy or a value are left out; no bins when none is left.
    """
    pairs = [(row["entropy"], value(row)) for row in rows]
    pairs = [(h, v) for h, v in pairs if not (math.isnan(h) or math.isnan(v))]
    if not pairs:
        return []
    h = np.array([p[0] for p in pairs])
    v = np.array([p[1] for p in pairs])
    edges = np.quantile(h, np.linspace(0, 1, n_bins + 1))
    out = []
    for i in range(n_bins):
        lo, hi = edges[i], edges[i + 1]
        inside = (h >= lo) & ((h <= hi) if i == n_bins - 1 else (h < hi))
        out.append({"range": [float(lo), float(hi)], **interval(v[inside])})
    return out


__all__ = [
    "current_records",
    "entropy_bins",
    "figure_by",
    "pipeline_figures",
    "sample_rows",
    "step_values",
]
