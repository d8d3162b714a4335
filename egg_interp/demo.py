"""``egg-interp demo``: EGG on the model organism's scenes benchmark, end to end.

Everything is evaluated by the runner (:func:`egg_interp.runner.evaluate`, lines appended
to ``results.jsonl`` in the output directory, so an interrupted demo resumes; :func:`demo_rows`):
the ``egg`` map of every scene, scored with the pointing game and the reference pointers (a
centre point, a uniform-random map, a random object of the scene, and whether EGG's peak
hits any object: :data:`egg_interp.scoring.POINTERS`), and the answer pipelines ``base`` (the
full view alone), ``oracle`` (crops around the true evidence), ``egg`` (EGG's crops),
``random`` (random crops of the oracle's sizes) and, on multi-evidence questions,
``oracle_one`` (one of the two oracle crops). On the detail questions it also runs
``random_egg`` (EGG's own crops moved to random places) and the organism's causal measures
(:mod:`egg_interp.organism.measures`). :func:`summarise` derives ``summary.json`` from the
lines (:mod:`egg_interp.summaries`); :func:`run_demo` writes ``summary.json``,
``summary.txt``, ``examples.png`` and prints the table.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from egg_interp.data import scenes
from egg_interp.data.sample import Sample
from egg_interp.io import save_figure, write_json
from egg_interp.metrics.intervals import bootstrap_interval, interval, wilson_interval
from egg_interp.models.base import VLMAdapter
from egg_interp.pipelines import PipelineOptions
from egg_interp.results import read_results
from egg_interp.summaries import current_records, entropy_bins, figure_by, sample_rows

TABLE_PIPELINES = ("base", "oracle", "egg", "random")
"""The pipelines of the demo's table, run on every scene (registered names,
:data:`egg_interp.pipelines.PIPELINES`)."""
EXTRA_PIPELINES = ("oracle_one", "random_egg")
"""Run on some families only: ``oracle_one`` on two-box multi-evidence scenes, ``random_egg``
on detail scenes."""
TABLE_POINTERS = ("egg", "centre", "random", "random_object")
"""The pointers of the table's pointing-game line: EGG's map, then the reference pointers
(:data:`egg_interp.scoring.POINTERS`), ``any_object`` after them."""
ENTROPY_BINS = 3
"""The EGG pointing game is reported by tertiles of the step-0 next-token entropy."""


def demo_rows(
    adapter: VLMAdapter,
    samples: Sequence[Sample],
    out: str | Path,
    options: PipelineOptions | None = None,
    model: str | None = None,
    batch_size: int = 1,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run the demo's evaluation through the runner; return the sample rows.

    The ``egg`` map and the pipelines of :data:`TABLE_PIPELINES` on every sample, plus
    ``oracle_one`` on the multi-evidence samples with two boxes and ``random_egg`` (EGG's
    crops at random places) on the detail samples, appended to ``out`` (lines
    already there for the same configs are reused). Rows: :func:`egg_interp.summaries.sample_rows`.
    """
    from egg_interp.runner import evaluate

    options = options or PipelineOptions(max_new_tokens=4)
    kw = dict(
        out=out,
        dataset="scenes",
        model=model,
        pipeline_options=options,
        batch_size=batch_size,
        progress=progress,
    )
    hashes = dict(
        evaluate(adapter, samples, methods=("egg",), pipelines=TABLE_PIPELINES, **kw).config_hashes
    )
    multi = [s for s in samples if s.family == "multi" and len(s.boxes) > 1]
    if multi:
        hashes |= evaluate(
            adapter, multi, methods=(), pipelines=("oracle_one",), **kw
        ).config_hashes
    detail = [s for s in samples if s.family == "detail"]
    if detail:
        hashes |= evaluate(
            adapter, detail, methods=(), pipelines=("random_egg",), **kw
        ).config_hashes
    records = current_records(read_results(out), hashes, [s.id for s in samples])
    return sample_rows(records, samples)


