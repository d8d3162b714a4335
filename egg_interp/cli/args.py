"""The arguments of every ``egg-interp`` command (what each runs is in :mod:`.commands`
and :mod:`.evaluate`). Imports nothing heavy, so ``--help`` and bad options answer at once."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from typing import NoReturn

from egg_interp.settings import METHOD_NAMES, PIPELINE_NAMES, TARGET_NAMES

DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
"""Names ``--dtype`` accepts (``auto``: float32 on CPU, bfloat16 on CUDA)."""

THREADS_ENV = "EGG_INTERP_THREADS"
"""Environment variable giving the default of ``--threads``."""


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already names it or there
    is none to show (``None``, a flag's ``False``, an empty string; ``0`` is shown)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        hidden = default is None or default is False or default in ("", argparse.SUPPRESS)
        if "default" in text or hidden or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def dtype_name(text: str) -> str:
    """An argparse ``type``: one of :data:`DTYPES`."""
    if text not in DTYPES:
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r}; use one of {', '.join(DTYPES)}")
    return text


def device_name(text: str) -> str:
    """An argparse ``type``: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda, cuda:N or mps")
    return text


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    """``--threads`` (default: ``$EGG_INTERP_THREADS``, else torch's own choice)."""
    p.add_argument(
        "--threads",
        type=int_at_least(1),
        default=os.environ.get(THREADS_ENV) or None,
        metavar="N",
        help=f"CPU threads for torch (default: ${THREADS_ENV}, else torch's choice); "
        "1 is often fastest for small models on a shared CPU",
    )


