"""``egg-interp demo``: EGG on the model organism's scenes benchmark, end to end.

Everything is evaluated by the runner (:func:`egg_interp.runner.evaluate`, lines appended
to ``results.jsonl`` in the output directory, so an interrupted demo resumes): the ``egg``
map of every scene, scored with the pointing game and the reference pointers (a centre
point, a uniform-random map, a random object of the scene, and whether EGG's peak hits any
object: :data:`egg_interp.scoring.POINTERS`), and the answer pipelines ``base`` (shown as
``full``: the full view alone), ``oracle`` (crops around the true evidence), ``egg`` (EGG's
crops), ``random`` (random crops of the oracle's sizes) and, on multi-evidence questions,
``oracle_one`` (one of the two oracle crops). On the detail questions it also runs
``random_egg`` (EGG's own crops moved to random places) and the organism's causal measures (:mod:`egg_interp.organism.measures`). :func:`summarise` derives
``summary.json`` from the lines (:mod:`egg_interp.summaries`); it writes ``summary.json``,
``summary.txt``, ``examples.png`` and prints the table.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
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

PIPELINES = ("full", "oracle", "egg", "random")
"""The demo's pipelines as its table names them."""
RUNNER_PIPELINE = {"full": "base", "oracle": "oracle", "egg": "egg", "random": "random"}
"""Demo name -> registered pipeline (:data:`egg_interp.pipelines.PIPELINES`)."""
POINTERS = ("egg", "centre", "random", "random_object")
ENTROPY_BINS = 3
"""The EGG pointing game is reported by tertiles of the step-0 next-token entropy."""


def evaluate(
    adapter: VLMAdapter,
    samples: Sequence[Sample],
    out: str | Path,
    options: PipelineOptions | None = None,
    model: str | None = None,
    batch_size: int = 1,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Run the demo's evaluation through the runner; return the sample rows.

    The ``egg`` map and the pipelines of :data:`RUNNER_PIPELINE` on every sample, plus
    ``oracle_one`` on the multi-evidence samples with two boxes and ``random_egg`` (EGG's
    crops at random places) on the detail samples, appended to ``out`` (lines
    already there for the same configs are reused). Rows: :func:`egg_interp.summaries.sample_rows`.
    """
    from egg_interp.runner import evaluate as run

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
        run(
            adapter, samples, methods=("egg",), pipelines=tuple(RUNNER_PIPELINE.values()), **kw
        ).config_hashes
    )
    multi = [s for s in samples if s.family == "multi" and len(s.boxes) > 1]
    if multi:
        hashes |= run(adapter, multi, methods=(), pipelines=("oracle_one",), **kw).config_hashes
    detail = [s for s in samples if s.family == "detail"]
    if detail:
        hashes |= run(adapter, detail, methods=(), pipelines=("random_egg",), **kw).config_hashes
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
    names = dict(RUNNER_PIPELINE, oracle_one="oracle_one", random_egg="random_egg")
    acc: dict[str, dict[str, Any]] = {}
    for fam in scenes.FAMILIES:
        fam_rows = [r for r in rows if r["family"] == fam]
        if not fam_rows:
            continue
        acc[fam] = {}
        for label, pipe in names.items():
            values = [r["correct"][pipe] for r in fam_rows if pipe in r["correct"]]
            if values:
                acc[fam][label] = interval(values)
    detail = [r for r in rows if r["family"] == "detail"]
    pointers = (*POINTERS, "any_object")

    def pointer(name: str):
        if name == "egg":
            return lambda r: r["pointing"].get("egg", math.nan)
        return lambda r: r["reference"].get(name, math.nan)

    pg = {k: interval([pointer(k)(r) for r in detail]) for k in pointers}
    n_obj = lambda r: r["n_objects"]  # noqa: E731
    by_n_acc = {
        fam: {
            label: {
                str(k): v
                for k, v in figure_by(
                    [r for r in rows if r["family"] == fam and pipe in r["correct"]],
                    lambda r, pipe=pipe: r["correct"][pipe],
                    n_obj,
                ).items()
            }
            for label, pipe in RUNNER_PIPELINE.items()
        }
        for fam in acc
    }
    by_n_pg = {str(k): v for k, v in figure_by(detail, pointer("egg"), n_obj).items()}
    cover = interval([r["top2_cover_all"] for r in rows])
    multi = acc.get("multi", {})
    nan = interval([])
    summary = {
        "accuracy": {f: {k: v["mean"] for k, v in d.items()} for f, d in acc.items()},
        "pointing_game": {k: v["mean"] for k, v in pg.items()},
        "n": {f: sum(r["family"] == f for r in rows) for f in acc},
        "mean_steps": {f: _mean([r["steps"] for r in rows if r["family"] == f]) for f in acc},
        "multi_evidence": {
            "top2_cover_both": cover["mean"],
            "accuracy_two_oracle_crops": multi.get("oracle", nan)["mean"],
            "accuracy_one_oracle_crop": multi.get("oracle_one", nan)["mean"],
        },
        "intervals": {
            "accuracy": acc,
            "pointing_game": pg,
            "multi_evidence": {
                "top2_cover_both": cover,
                "accuracy_two_oracle_crops": multi.get("oracle", nan),
                "accuracy_one_oracle_crop": multi.get("oracle_one", nan),
            },
        },
        "by_n_objects": {"accuracy": by_n_acc, "pointing_game": {"egg": by_n_pg}},
        "pointing_game_by_entropy": {
            "bins": f"{ENTROPY_BINS} quantile bins of the step-0 next-token entropy (nats)",
            "egg": entropy_bins(detail, pointer("egg"), ENTROPY_BINS),
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
    lines = [f"{'family':<11}{'n':>5}" + "".join(f"{p:>9}" for p in PIPELINES)]
    for fam in scenes.FAMILIES:
        if fam not in summary["accuracy"]:
            continue
        a = summary["accuracy"][fam]
        lines.append(
            f"{fam:<11}{summary['n'][fam]:>5}"
            + "".join(f"{a.get(p, math.nan):>9.3f}" for p in PIPELINES)
        )
    if "random_egg" in summary["accuracy"].get("detail", {}):
        lines.append(
            "detail, EGG's own crops moved to random places (same sizes): "
            f"{summary['accuracy']['detail']['random_egg']:.3f}"
        )
    pg = summary["pointing_game"]
    lines.append(
        "pointing game on detail questions (15 px): "
        + ", ".join(f"{k} {pg.get(k, math.nan):.3f}" for k in (*POINTERS, "any_object"))
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
            f"{p} {detail[p][k]['mean']:.3f}" for p in PIPELINES if k in detail.get(p, {})
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
        a = {label: r["answers"].get(pipe, "") for label, pipe in RUNNER_PIPELINE.items()}
        res.base_answer, res.answer = a["full"], a["egg"]
        fig = plot_grounding(s.image, res, gt_boxes=s.boxes, max_steps_shown=3)
        fig.axes[0].set_title(
            f"{textwrap.fill(s.question, width=44)}\n{s.family}, truth {s.answers[0]!r}\n"
            f"full {a['full']!r}, oracle {a['oracle']!r}\nEGG {a['egg']!r}",
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
    rows = evaluate(
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