def measure(adapter: VLMAdapter, samples: Sequence[Sample], n: int | None = None) -> dict:
    """The causal measures on the first ``n`` detail samples (all when ``None``).

    Each sample costs about ``3 * n_objects + 2`` forwards. Returns
    :func:`egg_interp.organism.measures.summarise_measures` plus ``n_samples`` (the subset's
    size) and ``intervals`` (95 %: bootstrap for the ratio, Wilson for the shares).
    """
    from egg_interp.organism.measures import (
        answer_sensitivity,
        distractor_crop_following,
        summarise_measures,
    )

    detail = [s for s in samples if s.family == "detail"][: None if n is None else n]
    sens = [answer_sensitivity(adapter, s) for s in detail]
    follow = [distractor_crop_following(adapter, s) for s in detail]
    out = summarise_measures(sens, follow)
    multi = [x for x in sens if x["distractors"]]
    tgt = np.array([x["target"] for x in multi])
    dis = np.array([max(x["distractors"]) for x in multi])

    def ratio(t: np.ndarray, d: np.ndarray) -> float:
        return float(t.mean() / max(d.mean(), 1e-12))

    most = float((tgt > dis).sum())
    kept = [f for f in follow if not math.isnan(f)]
    out["n_samples"] = len(detail)
    out["intervals"] = {
        "answer_sensitivity_ratio": list(bootstrap_interval(ratio, tgt, dis)),
        "target_most_causal": list(wilson_interval(most, len(multi))),
        "distractor_crop_following": list(wilson_interval(float(sum(kept)), len(kept))),
    }
    return out


def _mean(values: Sequence[float]) -> float:
    return interval(values)["mean"]


def _pointer(name: str) -> Callable[[Mapping[str, Any]], float]:
    """A row's pointing-game hit for pointer ``name``: EGG's map, or a reference pointer."""
    if name == "egg":
        return lambda r: r["pointing"].get("egg", math.nan)
    return lambda r: r["reference"].get(name, math.nan)


