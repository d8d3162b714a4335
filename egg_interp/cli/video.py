"""``egg-interp ground --video``: a question grounded on a video's sampled frames.

The frames are decoded (and every input checked) before the model loads. Output folder:
``map.npz`` (one grid per temporal slice), ``frames/frame_NN.png`` (each sampled frame with its
map, all on one colour scale), ``relevance_over_time.png``, ``frame_strip.png``, ``video.json`` (answer, per-frame times,
slices and shares) and ``video.html`` (the explorer's video view:
:func:`egg_interp.explorer.video.write_video_page`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from egg_interp.errors import InputError
from egg_interp.io import atomic_path, check_question, save_figure, write_json
from egg_interp.settings import LoopSettings
from egg_interp.video import read_video


def run_ground_video(args: argparse.Namespace) -> int:
    """``ground --video``: the map over the frames and the answer (see the module docstring)."""
    if getattr(args, "pipeline", "egg") != "egg":
        raise InputError(f"--pipeline {args.pipeline} takes an image; a video takes the egg map")
    video = read_video(args.video, args.frames)
    question = check_question(args.question)
    settings: LoopSettings = args.loop

    from egg_interp.methods import get_method
    from egg_interp.models import load_model
    from egg_interp.video_grounding import ground_video

    method = get_method(settings.method_for("egg"), **settings.method_kwargs())
    suffix = getattr(args, "prompt_suffix", "")
    adapter = load_model(args.model, device=args.device, dtype=args.dtype, prompt_suffix=suffix)
    result = ground_video(adapter, video, question, method, max_new_tokens=args.max_new_tokens)
    print(f"question: {question}")
    print(f"video:    {video!r}")
    print(f"answer:   {result.answer}")
    print(f"relevance per temporal slice ({result.method}):")
    for c in result.curve():
        frames = ", ".join(str(f) for f in c.frames)
        times = "-".join(f"{t:.2f}" for t in (c.timestamps[0], c.timestamps[-1]))
        print(f"  frames {frames:<8} {times} s  share {c.share:6.1%}  total {c.total:.4g}")
    if args.out:
        written = write_video_outputs(result, Path(args.out))
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


def write_video_outputs(result: object, out: Path) -> list[Path]:
    """The files of ``ground --video`` under ``out`` (module docstring); returns their paths."""
    from egg_interp.figures.video import (
        frame_heatmaps,
        frame_overlay,
        plot_frame_strip,
        plot_relevance_over_time,
        shared_scale,
    )

    amap, video = result.map, result.video  # type: ignore[attr-defined]
    written = [amap.save(out / "map.npz")]
    heats = frame_heatmaps(amap)
    vmax = shared_scale(heats)
    for (position, _, _), heat in zip(amap.frame_maps(), heats, strict=True):
        path = out / "frames" / f"frame_{position:02d}.png"
        with atomic_path(path) as tmp:
            frame_overlay(video.frames[position], heat, vmax).save(tmp, format="png")
    written.append(out / "frames")
    curve_fig, _ = plot_relevance_over_time(amap.relevance_over_time())
    written.append(save_figure(curve_fig, out / "relevance_over_time.png"))
    title = f"{result.question} -> {result.answer}"  # type: ignore[attr-defined]
    written.append(
        save_figure(plot_frame_strip(video.frames, amap, title), out / "frame_strip.png")
    )
    written.append(write_json(out / "video.json", result.to_dict()))  # type: ignore[attr-defined]
    from egg_interp.explorer.video import write_video_page

    written.append(write_video_page(out / "video.html", video.frames, amap, title))
    return written
