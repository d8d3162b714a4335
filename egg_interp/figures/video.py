"""A video's map at a glance: the frames with their maps (a frame strip) and relevance over time.

Every sampled frame is drawn with the grid of the temporal slice whose tokens see it, all on
one colour scale (so frames compare); a Qwen-style token spans two frames, so both frames of a
temporal patch show the same grid, and the curve draws each slice as one bar over the time its
frames span. Figures only draw what they are given (frames, a map, boxes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from egg_interp.figures.drawing import draw_boxes, wrap
from egg_interp.geometry import Box
from egg_interp.maps import AttributionMap, SliceRelevance

CMAP = "inferno"


def frame_heatmaps(amap: AttributionMap, video: int = 0) -> list[np.ndarray]:
    """Each sampled frame's map on its pixels, ``(height, width)`` float32 (NaN where no token
    covers), in frame order (:meth:`AttributionMap.frame_maps`)."""
    return [im.heatmap() for _, _, im in amap.frame_maps(video)]


def shared_scale(heats: Sequence[np.ndarray]) -> float:
    """The largest finite value over all frames' maps (1.0 when there is none above 0)."""
    finite = [h[np.isfinite(h)] for h in heats]
    top = max((float(f.max()) for f in finite if f.size), default=0.0)
    return top if top > 0 else 1.0


def frame_overlay(
    frame: Image.Image, heat: np.ndarray, vmax: float, alpha: float = 0.5
) -> Image.Image:
    """``frame`` with ``heat`` (same pixel size, NaN = no token) blended over it in the
    colour map, 0 to ``vmax``: a PNG-ready RGB image, no figure needed."""
    from matplotlib import colormaps

    rgb = np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0
    valid = np.isfinite(heat)
    colour = colormaps[CMAP](np.clip(np.where(valid, heat, 0.0) / vmax, 0.0, 1.0))[..., :3]
    weight = (alpha * valid)[..., None]
    out = (1 - weight) * rgb + weight * colour
    return Image.fromarray((out * 255).round().astype(np.uint8))


def plot_relevance_over_time(
    curve: Sequence[SliceRelevance], ax: Any = None, highlight: Sequence[int] = ()
) -> tuple[Any, Any]:
    """Each temporal slice's share of the video's relevance as a bar over its frames' times.

    Parameters
    ----------
    curve : sequence of SliceRelevance
        From :meth:`AttributionMap.relevance_over_time`.
    highlight : sequence of int
        Indices into ``curve`` drawn in another colour (e.g. the slices the loop zoomed into).

    Returns
    -------
    (fig, ax)
    """
    from egg_interp.figures.drawing import new_axes

    fig, ax = new_axes(ax, figsize=(6.0, 2.2))
    times = [t for c in curve for t in c.timestamps]
    step = float(np.median(np.diff(sorted(set(times))))) if len(set(times)) > 1 else 1.0
    signed = any(np.isnan(c.share) for c in curve)
    for k, c in enumerate(curve):
        left, right = min(c.timestamps) - step / 2, max(c.timestamps) + step / 2
        colour = "tab:orange" if k in set(highlight) else "tab:blue"
        ax.bar(
            left,
            c.total if signed else c.share,
            width=right - left,
            align="edge",
            color=colour,
            edgecolor="white",
            linewidth=0.5,
        )
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("total relevance" if signed else "share of relevance", fontsize=8)
    pairs = any(len(c.frames) > 1 for c in curve)
    note = " (a bar per temporal patch: its tokens see all its frames)" if pairs else " (per frame)"
    ax.set_title("relevance over time" + note, fontsize=8)
    ax.tick_params(labelsize=7)
    return fig, ax


def plot_frame_strip(
    frames: Sequence[Image.Image],
    amap: AttributionMap,
    title: str = "",
    regions: Sequence[tuple[int, Box]] = (),
    highlight: Sequence[int] = (),
    per_row: int = 8,
    video: int = 0,
) -> Any:
    """The frames with their maps in rows, then relevance over time.

    Parameters
    ----------
    frames : sequence of PIL.Image.Image
        The video's sampled frames (``Video.frames``), in order.
    amap : AttributionMap
        A map of a prompt holding that video (its slices cover every frame).
    title : str
        Figure title (e.g. the question and the answer); wrapped.
    regions : sequence of (frame index, Box)
        Ranked rectangles ``(x0, y0, x1, y1)`` in their frame's pixels (the loop's regions),
        drawn dashed cyan on their frames and numbered by rank (``#1`` first).
    highlight : sequence of int
        Frame indices whose panel titles are marked (the frames the loop zoomed into).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    entries = amap.frame_maps(video)
    if len(entries) != len(frames):
        raise ValueError(f"the map covers {len(entries)} frames, {len(frames)} were given")
    heats = frame_heatmaps(amap, video)
    vmax = shared_scale(heats)
    cols = min(per_row, len(frames))
    rows = -(-len(frames) // cols)
    width, height = frames[0].size
    panel = 1.7
    fig = plt.figure(
        figsize=(panel * cols, panel * rows * height / width + 2.4 + 0.4 * bool(title))
    )
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[*[height / width] * rows, 0.7])
    marked = set(highlight)
    for k, ((f, t, im), heat) in enumerate(zip(entries, heats, strict=True)):
        ax = fig.add_subplot(grid[k // cols, k % cols])
        ax.imshow(frames[f])
        ax.imshow(np.ma.masked_invalid(heat), cmap=CMAP, alpha=0.5, vmin=0.0, vmax=vmax)
        shared = f"frames {im.frames[0]}-{im.frames[-1]}" if len(im.frames) > 1 else f"frame {f}"
        ax.set_title(f"{'* ' if f in marked else ''}{t:.2f} s ({shared})", fontsize=7)
        mine = [(rank, box) for rank, (g, box) in enumerate(regions) if g == f]
        if mine:
            labels = [f"#{rank + 1}" for rank, _ in mine]
            draw_boxes(ax, [b for _, b in mine], color="cyan", linestyle="--", labels=labels)
        ax.set_axis_off()
    slices = amap.video_slices(video)
    chosen = [k for k, i in enumerate(slices) if marked & set(amap.images[i].frames)]
    plot_relevance_over_time(
        amap.relevance_over_time(video), fig.add_subplot(grid[rows, :]), chosen
    )
    if title:
        fig.suptitle(wrap(title, width=30 * cols // 2 + 20, max_lines=3), fontsize=8)
    fig.tight_layout()
    return fig


__all__ = [
    "frame_heatmaps",
    "frame_overlay",
    "plot_frame_strip",
    "plot_relevance_over_time",
    "shared_scale",
]
