"""Do two methods' saved maps differ, and do they rank the cells alike? (the target ablation)

Reads the maps a run saved (``evaluate --save-maps``; ``analyses/eval_scenes.py`` saves them
under ``runs/scenes/maps``) of two methods, e.g. EGG (the entropy's gradient) and saliency
(the answer log-probability's gradient at the same embeddings), and prints, over the samples
both mapped: how far the values differ (the ratio of their total relevance, and the largest
cell difference of the two maps scaled to unit mass, relative to the first's largest cell),
the Spearman correlation of the two grids, the share of samples whose two maps rank
every cell in the same order, and the share whose deletion curves change the same cells at
every step (MoRF at ``--steps``: equal curves, equal AUCs)::

    python analyses/compare_targets.py runs/scenes/results.jsonl --a egg --b saliency
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from egg_interp.maps import AttributionMap  # noqa: E402
from egg_interp.metrics.deletion import cell_order, step_counts, step_masks  # noqa: E402
from egg_interp.metrics.intervals import interval  # noqa: E402
from egg_interp.results import load_results  # noqa: E402


def saved_grids(results: Path, method: str) -> dict[str, tuple[np.ndarray, str]]:
    """Sample id -> (the saved map's first-image grid, its target), for ``method``'s lines."""
    out = {}
    for r in load_results(results):
        if r["kind"] == "map" and r["name"] == method and r.get("map_file") and not r["error"]:
            amap = AttributionMap.load(results.parent / r["map_file"])
            out[r["sample_id"]] = (np.asarray(amap.grid, dtype=np.float64), amap.target)
    return out


def compare(a: np.ndarray, b: np.ndarray, steps: int) -> dict[str, float]:
    """How two grids of one sample differ and whether they rank the cells alike."""
    mass_a, mass_b = a / np.abs(a).sum(), b / np.abs(b).sum()
    counts = step_counts(a.size, steps)
    same_steps = all(
        np.array_equal(m1, m2)
        for m1, m2 in zip(
            step_masks(cell_order(a, "morf"), a.shape, counts, "deletion"),
            step_masks(cell_order(b, "morf"), b.shape, counts, "deletion"),
        )
    )
    return {
        "scale_ratio": float(np.abs(b).sum() / np.abs(a).sum()),
        "max_mass_difference": float(np.abs(mass_a - mass_b).max() / np.abs(mass_a).max()),
        "spearman": float(spearmanr(a.ravel(), b.ravel()).statistic),
        "same_ranking": float(np.array_equal(cell_order(a, "morf"), cell_order(b, "morf"))),
        "same_deletion_steps": float(same_steps),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path)
    p.add_argument("--a", default="egg")
    p.add_argument("--b", default="saliency")
    p.add_argument("--steps", type=int, default=16, help="deletion steps (the run's default)")
    args = p.parse_args(argv)
    a, b = saved_grids(args.results, args.a), saved_grids(args.results, args.b)
    common = sorted(set(a) & set(b))
    if not common:
        print(f"no sample has saved maps of both {args.a} and {args.b}")
        return 1
    rows = [compare(a[s][0], b[s][0], args.steps) for s in common]
    targets = sorted({a[s][1] for s in common}), sorted({b[s][1] for s in common})
    print(
        f"{args.a} (target {', '.join(targets[0])}) against {args.b} (target "
        f"{', '.join(targets[1])}), {len(common)} samples with both maps saved; grid "
        f"{'x'.join(map(str, a[common[0]][0].shape))}; mean [95 % interval]:"
    )
    for key in rows[0]:
        figure = interval([r[key] for r in rows])
        lo, hi = figure["ci95"]
        print(f"  {key:<26} {figure['mean']:.4g} [{lo:.4g}, {hi:.4g}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
