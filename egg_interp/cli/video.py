"""``egg-interp ground --video``: a question grounded on a video's sampled frames.

The frames are decoded (and every input checked) before the model loads; the zoom loop then
runs on the video (:func:`egg_interp.loop.video.ground_video`). Output folder:
``map.npz`` (step 0's map: one grid per temporal slice), ``frames/frame_NN.png`` (each
sampled frame with its map, all on one colour scale), ``relevance_over_time.png``,
``frame_strip.png`` (frames, maps, step 0's regions on their frames, the zoomed frames
marked, the curve), ``crops/crop_K_frame_NN.png`` (the kept crops), ``video.json`` (answers,
per-frame times, slices and shares, the loop's steps) and ``video.html`` (the explorer's
video view: :func:`egg_interp.explorer.video.write_video_page`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from egg_interp.errors import InputError
from egg_interp.io import atomic_path, check_question, save_figure, write_json
from egg_interp.settings import LoopSettings
from egg_interp.video import read_video

if TYPE_CHECKING:
    from egg_interp.loop.video import VideoGroundingResult


def run_ground_video(args: argparse.Namespace) -> int:
    """``ground --video``: the map over the frames, the zoom loop and the answers."""
    if getattr(args, "pipeline", "egg") != "egg":
        raise InputError(f"--pipeline {args.pipeline} takes an image; a video takes the egg loop")
    video = read_video(args.video, args.frames)
    question = check_question(args.question)
    settings: LoopSettings = args.loop

    from egg_interp.loop.video import ground_video
    from egg_interp.models import load_model

    suffix = getattr(args, "prompt_suffix", "")
    adapter = load_model(args.model, device=args.device, dtype=args.dtype, prompt_suffix=suffix)
    result = ground_video(
        adapter, video, question, settings=settings, max_new_tokens=args.max_new_tokens
    )
    _print(result)
    if args.out:
        written = write_video_outputs(result, Path(args.out))
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _print(r: VideoGroundingResult) -> None:
    print(f"question:        {r.question}")
    print(f"video:           {r.video!r}")
    print(f"base answer:     {r.base_answer}")
    print(f"grounded answer: {r.answer}")
    if r.zoom_note:
        print(f"no zoom:         {r.zoom_note}")
    if (loop := r.loop) is not None:
        print(f"steps:           {len(loop.steps)} ({loop.decision.reason})")
        crops = [
            f"frame {f}: ({', '.join(f'{v:.0f}' for v in b)})"
            for f, b in zip(r.crop_frames, loop.crops, strict=True)
        ]
        print("kept crops:      " + ("; ".join(crops) or "none"))
    print(f"relevance per temporal slice ({r.method}):")
    for c in r.curve():
        frames = ", ".join(str(f) for f in c.frames)
        times = "-".join(f"{t:.2f}" for t in (c.timestamps[0], c.timestamps[-1]))
        print(f"  frames {frames:<8} {times} s  share {c.share:6.1%}  total {c.total:.4g}")


def write_video_outputs(r: VideoGroundingResult, out: Path) -> list[Path]:
    """The files of ``ground --video`` under ``out`` (module docstring); returns their paths."""
    from egg_interp.explorer.video import write_video_page
    from egg_interp.figures.video import (
        frame_heatmaps,
        frame_overlay,
        plot_frame_strip,
        plot_relevance_over_time,
        shared_scale,
    )
    from egg_interp.geometry import crop_image

    amap, video = r.map, r.video
    written = [amap.save(out / "map.npz")]
    heats = frame_heatmaps(amap)
    vmax = shared_scale(heats)
    for (position, _, _), heat in zip(amap.frame_maps(), heats, strict=True):
        with atomic_path(out / "frames" / f"frame_{position:02d}.png") as tmp:
            frame_overlay(video.frames[position], heat, vmax).save(tmp, format="png")
    written.append(out / "frames")
    for k, (f, box) in enumerate(zip(r.crop_frames, r.crops, strict=True)):
        with atomic_path(out / "crops" / f"crop_{k + 1}_frame_{f:02d}.png") as tmp:
            crop_image(video.frames[f], box).save(tmp, format="png")
    curve_fig, _ = plot_relevance_over_time(amap.relevance_over_time())
    written.append(save_figure(curve_fig, out / "relevance_over_time.png"))
    found = r.loop.regions if r.loop is not None else []
    regions = [(f, g.box) for f, g in zip(r.region_frames, found, strict=True)]
    title = f"{r.question} -> {r.base_answer!r}; zoomed: {r.answer!r}"
    strip = plot_frame_strip(video.frames, amap, title, regions, r.crop_frames)
    written.append(save_figure(strip, out / "frame_strip.png"))
    written.append(write_json(out / "video.json", r.to_dict()))
    written.append(write_video_page(out / "video.html", video.frames, amap, title))
    return written
