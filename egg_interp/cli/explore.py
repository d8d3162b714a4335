"""``egg-interp explore``: arguments and what the command runs (the page is built by
:mod:`egg_interp.explorer`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from egg_interp.cli.args import add_threads_arg, device_name, dtype_name

EXPLORE_HELP = (
    "write one self-contained HTML page to browse a results file (tables, samples, maps, loop)"
)


def add_explore_args(p: argparse.ArgumentParser) -> None:
    """Arguments of ``egg-interp explore``."""
    p.add_argument("results", nargs="+", help="results file(s) (.jsonl)")
    p.add_argument("--out", default="report.html", help="the HTML file (default report.html)")
    p.add_argument(
        "--model",
        default=None,
        help="recompute the maps the results do not hold with this model (default: as recorded)",
    )
    p.add_argument(
        "--device",
        type=device_name,
        default=None,
        help="where to recompute maps: cpu, cuda, cuda:1, mps (default: cuda if available)",
    )
    p.add_argument(
        "--dtype",
        type=dtype_name,
        default=None,
        help="float32 | bfloat16 | float16 for recomputed maps (default: as recorded)",
    )
    add_threads_arg(p)
    p.add_argument(
        "--data-root", default=None, help="the benchmark's images (default: as recorded)"
    )
    p.add_argument(
        "--no-recompute", action="store_true", help="only maps saved by evaluate --save-maps"
    )
    p.add_argument(
        "--max-samples",
        type=int,
        default=500,
        metavar="N",
        help="samples with images, maps and crops (the first N; the table lists all)",
    )
    p.add_argument(
        "--max-curves",
        type=int,
        default=20,
        metavar="N",
        help="samples whose deletion/insertion curves are measured again when a run with "
        "--faithfulness did not save them (the first N; saved curves are always shown)",
    )
    p.add_argument("--no-plots", action="store_true", help="tables only at the top")
    p.add_argument("--title", default=None, help="page title")


def run_explore(args: argparse.Namespace) -> int:
    """Write the page and say its size and where the maps came from."""
    from egg_interp.errors import InputError

    missing = [p for p in args.results if not Path(p).exists()]
    if missing:
        raise InputError(f"results file not found: {', '.join(missing)}")

    from egg_interp.explorer import ExplorerOptions, write_explorer

    options = ExplorerOptions(
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        data_root=args.data_root,
        recompute=not args.no_recompute,
        max_media=args.max_samples,
        plots=not args.no_plots,
        max_curves=args.max_curves,
    )
    page = write_explorer(args.results, args.out, options, title=args.title)
    sources = "; ".join(
        f"{m}: " + ", ".join(f"{n} {k}" for k, n in sorted(c.items()))
        for m, c in page.map_sources.items()
    )
    print(
        f"wrote {page.path} ({page.bytes / 1e6:.2f} MB): {page.n_samples} samples, "
        f"{page.n_media} with pictures; maps: {sources or 'none'}"
    )
    return 0