def add_device_args(p: argparse.ArgumentParser, dtype: bool = True) -> None:
    """``--device``, ``--dtype`` (optional) and ``--threads``."""
    p.add_argument(
        "--device",
        type=device_name,
        default=None,
        help="cpu, cuda, cuda:1, mps (default: cuda if available, else cpu)",
    )
    if dtype:
        p.add_argument(
            "--dtype",
            type=dtype_name,
            default=None,
            help="float32 | bfloat16 | float16 (default: float32 on CPU, bfloat16 on CUDA)",
        )
    add_threads_arg(p)


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--device``, ``--dtype``, ``--threads`` and ``--prompt-suffix``."""
    p.add_argument(
        "--model",
        default="organism",
        help="Hugging Face id, local checkpoint directory, or 'organism' (default)",
    )
    add_device_args(p)
    p.add_argument(
        "--prompt-suffix", default="", help="text appended to every question (model specific)"
    )


def add_dataset_args(p: argparse.ArgumentParser) -> None:
    """The benchmark a command runs on: ``--dataset`` (required), ``--data-root``, ``--split``."""
    p.add_argument(
        "--dataset",
        required=True,
        help="registered dataset: vstar, textvqa, docvqa, infovqa, pope, gqa, realworldqa, scenes",
    )
    p.add_argument("--data-root", default=None, help="folder with the benchmark's official files")
    p.add_argument("--split", default=None, help="dataset split (default: the loader's)")


def add_loop_args(p: argparse.ArgumentParser) -> None:
    """Options of the zoom-and-reground loop (checked as one :class:`LoopSettings`)."""
    p.add_argument(
        "--method",
        default=None,
        help="map of the crop-choosing pipeline (default: egg for the loop, rel_att for "
        f"vicrop); one of {', '.join(METHOD_NAMES)}",
    )
    p.add_argument(
        "--method-options",
        default=None,
        metavar="K=V,...",
        help="constructor options of --method, e.g. 'space=pixels'",
    )
    p.add_argument(
        "--target",
        default=None,
        help=f"what the map explains (default: the method's own): {', '.join(TARGET_NAMES)}",
    )
    p.add_argument("--top-k", type=int, default=2, help="regions (crops) per step")
    p.add_argument(
        "--stop",
        default="ent",
        help="stopping rule: ent (spatial entropy rises) | fixed:N (N steps) | area:PX (crop "
        "area <= PX) | prob (top-1 probability stops rising) | pixels:N (longer image side // N "
        "steps, N = 1000 when omitted) | none",
    )
    p.add_argument("--max-steps", type=int, default=15, help="upper bound on loop steps")
    p.add_argument(
        "--min-crop-side", type=float, default=8.0, help="smallest crop side, pixels (loop)"
    )
    p.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="smoothing of the maps in grid cells, for regions and spatial entropy (default: "
        "the model's own: its config's egg_region_sigma, else 1.5, the paper's)",
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=20, help="longest answer, in generated tokens"
    )


def add_video_args(p: argparse.ArgumentParser) -> None:
    """``--video`` and ``--frames`` (models that take video: Qwen2-VL and later, GLM-4V...)."""
    p.add_argument(
        "--video",
        default=None,
        help="video file instead of --image (decoded with PyAV); writes per-frame maps, "
        "relevance over time and a frame strip",
    )
    p.add_argument(
        "--frames",
        type=int_at_least(1),
        default=8,
        help="frames sampled evenly from --video",
    )


def ground_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_loop_args(p)
    p.add_argument(
        "--image",
        default=None,
        action="append",
        metavar="FILE",
        help="image file (or --video); repeat for several images in one prompt (--image a.png --image "
        "b.png): one map per image, regions ranked across them, each crop from its own image",
    )
    p.add_argument("--question", required=True, help="question text")
    p.add_argument("--out", default=None, help="directory for the overlay PNG, map .npz, step log")
    add_video_args(p)
    p.add_argument(
        "--pipeline",
        choices=("egg", "vicrop"),
        default="egg",
        help="egg: zoom-and-reground loop (default); vicrop: ViCrop's single crop",
    )


def compare_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--question", required=True, help="question text")
    p.add_argument(
        "--methods", default="egg,saliency,integrated_gradients,rel_att", help="comma-separated"
    )
    p.add_argument("--boxes", default=None, help='evidence boxes "x0,y0,x1,y1;..." (pixels)')
    p.add_argument("--target", default=None, help="one target for all methods (default: each own)")
    p.add_argument("--out", default="compare.png", help="figure file (PNG)")


def methods_args(p: argparse.ArgumentParser) -> None:
    pass


def evaluate_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_loop_args(p)
    add_dataset_args(p)
    p.add_argument(
        "--limit", type=int_at_least(1), default=None, help="evaluate at most N (>= 1) samples"
    )
    p.add_argument(
        "--methods",
        default="egg",
        help="comma-separated map methods scored for localisation (the loop's map is --method)",
    )
    p.add_argument(
        "--pipelines",
        default="base,egg",
        help=f"comma-separated answer pipelines: {', '.join(PIPELINE_NAMES)}",
    )
    p.add_argument("--out", default="results.jsonl", help="results file (appended, resumable)")
    p.add_argument(
        "--batch-size",
        type=int_at_least(1),
        default=1,
        help="samples per batch: one padded forward/backward per map batch for batched methods "
        "(egg and the gradient maps), the internal batch of IG/SmoothGrad, and the answer "
        "pipelines' batches (loop steps across the samples still running, one padded generate)",
    )
    p.add_argument(
        "--tolerance", type=float, default=15.0, help="pointing-game radius, pixels (> 0)"
    )
    p.add_argument("--vicrop-method", default=None, help=argparse.SUPPRESS)  # deprecated: --method
    p.add_argument("--crop-scale", type=float, default=1.5, help="oracle/random crop scale")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-crop pipeline")
    p.add_argument(
        "--save-maps",
        default=None,
        metavar="DIR",
        help="also save every map (.npz; with --faithfulness, its curves too)",
    )
    add_faithfulness_args(p)
    p.add_argument("--retry-errors", action="store_true", help="re-run lines recording errors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_faithfulness_args(p: argparse.ArgumentParser) -> None:
    """``--faithfulness`` and its options (checked as one ``FaithfulnessSettings``)."""
    g = p.add_argument_group(
        "faithfulness (deletion and insertion curves of every map; off by default: each map "
        "costs about two batched forwards of 17 rows more)"
    )
    g.add_argument(
        "--faithfulness",
        default=None,
        metavar="CURVES",
        help="comma-separated: deletion, insertion; the map lines get each curve's AUCs (MoRF, "
        "LeRF, random order) and its MoRF-LeRF gap",
    )
    g.add_argument(
        "--faithfulness-space",
        default=None,
        choices=("pixels", "tokens"),
        help="pixels: the map's cells painted over in the image; tokens: the visual token "
        "embeddings replaced (default: pixels)",
    )
    g.add_argument(
        "--faithfulness-substrate",
        default=None,
        metavar="NAME",
        help="what replaces a removed cell: pixels blur | mean | road | zeros, tokens mean | "
        "zeros | drop (default: blur for pixels, mean for tokens)",
    )
    g.add_argument(
        "--faithfulness-steps",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="steps per curve (default: 16)",
    )
    g.add_argument(
        "--faithfulness-orders",
        default=None,
        metavar="ORDERS",
        help="comma-separated cell orders: morf (most relevant first), lerf (least relevant "
        "first), random (control; scored once per prompt) (default: morf,lerf,random)",
    )


def merge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="merged results file (its existing lines are kept)")
    p.add_argument("parts", nargs="*", help="part files or glob patterns")


def report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", help="results file(s) (.jsonl)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--grids",
        type=int_at_least(0),
        default=0,
        metavar="N",
        help="comparison grids of the first N samples",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model that recomputes maps for --grids when none were saved (default: the model "
        "recorded in the results)",
    )
    add_device_args(p)
    p.add_argument(
        "--prompt-suffix", default="", help="text appended to every question for --grids"
    )
    p.add_argument("--data-root", default=None, help="images for --grids (default: as recorded)")


def demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="organism", help="checkpoint (default: the organism)")
    add_device_args(p, dtype=False)
    p.add_argument("--n", type=int_at_least(1), default=200, help="test scenes per question family")
    p.add_argument("--out", default="demo_out", help="directory for summary.json and figures")
    p.add_argument("--seed", type=int, default=0, help="seed of the random baselines")


def scene_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="scene.png", help="where to write the picture (PNG)")
    p.add_argument(
        "--family",
        default="detail",
        choices=("detail", "multi", "coarse", "existence"),
        help="question family (default: detail, the one that needs a zoom)",
    )
    p.add_argument(
        "--index",
        type=int_at_least(0),
        default=0,
        help="which test scene of the family (0, 1, ...)",
    )


def bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="organism", help="checkpoint or 'organism' (default); see --preset"
    )
    add_device_args(p)
    p.add_argument("--methods", default=None, help="comma-separated (default: all registered)")
    p.add_argument("--repeat", type=int_at_least(1), default=5, help="timed runs per measurement")
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
    p.add_argument(
        "--only",
        default=None,
        metavar="SECTIONS",
        help="rerun these sections (comma-separated: regions, scaling, pipeline, batch, cache, "
        "runner, runner_batch, faithfulness) into the bench.json already in --out, keeping the "
        "rest",
    )


def sanity_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_dataset_args(p)
    p.add_argument("--limit", type=int_at_least(1), default=8, help="samples (N >= 1)")
    p.add_argument(
        "--methods",
        default="egg,saliency",
        help=f"comma-separated map methods: {', '.join(METHOD_NAMES)}",
    )
    p.add_argument(
        "--orders",
        default="cascading,bottom_up,independent",
        help="randomisation orders: cascading (top of the language model down, then the "
        "projector, then the vision tower), bottom_up, independent (one block at a time)",
    )
    p.add_argument(
        "--granularity",
        choices=("layers", "parts"),
        default="layers",
        help="blocks: every layer, or the vision tower, projector and language model whole",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the re-initialisations")
    p.add_argument("--no-random-answer", action="store_true", help="skip the random-answer test")
    p.add_argument("--no-noise-control", action="store_true", help="skip the noise-map control")
    p.add_argument(
        "--out", required=True, help="directory for sanity.json, sanity.md and the figures"
    )
