"""What ``egg-interp evaluate``, ``merge`` and ``report`` run (arguments: :mod:`egg_interp.cli.args`)."""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

from egg_interp.errors import InputError
from egg_interp.settings import METHOD_NAMES, PIPELINE_NAMES, resolve_name, split_names


def run_evaluate(args: argparse.Namespace) -> int:
    """Check the options, load the dataset and the model (on this rank's device), then
    :func:`runner.evaluate` with ``args.loop`` inside the pipeline options."""
    from egg_interp.data.registry import DATASETS

    methods = [resolve_name(m, METHOD_NAMES, "method") for m in split_names(args.methods)]
    pipelines = [resolve_name(p, PIPELINE_NAMES, "pipeline") for p in split_names(args.pipelines)]
    if not methods and not pipelines:
        raise InputError("nothing to evaluate: give --methods or --pipelines")
    args.dataset = resolve_name(args.dataset, DATASETS, "dataset")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    if not args.tolerance >= 0:
        raise InputError(f"--tolerance must be >= 0, got {args.tolerance}")

    from egg_interp.data.registry import load_dataset
    from egg_interp.distributed import dist_info, rank_device
    from egg_interp.methods import get_method
    from egg_interp.models import load_model
    from egg_interp.pipelines import PipelineOptions
    from egg_interp.runner import evaluate

    options = PipelineOptions(args.loop, max_new_tokens=args.max_new_tokens, seed=args.seed)
    if options.loop.method_options:  # unknown option names fail here, before the model loads
        get_method(options.loop.method, **options.loop.method_kwargs())
    info = dist_info()
    device = rank_device(args.device, info)
    samples = load_dataset(args.dataset, args.data_root or ".", args.split, args.limit)
    adapter = load_model(
        args.model, device=device, dtype=args.dtype, prompt_suffix=args.prompt_suffix
    )
    summary = evaluate(
        adapter,
        samples,
        methods,
        pipelines,
        args.out,
        dataset=args.dataset,
        split=args.split,
        model=args.model,
        pipeline_options=options,
        tolerance=args.tolerance,
        top_k=options.loop.top_k,
        batch_size=args.batch_size,
        maps_dir=args.save_maps,
        retry_errors=args.retry_errors,
        progress=not args.no_progress,
        dist=info,
        data_root=args.data_root,
    )
    where = f"rank {info.rank}/{info.world_size}: " if info.distributed else ""
    print(
        f"{where}{summary.written} lines written, {summary.skipped} already done, "
        f"{summary.errors} errors ({summary.seconds:.1f} s)"
    )
    if summary.merged is not None:
        print(f"merged into {summary.out}: {summary.merged} lines")
    if info.is_main:
        from egg_interp.report import accuracy_long, load_frames, pointing_game_table

        maps, answers = load_frames(summary.out)
        for _, row in pointing_game_table(maps).iterrows():
            print(
                f"  map    {row['dataset']:<12} {row['method']:<22} pointing game "
                f"{100 * row['pointing_game']:6.2f}  (n={row['n_scored']})"
            )
        for _, row in accuracy_long(answers).iterrows():
            print(
                f"  answer {row['dataset']:<12} {row['pipeline']:<22} accuracy      "
                f"{100 * row['accuracy']:6.2f}  (n={row['n_scored']})"
            )
    return 0


def run_merge(args: argparse.Namespace) -> int:
    """Merge parts (files or glob patterns; default ``OUT.rank*.jsonl``) into OUT."""
    from egg_interp.results import merge_results, part_paths

    parts: list[Path] = []
    for pattern in args.parts:
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matched:
            raise InputError(f"no results file matches {pattern!r}")
        parts += [Path(p) for p in matched]
    if not args.parts:
        parts = part_paths(args.out)
        if not parts:
            raise InputError(f"no parts to merge: no {Path(args.out).stem}.rank*.jsonl next to it")
    n = merge_results(args.out, parts)
    print(f"merged {len(parts)} file(s) into {args.out}: {n} lines")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Write the tables, figures and ``report.md`` of :func:`report.write_report`."""
    missing = [p for p in args.results if not Path(p).exists()]
    if missing:
        raise InputError(f"results file not found: {', '.join(missing)}")

    from egg_interp.report import write_report

    written = write_report(
        args.results,
        args.out,
        grids=args.grids,
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        prompt_suffix=args.prompt_suffix,
        data_root=args.data_root,
    )
    print(f"wrote {len(written)} files to {args.out} (see {Path(args.out) / 'report.md'})")
    return 0
