"""Several maps of one image side by side: the image with its evidence, then one overlay each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from egg_interp.figures.drawing import draw_boxes
from egg_interp.geometry import Box
from egg_interp.maps import AttributionMap


def plot_comparison(
    image: Image.Image,
    maps: dict[str, AttributionMap],
    gt_boxes: Sequence[Box] = (),
    top_boxes: dict[str, Box] | None = None,
    title: str = "",
    ncols: int = 4,
) -> Any:
    """A grid: the image with ground truth, then one overlay per method with its top region.

    ``gt_boxes`` and ``top_boxes`` are ``(x0, y0, x1, y1)`` in original-image pixels; the
    evidence is drawn in green on every panel, each method's top region dashed cyan.
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    n = 1 + len(maps)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3.1 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    axes.flat[0].imshow(image)
    draw_boxes(axes.flat[0], gt_boxes)
    axes.flat[0].set_title(title or "image + evidence", fontsize=8)
    for ax, (name, amap) in zip(list(axes.flat)[1:], maps.items()):
        amap.plot(image=image, ax=ax, boxes=list(gt_boxes), title=name)
        if top_boxes and name in top_boxes:
            draw_boxes(ax, [top_boxes[name]], color="cyan", linestyle="--")
        ax.title.set_fontsize(9)
    fig.tight_layout()
    return fig
