"""Reproduce the layout of the paper's Table 1: base / +ViCrop / +EGG accuracy per benchmark.

One ``egg-interp evaluate`` per dataset (each resumable, each its own results file under
``--results-dir``), then one ``egg-interp report`` over all of them into ``--figures``
(``accuracy.md`` is the table; the pointing-game table covers the datasets with boxes).

On a GPU with the official benchmark files under one root (one folder per dataset, named as
in the registry: ``textvqa/``, ``vstar/``, ``docvqa/``, ``pope/``, ``infovqa/``, ``gqa/``,
``realworldqa/``)::

    torchrun --nproc_per_node 8 analyses/eval_table1.py --model llava-hf/llava-1.5-7b-hf \\
        --data-root /data --prompt-suffix "Answer the question using a single word or phrase."

On CPU with the model organism, the scenes benchmark alone (a few minutes)::

    python analyses/eval_table1.py --datasets scenes --limit 25
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from egg_interp.cli import main as cli  # noqa: E402
from egg_interp.distributed import (  # noqa: E402
    dist_info,
    init_process_group,
    rank_device,
    shutdown,
)

DATASETS = "textvqa,vstar,docvqa,pope,infovqa,gqa,realworldqa"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="organism")
    ap.add_argument("--datasets", default=DATASETS)
    ap.add_argument("--data-root", type=Path, default=Path("data"), help="one folder per dataset")
    ap.add_argument("--limit", type=int, default=0, help="samples per dataset; 0 = all")
    ap.add_argument("--pipelines", default="base,vicrop,egg")
    ap.add_argument("--methods", default="egg", help="maps scored where the data have boxes")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "runs" / "table1")
    ap.add_argument("--figures", type=Path, default=ROOT / "figures" / "table1")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--prompt-suffix", default="")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    pipelines = [p for p in args.pipelines.split(",") if p]
    if "vicrop" in pipelines and importlib.util.find_spec("egg_interp.vicrop") is None:
        print("egg_interp.vicrop is not available: the vicrop pipeline is skipped")
        pipelines.remove("vicrop")
    info = dist_info()  # one process group for all datasets (evaluate then reuses it)
    created = init_process_group(info, rank_device(args.device, info))
    results = []
    for dataset in [d for d in args.datasets.split(",") if d]:
        out = args.results_dir / f"{dataset}.jsonl"
        cmd = [
            "evaluate",
            "--model",
            args.model,
            "--prompt-suffix",
            args.prompt_suffix,
            "--dataset",
            dataset,
            "--data-root",
            str(args.data_root / dataset),
            "--methods",
            args.methods,
            "--pipelines",
            ",".join(pipelines),
            "--out",
            str(out),
            "--batch-size",
            str(args.batch_size),
        ]
        for flag, value in (("--device", args.device), ("--dtype", args.dtype)):
            if value:
                cmd += [flag, value]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        if args.no_progress:
            cmd.append("--no-progress")
        rc = cli(cmd)
        if rc:
            print(f"{dataset}: evaluate failed (exit {rc}); continuing with the others")
            continue
        results.append(str(out))
    if created:
        shutdown()
    if not results or not info.is_main:
        return 0 if results else 1
    return cli(["report", *results, "--out", str(args.figures)])


if __name__ == "__main__":
    raise SystemExit(main())
