"""Deletion and insertion of every method's maps on the organism's detail scenes, and their cost.

For each registered method (with its default target), plus two references (``evidence``: the
share of each cell inside the evidence box; ``uniform_noise``: a random map), the first ``N``
detail test scenes: the map of ``[image] + question`` and
:func:`egg_interp.faithfulness.faithfulness_scores` (default settings: pixels, blur, MoRF /
LeRF / random, 16 steps, the original answer's probability; ``--space tokens`` for the
visual-token variant). Prints one table (means with 95 % bootstrap intervals) and the cost:
deletion + insertion at 16 steps of one order, and of all three, against two batched forwards
of 17 rows (the issue's budget), timed on one thread::

    python analyses/faithfulness_organism.py --n 32 --out runs/faithfulness

writes ``faithfulness.json`` and ``faithfulness.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from egg_interp import faithfulness  # noqa: E402
from egg_interp.data import scenes  # noqa: E402
from egg_interp.faithfulness import faithfulness_scores  # noqa: E402
from egg_interp.io import write_json  # noqa: E402
from egg_interp.maps import AttributionMap, GridView, ImageMap  # noqa: E402
from egg_interp.methods import METHODS, get_method  # noqa: E402
from egg_interp.metrics.deletion import FaithfulnessSettings  # noqa: E402
from egg_interp.metrics.intervals import interval  # noqa: E402
from egg_interp.models import load_model  # noqa: E402

REFERENCES = ("evidence", "uniform_noise")


def with_values(amap: AttributionMap, values: np.ndarray, name: str) -> AttributionMap:
    """``amap``'s first image geometry carrying other values."""
    image, view = amap.images[0], amap.images[0].primary
    grid = GridView(values, view.cell_boxes, view.name)
    return AttributionMap([ImageMap([grid], image.image_size, image.origin_box)], name)


def evidence_values(amap: AttributionMap, box) -> np.ndarray:
    """Share of each cell inside ``box`` (x0, y0, x1, y1)."""
    b = amap.images[0].primary.cell_boxes
    w = np.clip(np.minimum(b[..., 2], box[2]) - np.maximum(b[..., 0], box[0]), 0, None)
    h = np.clip(np.minimum(b[..., 3], box[3]) - np.maximum(b[..., 1], box[1]), 0, None)
    return w * h / ((b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]))


def scores_per_method(adapter, samples, methods, settings) -> dict[str, list[dict]]:
    rng = np.random.default_rng(0)
    out: dict[str, list[dict]] = {m: [] for m in [*methods, *REFERENCES]}
    for i, sample in enumerate(samples):
        maps = {
            m: get_method(m).attribute(adapter, [sample.image], sample.question) for m in methods
        }
        egg = maps.get("egg") or next(iter(maps.values()))
        maps["evidence"] = with_values(egg, evidence_values(egg, sample.boxes[0]), "evidence")
        maps["uniform_noise"] = with_values(egg, rng.random(egg.grid.shape), "uniform_noise")
        for name, amap in maps.items():
            scores, curves = faithfulness_scores(adapter, sample, amap, settings)
            out[name].append({**scores, "seconds": curves["seconds"], "rows": curves["rows"]})
        print(f"{i + 1}/{len(samples)}", file=sys.stderr)
    return out


def cost(adapter, sample, settings, repeat: int = 5) -> dict[str, float]:
    """Seconds of deletion + insertion (one order; all three) over two 17-row forwards."""
    amap = get_method("egg").attribute(adapter, [sample.image], sample.question)

    def timed(fn) -> float:
        fn()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    if settings.space == "pixels":

        def forward17() -> None:
            rows = adapter.build_batch([([sample.image], sample.question)] * 17)
            with torch.no_grad():
                adapter.forward(rows, logits_to_keep=1)
    else:

        def forward17() -> None:
            rows = adapter.build_batch([([sample.image], sample.question)] * 17)
            feats = adapter.image_features(adapter.build_inputs([sample.image], sample.question))
            with torch.no_grad():
                adapter.forward_features(rows, feats * 17)

    def first_map() -> None:  # the random control not yet scored for this prompt
        faithfulness._CONTROLS.clear()
        faithfulness_scores(adapter, sample, amap, settings)

    morf_lerf = replace(settings, orders=("morf", "lerf"))
    reference = 2 * timed(forward17)
    return {
        "two_forwards_of_17_rows_s": reference,
        "morf_lerf_s": timed(lambda: faithfulness_scores(adapter, sample, amap, morf_lerf)),
        "three_orders_first_map_s": timed(first_map),
        "three_orders_later_maps_s": timed(
            lambda: faithfulness_scores(adapter, sample, amap, settings)
        ),
    }


def markdown(summary: dict, settings: FaithfulnessSettings, n: int, costs: dict) -> str:
    names = settings.score_names()
    lines = [
        f"# Deletion and insertion on the organism ({n} detail test scenes)",
        "",
        f"Settings: {settings.to_dict()}",
        "",
        "| method | target | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for method, entry in summary.items():
        cells = [
            f"{s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"
            for s in (entry[k] for k in names)
        ]
        lines.append(f"| {method} | {entry['target']} | " + " | ".join(cells) + " |")
    ref = costs["two_forwards_of_17_rows_s"]
    lines += [
        "",
        f"Cost per map (one thread, median of 5), against two batched forwards of 17 rows "
        f"({ref:.3f} s): deletion + insertion at 16 steps, MoRF + LeRF (32 masked inputs) "
        f"{costs['morf_lerf_s']:.3f} s, ratio {costs['morf_lerf_s'] / ref:.2f}; with the "
        f"random control, first map of a prompt (62 inputs) "
        f"{costs['three_orders_first_map_s']:.3f} s, ratio "
        f"{costs['three_orders_first_map_s'] / ref:.2f}; later maps of the prompt (32 inputs, "
        f"the control shared) {costs['three_orders_later_maps_s']:.3f} s, ratio "
        f"{costs['three_orders_later_maps_s'] / ref:.2f}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=32, help="detail test scenes")
    p.add_argument("--space", default="pixels", choices=("pixels", "tokens"))
    p.add_argument("--methods", default=",".join(sorted(METHODS)))
    p.add_argument("--out", default="runs/faithfulness")
    args = p.parse_args()
    torch.set_num_threads(1)
    adapter = load_model("organism", device="cpu")
    samples = scenes.load(split="test", per_family=args.n, families=["detail"])
    settings = FaithfulnessSettings(space=args.space)
    methods = [m for m in args.methods.split(",") if m]
    per_method = scores_per_method(adapter, samples, methods, settings)
    summary = {}
    for name, rows in per_method.items():
        target = get_method(name).target.describe() if name in METHODS else "-"
        if name in METHODS and not get_method(name).uses_target:
            target = "none"
        summary[name] = {k: interval([r[k] for r in rows], proportion=False) for k in rows[0]}
        summary[name]["target"] = target
    costs = cost(adapter, samples[0], settings)
    out = Path(args.out)
    write_json(
        out / "faithfulness.json",
        {
            "summary": summary,
            "costs": costs,
            "settings": settings.to_dict(),
            "per_sample": per_method,
        },
    )
    (out / "faithfulness.md").write_text(markdown(summary, settings, len(samples), costs))
    print((out / "faithfulness.md").read_text())


if __name__ == "__main__":
    main()
