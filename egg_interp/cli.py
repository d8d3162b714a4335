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


@command("methods", "list the attribution methods and what each needs", "methods")
def _methods_args(p: argparse.ArgumentParser) -> None:
    pass


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
    result = ground(
        adapter,
        image,
        question,
        method=args.method,
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


def run_methods(args: argparse.Namespace) -> int:
    from egg_interp.methods import METHODS

    print(f"{'method':<16}{'target':<14}{'space':<8}{'fwd':>4}{'bwd':>4}  needs")
    for name, cls in sorted(METHODS.items()):
        n = cls.needs
        flags = [f for f, on in (("gradients", n.gradients), ("attentions", n.attentions)) if on]
        print(
            f"{name:<16}{cls.default_target:<14}{n.space:<8}{n.forwards:>4}{n.backwards:>4}  "
            + (", ".join(flags) or "-")
        )
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
