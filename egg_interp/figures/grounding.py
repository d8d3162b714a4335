"""A grounding result at a glance: the map of each image with its ranked regions, then the
crops per step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from egg_interp.figures.drawing import draw_boxes, wrap
from egg_interp.geometry import Box, crop_image
from egg_interp.loop import GroundingResult, LoopStep

REGION_COLOURS = ("cyan", "magenta", "yellow", "orange")


def plot_grounding(
    image: Image.Image | Sequence[Image.Image],
    result: GroundingResult,
    gt_boxes: Sequence[Box] = (),
    max_steps_shown: int = 4,
) -> Any:
    """One row: the map with ranked regions (and ground truth), then the crops of some steps.

    Parameters
    ----------
    image : PIL.Image.Image or sequence of PIL.Image.Image
        The original image, or the user's images of a several-image result (in its order).
    result : GroundingResult
        From :func:`egg_interp.loop.ground` (its first map is drawn when kept).
    gt_boxes : sequence of Box
        Ground-truth evidence, ``(x0, y0, x1, y1)`` in the first image's pixels (solid green).
    max_steps_shown : int, default 4
        How many steps' crops to draw. With more steps than that, step 0, the kept step and
        the last step are always among them; the figure says which steps are shown.

    Returns
    -------
    matplotlib.figure.Figure
        Panel 1: the map of step 0 over the image with a colour bar, the ranked regions
        (dashed cyan, ``#1``, ``#2``), the evidence and a legend; title: the question and the
        answers, the grounded one labelled by the loop's method (wrapped, at most a few
        lines). With several images, one such panel per image (``image j``), all on one
        colour scale, each with the regions found in it. Then one panel per shown step with
        its crops (and, with several images, which image each crop is cut from).
    """
    import matplotlib.pyplot as plt

    images = [image] if isinstance(image, Image.Image) else list(image)
    shown = _steps_to_show(result, max_steps_shown)
    n_crop_cols = max((len(s.crop_boxes) for s in shown), default=0)
    ncols = len(images) + (max(1, len(shown)) if n_crop_cols else 0)
    fig, axes = plt.subplots(1, ncols, figsize=(3.2 * ncols + 0.6, 3.9), squeeze=False)
    vmax = _shared_vmax(result) if len(images) > 1 else None
    for j, (ax, im) in enumerate(zip(axes[0], images)):
        _draw_map_panel(fig, ax, im, result, gt_boxes if j == 0 else (), j, vmax)
    axes[0, 0].set_title(_title(result, several=len(images) > 1), fontsize=8)
    for j, ax in enumerate(axes[0, 1 : len(images)], start=1):
        ax.set_title(f"image {j}", fontsize=8)
    if n_crop_cols:
        for ax, step in zip(axes[0, len(images) :], shown):
            _draw_step_panel(ax, images, result, step)
        note = wrap(_steps_note(result, shown), 90, 2)
        fig.text(0.99, 0.01, note, ha="right", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _shared_vmax(result: GroundingResult) -> float | None:
    """The largest value of step 0's map over all its images (one colour scale for all)."""
    if not result.maps:
        return None
    heat = [im.heatmap() for im in result.maps[0].images]
    peaks = [float(np.nanmax(h)) for h in heat if np.isfinite(h).any()]
    return max(peaks) if peaks and max(peaks) > 0 else None


