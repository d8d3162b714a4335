"""What ``egg-interp evaluate``, ``merge`` and ``report`` run (arguments: :mod:`egg_interp.cli.args`)."""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

from egg_interp.errors import InputError
from egg_interp.run_config import RunConfig


def run_evaluate(args: argparse.Namespace) -> int:
    """Load the dataset and the model (on this rank's device), run ``args.run`` (the
    :class:`~egg_interp.run_config.RunConfig` that :func:`egg_interp.cli.check_args` built),
    then print what was written and the scores."""
    run: RunConfig = args.run
    _check_loop_method(run)

    from egg_interp.data.registry import load_dataset
    from egg_interp.distributed import dist_info, rank_device
    from egg_interp.models import load_model
    from egg_interp.runner import evaluate_config

    info = dist_info()
    samples = load_dataset(run.dataset, args.data_root or ".", run.split, args.limit)
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
        args.out,
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
        _print_scores(summary.out)
    return 0


def _check_loop_method(run: RunConfig) -> None:
    """Build the loop's method once, so that an unknown ``--method-options`` name fails
    before the dataset and the model load."""
    if run.loop.method_options:
        from egg_interp.methods import get_method

        get_method(run.loop.method, **run.loop.method_kwargs())


def _print_scores(results: Path) -> None:
    """One line per map method (pointing game; the deletion and insertion AUCs and the
    deletion gap when measured) and per pipeline (accuracy) of ``results``."""
    from egg_interp.report import (
        accuracy_long,
        faithfulness_table,
        load_frames,
        pointing_game_table,
    )

    maps, answers = load_frames(results)
    for _, row in pointing_game_table(maps).iterrows():
        print(
            f"  map    {row['dataset']:<12} {row['method']:<22} pointing game "
            f"{100 * row['pointing_game']:6.2f}  (n={row['n_scored']})"
        )
    faithful = faithfulness_table(maps)
    shown = [c for c in ("deletion_auc", "insertion_auc", "deletion_gap") if c in faithful]
    for _, row in faithful.iterrows():
        figures = "  ".join(f"{c} {row[c]:.3f}" for c in shown)
        print(f"  map    {row['dataset']:<12} {row['method']:<22} {figures}  (n={row['n_scored']})")
    for _, row in accuracy_long(answers).iterrows():
        print(
            f"  answer {row['dataset']:<12} {row['pipeline']:<22} accuracy      "
            f"{100 * row['accuracy']:6.2f}  (n={row['n_scored']})"
        )


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
