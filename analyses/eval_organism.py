"""Model-level figures of the organism on the scenes benchmark, through the runner.

Usage::

    python analyses/eval_organism.py [--model DIR] [--n 200] [--split test]
        [--version scenes-v2] [--out runs/organism/eval.json]

The same evaluation as ``egg-interp demo`` (:func:`egg_interp.demo.demo_rows`: the runner's
lines, appended to ``eval.jsonl`` next to ``--out`` so a re-run resumes) and the same
summary (:func:`egg_interp.demo.summarise`): accuracy per family of the full view (``base``), the
oracle crops (one of two for ``multi``), EGG's crops and random crops of the oracle's sizes;
the EGG pointing game and its reference pointers; everything also by number of objects and
with 95 % intervals. ``--measures N`` adds the causal measures on N detail scenes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from egg_interp.data import scenes  # noqa: E402
from egg_interp.demo import demo_rows, measure, summarise, table  # noqa: E402
from egg_interp.io import write_json  # noqa: E402
from egg_interp.organism import ORGANISM_DIR  # noqa: E402
from egg_interp.pipelines import PipelineOptions  # noqa: E402


def main(argv=None) -> int:
    import torch

    from egg_interp.models import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", type=Path, default=ORGANISM_DIR)
    ap.add_argument("--n", type=int, default=200, help="test samples per family")
    ap.add_argument("--split", default="test")
    ap.add_argument("--version", default=scenes.VERSION, help="scenes benchmark version")
    ap.add_argument("--measures", type=int, default=0, help="detail scenes for causal measures")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "organism" / "eval.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    adapter = load_model(args.model, device="cpu")
    samples = scenes.load(split=args.split, per_family=args.n, version=args.version)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = demo_rows(
        adapter,
        samples,
        args.out.with_suffix(".jsonl"),
        PipelineOptions(max_new_tokens=4),
        model=str(args.model),
        batch_size=args.batch_size,
        progress=True,
    )
    res = summarise(rows, measure(adapter, samples, args.measures) if args.measures else None)
    res |= {
        "model": str(args.model),
        "split": args.split,
        "version": args.version,
        "parameters": sum(p.numel() for p in adapter.model.parameters()),
        "seconds": round(time.time() - t0, 1),
    }
    write_json(args.out, res)
    print(table(res))
    print(f"wrote {args.out} ({res['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
