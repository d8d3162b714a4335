"""Figures of a results file: seaborn bar plots with bootstrap CIs, and comparison grids.

Bar plots are drawn from the per-sample rows of :func:`egg_interp.report.load_frames`
(seaborn computes the mean and a 95 % percentile-bootstrap confidence interval,
``errorbar=("ci", 95)``, 1000 resamples, seed 0, so redrawing gives the same bars).
Comparison grids need the images (the dataset loader with its data root) and the maps:
saved ones (``evaluate --save-maps``) are used when present, otherwise they are recomputed
with a model given here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from egg_interp.io import save_figure
from egg_interp.report import BUCKETS, DATASET_TITLES, dataset_order, pipeline_order
from egg_interp.results import load_results

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


def comparison_grids(
    results: Sequence[str | Path],
    out: str | Path,
    n: int,
    model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    prompt_suffix: str = "",
    data_root: str | Path | None = None,
) -> tuple[list[Path], list[str]]:
    """One comparison figure per sample for the first ``n`` samples with map lines.

    Each figure shows the image with its evidence boxes, then every method's map with the
    evidence (green) and the method's top region (cyan, dashed), via
    :func:`egg_interp.figures.plot_comparison`. Maps come from ``map_file`` (saved by
    ``evaluate --save-maps``, relative to the results file) when it exists, else are
    recomputed with ``model`` and the method options recorded in the line's config.

    Returns
    -------
    (paths written, notes on what could not be drawn)
    """
    from egg_interp.data.registry import load_dataset
    from egg_interp.figures import plot_comparison
    from egg_interp.maps import AttributionMap
    from egg_interp.methods import get_method

    out = Path(out)
    records = []
    for path in results:
        for r in load_results(path):
            if r["kind"] == "map" and not r.get("error"):
                records.append((Path(path).parent, r))
    order: list[tuple[str, str, str]] = []
    for _, r in sorted(
        records, key=lambda t: (str(t[1].get("dataset")), t[1].get("index", math.inf))
    ):
        key = (str(r.get("dataset")), str(r.get("split")), r["sample_id"])
        if key not in order:
            order.append(key)
    order = order[:n]
    notes: list[str] = []
    adapter = None
    samples: dict[tuple[str, str], dict[str, Any]] = {}
    written: list[Path] = []
    for k, (dataset, split, sample_id) in enumerate(order):
        lines = [
            (base, r)
            for base, r in records
            if (str(r.get("dataset")), str(r.get("split")), r["sample_id"])
            == (dataset, split, sample_id)
        ]
        if (dataset, split) not in samples:
            root = data_root or (lines[0][1].get("run") or {}).get("data_root") or "."
            limit = (
                max(int(r.get("index", 0)) for _, r in records if str(r.get("dataset")) == dataset)
                + 1
            )
            try:
                loaded = load_dataset(dataset, root, None if split == "default" else split, limit)
            except Exception as exc:
                notes.append(f"{dataset}: cannot load the images ({type(exc).__name__}: {exc})")
                loaded = []
            samples[(dataset, split)] = {s.id: s for s in loaded}
        sample = samples[(dataset, split)].get(sample_id)
        if sample is None:
            notes.append(f"{sample_id}: not found in {dataset} (give --data-root)")
            continue
        image = sample.image
        maps, tops = {}, {}
        for base, r in lines:
            label = r["name"]
            amap = None
            if r.get("map_file") and (base / r["map_file"]).exists():
                amap = AttributionMap.load(base / r["map_file"])
            elif model is not None:
                if adapter is None:
                    from egg_interp.models import load_model

                    adapter = load_model(
                        model, device=device, dtype=dtype, prompt_suffix=prompt_suffix
                    )
                opts = (r.get("config") or {}).get("options") or {}
                amap = get_method(r["name"], **opts).attribute(adapter, [image], sample.question)
            if amap is None:
                notes.append(f"{sample_id}/{label}: no saved map and no --model to recompute it")
                continue
            if label in maps:
                label = f"{label}@{r['config_hash'][:6]}"
            maps[label] = amap
            if r.get("regions"):
                tops[label] = tuple(r["regions"][0]["box"])
        if not maps:
            continue
        question = sample.question.splitlines()[0][:70]
        title = f"{sample_id}: {question}\nanswer: {', '.join(sample.answers[:2])}"
        fig = plot_comparison(image, maps, sample.boxes, tops, title=title)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sample_id)[:60]
        written.append(save_figure(fig, out / f"{k:03d}_{safe}.png"))
    return written, notes
