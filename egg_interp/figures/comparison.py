"""Several maps of one image side by side: the image with its evidence, then one overlay each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from egg_interp.figures.drawing import draw_boxes, wrap
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
    evidence is drawn in green on every panel, each method's top region dashed cyan; a legend
    says so, and one colour bar covers every overlay (each runs from 0 to its own maximum).
    Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    n = 1 + len(maps)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3 * ncols + 0.5, 3.3 * nrows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.set_axis_off()
    axes.flat[0].imshow(image)
    draw_boxes(axes.flat[0], gt_boxes)
    axes.flat[0].set_title(wrap(title, 40, 4) if title else "image + evidence", fontsize=8)
    handles = [Line2D([], [], color="lime", label="evidence")]
    if top_boxes:
        handles.append(Line2D([], [], color="cyan", linestyle="--", label="top region"))
    axes.flat[0].legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=7, ncol=2
    )
    for ax, (name, amap) in zip(list(axes.flat)[1:], maps.items()):
        amap.plot(image=image, ax=ax, boxes=list(gt_boxes), title=name)
        if top_boxes and name in top_boxes:
            draw_boxes(ax, [top_boxes[name]], color="cyan", linestyle="--")
        ax.title.set_fontsize(9)
    # every overlay runs from 0 to its own map's maximum: one bar for all of them
    bar = fig.colorbar(
        ScalarMappable(Normalize(0.0, 1.0), cmap="inferno"), ax=axes, fraction=0.02, pad=0.01
    )
    bar.set_label("relevance / each map's maximum", fontsize=7)
    return fig
