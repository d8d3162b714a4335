"""A grounding result at a glance: the map with its ranked regions, then the crops per step."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from egg_interp.figures.drawing import draw_boxes
from egg_interp.geometry import Box, crop_image
from egg_interp.loop import GroundingResult

REGION_COLOURS = ("cyan", "magenta", "yellow", "orange")


def plot_grounding(
    image: Image.Image,
    result: GroundingResult,
    gt_boxes: Sequence[Box] = (),
    max_steps_shown: int = 4,
) -> Any:
    """One row: the map with ranked regions (and ground truth), then the crops per step.

    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    shown = result.steps[:max_steps_shown]
    n_crop_cols = max((len(s.crop_boxes) for s in shown), default=0)
    ncols = 1 + max(1, len(shown)) if n_crop_cols else 1
    fig, axes = plt.subplots(1, ncols, figsize=(3.2 * ncols, 3.4), squeeze=False)
    ax0 = axes[0, 0]
    amap = result.maps[0] if result.maps else None
    if amap is not None:
        amap.plot(image=image, ax=ax0, boxes=list(gt_boxes), title="")
    else:
        ax0.imshow(image)
        draw_boxes(ax0, gt_boxes)
    draw_boxes(
        ax0,
        [r.box for r in result.regions],
        color="cyan",
        labels=[f"#{r.rank + 1}" for r in result.regions],
        linestyle="--",
    )
    answer = f"\nbase: {result.base_answer!r} -> egg: {result.answer!r}" if result.answer else ""
    question = textwrap.fill(result.question, width=44)  # long questions wrap, never clip
    ax0.set_title(f"{question}{answer}", fontsize=8)
    ax0.set_axis_off()
    if n_crop_cols:
        for j, step in enumerate(shown):
            ax = axes[0, 1 + j]
            _crop_mosaic(ax, image, step.crop_boxes)
            kept = " (kept)" if step.step == result.decision.keep else ""
            se = step.spatial_entropy
            ax.set_title(f"step {step.step}{kept}\nH_s={se:.2f}", fontsize=8)
    fig.tight_layout()
    return fig


def _crop_mosaic(ax: Any, image: Image.Image, boxes: Sequence[Box], side: int = 128) -> None:
    """The crops of one step side by side, each resized to ``side`` pixels high."""
    tiles = []
    for b in boxes:
        c = crop_image(image, b)
        w = max(1, round(c.width * side / c.height))
        tiles.append(np.asarray(c.resize((min(w, 3 * side), side))))
        tiles.append(np.full((side, 4, 3), 255, np.uint8))
    ax.imshow(np.concatenate(tiles[:-1], axis=1) if tiles else np.ones((side, side, 3)))
    ax.set_axis_off()
