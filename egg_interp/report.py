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
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from egg_interp.errors import InputError
from egg_interp.io import atomic_path
from egg_interp.metrics import pope_scores
from egg_interp.results import load_results
from egg_interp.titles import (  # noqa: F401  (re-exported: names used by tables)
    BUCKETS,
    DATASET_TITLES,
    PAPER_DATASETS,
    PIPELINE_ORDER,
    PIPELINE_TITLES,
    dataset_order,
    pipeline_order,
)

MAP_SCORES = (
    "pointing_game",
    "energy_pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "auc",
    "region_iou",
    "region_hit",
    "any_box_hit",
    "all_boxes_covered",
)
"""Map scores in the order of the pointing-game table."""


# ---------------------------------------------------------------- loading


def _num(x: Any) -> float:
    """A score as float: None / strings ('inf') / missing -> NaN except 'inf' -> inf."""
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, (int, float)):
        return float(x)
    if x in ("inf", "-inf"):
        return float(x)
    return math.nan


def _labels(df: pd.DataFrame) -> pd.Series:
    """``name``, or ``name@hash6`` where one (model, dataset, kind, name) has several configs."""
    if df.empty:
        return pd.Series(dtype=str)
    n_cfg = df.groupby(["model", "dataset", "kind", "name"])["config_hash"].transform("nunique")
    return df["name"].where(n_cfg <= 1, df["name"] + "@" + df["config_hash"].str[:6])