def _accuracy(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Family -> pipeline -> accuracy interval, for the pipelines each family ran."""
    acc: dict[str, dict[str, Any]] = {}
    for fam in scenes.FAMILIES:
        fam_rows = [r for r in rows if r["family"] == fam]
        if not fam_rows:
            continue
        acc[fam] = {}
        for pipe in (*TABLE_PIPELINES, *EXTRA_PIPELINES):
            values = [r["correct"][pipe] for r in fam_rows if pipe in r["correct"]]
            if values:
                acc[fam][pipe] = interval(values)
    return acc


def _by_n_objects(
    rows: Sequence[Mapping[str, Any]], families: Sequence[str], detail: Sequence[Mapping]
) -> dict[str, Any]:
    """Accuracy per family and table pipeline, and EGG's pointing game on the detail rows,
    per number of objects in the scene."""
    n_obj = lambda r: r["n_objects"]  # noqa: E731
    accuracy = {
        fam: {
            pipe: {
                str(k): v
                for k, v in figure_by(
                    [r for r in rows if r["family"] == fam and pipe in r["correct"]],
                    lambda r, pipe=pipe: r["correct"][pipe],
                    n_obj,
                ).items()
            }
            for pipe in TABLE_PIPELINES
        }
        for fam in families
    }
    pointing = {str(k): v for k, v in figure_by(detail, _pointer("egg"), n_obj).items()}
    return {"accuracy": accuracy, "pointing_game": {"egg": pointing}}


def _multi_evidence(acc: Mapping[str, Any], cover: Mapping[str, Any]) -> dict[str, Any]:
    """The multi-evidence figures as intervals: top-2 regions covering both boxes, oracle
    accuracy with both crops and with one."""
    multi, nan = acc.get("multi", {}), interval([])
    return {
        "top2_cover_both": cover,
        "accuracy_two_oracle_crops": multi.get("oracle", nan),
        "accuracy_one_oracle_crop": multi.get("oracle_one", nan),
    }


def summarise(
    rows: Sequence[Mapping[str, Any]], measures: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The demo's ``summary.json`` from the sample rows (and the causal measures).

    Kept from earlier versions: ``accuracy`` (family -> pipeline -> mean), ``pointing_game``
    (pointer -> mean on detail questions), ``n``, ``mean_steps``, ``multi_evidence``.
    Added: ``intervals`` (the same figures as ``{"mean", "n", "ci95"}``), ``by_n_objects``
    (accuracy per family and pipeline, EGG pointing game, per number of objects),
    ``pointing_game_by_entropy`` (EGG pointing game on detail questions per tertile of the
    step-0 next-token entropy) and ``measures`` (:func:`measure`). Every interval is 95 %
    (:func:`egg_interp.metrics.intervals.interval`: Wilson for proportions).
    """
    acc = _accuracy(rows)
    detail = [r for r in rows if r["family"] == "detail"]
    pg = {k: interval([_pointer(k)(r) for r in detail]) for k in (*TABLE_POINTERS, "any_object")}
    multi = _multi_evidence(acc, interval([r["top2_cover_all"] for r in rows]))
    summary = {
        "accuracy": {f: {k: v["mean"] for k, v in d.items()} for f, d in acc.items()},
        "pointing_game": {k: v["mean"] for k, v in pg.items()},
        "n": {f: sum(r["family"] == f for r in rows) for f in acc},
        "mean_steps": {f: _mean([r["steps"] for r in rows if r["family"] == f]) for f in acc},
        "multi_evidence": {k: v["mean"] for k, v in multi.items()},
        "intervals": {"accuracy": acc, "pointing_game": pg, "multi_evidence": multi},
        "by_n_objects": _by_n_objects(rows, list(acc), detail),
        "pointing_game_by_entropy": {
            "bins": f"{ENTROPY_BINS} quantile bins of the step-0 next-token entropy (nats)",
            "egg": entropy_bins(detail, _pointer("egg"), ENTROPY_BINS),
        },
    }
    if measures is not None:
        summary["measures"] = dict(measures)
    return summary


def _ci(fig: Mapping[str, Any]) -> str:
    lo, hi = fig["ci95"]
    return f"{fig['mean']:.3f} [{lo:.2f}, {hi:.2f}] n={fig['n']}"


def table(summary: dict[str, Any]) -> str:
    """A short text table of the summary (accuracy, pointing games, then the added figures)."""
    lines = [f"{'family':<11}{'n':>5}" + "".join(f"{p:>9}" for p in TABLE_PIPELINES)]
    for fam in scenes.FAMILIES:
        if fam not in summary["accuracy"]:
            continue
        a = summary["accuracy"][fam]
        lines.append(
            f"{fam:<11}{summary['n'][fam]:>5}"
            + "".join(f"{a.get(p, math.nan):>9.3f}" for p in TABLE_PIPELINES)
        )
    if "random_egg" in summary["accuracy"].get("detail", {}):
        lines.append(
            "detail, EGG's own crops moved to random places (same sizes): "
            f"{summary['accuracy']['detail']['random_egg']:.3f}"
        )
    pg = summary["pointing_game"]
    lines.append(
        "pointing game on detail questions (15 px): "
        + ", ".join(f"{k} {pg.get(k, math.nan):.3f}" for k in (*TABLE_POINTERS, "any_object"))
    )
    me = summary["multi_evidence"]
    lines.append(
        f"multi-evidence: top-2 regions cover both boxes {me['top2_cover_both']:.3f}; "
        f"oracle accuracy with two crops {me['accuracy_two_oracle_crops']:.3f} vs one "
        f"{me['accuracy_one_oracle_crop']:.3f}"
    )
    lines.append("95% intervals: Wilson for proportions, bootstrap for the ratio")
    by_n = summary.get("by_n_objects", {})
    detail = by_n.get("accuracy", {}).get("detail", {})
    for k, fig in by_n.get("pointing_game", {}).get("egg", {}).items():
        accs = ", ".join(
            f"{p} {detail[p][k]['mean']:.3f}" for p in TABLE_PIPELINES if k in detail.get(p, {})
        )
        lines.append(f"{k} object(s): EGG pointing game {_ci(fig)}; detail accuracy {accs}")
    for b in summary.get("pointing_game_by_entropy", {}).get("egg", []):
        lo, hi = b["range"]
        lines.append(f"EGG pointing game, step-0 entropy {lo:.2f}-{hi:.2f} nats: {_ci(b)}")
    m = summary.get("measures")
    if m:
        ci = m.get("intervals", {})

        def fmt(key: str, n: int) -> str:
            lo, hi = ci.get(key, [math.nan, math.nan])
            return f"{m.get(key, math.nan):.3f} [{lo:.2f}, {hi:.2f}] n={n}"

        lines.append(
            f"causal measures ({m['n_samples']} detail questions): answer-sensitivity ratio "
            f"{fmt('answer_sensitivity_ratio', m['n_sensitivity'])}; target most causal "
            f"{fmt('target_most_causal', m['n_sensitivity'])}; distractor-crop following "
            f"{fmt('distractor_crop_following', m['n_following'])}"
        )
    return "\n".join(lines)


def examples_figure(
    adapter: VLMAdapter,
    rows: Sequence[Mapping[str, Any]],
    samples: Sequence[Sample],
    options: PipelineOptions,
    n: int = 6,
) -> Any:
    """Image with evidence, EGG map, regions and crop sequence for ``n`` samples, one per row.

    The answers come from the rows; the maps are recomputed (the loop is deterministic) for
    the few samples drawn.
    """
    import matplotlib.pyplot as plt

    from egg_interp.figures.grounding import plot_grounding
    from egg_interp.loop import zoom_and_reground

    by_id = {s.id: s for s in samples}
    picked = []
    for fam in scenes.FAMILIES:
        picked += [r for r in rows if r["family"] == fam][: max(1, n // len(scenes.FAMILIES))]
    images = []
    for r in picked[:n]:
        s = by_id[r["id"]]
        res = zoom_and_reground(adapter, s.image, s.question, settings=options.loop)
        a = {pipe: r["answers"].get(pipe, "") for pipe in TABLE_PIPELINES}
        res.base_answer, res.answer = a["base"], a["egg"]
        fig = plot_grounding(s.image, res, gt_boxes=s.boxes, max_steps_shown=3)
        fig.axes[0].set_title(
            f"{textwrap.fill(s.question, width=44)}\n{s.family}, truth {s.answers[0]!r}\n"
            f"base {a['base']!r}, oracle {a['oracle']!r}\nEGG {a['egg']!r}",
            fontsize=8,
        )
        fig.set_size_inches(fig.get_size_inches()[0], 3.8)
        fig.tight_layout()
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3])
        plt.close(fig)
    width = max(im.shape[1] for im in images)
    padded = [
        np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0)), constant_values=255) for im in images
    ]
    fig, ax = plt.subplots(figsize=(width / 100, sum(im.shape[0] for im in padded) / 100))
    ax.imshow(np.concatenate(padded, axis=0))
    ax.set_axis_off()
    return fig


