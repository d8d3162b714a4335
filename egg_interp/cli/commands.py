"""What ``egg-interp ground``, ``compare``, ``methods``, ``demo``, ``bench`` and ``sanity`` run.

Each command checks its inputs (image file, question, boxes) before the heavy imports and
before any model is loaded; arguments are in :mod:`egg_interp.cli.args`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from egg_interp.errors import InputError
from egg_interp.geometry import parse_boxes
from egg_interp.io import check_question, load_image, save_figure, write_json
from egg_interp.settings import LoopSettings, resolve_name, split_names

if TYPE_CHECKING:  # the loop imports torch: only for the type checker
    from PIL import Image

    from egg_interp.loop import GroundingResult


def _load_model(args: argparse.Namespace, **kwargs: object) -> object:
    from egg_interp.models import load_model

    return load_model(
        args.model,
        device=args.device,
        dtype=args.dtype,
        prompt_suffix=getattr(args, "prompt_suffix", ""),
        **kwargs,
    )


def run_ground(args: argparse.Namespace) -> int:
    """``ground``: the EGG loop (or ViCrop's single crop) on one or several images and a
    question, or on a video's frames (``--video``)."""
    if (args.image is None) == (getattr(args, "video", None) is None):
        raise InputError("give one of --image and --video")
    if args.video is not None:
        from egg_interp.cli.video import run_ground_video

        return run_ground_video(args)
    images = [load_image(path) for path in args.image]
    question = check_question(args.question)
    settings: LoopSettings = args.loop
    pipeline = getattr(args, "pipeline", "egg")
    if pipeline == "vicrop" and len(images) > 1:
        raise InputError("--pipeline vicrop takes one --image (ViCrop crops a single image)")

    from egg_interp.methods import get_method

    method = get_method(settings.method_for(pipeline), **settings.method_kwargs())
    adapter = _load_model(args)
    if pipeline == "vicrop":
        return _run_vicrop(args, adapter, images[0], question, method)

    from egg_interp.loop import ground

    result = ground(
        adapter, images, question, settings=settings, max_new_tokens=args.max_new_tokens
    )
    _print_grounding(result, [str(p) for p in args.image])
    if args.out:
        _write_grounding(Path(args.out), images, result)
    return 0


def _print_grounding(result: GroundingResult, names: list[str]) -> None:
    """The answers, the steps, the ranked regions and the kept crops (with their images when
    there are several)."""
    several = len(names) > 1
    where = lambda source: f"  image {source} ({names[source]})" if several else ""  # noqa: E731
    print(f"question:        {result.question}")
    print(f"base answer:     {result.base_answer}")
    print(f"grounded answer: {result.answer}")
    print(f"steps:           {len(result.steps)} ({result.decision.reason})")
    pixels = "pixels of its image" if several else "original-image pixels"
    print(f"regions ({pixels}, x0 y0 x1 y1):")
    for r, source in zip(result.regions, result.region_sources):
        box = ", ".join(f"{v:.0f}" for v in r.box)
        print(f"  #{r.rank + 1}  score {r.score:.4g}  box ({box}){where(source)}")
    crops = [
        str(tuple(round(v) for v in b)) + (f" from image {s}" if several else "")
        for b, s in zip(result.crops, result.crop_sources)
    ]
    print("kept crops: " + ("; ".join(crops) or "none"))


def _write_grounding(out: Path, images: list[Image.Image], result: GroundingResult) -> None:
    """``map.npz`` (step 0's map: one grid per image), ``steps.json`` and ``grounding.png``."""
    from egg_interp.figures.grounding import plot_grounding

    result.first_map.save(out / "map.npz")
    write_json(out / "steps.json", result.to_dict())
    save_figure(plot_grounding(images, result), out / "grounding.png")
    print(f"wrote {out / 'grounding.png'}, {out / 'map.npz'}, {out / 'steps.json'}")


def _run_vicrop(
    args: argparse.Namespace, adapter: object, image: object, question: str, method: object
) -> int:
    from egg_interp.vicrop import vicrop_answer

    result = vicrop_answer(
        adapter,
        image,
        question,
        method=method,
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
    """``compare``: several maps of one sample, side by side."""
    from egg_interp.settings import METHOD_NAMES, TARGET_NAMES

    image = load_image(args.image)
    question = check_question(args.question)
    boxes = parse_boxes(args.boxes)
    methods = [resolve_name(m, METHOD_NAMES, "method") for m in split_names(args.methods)]
    target = resolve_name(args.target, TARGET_NAMES, "target") if args.target else None

    from egg_interp.compare import compare_methods

    adapter = _load_model(args)
    maps, fig = compare_methods(adapter, image, question, methods, boxes, target=target)
    for name, amap in maps.items():
        note = amap.meta.get("problem", "")
        print(f"{name:<22}{amap.target:<10}{amap.meta.get('seconds', 0.0):8.2f} s  {note}")
    print(f"wrote {save_figure(fig, args.out)}")
    return 0


def run_methods(args: argparse.Namespace) -> int:
    """``methods``: the registry with each method's target, space and cost."""
    from egg_interp.methods import METHODS

    print(f"{'method':<22}{'target':<16}{'space':<8}{'cost':<38}needs")
    for name, cls in sorted(METHODS.items()):
        n = cls.needs
        flags = [f for f, on in (("gradients", n.gradients), ("attentions", n.attentions)) if on]
        target = cls.default_target if cls.uses_target else "-"
        print(f"{name:<22}{target:<16}{n.space:<8}{n.describe():<38}" + (", ".join(flags) or "-"))
    return 0


def run_scene(args: argparse.Namespace) -> int:
    """``scene``: write one test scene of the organism's benchmark and print its question."""
    from egg_interp.data import scenes
    from egg_interp.io import save_image

    sample = scenes.load(split="test", families=[args.family], per_family=args.index + 1)[-1]
    out = Path(args.out)
    save_image(sample.image, out)
    boxes = ", ".join(",".join(f"{v:g}" for v in b) for b in sample.boxes) or "none"
    print(f"wrote {out} ({sample.image.width} x {sample.image.height} px, {sample.id})")
    print(f"question: {sample.question}")
    print(f"answer: {sample.answers[0]}    evidence box(es) x0,y0,x1,y1: {boxes}")
    print(f'try: egg-interp ground --image {out} --question "{sample.question}" --out ground_out')
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """``demo``: EGG on the organism's scenes benchmark."""
    from egg_interp.demo import run_demo as demo

    demo(args.out, model=args.model, n=args.n, device=args.device, seed=args.seed)
    print(f"wrote {Path(args.out) / 'summary.json'} and {Path(args.out) / 'examples.png'}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    """``bench``: method costs, memory and scaling."""
    from egg_interp.settings import METHOD_NAMES

    methods = [resolve_name(m, METHOD_NAMES, "method") for m in split_names(args.methods)] or None
    only = split_names(args.only) or None
    if only and not (Path(args.out) / "bench.json").exists():
        raise InputError(f"--only reruns sections of {Path(args.out) / 'bench.json'}: not found")

    from egg_interp.bench import SECTIONS, run_suite

    unknown = sorted(set(only or ()) - set(SECTIONS))
    if unknown:
        raise InputError(f"unknown bench sections {unknown}; valid: {', '.join(SECTIONS)}")
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
        only=only,
    )
    print((Path(args.out) / "bench.md").read_text())
    return 0


def run_sanity(args: argparse.Namespace) -> int:
    """``sanity``: randomisation sanity checks of maps (sanity.json, sanity.md, figures)."""
    from egg_interp.data.registry import DATASETS
    from egg_interp.errors import InputError
    from egg_interp.metrics.similarity import SanitySettings
    from egg_interp.settings import METHOD_NAMES

    dataset = resolve_name(args.dataset, DATASETS, "dataset")
    methods = [resolve_name(m, METHOD_NAMES, "method") for m in split_names(args.methods)]
    if not methods:
        raise InputError("give at least one method (--methods)")
    settings = SanitySettings(
        orders=tuple(split_names(args.orders)),
        granularity=args.granularity,
        seed=args.seed,
        random_answer=not args.no_random_answer,
        noise_control=not args.no_noise_control,
    )

    import sys

    from egg_interp.data.registry import load_dataset
    from egg_interp.figures.sanity import plot_randomisation_grid, plot_similarity_curves
    from egg_interp.sanity import run_sanity as sanity
    from egg_interp.sanity import sanity_markdown

    samples = load_dataset(dataset, args.data_root or ".", args.split, args.limit)
    adapter = _load_model(args)
    result, figure = sanity(
        adapter, samples, methods, settings, progress=lambda line: print(line, file=sys.stderr)
    )
    result["config"].update(model=args.model, dataset=dataset, split=args.split)
    out = Path(args.out)
    write_json(out / "sanity.json", result)
    (out / "sanity.md").write_text(sanity_markdown(result))
    for order in settings.orders:
        save_figure(plot_randomisation_grid(figure, order)[0], out / f"maps_{order}.png")
        save_figure(plot_similarity_curves(result, order)[0], out / f"similarity_{order}.png")
    print((out / "sanity.md").read_text())
    print(f"wrote {out / 'sanity.json'}, {out / 'sanity.md'} and the figures")
    return 0
