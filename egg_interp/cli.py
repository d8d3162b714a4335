"""The ``egg-interp`` command line.

Every command that takes ``--model`` defaults to the embedded model organism. Errors a user
can cause (a missing image, an empty question, an unsupported model) print one line and exit
with status 2, never a stack trace.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from egg_interp.errors import EggError

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], str]] = {}
"""name -> (help, add-arguments function, "module:function" that runs it)."""


def command(name: str, help: str, target: str) -> Callable:
    def register(add_args: Callable[[argparse.ArgumentParser], None]) -> Callable:
        COMMANDS[name] = (help, add_args, target)
        return add_args

    return register


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--device``, ``--dtype`` and ``--prompt-suffix``."""
    p.add_argument(
        "--model",
        default="organism",
        help="Hugging Face id, local checkpoint directory, or 'organism' (default)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: auto)")
    p.add_argument(
        "--prompt-suffix", default="", help="text appended to every question (model specific)"
    )


def add_loop_args(p: argparse.ArgumentParser) -> None:
    """Options of the zoom-and-reground loop."""
    p.add_argument("--method", default="egg", help="attribution method (see 'methods')")
    p.add_argument("--top-k", type=int, default=2, help="regions (crops) per step")
    p.add_argument("--stop", default="ent", help="ent | fixed:N | area:PX | prob | pixels | none")
    p.add_argument("--max-steps", type=int, default=15, help="upper bound on loop steps")
    p.add_argument("--max-new-tokens", type=int, default=20)


@command("ground", "ground one question on one image and answer it with EGG's crops", "ground")
def _ground_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_loop_args(p)
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--question", required=True, help="question text")
    p.add_argument("--out", default=None, help="directory for the overlay PNG, map .npz, step log")
    p.add_argument(
        "--pipeline",
        choices=("egg", "vicrop"),
        default="egg",
        help="egg: zoom-and-reground loop (default); vicrop: ViCrop's single crop",
    )
    p.set_defaults(method=None)  # egg for the egg pipeline, rel_att for vicrop


@command(
    "compare",
    "run several attribution methods on one sample and draw them side by side",
    "compare",
)
def _compare_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--question", required=True, help="question text")
    p.add_argument(
        "--methods", default="egg,saliency,integrated_gradients,rel_att", help="comma-separated"
    )
    p.add_argument("--boxes", default=None, help='evidence boxes "x0,y0,x1,y1;..." (pixels)')
    p.add_argument("--target", default=None, help="one target for all methods (default: each own)")
    p.add_argument("--out", default="compare.png", help="figure file (PNG)")


@command("methods", "list the attribution methods and what each needs", "methods")
def _methods_args(p: argparse.ArgumentParser) -> None:
    pass


@command(
    "evaluate",
    "score maps and answers on a benchmark, appending to a resumable JSONL file "
    "(multi-GPU under torchrun / accelerate launch)",
    "egg_interp.evaluate_cli:run_evaluate",
)
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_loop_args(p)
    p.add_argument(
        "--dataset",
        required=True,
        help="registered dataset: vstar, textvqa, docvqa, infovqa, pope, gqa, realworldqa, scenes",
    )
    p.add_argument("--data-root", default=None, help="folder with the benchmark's official files")
    p.add_argument("--split", default=None, help="dataset split (default: the loader's)")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most N samples")
    p.add_argument(
        "--methods", default="egg", help="comma-separated map methods scored for localisation"
    )
    p.add_argument(
        "--pipelines",
        default="base,egg",
        help="comma-separated answer pipelines: base, egg, vicrop, oracle, random",
    )
    p.add_argument("--out", default="results.jsonl", help="results file (appended, resumable)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="samples per map batch: one padded forward/backward for batched methods (egg and "
        "the gradient maps), the internal batch of IG/SmoothGrad; answers run one at a time (1)",
    )
    p.add_argument("--tolerance", type=float, default=15.0, help="pointing-game radius, pixels")
    p.add_argument("--vicrop-method", default="rel_att", help="map of the vicrop pipeline")
    p.add_argument("--crop-scale", type=float, default=1.5, help="oracle/random crop scale")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-crop pipeline")
    p.add_argument("--save-maps", default=None, metavar="DIR", help="also save every map (.npz)")
    p.add_argument("--retry-errors", action="store_true", help="re-run lines recording errors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@command(
    "merge",
    "merge per-rank results files (default OUT.rank*.jsonl) into OUT, de-duplicated",
    "egg_interp.evaluate_cli:run_merge",
)
def _merge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="merged results file (its existing lines are kept)")
    p.add_argument("parts", nargs="*", help="part files or glob patterns")


