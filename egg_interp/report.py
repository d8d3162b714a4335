"""Summaries of a results file: tables (markdown + CSV), derived from the JSONL only.

Everything here reads the lines :func:`egg_interp.runner.evaluate` wrote and recomputes the
summaries from them, so the JSONL stays the one source of truth and a report can be redone
at any time (figures: :mod:`egg_interp.figures.bars`, comparison grids:
:func:`egg_interp.compare.comparison_grids`). :func:`write_report` is what
``egg-interp report`` runs.

Aggregation rules
-----------------
* A score that is NaN (``null`` in the file; e.g. a sample without evidence boxes, or a
  degenerate map) is skipped, never counted as a miss; tables give ``n`` (lines) and
  ``n_scored`` (lines with a score). Lines recording an error count in ``errors`` only.
* ``all_boxes_covered`` is averaged over multi-evidence samples (two boxes or more) only.
* Rows are labelled by method/pipeline name; when a file holds several configs for the same
  name (e.g. two stopping rules), the label gets the config hash: ``egg@1a2b3c``.
* Answer accuracy is the mean per-question score of the dataset's metric, in percent;
  POPE gets its own table (precision, recall, F1, yes-ratio over the dataset, an unparseable
  answer counted as wrong and never as a yes).
* Which scores a table shows, in which order, in percent or not, and which way is better
  come from :mod:`egg_interp.metrics.registry`: the localisation table shows the map scores
  of the group ``"localisation"``, the faithfulness table (written only when the lines hold
  such scores) those of ``"faithfulness"``, each as a mean with its 95 % interval
  (:func:`egg_interp.metrics.intervals.interval`) and its direction arrow.
* Method labels name the map's target when it is not the method's default
  (:func:`egg_interp.titles.method_label`, e.g. ``saliency[entropy]``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from egg_interp.errors import InputError
from egg_interp.figures.bars import scores_held
from egg_interp.io import atomic_path, read_number
from egg_interp.metrics import pope_scores
from egg_interp.metrics.intervals import interval
from egg_interp.metrics.registry import Kind, Score, scores
from egg_interp.results import load_results
from egg_interp.titles import (  # noqa: F401  (re-exported: names used by tables)
    BUCKETS,
    DATASET_TITLES,
    PAPER_DATASETS,
    PIPELINE_ORDER,
    PIPELINE_TITLES,
    dataset_order,
    label_name,
    method_label,
    method_order,
    pipeline_order,
)


class Table(NamedTuple):
    """One table of a report: ``data`` goes to the CSV file, ``shown`` to markdown and HTML.

    ``percent``: columns of ``shown`` displayed times 100; ``digits``: decimals shown;
    ``headers``: column of ``shown`` -> its header where it differs (a score's label and
    direction arrow: :attr:`egg_interp.metrics.registry.Score.header`); ``arrows``: column ->
    its score's direction arrow, for the columns of declared scores whose header is their
    name (the explorer's HTML tables show them; the markdown tables keep plain names).
    """

    data: pd.DataFrame
    shown: pd.DataFrame
    percent: Sequence[str] = ()
    digits: int = 1
    headers: Mapping[str, str] = {}
    arrows: Mapping[str, str] = {}


# ---------------------------------------------------------------- loading


def _labels(df: pd.DataFrame) -> pd.Series:
    """A line's label: the method's (:func:`~egg_interp.titles.method_label`: the name, with
    the target when not the method's default) or the pipeline's name, then ``@hash6`` where
    one (model, dataset, kind, label) has several configs."""
    if df.empty:
        return pd.Series(dtype=str)
    base = pd.Series(
        [
            method_label(n, t) if k == "map" else n
            for k, n, t in zip(df["kind"], df["name"], df["target"])
        ],
        index=df.index,
        dtype=str,
    )
    keys = [df["model"], df["dataset"], df["kind"], base]
    n_cfg = df.groupby(keys)["config_hash"].transform("nunique")
    return base.where(n_cfg <= 1, base + "@" + df["config_hash"].str[:6])


def _common_row(r: Mapping[str, Any]) -> dict[str, Any]:
    """The columns that map and answer rows share."""
    return {
        "model": str(r.get("model", "")),
        "dataset": str(r.get("dataset", "")),
        "split": str(r.get("split", "")),
        "kind": r["kind"],
        "name": r["name"],
        "target": str(r.get("target") or ""),
        "config_hash": r["config_hash"],
        "sample_id": r["sample_id"],
        "index": r.get("index", -1),
        "family": r.get("family") or "",
        "size_bucket": r.get("size_bucket") or "none",
        "evidence_area": read_number(r.get("evidence_area")),
        "n_boxes": len(r.get("boxes") or []),
        "box_source": r.get("box_source") or "none",
        "error": r.get("error") or "",
        "seconds": read_number((r.get("timing") or {}).get("total")),
    }


def _map_seconds(r: Mapping[str, Any]) -> dict[str, float]:
    """A map line's ``seconds`` less its faithfulness curves' (the map's own cost, as in a run
    without them), and those in ``faithfulness_seconds`` (NaN when not measured)."""
    timing = r.get("timing") or {}
    total = read_number(timing.get("total"))
    curves = timing.get("faithfulness")
    spent = read_number(curves.get("seconds")) if isinstance(curves, Mapping) else math.nan
    if math.isnan(spent):
        return {"seconds": total, "faithfulness_seconds": math.nan}
    return {"seconds": total - spent, "faithfulness_seconds": spent}


def _answer_columns(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "score": read_number(r.get("score")),
        "answer": r.get("answer") or "",
        "answers": list(r.get("answers") or []),
        "metric": r.get("metric") or "",
        "n_crops": len(r.get("crops") or []),
        "n_steps": len(r.get("steps") or []),
    }


def _frame(rows: list[dict[str, Any]], extra: Sequence[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        base = ["model", "dataset", "kind", "name", "target", "config_hash"]
        df = pd.DataFrame(columns=[*base, *extra])
    df["label"] = _labels(df)
    return df


def load_frames(paths: str | Path | Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read results files into two tables, one row per line: ``(maps, answers)``.

    Columns common to both: ``model, dataset, split, kind, name, target, label,
    config_hash, sample_id, index, family, size_bucket, evidence_area, n_boxes, box_source,
    error, seconds``; maps add one column per map score of the registry
    (:func:`egg_interp.metrics.registry.scores`, NaN where a line lacks it) and
    ``faithfulness_seconds`` (their ``seconds`` leave those out); answers add
    ``score, answer, answers, metric, n_crops, n_steps``. Numbers are read by
    :func:`egg_interp.io.read_number`.
    """
    map_scores = [s.name for s in scores("map")]
    maps, answers = [], []
    for r in load_results(paths):
        row = _common_row(r)
        if r["kind"] == "map":
            line_scores = r.get("scores") or {}
            row.update({s: read_number(line_scores.get(s)) for s in map_scores})
            row.update(_map_seconds(r))
            maps.append(row)
        elif r["kind"] == "answer":
            row.update(_answer_columns(r))
            answers.append(row)
    return _frame(maps, map_scores), _frame(answers, ["score", "answer", "metric"])


# ---------------------------------------------------------------- tables


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if values.notna().any() else math.nan


def pointing_game_table(maps: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, dataset, method): localisation scores as fractions in [0, 1].

    Columns: ``n`` (lines), ``errors``, ``n_scored`` (pointing game not NaN), the mean of each
    map score of the registry's ``"localisation"`` group, in declaration order, over the
    samples where it is defined (a score with ``min_boxes`` 2, ``all_boxes_covered``, over
    multi-evidence samples only, counted in ``n_multi``), and mean ``seconds``.
    """
    declared = scores("map", "localisation")
    cols = ["model", "dataset", "method", "n", "errors", "n_scored"]
    cols += [*(s.name for s in declared), "n_multi", "seconds"]
    if maps.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (model, dataset, label), g in maps.groupby(["model", "dataset", "label"], sort=False):
        ok = g[g["error"] == ""]
        row = {
            "model": model,
            "dataset": dataset,
            "method": label,
            "n": len(g),
            "errors": int((g["error"] != "").sum()),
            "n_scored": int(ok["pointing_game"].notna().sum()),
        }
        for s in declared:
            row[s.name] = _mean(ok.loc[ok["n_boxes"] >= s.min_boxes, s.name])
        row["n_multi"] = int((ok["n_boxes"] >= 2).sum())
        row["seconds"] = float(ok["seconds"].mean()) if len(ok) else math.nan
        rows.append(row)
    return _sorted(pd.DataFrame(rows, columns=cols))


def _sorted(out: pd.DataFrame) -> pd.DataFrame:
    """Rows by model, dataset (paper order) and method."""
    order = {d: i for i, d in enumerate(dataset_order(out["dataset"]))}
    return out.sort_values(
        ["model", "dataset", "method"], key=lambda c: c.map(order) if c.name == "dataset" else c
    ).reset_index(drop=True)


FAITHFULNESS_HEAD = ("model", "dataset", "method", "target", "n", "errors", "n_scored")
"""The faithfulness table's columns before its scores."""


def _target(lines: pd.DataFrame) -> str:
    """The target a group of map lines explains (``"none"`` for maps without one)."""
    targets = sorted({t or "none" for t in lines["target"]})
    return ", ".join(targets) if targets else "none"


def faithfulness_table(maps: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, dataset, method): each faithfulness score's mean and 95 % interval.

    Columns: ``target`` (what the maps explain: ``entropy``, ``answer_logprob``, ``none`` for
    attention maps), ``n`` (lines), ``errors``, ``n_scored`` (lines with a faithfulness
    score), then for each faithfulness score some line holds, in declaration order, ``<name>`` (mean
    over the lines where it is defined), ``<name>_lo`` and ``<name>_hi`` (its 95 % interval:
    :func:`egg_interp.metrics.intervals.interval`, a seeded bootstrap of the mean), and
    ``seconds``, the curves' mean cost per map (the localisation table's ``seconds`` leave it
    out). Empty when no line holds such a score.
    """
    declared = scores_held(maps, "faithfulness")
    if not declared:
        return pd.DataFrame(columns=[*FAITHFULNESS_HEAD])
    names = [s.name for s in declared]
    rows = []
    for (model, dataset, label), g in maps.groupby(["model", "dataset", "label"], sort=False):
        ok = g[g["error"] == ""]
        row = {"model": model, "dataset": dataset, "method": label, "target": _target(g)}
        row["n"] = len(g)
        row["errors"] = int((g["error"] != "").sum())
        row["n_scored"] = int(ok[names].notna().any(axis=1).sum())
        for name in names:
            figure = interval(ok[name].tolist(), proportion=False)
            row[name] = figure["mean"]
            row[f"{name}_lo"], row[f"{name}_hi"] = figure["ci95"]
        row["seconds"] = _mean(ok["faithfulness_seconds"])
        rows.append(row)
    return _sorted(pd.DataFrame(rows))


def faithfulness_shown(table: pd.DataFrame) -> Table:
    """The faithfulness table as shown: one cell per score, ``mean [lo, hi]``, headed by the
    score's label and direction arrow (``deletion AUC ↓``); the CSV keeps the numbers."""
    declared = [s for s in scores("map", "faithfulness") if s.name in table]
    shown = table[[*FAITHFULNESS_HEAD]].copy()
    for s in declared:
        scale = 100 if s.percent else 1
        shown[s.name] = [
            _with_interval(scale * m, scale * lo, scale * hi)
            for m, lo, hi in zip(table[s.name], table[f"{s.name}_lo"], table[f"{s.name}_hi"])
        ]
    if "seconds" in table:
        shown["seconds"] = table["seconds"]
    return Table(table, shown, headers={s.name: s.header for s in declared})


def _with_interval(mean: float, lo: float, hi: float) -> str:
    """``"0.231 [0.198, 0.262]"``; ``"-"`` without a mean.

    Rounding noise around zero (a Wilson bound of 3e-16) reads as 0.

    >>> _with_interval(0.2314, 0.19812, 0.2625), _with_interval(float("nan"), 0, 1)
    ('0.231 [0.198, 0.263]', '-')
    >>> _with_interval(0.0, 3.47e-16, 4.14)
    '0 [0, 4.14]'
    """
    if not math.isfinite(mean):
        return "-"
    mean, lo, hi = (round(v, 12) + 0.0 for v in (mean, lo, hi))
    return f"{mean:.3g} [{lo:.3g}, {hi:.3g}]"


TARGET_ABLATION = ("egg", "saliency")
"""The paper's target ablation: EGG's map (the gradient of the next-token entropy at the visual
token embeddings) against ``saliency``'s (captum's gradient at the same embeddings) of its own
target, the log-probability of the model's answer: everything but the target is equal."""


def _paired(a: pd.DataFrame, b: pd.DataFrame, score: Score) -> tuple[pd.Series, pd.Series]:
    """``score`` of the samples both groups scored (with enough evidence boxes), aligned."""
    cols = ["sample_id", score.name]
    a = a.loc[a["n_boxes"] >= score.min_boxes, cols].drop_duplicates("sample_id")
    both = a.merge(b[cols].drop_duplicates("sample_id"), on="sample_id", suffixes=("_a", "_b"))
    both = both.dropna()
    return both[f"{score.name}_a"], both[f"{score.name}_b"]


def _ablation_rows(a: pd.DataFrame, b: pd.DataFrame, declared: Sequence[Score]) -> list[dict]:
    """One row per score some sample has from both groups: both groups' means and 95 %
    intervals over those samples, and the paired difference ``b - a`` (bootstrap)."""
    rows = []
    for score in declared:
        va, vb = _paired(a, b, score)
        if va.empty:  # no sample both scored (e.g. a score the run did not measure)
            continue
        row: dict[str, Any] = {"score": score.name, "n_paired": len(va)}
        for key, values in (("a", va), ("b", vb), ("b_minus_a", vb.to_numpy() - va.to_numpy())):
            figure = interval(list(values), proportion=None if key != "b_minus_a" else False)
            row[key], (row[f"{key}_lo"], row[f"{key}_hi"]) = figure["mean"], figure["ci95"]
        rows.append(row)
    return rows


def target_ablation_table(maps: pd.DataFrame) -> pd.DataFrame:
    """EGG against saliency with its own target (:data:`TARGET_ABLATION`), paired per sample.

    For each (model, dataset) whose lines hold both methods with different targets (a
    ``saliency[entropy]`` line, EGG's own target, is no ablation and is left out): one row per
    localisation score and per faithfulness score the lines hold, with ``a`` (EGG) and ``b``
    (saliency) means over the samples both scored, ``*_lo``/``*_hi`` their 95 % intervals
    (:func:`egg_interp.metrics.intervals.interval`: Wilson for hit rates, a bootstrap
    otherwise) and ``b_minus_a``, the paired difference's mean and bootstrap interval. Also
    ``a_label``, ``a_target``, ``b_label``, ``b_target`` and ``n_paired``. Empty without
    such a pair.
    """
    first, second = TARGET_ABLATION
    declared = [*scores("map", "localisation"), *scores_held(maps, "faithfulness")]
    ok = maps[maps["error"] == ""] if not maps.empty else maps
    rows = []
    for (model, dataset), g in ok.groupby(["model", "dataset"], sort=False):
        for la in method_order(x for x in g["label"] if label_name(x) == first):
            for lb in method_order(x for x in g["label"] if label_name(x) == second):
                a, b = g[g["label"] == la], g[g["label"] == lb]
                ta, tb = _target(a), _target(b)
                if ta == tb:
                    continue
                head = {"model": model, "dataset": dataset, "a_label": la, "a_target": ta}
                head |= {"b_label": lb, "b_target": tb}
                rows += [{**head, **r} for r in _ablation_rows(a, b, declared)]
    return pd.DataFrame(rows)


def target_ablation_shown(table: pd.DataFrame) -> Table:
    """The ablation as shown: per score (its label and arrow) ``mean [lo, hi]`` of both maps
    and of their difference, headed by each map's label and target."""
    if table.empty:
        return Table(table, table)
    declared = {s.name: s for s in scores("map")}
    pairs = table[["a_label", "a_target", "b_label", "b_target"]].drop_duplicates()
    one = len(pairs) == 1
    shown = table[["model", "dataset"]].copy()
    if not one:
        shown["maps"] = [f"{a} vs {b}" for a, b in zip(table["a_label"], table["b_label"])]
    shown["score"] = [declared[n].header for n in table["score"]]
    for key in ("a", "b", "b_minus_a"):
        scale = [100 if declared[n].percent else 1 for n in table["score"]]
        shown[key] = [
            _with_interval(k * m, k * lo, k * hi)
            for k, m, lo, hi in zip(scale, table[key], table[f"{key}_lo"], table[f"{key}_hi"])
        ]
    shown["n_paired"] = table["n_paired"]
    a, ta, b, tb = pairs.iloc[0] if one else ("A", "", "B", "")
    headers = {
        "a": f"{a} ({ta})" if one else "A",
        "b": f"{b} ({tb})" if one else "B",
        "b_minus_a": f"{b} - {a}" if one else "B - A",
    }
    return Table(table, shown, headers=headers)


def accuracy_long(answers: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, dataset, pipeline): ``n``, ``errors``, ``n_scored``, ``accuracy``
    (mean score, fraction) and ``delta_vs_base`` (accuracy minus the ``base`` pipeline's)."""
    cols = ["model", "dataset", "pipeline", "n", "errors", "n_scored", "accuracy", "delta_vs_base"]
    if answers.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (model, dataset, label), g in answers.groupby(["model", "dataset", "label"], sort=False):
        ok = g[g["error"] == ""]
        rows.append(
            {
                "model": model,
                "dataset": dataset,
                "pipeline": label,
                "n": len(g),
                "errors": int((g["error"] != "").sum()),
                "n_scored": int(ok["score"].notna().sum()),
                "accuracy": float(ok["score"].mean()) if ok["score"].notna().any() else math.nan,
            }
        )
    out = pd.DataFrame(rows)
    base = out[out["pipeline"] == "base"].set_index(["model", "dataset"])["accuracy"]
    out["delta_vs_base"] = [
        acc - base.get((m, d), math.nan)
        for m, d, acc in zip(out["model"], out["dataset"], out["accuracy"])
    ]
    return out[cols]


def accuracy_table(answers: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 layout: rows (model, pipeline), one column per dataset, in percent.

    Cells are strings: ``"52.78"`` for ``base``, ``"52.78 (+6.56)"`` (change vs base) for the
    other pipelines, ``"-"`` where there is nothing.
    """
    long = accuracy_long(answers)
    if long.empty:
        return pd.DataFrame(columns=["model", "pipeline"])
    datasets = dataset_order(long["dataset"])
    rows = []
    for model in sorted(long["model"].unique()):
        sub = long[long["model"] == model]
        for label in pipeline_order(sub["pipeline"]):
            name = label.split("@")[0]
            title = PIPELINE_TITLES.get(name, f"+{name}") + label[len(name) :]
            row = {"model": model, "pipeline": title}
            for d in datasets:
                hit = sub[(sub["pipeline"] == label) & (sub["dataset"] == d)]
                row[DATASET_TITLES.get(d, d)] = _cell(hit)
            rows.append(row)
    return pd.DataFrame(rows)


def _cell(hit: pd.DataFrame) -> str:
    if hit.empty or not np.isfinite(hit["accuracy"].iloc[0]):
        return "-"
    acc, delta = 100 * hit["accuracy"].iloc[0], 100 * hit["delta_vs_base"].iloc[0]
    if hit["pipeline"].iloc[0] == "base" or not np.isfinite(delta):
        return f"{acc:.2f}"
    return f"{acc:.2f} ({delta:+.2f})"


def pope_table(answers: pd.DataFrame) -> pd.DataFrame:
    """POPE's figures per (model, dataset, pipeline) for the datasets scored with ``"pope"``.

    Columns: the registry's ``"pope"`` figures (``accuracy``, ``precision``, ``recall``,
    ``f1``, ``yes_ratio``: each name without its ``pope_`` prefix), then ``n_unparsed``
    and ``n``; questions whose label is not yes or no are left out.
    """
    figures = scores("dataset", "pope")
    columns = [s.name.removeprefix("pope_") for s in figures]
    cols = ["model", "dataset", "pipeline", *columns, "n_unparsed", "n"]
    if answers.empty:
        return pd.DataFrame(columns=cols)
    pope = answers[(answers["metric"] == "pope") & (answers["error"] == "")]
    rows = []
    for (model, dataset, label), g in pope.groupby(["model", "dataset", "label"], sort=False):
        labels = [a[0] if a else "" for a in g["answers"]]
        keep = [lab.strip().lower() in ("yes", "no") for lab in labels]
        inputs = {
            "predictions": [p for p, k in zip(g["answer"], keep) if k],
            "labels": [lab for lab, k in zip(labels, keep) if k],
        }
        row = {"model": model, "dataset": dataset, "pipeline": label}
        row.update({col: s.compute(inputs) for col, s in zip(columns, figures)})
        counts = pope_scores(inputs["predictions"], inputs["labels"])
        row.update(n_unparsed=counts["n_unparsed"], n=counts["n"])
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def bucket_table(frame: pd.DataFrame, value: str, by: str = "size_bucket") -> pd.DataFrame:
    """Mean of ``value`` per (model, dataset, label) and ``by`` level: ``<level>`` and
    ``n_<level>`` columns (samples with a defined value), levels in their natural order."""
    if frame.empty:
        return pd.DataFrame(columns=["model", "dataset", "name"])
    ok = frame[(frame["error"] == "") & frame[value].notna()]
    levels = list(BUCKETS) if by == "size_bucket" else sorted(set(ok[by]) - {""})
    rows = []
    for (model, dataset, label), g in ok.groupby(["model", "dataset", "label"], sort=False):
        row: dict[str, Any] = {"model": model, "dataset": dataset, "name": label}
        for level in levels:
            values = g.loc[g[by] == level, value]
            row[level] = float(values.mean()) if len(values) else math.nan
            row[f"n_{level}"] = len(values)
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- writing


def to_markdown(
    df: pd.DataFrame,
    percent: Sequence[str] = (),
    digits: int = 1,
    headers: Mapping[str, str] | None = None,
) -> str:
    """A GitHub markdown table; ``percent`` columns are shown times 100, NaN as ``-``;
    ``headers`` renames columns in the header row (e.g. a score's label and arrow)."""
    if df.empty:
        return "_(no rows)_\n"

    def fmt(col: str, v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            if not np.isfinite(v):
                return "-"
            if col in percent:
                return f"{100 * v:.{digits}f}"
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v).replace("|", "\\|")

    names = [(headers or {}).get(c, c) for c in df.columns]
    header = "| " + " | ".join(map(str, names)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = [
        "| " + " | ".join(fmt(c, v) for c, v in zip(df.columns, row)) + " |"
        for row in df.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


def _write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _write_csv(path: Path, df: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def _plain(
    df: pd.DataFrame,
    percent: Sequence[str] = (),
    digits: int = 1,
    declared: Mapping[str, Score] | None = None,
) -> Table:
    """A table shown as it is; ``declared``: column -> the score it holds (its arrow)."""
    arrows = {c: s.arrow for c, s in (declared or {}).items() if s.arrow}
    return Table(df, df, percent, digits, {}, arrows)


def _columns_of(kind: Kind, group: str, prefix: str = "") -> dict[str, Score]:
    """The registry's scores of ``kind`` and ``group`` by table column (name less ``prefix``)."""
    return {s.name.removeprefix(prefix): s for s in scores(kind, group)}


def _families(df: pd.DataFrame) -> Table:
    """A table by question family: every value column in percent (counts are ``n_*``)."""
    keys = ("model", "dataset", "name")
    return _plain(df, [c for c in df.columns if c not in keys and not c.startswith("n_")])


def build_tables(maps: pd.DataFrame, answers: pd.DataFrame) -> dict[str, Table]:
    """Every table the lines allow, by name, in the report's order.

    Left out: ``faithfulness`` when no line holds a faithfulness score, ``target_ablation``
    without EGG and saliency lines of different targets, ``pope`` without
    POPE lines, the ``families_*`` tables with fewer than two question families.
    """
    localisation = _columns_of("map", "localisation")
    pope = _columns_of("dataset", "pope", "pope_")
    tables = {
        "pointing_game": _plain(
            pointing_game_table(maps),
            [c for c, s in localisation.items() if s.percent],
            declared=localisation,
        ),
        "faithfulness": faithfulness_shown(faithfulness_table(maps)),
        "target_ablation": target_ablation_shown(target_ablation_table(maps)),
        "accuracy": _plain(accuracy_table(answers), digits=2),
        "accuracy_long": _plain(accuracy_long(answers), ("accuracy", "delta_vs_base"), 2),
        "pope": _plain(
            pope_table(answers), [c for c, s in pope.items() if s.percent], declared=pope
        ),
        "size_buckets_pointing_game": _plain(bucket_table(maps, "pointing_game"), BUCKETS),
        "size_buckets_accuracy": _plain(bucket_table(answers, "score"), BUCKETS),
        "families_pointing_game": _families(bucket_table(maps, "pointing_game", "family")),
        "families_accuracy": _families(bucket_table(answers, "score", "family")),
    }
    optional = (
        "faithfulness",
        "target_ablation",
        "pope",
        "families_pointing_game",
        "families_accuracy",
    )
    for name in optional:
        if tables[name].data.empty:
            del tables[name]
    for name in ("families_pointing_game", "families_accuracy"):
        if name in tables and len(tables[name].data.columns) <= 5:  # one family or none
            del tables[name]
    return tables


def write_tables(maps: pd.DataFrame, answers: pd.DataFrame, out: str | Path) -> dict[str, Table]:
    """Write every table of :func:`build_tables` as ``.csv`` (its ``data``) and ``.md`` (what
    it shows) into ``out``; return the tables by name."""
    out = Path(out)
    tables = build_tables(maps, answers)
    for name, table in tables.items():
        _write_csv(out / f"{name}.csv", table.data)
        _write_text(out / f"{name}.md", table_markdown(table))
    return tables


def table_markdown(table: Table) -> str:
    """A :class:`Table` as markdown: what it shows, with its percent columns and headers."""
    return to_markdown(table.shown, table.percent, table.digits, table.headers)


def write_report(
    results: str | Path | Sequence[str | Path],
    out: str | Path,
    grids: int = 0,
    figures: bool = True,
    **grid_kwargs: Any,
) -> list[Path]:
    """Tables, figures and ``report.md`` for one or more results files; return the paths written.

    Parameters
    ----------
    results : path or sequence of paths
        Results JSONL file(s); lines are de-duplicated by key.
    out : str or Path
        Output folder (created).
    grids : int, default 0
        Comparison grids of the first ``grids`` samples (see
        :func:`egg_interp.compare.comparison_grids`; ``grid_kwargs`` go there).
    figures : bool, default True
        Draw the seaborn bar plots (skip for a tables-only report).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [results] if isinstance(results, (str, Path)) else list(results)
    maps, answers = load_frames(paths)
    if maps.empty and answers.empty:
        raise InputError(
            f"no readable results line in {', '.join(str(p) for p in paths)}: nothing to report"
        )
    tables = write_tables(maps, answers, out)
    figs: list[Path] = []
    if figures:
        from egg_interp.figures.bars import bar_plots

        figs = bar_plots(maps, answers, out)
    grid_paths: list[Path] = []
    notes: list[str] = []
    if grids > 0:
        from egg_interp.compare import comparison_grids

        grid_paths, notes = comparison_grids(paths, out / "grids", grids, **grid_kwargs)
        for note in notes:  # also in report.md; a warning so that a terminal shows it too
            warnings.warn(f"--grids: {note}", UserWarning, stacklevel=2)
    index = _index_text(paths, maps, answers, tables, figs, grid_paths, notes, out)
    index += settings_section(paths)
    written = [out / f"{n}.{ext}" for n in tables for ext in ("md", "csv")]
    written += figs + grid_paths + [_write_text(out / "report.md", index)]
    return written


TITLES = {
    "pointing_game": "Localisation per method (scores in %; pointing game at the tolerance in the config)",
    "faithfulness": "Faithfulness per method (mean [95 % interval]; arrows: which way is better)",
    "target_ablation": "Target ablation: EGG (the next-token entropy) against saliency (its own "
    "target), the same gradient at the same visual token embeddings; paired over the samples "
    "both scored (mean [95 % interval]: Wilson for hit rates, bootstrap otherwise; scores in % "
    "where the localisation table has them)",
    "accuracy": "Answer accuracy, Table 1 layout (%; change vs base in brackets)",
    "accuracy_long": "Answer accuracy, long form (%)",
    "pope": "POPE (%; unparseable answers count as wrong, never as yes)",
    "size_buckets_pointing_game": "Pointing game by evidence size (% of image: small < 0.5, medium < 5, large)",
    "size_buckets_accuracy": "Accuracy by evidence size (samples without evidence excluded)",
    "families_pointing_game": "Pointing game by question family",
    "families_accuracy": "Accuracy by question family",
}


def _display_path(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies under it, so that a committed
    report names no directory of the machine that wrote it; otherwise as given."""
    p = Path(path)
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _index_text(
    paths: Sequence[str | Path],
    maps: pd.DataFrame,
    answers: pd.DataFrame,
    tables: Mapping[str, Table],
    figs: Sequence[Path],
    grids: Sequence[Path],
    notes: Sequence[str],
    out: Path,
) -> str:
    shown = ", ".join(f"`{_display_path(p)}`" for p in paths)
    lines = ["# Evaluation report", "", "Derived from: " + shown, ""]
    lines.append(f"{len(maps)} map lines, {len(answers)} answer lines.")
    sources = set(maps.get("box_source", pd.Series(dtype=str))) | set(
        answers.get("box_source", pd.Series(dtype=str))
    )
    if "ocr-proxy" in sources:
        lines.append(
            "Some evidence boxes are an **OCR-matching proxy** (OCR words matching the answer), "
            "not official annotations."
        )
    lines.append("")
    for name, table in tables.items():
        lines += [f"## {TITLES.get(name, name)}", "", table_markdown(table)]
        if name == "faithfulness":
            lines += [*faithfulness_notes(paths), ""]
    if figs:
        lines += ["## Figures (bars: mean; error bars: 95 % bootstrap CI)", ""]
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figs]
        lines.append("")
    if grids or notes:
        lines += ["## Comparison grids", ""]
        lines += [f"- [{p.name}]({p.relative_to(out).as_posix()})" for p in grids]
        lines += [f"- note: {n}" for n in notes]
    return "\n".join(lines) + "\n"


def faithfulness_notes(paths: str | Path | Iterable[str | Path]) -> list[str]:
    """What the faithfulness table measured, one line per distinct setting in the map lines'
    configs (space, substrates, steps, orders, what the areas integrate), and what follows
    from one substrate: insertion under MoRF keeps, step by step, what deletion under LeRF
    keeps, so those two AUCs are equal (and so are the two gaps) for maps without ties."""
    import json

    with warnings.catch_warnings():  # unreadable lines: load_frames has warned about them
        warnings.simplefilter("ignore", RuntimeWarning)
        records = load_results(paths)
    found = {
        json.dumps(r["config"]["faithfulness"], sort_keys=True)
        for r in records
        if r.get("kind") == "map" and isinstance((r.get("config") or {}).get("faithfulness"), dict)
    }
    lines = []
    for text in sorted(found):
        f = json.loads(text)
        tracked = "probability" if f.get("track") == "prob" else "log-probability"
        substrates = f.get("substrate"), f.get("insertion_substrate")
        lines.append(
            f"- Measured in {f.get('space')} space, {f.get('steps')} steps, orders "
            f"{', '.join(f.get('orders', []))}; deletion to `{substrates[0]}`, insertion from "
            f"`{substrates[1]}`; the areas integrate the original answer's {tracked} "
            "(teacher-forced) over the changed fraction in [0, 1]."
        )
        if substrates[0] == substrates[1]:
            lines.append(
                "  With one substrate, insertion under MoRF keeps, step by step, what deletion "
                "under LeRF keeps: insertion AUC (MoRF) = deletion AUC (LeRF), and the two "
                "gaps are equal, for every map without tied cells (tied cells go in row-major "
                "order under both orders, so a map with ties, such as Grad-CAM's zeros, has "
                "curves of its own)."
            )
    return lines


SETTINGS_FIELDS = ("revision", "dtype", "attn_implementation", "resolution", "versions", "code")
"""The config fields of the "settings behind these numbers" section, besides the model."""


def settings_section(paths: str | Path | Iterable[str | Path]) -> str:
    """Markdown: the settings behind the numbers, one row per model and distinct settings.

    Read from the lines' configs (:func:`egg_interp.models.record.model_record`): the hub
    revision, dtype, attention implementation, the processor's resolution settings, the
    torch/transformers/egg_interp versions and the results code, with the number of lines of
    each; ``not recorded`` for lines written before these were recorded.
    """
    import json
    from collections import Counter

    def cell(field: str, value: Any) -> str:
        if value is None:
            return "unknown" if field == "revision" else "not recorded"
        if field == "revision":
            return str(value)[:12]
        if field == "resolution" and isinstance(value, dict):
            flat = {**value.get("image_processor", {}), **value.get("processor", {})}
            return "; ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in flat.items())
        if field == "versions" and isinstance(value, dict):
            return ", ".join(f"{k} {v}" for k, v in value.items())
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))

    counts: Counter[tuple[str, ...]] = Counter()
    with warnings.catch_warnings():  # unreadable lines: load_frames has warned about them
        warnings.simplefilter("ignore", RuntimeWarning)
        records = load_results(paths)
    for r in records:
        config = r.get("config") if isinstance(r.get("config"), dict) else {}
        missing = "revision" not in config  # a line from before the settings were recorded
        counts[
            (str(r.get("model", "")),)
            + tuple(
                "not recorded" if missing and f not in ("dtype", "code") else cell(f, config.get(f))
                for f in SETTINGS_FIELDS
            )
        ] += 1
    head = ["model", "revision", "dtype", "attention", "resolution settings", "versions"]
    lines = ["", "## Settings behind these numbers", ""]
    lines += ["| " + " | ".join([*head, "results code", "lines"]) + " |"]
    lines += ["|" + "---|" * (len(head) + 2)]
    lines += ["| " + " | ".join([*key, str(n)]) + " |" for key, n in sorted(counts.items())]
    return "\n".join(lines) + "\n"
