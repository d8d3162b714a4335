"""``egg-interp demo``: EGG on the model organism's scenes benchmark, end to end.

For each test scene and question family it answers with the full view alone (``full``), with
crops around the true evidence (``oracle``), with EGG's crops (``egg``) and with random crops
of the oracle's sizes (``random``); it scores the EGG map with the pointing game against the
evidence boxes and compares it with a centre point, a uniform-random map and a randomly
chosen object of the scene (the bar that separates grounding from mere object saliency).
It writes ``summary.json``, ``examples.png`` and prints a short table.
"""

from __future__ import annotations

import hashlib
import math
import sys
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from egg_interp.data import scenes
from egg_interp.data.sample import Sample
from egg_interp.geometry import random_boxes_like, square_crop
from egg_interp.io import save_figure, write_json
from egg_interp.loop import GroundingResult, answer_with_crops, zoom_and_reground
from egg_interp.metrics import ANSWER_METRICS, all_boxes_covered, box_hits, pointing_game
from egg_interp.models.base import VLMAdapter
from egg_interp.pipelines import PipelineOptions

PIPELINES = ("full", "oracle", "egg", "random")
POINTERS = ("egg", "centre", "random", "random_object")


def _rng(key: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _point_hit(point: tuple[float, float], boxes: list, tol: float) -> float:
    return float(box_hits(point, boxes, tolerance=tol).any()) if boxes else math.nan


def pointing_scores(
    sample: Sample, result: GroundingResult, seed: int = 0, tol: float = 15.0
) -> dict[str, float]:
    """Pointing game of the EGG map and of the three reference pointers on one sample.

    ``any_object`` says whether the EGG map's peak hits *some* object of the scene.
    """
    width, height = sample.meta["size"]
    rng = _rng(sample.id, seed)
    heat = np.nan_to_num(result.maps[0].heatmap(), nan=0.0)
    objects = [tuple(o["box"]) for o in sample.meta.get("objects", [])]
    noise = rng.random((height, width))
    obj = objects[int(rng.integers(len(objects)))] if objects else None
    return {
        "egg": pointing_game(heat, sample.boxes, tolerance=tol),
        "centre": _point_hit((width / 2, height / 2), sample.boxes, tol),
        "random": pointing_game(noise, sample.boxes, tolerance=tol),
        "random_object": (
            _point_hit(((obj[0] + obj[2]) / 2, (obj[1] + obj[3]) / 2), sample.boxes, tol)
            if obj
            else math.nan
        ),
        "any_object": pointing_game(heat, objects, tolerance=tol) if objects else math.nan,
    }


def evaluate_sample(
    adapter: VLMAdapter, sample: Sample, options: PipelineOptions, seed: int = 0
) -> dict[str, Any]:
    """Answers of every pipeline, pointing scores and multi-evidence coverage for one sample."""
    image = sample.image
    score = ANSWER_METRICS["exact"]
    result = zoom_and_reground(
        adapter,
        image,
        sample.question,
        settings=options.loop,
    )
    oracle = [square_crop(b, options.loop.crop_scale, image.size) for b in sample.boxes]
    crops = {
        "full": [],
        "oracle": oracle,
        "egg": result.crops,
        "random": random_boxes_like(oracle, image.size, seed, sample.id),
    }
    if sample.family == "multi" and len(oracle) > 1:
        crops["oracle_one"] = oracle[:1]
    answers = {
        name: answer_with_crops(adapter, image, sample.question, c, options.max_new_tokens)
        for name, c in crops.items()
    }
    row: dict[str, Any] = {
        "id": sample.id,
        "family": sample.family,
        "answers": answers,
        "correct": {k: float(score(a, sample.answers)) for k, a in answers.items()},
        "pointing": pointing_scores(sample, result, seed),
        "steps": len(result.steps),
        "crops": [list(b) for b in result.crops],
        "top2_cover_all": (
            float(all_boxes_covered([r.box for r in result.regions[:2]], sample.boxes))
            if len(sample.boxes) > 1
            else math.nan
        ),
    }
    return row | {"_result": result, "_sample": sample}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The demo's ``summary.json``: accuracy per family and pipeline, pointing games, counts."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    pg: dict[str, list[float]] = defaultdict(list)
    cover, steps = [], defaultdict(list)
    for r in rows:
        for k, v in r["correct"].items():
            acc[r["family"]][k].append(v)
        steps[r["family"]].append(r["steps"])
        if r["family"] == "detail":
            for k, v in r["pointing"].items():
                pg[k].append(v)
        if not math.isnan(r["top2_cover_all"]):
            cover.append(r["top2_cover_all"])

    def mean(xs: list[float]) -> float:
        xs = [x for x in xs if not math.isnan(x)]
        return float(np.mean(xs)) if xs else math.nan

    multi = acc.get("multi", {})
    return {
        "accuracy": {f: {k: mean(v) for k, v in d.items()} for f, d in acc.items()},
        "pointing_game": {k: mean(v) for k, v in pg.items()},
        "n": {f: len(v) for f, v in steps.items()},
        "mean_steps": {f: mean(v) for f, v in steps.items()},
        "multi_evidence": {
            "top2_cover_both": mean(cover),
            "accuracy_two_oracle_crops": mean(multi.get("oracle", [])),
            "accuracy_one_oracle_crop": mean(multi.get("oracle_one", [])),
        },
    }


def table(summary: dict[str, Any]) -> str:
    """A short text table of the summary."""
    lines = [f"{'family':<11}{'n':>5}" + "".join(f"{p:>9}" for p in PIPELINES)]
    for fam in scenes.FAMILIES:
        if fam not in summary["accuracy"]:
            continue
        a = summary["accuracy"][fam]
        lines.append(
            f"{fam:<11}{summary['n'][fam]:>5}"
            + "".join(f"{a.get(p, math.nan):>9.3f}" for p in PIPELINES)
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
    return "\n".join(lines)


def examples_figure(rows: list[dict[str, Any]], n: int = 6) -> Any:
    """Image with evidence, EGG map, regions and crop sequence for ``n`` samples, one per row."""
    import matplotlib.pyplot as plt

    from egg_interp.figures.grounding import plot_grounding

    picked = []
    for fam in scenes.FAMILIES:
        picked += [r for r in rows if r["family"] == fam][: max(1, n // len(scenes.FAMILIES))]
    images = []
    for r in picked[:n]:
        res, s = r["_result"], r["_sample"]
        res.base_answer, res.answer = r["answers"]["full"], r["answers"]["egg"]
        fig = plot_grounding(s.image, res, gt_boxes=s.boxes, max_steps_shown=3)
        a = r["answers"]
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
) -> dict[str, Any]:
    """Run the demo (see the module docstring) and write its outputs to ``out_dir``."""
    from tqdm.auto import tqdm

    from egg_interp.models import load_model

    out_dir = Path(out_dir)
    adapter = load_model(model, device=device)
    samples = scenes.load(split="test", per_family=n)
    options = PipelineOptions(max_new_tokens=4)
    rows = []
    # in a log file (not a terminal), update the bar every 10 s instead of every sample
    interval = 0.1 if sys.stderr.isatty() else 10.0
    bar = tqdm(samples, desc="demo", disable=not progress, mininterval=interval)
    for s in bar:
        rows.append(evaluate_sample(adapter, s, options, seed))
        done = [r["correct"]["egg"] for r in rows]
        bar.set_postfix(egg_acc=f"{np.mean(done):.3f}", refresh=False)
    summary = summarise(rows)
    summary["model"] = str(model)
    write_json(out_dir / "summary.json", summary)
    save_figure(examples_figure(rows, n_figures), out_dir / "examples.png")
    text = table(summary)
    (out_dir / "summary.txt").write_text(text + "\n")
    print(text)
    return summary