def load_frames(paths: str | Path | Iterable[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read results files into two tables, one row per line: ``(maps, answers)``.

    Columns common to both: ``model, dataset, split, name, label, config_hash, sample_id,
    index, family, size_bucket, evidence_area, n_boxes, box_source, error, seconds``; maps
    add one column per score of :data:`MAP_SCORES`; answers add ``score, answer, answers,
    metric, n_crops, n_steps``.
    """
    maps, answers = [], []
    for r in load_results(paths):
        row = {
            "model": str(r.get("model", "")),
            "dataset": str(r.get("dataset", "")),
            "split": str(r.get("split", "")),
            "kind": r["kind"],
            "name": r["name"],
            "config_hash": r["config_hash"],
            "sample_id": r["sample_id"],
            "index": r.get("index", -1),
            "family": r.get("family") or "",
            "size_bucket": r.get("size_bucket") or "none",
            "evidence_area": _num(r.get("evidence_area")),
            "n_boxes": len(r.get("boxes") or []),
            "box_source": r.get("box_source") or "none",
            "error": r.get("error") or "",
            "seconds": _num((r.get("timing") or {}).get("total")),
        }
        if r["kind"] == "map":
            scores = r.get("scores") or {}
            row.update({s: _num(scores.get(s)) for s in MAP_SCORES})
            maps.append(row)
        elif r["kind"] == "answer":
            steps = r.get("steps") or []
            row.update(
                score=_num(r.get("score")),
                answer=r.get("answer") or "",
                answers=list(r.get("answers") or []),
                metric=r.get("metric") or "",
                n_crops=len(r.get("crops") or []),
                n_steps=len(steps),
            )
            answers.append(row)
    frames = []
    for rows, extra in ((maps, list(MAP_SCORES)), (answers, ["score", "answer", "metric"])):
        df = pd.DataFrame(rows)
        if df.empty:
            df = pd.DataFrame(columns=["model", "dataset", "kind", "name", "config_hash", *extra])
        df["label"] = _labels(df)
        frames.append(df)
    return frames[0], frames[1]


# ---------------------------------------------------------------- tables


def pointing_game_table(maps: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, dataset, method): localisation scores as fractions in [0, 1].

    Columns: ``n`` (lines), ``errors``, ``n_scored`` (pointing game not NaN), the mean of each
    score of :data:`MAP_SCORES` over the samples where it is defined (``all_boxes_covered``
    over multi-evidence samples only, counted in ``n_multi``), and mean ``seconds``.
    """
    cols = [
        "model",
        "dataset",
        "method",
        "n",
        "errors",
        "n_scored",
        *MAP_SCORES,
        "n_multi",
        "seconds",
    ]
    if maps.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (model, dataset, label), g in maps.groupby(["model", "dataset", "label"], sort=False):
        ok = g[g["error"] == ""]
        multi = ok[ok["n_boxes"] >= 2]
        row = {
            "model": model,
            "dataset": dataset,
            "method": label,
            "n": len(g),
            "errors": int((g["error"] != "").sum()),
            "n_scored": int(ok["pointing_game"].notna().sum()),
        }
        for s in MAP_SCORES:
            values = multi[s] if s == "all_boxes_covered" else ok[s]
            row[s] = float(values.mean()) if values.notna().any() else math.nan
        row["n_multi"] = len(multi)
        row["seconds"] = float(ok["seconds"].mean()) if len(ok) else math.nan
        rows.append(row)
    out = pd.DataFrame(rows, columns=cols)
    order = {d: i for i, d in enumerate(dataset_order(out["dataset"]))}
    return out.sort_values(
        ["model", "dataset", "method"], key=lambda c: c.map(order) if c.name == "dataset" else c
    ).reset_index(drop=True)


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
    """POPE scores per (model, dataset, pipeline) for the datasets scored with ``"pope"``."""
    cols = [
        "model",
        "dataset",
        "pipeline",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "yes_ratio",
        "n_unparsed",
        "n",
    ]
    if answers.empty:
        return pd.DataFrame(columns=cols)
    pope = answers[(answers["metric"] == "pope") & (answers["error"] == "")]
    rows = []
    for (model, dataset, label), g in pope.groupby(["model", "dataset", "label"], sort=False):
        labels = [a[0] if a else "" for a in g["answers"]]
        keep = [lab.strip().lower() in ("yes", "no") for lab in labels]
        preds = [p for p, k in zip(g["answer"], keep) if k]
        s = pope_scores(preds, [lab for lab, k in zip(labels, keep) if k])
        rows.append({"model": model, "dataset": dataset, "pipeline": label, **s})
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


def to_markdown(df: pd.DataFrame, percent: Sequence[str] = (), digits: int = 1) -> str:
    """A GitHub markdown table; ``percent`` columns are shown times 100, NaN as ``-``."""
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

    header = "| " + " | ".join(map(str, df.columns)) + " |"
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


def write_tables(maps: pd.DataFrame, answers: pd.DataFrame, out: str | Path) -> dict[str, Any]:
    """Write every table as ``.md`` and ``.csv`` into ``out``; return the tables by name."""
    out = Path(out)
    pg = pointing_game_table(maps)
    tables: dict[str, tuple[pd.DataFrame, Sequence[str]]] = {
        "pointing_game": (pg, MAP_SCORES),
        "accuracy": (accuracy_table(answers), ()),
        "accuracy_long": (accuracy_long(answers), ("accuracy", "delta_vs_base")),
        "pope": (pope_table(answers), ("accuracy", "precision", "recall", "f1", "yes_ratio")),
        "size_buckets_pointing_game": (bucket_table(maps, "pointing_game"), BUCKETS),
        "size_buckets_accuracy": (bucket_table(answers, "score"), BUCKETS),
        "families_pointing_game": (bucket_table(maps, "pointing_game", "family"), ()),
        "families_accuracy": (bucket_table(answers, "score", "family"), ()),
    }
    written = {}
    for name, (df, percent) in tables.items():
        if name.startswith("families"):
            percent = [
                c
                for c in df.columns
                if c not in ("model", "dataset", "name") and not c.startswith("n_")
            ]
        if df.empty and name in ("pope", "families_pointing_game", "families_accuracy"):
            continue
        if name.startswith("families") and len(df.columns) <= 5:  # one family or none
            continue
        _write_csv(out / f"{name}.csv", df)
        _write_text(
            out / f"{name}.md",
            to_markdown(df, percent, digits=2 if name.startswith("accuracy") else 1),
        )
        written[name] = (df, percent)
    return written


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
    written = [out / f"{n}.{ext}" for n in tables for ext in ("md", "csv")]
    written += figs + grid_paths + [_write_text(out / "report.md", index)]
    return written


TITLES = {
    "pointing_game": "Localisation per method (scores in %; pointing game at the tolerance in the config)",
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
    tables: dict[str, Any],
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
    for name, (df, percent) in tables.items():
        lines += [
            f"## {TITLES.get(name, name)}",
            "",
            to_markdown(df, percent, 2 if name.startswith("accuracy") else 1),
        ]
    if figs:
        lines += ["## Figures (bars: mean; error bars: 95 % bootstrap CI)", ""]
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figs]
        lines.append("")
    if grids or notes:
        lines += ["## Comparison grids", ""]
        lines += [f"- [{p.name}]({p.relative_to(out).as_posix()})" for p in grids]
        lines += [f"- note: {n}" for n in notes]
    return "\n".join(lines) + "\n"
