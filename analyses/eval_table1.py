"""Reproduce the layout of the paper's Table 1: base / +ViCrop / +EGG accuracy per benchmark.

One evaluation per dataset with one loaded model (:func:`egg_interp.runner.evaluate`, what
``egg-interp evaluate`` runs; each resumable, each its own results file under
``--results-dir``), then one report over all of them into ``--figures``
(:func:`egg_interp.report.write_report`; ``accuracy.md`` is the table; the pointing-game
table covers the datasets with boxes).

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

from egg_interp.distributed import (  # noqa: E402
    dist_info,
    init_process_group,
    rank_device,
    shutdown,
)
from egg_interp.errors import EggError  # noqa: E402
from egg_interp.pipelines import PipelineOptions  # noqa: E402
from egg_interp.settings import METHOD_NAMES, PIPELINE_NAMES, resolve_name, split_names  # noqa: E402

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

    from egg_interp.data.registry import load_dataset
    from egg_interp.models import load_model
    from egg_interp.report import write_report
    from egg_interp.runner import evaluate

    pipelines = [resolve_name(p, PIPELINE_NAMES, "pipeline") for p in split_names(args.pipelines)]
    if "vicrop" in pipelines and importlib.util.find_spec("egg_interp.vicrop") is None:
        print("egg_interp.vicrop is not available: the vicrop pipeline is skipped")
        pipelines.remove("vicrop")
    methods = [resolve_name(m, METHOD_NAMES, "method") for m in split_names(args.methods)]
    info = dist_info()  # one process group for all datasets (evaluate then reuses it)
    device = rank_device(args.device, info)
    created = init_process_group(info, device)
    adapter = load_model(
        args.model, device=device, dtype=args.dtype, prompt_suffix=args.prompt_suffix
    )
    options = PipelineOptions()
    results = []
    for dataset in [d for d in args.datasets.split(",") if d]:
        out = args.results_dir / f"{dataset}.jsonl"
        try:
            samples = load_dataset(dataset, args.data_root / dataset, None, args.limit or None)
            summary = evaluate(
                adapter,
                samples,
                methods,
                pipelines,
                out,
                dataset=dataset,
                model=args.model,
                pipeline_options=options,
                batch_size=args.batch_size,
                progress=not args.no_progress,
                dist=info,
                data_root=args.data_root / dataset,
            )
        except EggError as exc:  # a missing or malformed benchmark: go on with the others
            print(f"{dataset}: evaluate failed ({exc}); continuing with the others")
            continue
        print(f"{dataset}: {summary.written} lines written, {summary.errors} errors")
        results.append(summary.out)
    if created:
        shutdown()
    if not results or not info.is_main:
        return 0 if results else 1
    write_report(results, args.figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
