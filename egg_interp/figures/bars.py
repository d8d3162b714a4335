"""Bar plots of a results file: seaborn bars with bootstrap CIs.

Bar plots are drawn from the per-sample rows of :func:`egg_interp.report.load_frames`
(seaborn computes the mean and a 95 % percentile-bootstrap confidence interval,
``errorbar=("ci", 95)``, 1000 resamples, seed 0, so redrawing gives the same bars).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from egg_interp.io import save_figure
from egg_interp.titles import BUCKETS, DATASET_TITLES, dataset_order, pipeline_order

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
    return written