def _draw_map_panel(
    fig: Any,
    ax: Any,
    image: Image.Image,
    result: GroundingResult,
    gt_boxes: Sequence[Box],
    index: int = 0,
    vmax: float | None = None,
) -> None:
    """Step 0's map of image ``index`` over it with its colour bar, the ranked regions found
    in it, the evidence and a legend below."""
    from matplotlib.lines import Line2D

    amap = result.maps[0] if result.maps else None
    if amap is not None:
        amap.plot(image=image, ax=ax, image_index=index, boxes=list(gt_boxes), title="", vmax=vmax)
        bar = fig.colorbar(ax.images[-1], ax=ax, fraction=0.046, pad=0.02)
        bar.set_label(f"{amap.method} relevance (step 0)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    else:
        ax.imshow(image)
        draw_boxes(ax, gt_boxes)
    regions = [r for r, s in zip(result.regions, result.region_sources) if s == index]
    draw_boxes(
        ax,
        [r.box for r in regions],
        color="cyan",
        labels=[f"#{r.rank + 1}" for r in regions],
        linestyle="--",
    )
    handles = [Line2D([], [], color="cyan", linestyle="--", label="region (#rank)")]
    if len(gt_boxes):
        handles.insert(0, Line2D([], [], color="lime", label="evidence (ground truth)"))
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        fontsize=7,
        frameon=False,
        ncol=len(handles),
    )
    ax.set_axis_off()


def _title(result: GroundingResult, several: bool = False) -> str:
    """The question, then the base answer and the grounded one labelled by the loop's method
    (wrapped, a few lines at most); ``image 0`` under them for a several-image result."""
    title = wrap(result.question, width=44, max_lines=4)
    if result.answer is not None:
        title += "\n" + wrap(f"base: {result.base_answer!r}", 44, 2)
        title += "\n" + wrap(f"{result.method or 'grounded'}: {result.answer!r}", 44, 2)
    return title + ("\nimage 0" if several else "")


def _draw_step_panel(
    ax: Any, images: Sequence[Image.Image], result: GroundingResult, step: LoopStep
) -> None:
    """One step's crops side by side, titled with the step, whether it was kept, H_s and,
    with several images, the image each crop is cut from."""
    sources = step.crop_sources or [0] * len(step.crop_boxes)
    _crop_mosaic(ax, [images[s] for s in sources], step.crop_boxes)
    kept = " (kept)" if step.step == result.decision.keep else ""
    title = f"step {step.step}{kept}\nH_s={step.spatial_entropy:.2f}"
    if step.crop_sources is not None:
        title += "\nfrom images " + ", ".join(map(str, sources))
    ax.set_title(title, fontsize=8)


def _steps_note(result: GroundingResult, shown: Sequence[LoopStep]) -> str:
    """Which steps' crops the figure shows, and which step was kept."""
    numbers = [s.step for s in shown]
    if len(shown) < len(result.steps):
        note = f"crops of steps {', '.join(map(str, numbers))} of 0-{len(result.steps) - 1}"
    else:
        note = f"crops of every step (0-{len(result.steps) - 1})"
    keep = result.decision.keep
    return note + "; kept: " + (f"step {keep}" if keep is not None else "none (original alone)")


def _steps_to_show(result: GroundingResult, n: int) -> list[LoopStep]:
    """At most ``n`` steps in order: step 0, the kept step and the last step first."""
    steps = result.steps
    if len(steps) <= n:
        return list(steps)
    wanted = [0, len(steps) - 1]
    keep = result.decision.keep
    if keep is not None:
        wanted.insert(1, next((i for i, s in enumerate(steps) if s.step == keep), 0))
    wanted += range(len(steps))
    chosen: list[int] = []
    for i in wanted:
        if i not in chosen and len(chosen) < max(n, 1):
            chosen.append(i)
    return [steps[i] for i in sorted(chosen)]


def _crop_mosaic(
    ax: Any, images: Sequence[Image.Image], boxes: Sequence[Box], side: int = 128
) -> None:
    """The crops of one step side by side (crop ``k`` cut from ``images[k]``), each resized to
    ``side`` pixels high."""
    tiles = []
    for im, b in zip(images, boxes, strict=True):
        c = crop_image(im, b)
        w = max(1, round(c.width * side / c.height))
        tiles.append(np.asarray(c.resize((min(w, 3 * side), side))))
        tiles.append(np.full((side, 4, 3), 255, np.uint8))
    ax.imshow(np.concatenate(tiles[:-1], axis=1) if tiles else np.ones((side, side, 3)))
    ax.set_axis_off()
