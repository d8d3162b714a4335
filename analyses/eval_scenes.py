"""Evaluate maps and answer pipelines on a benchmark, then write the report into ``figures/``.

Defaults: the model organism on its synthetic ``scenes`` benchmark (test split), on CPU in a
few minutes::

    python analyses/eval_scenes.py

which runs the library's evaluation (:func:`egg_interp.runner.evaluate_config`, what ``egg-interp
evaluate`` runs; resumable: re-running continues where it stopped) into
``runs/scenes/results.jsonl`` and its report (:func:`egg_interp.report.write_report`, what
``egg-interp report`` runs) into ``figures/scenes/`` (tables as
markdown + CSV, bar plots with 95 % bootstrap CIs, evidence-size and question-family
breakdowns, comparison grids of the first samples). The same script runs a real checkpoint
on a real benchmark on a GPU, e.g.::

    python analyses/eval_scenes.py --model llava-hf/llava-1.5-7b-hf --dataset vstar \\
        --data-root /data/vstar --limit 0 --device cuda \\
        --prompt-suffix "Answer the question using a single word or phrase." \\
        --results runs/vstar/results.jsonl --figures figures/vstar

and under ``torchrun --nproc_per_node N analyses/eval_scenes.py ...`` the evaluation is
sharded over N GPUs (the report is written once, by rank 0).

``--faithfulness deletion,insertion`` (with ``--faithfulness-space``, ``-substrate``,
``-steps``, ``-orders``, as ``egg-interp evaluate``) adds every map's deletion and insertion
curves: the report gains the faithfulness table and plot and the target ablation (EGG's
entropy against saliency's answer log-probability). The committed ``figures/scenes`` come
from (every registered method, 100 scenes, answers batched by 8)::

    EGG_INTERP_THREADS=1 python analyses/eval_scenes.py --batch-size 8 \\
        --faithfulness deletion,insertion
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from egg_interp.distributed import dist_info, rank_device  # noqa: E402
from egg_interp.settings import LoopSettings  # noqa: E402

METHODS = "all"
"""Map methods scored by default: every registered method (``--methods a,b`` for fewer)."""
PIPELINES = "base,vicrop,egg,oracle,random,random_egg"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="organism")
    ap.add_argument("--dataset", default="scenes")
    ap.add_argument("--data-root", default=None, help="benchmark files (not needed for scenes)")
    ap.add_argument("--split", default=None)
    ap.add_argument(
        "--limit",
        type=int,
        default=100,
        help="samples (for scenes a balanced prefix: 100 = 25 per question family); 0 = all",
    )
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--pipelines", default=PIPELINES)
    ap.add_argument("--stop", default="ent")
    ap.add_argument("--results", type=Path, default=ROOT / "runs" / "scenes" / "results.jsonl")
    ap.add_argument("--figures", type=Path, default=ROOT / "figures" / "scenes")
    ap.add_argument("--grids", type=int, default=6, help="comparison grids of the first N")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--prompt-suffix", default="")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--faithfulness", default=None, help="curves: deletion,insertion (off)")
    ap.add_argument("--faithfulness-space", default=None, choices=("pixels", "tokens"))
    ap.add_argument("--faithfulness-substrate", default=None)
    ap.add_argument("--faithfulness-steps", type=int, default=None)
    ap.add_argument("--faithfulness-orders", default=None)
    return ap.parse_args(argv)


def available(names: str, registry: dict) -> str:
    """Keep the registered names (say which are dropped)."""
    keep = [n for n in names.split(",") if n and n.replace("-", "_") in registry]
    dropped = sorted(set(n for n in names.split(",") if n) - set(keep))
    if dropped:
        print(f"not available here, skipped: {', '.join(dropped)}")
    return ",".join(keep)


def main(argv: list[str] | None = None) -> int:
    from egg_interp.data.registry import load_dataset
    from egg_interp.methods import METHODS as METHOD_REGISTRY
    from egg_interp.models import load_model
    from egg_interp.pipelines import PIPELINES as PIPELINE_REGISTRY
    from egg_interp.report import write_report
    from egg_interp.run_config import RunConfig, faithfulness_from_args
    from egg_interp.runner import evaluate_config

    args = parse_args(argv)
    threads = args.threads or os.environ.get("EGG_INTERP_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    pipelines = args.pipelines
    if "vicrop" in pipelines.split(",") and importlib.util.find_spec("egg_interp.vicrop") is None:
        print("egg_interp.vicrop is not available: the vicrop pipeline is skipped")
        pipelines = ",".join(p for p in pipelines.split(",") if p != "vicrop")
    names = ",".join(METHOD_REGISTRY) if args.methods == "all" else args.methods
    methods = [m for m in available(names, METHOD_REGISTRY).split(",") if m]
    pipelines = [p for p in available(pipelines, PIPELINE_REGISTRY).split(",") if p]
    run = RunConfig(  # checked before the model loads
        methods=methods,
        pipelines=pipelines,
        loop=LoopSettings(stop=args.stop),
        batch_size=args.batch_size,
        faithfulness=faithfulness_from_args(args),
        dataset=args.dataset,
        split=args.split,
        model=args.model,
    )
    info = dist_info()
    samples = load_dataset(args.dataset, args.data_root or ".", args.split, args.limit or None)
    adapter = load_model(
        args.model,
        device=rank_device(args.device, info),
        dtype=args.dtype,
        prompt_suffix=args.prompt_suffix,
    )
    summary = evaluate_config(
        adapter,
        samples,
        run,
        args.results,
        maps_dir=args.results.parent / "maps",
        progress=not args.no_progress,
        dist=info,
        data_root=args.data_root,
    )
    print(
        f"{summary.written} lines written, {summary.skipped} already done, {summary.errors} errors"
    )
    if not info.is_main:
        return 0
    written = write_report(
        summary.out,
        args.figures,
        grids=args.grids,
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        prompt_suffix=args.prompt_suffix,
        data_root=args.data_root,
    )
    print(f"wrote {len(written)} files to {args.figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