@command(
    "report",
    "tables (markdown + CSV) and figures from a results file",
    "egg_interp.evaluate_cli:run_report",
)
def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", help="results file(s) (.jsonl)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--grids", type=int, default=0, metavar="N", help="comparison grids of the first N samples"
    )
    p.add_argument(
        "--model", default=None, help="recompute maps for --grids (when none were saved)"
    )
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--prompt-suffix", default="")
    p.add_argument("--data-root", default=None, help="images for --grids (default: as recorded)")


@command("demo", "run EGG on the model organism's scenes benchmark and summarise", "demo")
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="organism", help="checkpoint (default: the organism)")
    p.add_argument("--device", default=None)
    p.add_argument("--n", type=int, default=200, help="test scenes per question family")
    p.add_argument("--out", default="demo_out", help="directory for summary.json and figures")
    p.add_argument("--seed", type=int, default=0, help="seed of the random baselines")


def run_demo(args: argparse.Namespace) -> int:
    from egg_interp.demo import run_demo as demo

    demo(args.out, model=args.model, n=args.n, device=args.device, seed=args.seed)
    print(f"wrote {Path(args.out) / 'summary.json'} and {Path(args.out) / 'examples.png'}")
    return 0


@command("bench", "benchmark suite: method costs as ratios to one forward pass", "bench")
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="organism", help="checkpoint or 'organism' (default); see --preset"
    )
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--methods", default=None, help="comma-separated (default: all registered)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per measurement")
    p.add_argument("--out", default="figures/bench", help="directory for bench.json and bench.md")
    p.add_argument(
        "--preset",
        default=None,
        help="random-weight model built in memory instead of --model: llava-1.5-shaped, "
        "llava-1.5-7b-width (full width, 2 layers), llava-1.5-7b (full shapes; GPU)",
    )
    p.add_argument(
        "--width-check",
        default="llava-1.5-7b-width",
        help="preset for the full-width EGG time/memory check ('none' to skip)",
    )


def run_bench(args: argparse.Namespace) -> int:
    from egg_interp.bench import run_suite

    methods = args.methods.split(",") if args.methods else None
    width = None if args.width_check in ("", "none") else args.width_check
    run_suite(
        args.out,
        None if args.preset else args.model,
        args.device,
        args.dtype,
        methods,
        args.repeat,
        preset=args.preset,
        width_check=width,
    )
    print((Path(args.out) / "bench.md").read_text())
    return 0


