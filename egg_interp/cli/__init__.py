"""The ``egg-interp`` command line: one parser, one table of commands, one error policy.

Every command that takes ``--model`` defaults to the embedded model organism. Errors a user
can cause (a missing image, an empty question, an unknown method or stopping rule, a bad
value, an unsupported model) print one line and exit with status 2, never a stack trace.
Options are checked first -- the loop's as one :class:`~egg_interp.settings.LoopSettings`,
an evaluation's as one :class:`~egg_interp.run_config.RunConfig`, both built here once from
the parsed arguments -- and so is the checkpoint's ``config.json`` (or the hub's
reachability), before torch is imported or a model is loaded. Model loads keep transformers'
weight-loading progress bar off stderr.

Layout: :mod:`.args` (every command's arguments), :mod:`.commands` (``ground``, ``compare``,
``methods``, ``demo``, ``bench``), :mod:`.evaluate` (``evaluate``, ``merge``, ``report``), :mod:`.explore` (``explore``).
Library code never imports this package.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from egg_interp import __version__
from egg_interp.checkpoints import check_model_source, quiet_loading
from egg_interp.cli import args as a
from egg_interp.cli.commands import (
    run_bench,
    run_compare,
    run_demo,
    run_ground,
    run_methods,
    run_sanity,
    run_scene,
)
from egg_interp.cli.evaluate import run_evaluate, run_merge, run_report
from egg_interp.cli.explore import EXPLORE_HELP, add_explore_args, run_explore
from egg_interp.errors import EggError
from egg_interp.run_config import RunConfig
from egg_interp.settings import LoopSettings

Runner = Callable[[argparse.Namespace], int]

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Runner]] = {
    "ground": (
        "ground one question on one image and answer it with EGG's crops",
        a.ground_args,
        run_ground,
    ),
    "compare": (
        "run several attribution methods on one sample and draw them side by side",
        a.compare_args,
        run_compare,
    ),
    "methods": ("list the attribution methods and what each needs", a.methods_args, run_methods),
    "scene": (
        "write a test scene of the organism's benchmark (a picture to try) and its question",
        a.scene_args,
        run_scene,
    ),
    "evaluate": (
        "score maps and answers on a benchmark, appending to a resumable JSONL file "
        "(multi-GPU under torchrun / accelerate launch)",
        a.evaluate_args,
        run_evaluate,
    ),
    "merge": (
        "merge per-rank results files (default OUT.rank*.jsonl) into OUT, de-duplicated",
        a.merge_args,
        run_merge,
    ),
    "report": (
        "tables (markdown + CSV) and figures from a results file",
        a.report_args,
        run_report,
    ),
    "demo": (
        "run EGG on the model organism's scenes benchmark and summarise",
        a.demo_args,
        run_demo,
    ),
    "bench": (
        "benchmark suite: method costs as ratios to one forward pass",
        a.bench_args,
        run_bench,
    ),
}
"""name -> (help, add-arguments function, function that runs it)."""

COMMANDS["sanity"] = (
    "randomisation sanity checks: do the maps change as the model's weights are destroyed?",
    a.sanity_args,
    run_sanity,
)

COMMANDS["explore"] = (EXPLORE_HELP, add_explore_args, run_explore)  # .explore

LOOP_COMMANDS = ("ground", "evaluate")
"""Commands whose loop options become ``args.loop`` (a :class:`LoopSettings`)."""


def build_parser() -> argparse.ArgumentParser:
    parser = a.OneLineErrorParser(
        prog="egg-interp",
        description="Entropy-Gradient Grounding and attribution baselines for VLMs.",
    )
    parser.add_argument("--version", action="version", version=f"egg-interp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_args, _) in COMMANDS.items():
        add_args(
            sub.add_parser(
                name,
                help=help_text,
                description=help_text,
                formatter_class=a.DefaultsHelpFormatter,
            )
        )
    return parser


def check_args(args: argparse.Namespace) -> argparse.Namespace:
    """Check the options and build ``args.loop`` (a :class:`LoopSettings`, for ``ground`` and
    ``evaluate``) and ``args.run`` (a :class:`RunConfig`, for ``evaluate``); check the
    checkpoint a command will load (:func:`egg_interp.checkpoints.check_model_source`). No
    heavy import: a mistake fails here in well under a second."""
    if getattr(args, "vicrop_method", None):
        print(
            f"egg-interp {args.command}: warning: --vicrop-method is deprecated; use --method",
            file=sys.stderr,
        )
        if args.method and args.method != args.vicrop_method:
            raise EggError(
                f"--method {args.method!r} and --vicrop-method {args.vicrop_method!r} disagree; "
                "give --method only"
            )
        args.method = args.vicrop_method
    if args.command in LOOP_COMMANDS:
        args.loop = LoopSettings.from_args(args)
    if args.command == "evaluate":
        args.run = RunConfig.from_args(args)  # every evaluate option, checked once
    elif args.command in LOOP_COMMANDS:
        max_new = getattr(args, "max_new_tokens", 1)
        if max_new < 1:
            raise EggError(f"--max-new-tokens must be >= 1, got {max_new}")
    model = _model_to_load(args)
    if model is not None:
        check_model_source(model)  # config.json and hub reachability, before torch
    return args


def _model_to_load(args: argparse.Namespace) -> str | None:
    """The ``--model`` the command will load, if it will load one: every command's own, but
    ``bench`` with ``--preset`` builds its model, and ``report`` loads one only for
    ``--grids``, ``explore`` only when ``--model`` is given."""
    model = getattr(args, "model", None)
    if args.command == "bench" and getattr(args, "preset", None):
        return None
    if args.command == "report" and not getattr(args, "grids", 0):
        return None
    return model


def _files_only_backend() -> None:
    """Figures go to files: matplotlib's Agg backend, chosen by the entry point only.

    Through ``MPLBACKEND`` when matplotlib is not imported yet, so that a command failing on
    its inputs never pays for importing it.
    """
    if "matplotlib" in sys.modules:
        sys.modules["matplotlib"].use("Agg")
    else:
        os.environ["MPLBACKEND"] = "Agg"


def apply_threads(threads: int | None) -> None:
    """Cap torch's CPU threads (``--threads``, default ``$EGG_INTERP_THREADS``; None: torch's).

    Set before torch is imported (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``) and on torch itself
    when it already is. One thread is often much faster for small models on a shared CPU.
    """
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _one_line_warnings(command: str) -> None:
    """Show every warning as one line, ``egg-interp CMD: warning: ...`` (no source echo)."""

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        print(f"egg-interp {command}: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``egg-interp``."""
    args = build_parser().parse_args(argv)
    _one_line_warnings(args.command)
    try:
        check_args(args)
        apply_threads(getattr(args, "threads", None))
        _files_only_backend()
        with quiet_loading():  # no "Loading weights" bar: errors and warnings are one line
            return int(COMMANDS[args.command][2](args) or 0)
    except EggError as exc:
        print(f"egg-interp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"egg-interp {args.command}: interrupted", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "apply_threads", "build_parser", "check_args", "main"]