def run_demo(
    out_dir: str | Path,
    model: str = "organism",
    n: int = 200,
    device: str | None = None,
    seed: int = 0,
    n_figures: int = 8,
    progress: bool = True,
    n_measures: int | None = None,
    version: str = scenes.VERSION,
    batch_size: int = 1,
) -> dict[str, Any]:
    """Run the demo (see the module docstring) and write its outputs to ``out_dir``.

    ``n`` test scenes per family of benchmark ``version``; the causal measures on the first
    ``n_measures`` detail scenes (all of them by default).
    """
    from egg_interp.models import load_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    adapter = load_model(model, device=device)
    samples = scenes.load(split="test", per_family=n, version=version)
    options = PipelineOptions(max_new_tokens=4, seed=seed)
    rows = demo_rows(
        adapter,
        samples,
        out_dir / "results.jsonl",
        options,
        model=str(model),
        batch_size=batch_size,
        progress=progress,
    )
    summary = summarise(rows, measure(adapter, samples, n_measures))
    summary["model"] = str(model)
    summary["scenes_version"] = version
    write_json(out_dir / "summary.json", summary)
    save_figure(
        examples_figure(adapter, rows, samples, options, n_figures), out_dir / "examples.png"
    )
    text = table(summary)
    (out_dir / "summary.txt").write_text(text + "\n")
    print(text)
    return summary