def run_ground(args: argparse.Namespace) -> int:
    from egg_interp.figures import plot_grounding
    from egg_interp.io import check_question, load_image, save_figure, write_json
    from egg_interp.loop import ground
    from egg_interp.models import load_model

    image = load_image(args.image)
    question = check_question(args.question)

    adapter = load_model(
        args.model, device=args.device, dtype=args.dtype, prompt_suffix=args.prompt_suffix
    )
    if getattr(args, "pipeline", "egg") == "vicrop":
        return _run_vicrop(args, adapter, image, question)
    result = ground(
        adapter,
        image,
        question,
        method=args.method or "egg",
        stop=args.stop,
        top_k=args.top_k,
        max_steps=args.max_steps,
        max_new_tokens=args.max_new_tokens,
    )
    print(f"question:        {question}")
    print(f"base answer:     {result.base_answer}")
    print(f"grounded answer: {result.answer}")
    print(f"steps:           {len(result.steps)} ({result.decision.reason})")
    print("regions (original-image pixels, x0 y0 x1 y1):")
    for r in result.regions:
        box = ", ".join(f"{v:.0f}" for v in r.box)
        print(f"  #{r.rank + 1}  score {r.score:.4g}  box ({box})")
    print(
        "kept crops: "
        + ("; ".join(str(tuple(round(v) for v in b)) for b in result.crops) or "none")
    )
    if args.out:
        out = Path(args.out)
        result.first_map.save(out / "map.npz")
        write_json(out / "steps.json", result.to_dict())
        save_figure(plot_grounding(image, result), out / "grounding.png")
        print(f"wrote {out / 'grounding.png'}, {out / 'map.npz'}, {out / 'steps.json'}")
    return 0


def _run_vicrop(args: argparse.Namespace, adapter: object, image: object, question: str) -> int:
    from egg_interp.io import save_figure, write_json
    from egg_interp.vicrop import vicrop_answer

    result = vicrop_answer(
        adapter,
        image,
        question,
        method=args.method or "rel_att",
        max_new_tokens=args.max_new_tokens,
        base_answer=True,
    )
    print(f"question:        {question}")
    print(f"base answer:     {result.base_answer}")
    print(f"vicrop answer:   {result.answer}")
    box = ", ".join(f"{v:.0f}" for v in result.box) if result.box else "none"
    scale = result.choice.scale if result.choice else None
    print(
        f"crop ({result.method}, scale {scale}): ({box})"
        + (f"  [{result.degenerate}]" if result.degenerate else "")
    )
    if args.out:
        out = Path(args.out)
        result.map.save(out / "map.npz")
        write_json(out / "vicrop.json", result.to_dict())
        save_figure(result.plot(image)[0], out / "vicrop.png")
        print(f"wrote {out / 'vicrop.png'}, {out / 'map.npz'}, {out / 'vicrop.json'}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from egg_interp.compare import compare_methods, parse_boxes
    from egg_interp.io import check_question, load_image, save_figure
    from egg_interp.models import load_model

    image = load_image(args.image)
    question = check_question(args.question)
    boxes = parse_boxes(args.boxes)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    adapter = load_model(
        args.model, device=args.device, dtype=args.dtype, prompt_suffix=args.prompt_suffix
    )
    maps, fig = compare_methods(adapter, image, question, methods, boxes, target=args.target)
    for name, amap in maps.items():
        note = amap.meta.get("problem", "")
        print(f"{name:<22}{amap.target:<10}{amap.meta.get('seconds', 0.0):8.2f} s  {note}")
    print(f"wrote {save_figure(fig, args.out)}")
    return 0


def run_methods(args: argparse.Namespace) -> int:
    from egg_interp.methods import METHODS

    print(f"{'method':<22}{'target':<14}{'space':<8}{'cost':<38}needs")
    for name, cls in sorted(METHODS.items()):
        n = cls.needs
        flags = [f for f, on in (("gradients", n.gradients), ("attentions", n.attentions)) if on]
        target = cls.default_target if cls.uses_target else "-"
        print(f"{name:<22}{target:<14}{n.space:<8}{n.describe():<38}" + (", ".join(flags) or "-"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egg-interp",
        description="Entropy-Gradient Grounding and attribution baselines for VLMs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_args, _) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def _runner(target: str) -> Callable[[argparse.Namespace], int]:
    if ":" in target:
        import importlib

        module, func = target.split(":")
        return getattr(importlib.import_module(module), func)
    return globals()[f"run_{target}"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``egg-interp``."""
    args = build_parser().parse_args(argv)
    try:
        return int(_runner(COMMANDS[args.command][2])(args) or 0)
    except EggError as exc:
        print(f"egg-interp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"egg-interp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
