"""Bar plots of a results file: seaborn bars with bootstrap CIs.

Bar plots are drawn from the per-sample rows of :func:`egg_interp.report.load_frames`
(seaborn computes the mean and a 95 % percentile-bootstrap confidence interval,
``errorbar=("ci", 95)``, 1000 resamples, seed 0, so redrawing gives the same bars). Which
scores exist, their labels and which way is better come from
:mod:`egg_interp.metrics.registry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from egg_interp.io import save_figure
from egg_interp.metrics.registry import Score, scores
from egg_interp.titles import BUCKETS, DATASET_TITLES, dataset_order, method_order, pipeline_order

CI = ("ci", 95)
N_BOOT = 1000
SEED = 0


def _bar(
    df: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None,
    order: Sequence[str],
    ylabel: str,
    hue_order: Sequence[str] | None = None,
) -> Any:
    import seaborn as sns

    col = "model" if df["model"].nunique() > 1 else None
    grid = sns.catplot(
        data=df,
        kind="bar",
        x=x,
        y=y,
        hue=hue,
        col=col,
        order=list(order),
        hue_order=list(hue_order) if hue_order is not None else None,
        errorbar=CI,
        n_boot=N_BOOT,
        seed=SEED,
        height=3.4,
        aspect=min(2.2, max(1.0, 0.6 + 0.12 * len(order) * (df[hue].nunique() if hue else 1))),
    )
    grid.set_axis_labels(x.replace("_", " "), ylabel)
    grid.set(ylim=(0, 100))
    return grid.figure


def bar_plots(maps: pd.DataFrame, answers: pd.DataFrame, out: str | Path) -> list[Path]:
    """Draw the bar plots that the data allow; return the PNG paths written into ``out``.

    ``pointing_game.png`` (pointing game per method, per dataset when several),
    ``accuracy.png`` (accuracy per dataset and pipeline), ``size_buckets_pointing_game.png``
    and ``size_buckets_accuracy.png`` (by evidence size, all datasets pooled),
    ``families_pointing_game.png`` and ``families_accuracy.png`` (by question family, when
    the samples have several). All values in percent; one panel per model when several.
    ``faithfulness.png`` (:func:`faithfulness_plot`) when the lines hold faithfulness scores.
    """
    out = Path(out)
    written: list[Path] = []
    datasets = [
        DATASET_TITLES.get(d, d)
        for d in dataset_order(set(maps.get("dataset", [])) | set(answers.get("dataset", [])))
    ]
    for frame, value, hue, ylabel, stem in (
        (maps, "pointing_game", "method", "pointing game (%)", "pointing_game"),
        (answers, "score", "pipeline", "accuracy (%)", "accuracy"),
    ):
        if frame.empty:
            continue
        df = frame[(frame["error"] == "") & frame[value].notna()].copy()
        if df.empty:
            continue
        df["pct"] = 100 * df[value]
        df["dataset"] = df["dataset"].map(lambda d: DATASET_TITLES.get(d, d))
        df[hue] = df["label"]
        names = pipeline_order(df[hue]) if hue == "pipeline" else sorted(df[hue].unique())
        in_data = [d for d in datasets if d in set(df["dataset"])]
        if hue == "method":
            several = len(in_data) > 1
            fig = _bar(
                df,
                "method",
                "pct",
                "dataset" if several else None,
                names,
                ylabel,
                in_data if several else None,
            )
        else:
            fig = _bar(df, "dataset", "pct", hue, in_data, ylabel, names)
        written.append(save_figure(fig, out / f"{stem}.png"))
        sized = df[df["size_bucket"].isin(BUCKETS)]
        if not sized.empty:
            order = [b for b in BUCKETS if b in set(sized["size_bucket"])]
            fig = _bar(sized, "size_bucket", "pct", hue, order, ylabel, names)
            written.append(save_figure(fig, out / f"size_buckets_{stem}.png"))
        fam = df[df["family"] != ""]
        if fam["family"].nunique() > 1:
            order = sorted(fam["family"].unique())
            fig = _bar(fam, "family", "pct", hue, order, ylabel, names)
            written.append(save_figure(fig, out / f"families_{stem}.png"))
    held = scores_held(maps, "faithfulness")
    if held:
        written.append(save_figure(faithfulness_plot(maps, held), out / "faithfulness.png"))
    return written


def scores_held(maps: pd.DataFrame, group: str) -> list[Score]:
    """The registry's map scores of ``group`` that some line without error holds, in
    declaration order."""
    if maps.empty:
        return []
    ok = maps[maps["error"] == ""]
    return [s for s in scores("map", group) if s.name in ok and ok[s.name].notna().any()]


def faithfulness_plot(maps: pd.DataFrame, held: Sequence[Score]) -> Any:
    """One panel per score of ``held``: its mean per method, with a 95 % bootstrap CI.

    Each panel is titled with the score's label and direction arrow and says which way is
    better (deletion AUC: lower; insertion AUC and the MoRF-LeRF gap: higher); scores with
    ``percent`` are shown in percent. Methods in :func:`egg_interp.titles.method_order`;
    one row of panels per model when several. Returns the figure.
    """
    import seaborn as sns

    ok = maps[maps["error"] == ""]
    parts = []
    for s in held:
        part = ok.loc[ok[s.name].notna(), ["model", "label"]].copy()
        part["value"] = ok.loc[part.index, s.name] * (100 if s.percent else 1)
        part["score"] = s.header
        parts.append(part)
    long = pd.concat(parts, ignore_index=True).rename(columns={"label": "method"})
    several = long["model"].nunique() > 1
    grid = sns.catplot(
        data=long,
        kind="bar",
        x="method",
        y="value",
        col="score",
        col_order=[s.header for s in held],
        col_wrap=None if several else min(3, len(held)),
        row="model" if several else None,
        order=method_order(long["method"]),
        errorbar=CI,
        n_boot=N_BOOT,
        seed=SEED,
        sharey=False,
        height=3.2,
        aspect=min(2.2, max(1.0, 0.5 + 0.15 * long["method"].nunique())),
    )
    better = {s.header: _better(s) for s in held}
    for name, ax in grid.axes_dict.items():
        header = name[-1] if isinstance(name, tuple) else name
        ax.set_title(f"{header}\n({better[header]})", fontsize=9)
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
            tick.set_horizontalalignment("right")
    grid.set_axis_labels("method", "")
    return grid.figure


def _better(score: Score) -> str:
    unit = " (%)" if score.percent else ""
    if score.direction == "none":
        return f"neither way is better{unit}"
    return f"{score.direction} is better{unit}"
