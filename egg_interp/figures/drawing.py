"""Small matplotlib helpers shared by every figure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from egg_interp.geometry import Box

# No matplotlib.use() here: library code keeps the user's backend (inline figures in Jupyter);
# the CLI entry point (egg_interp.cli.main) chooses Agg for files.


def new_axes(ax: Any = None, figsize: tuple[float, float] = (4.0, 4.0)) -> tuple[Any, Any]:
    """Return ``(fig, ax)``: the given axes and their figure, or a new pair."""
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def draw_boxes(
    ax: Any,
    boxes: Sequence[Box],
    color: str = "lime",
    labels: Sequence[str] | None = None,
    linewidth: float = 2.0,
    linestyle: str = "-",
) -> None:
    """Draw ``(x0, y0, x1, y1)`` pixel boxes as rectangles, with optional labels."""
    from matplotlib.patches import Rectangle

    for i, (x0, y0, x1, y1) in enumerate(boxes):
        ax.add_patch(
            Rectangle(
                (x0, y0),
                x1 - x0,
                y1 - y0,
                fill=False,
                edgecolor=color,
                linewidth=linewidth,
                linestyle=linestyle,
            )
        )
        if labels is not None:
            ax.text(x0, y0, labels[i], color=color, fontsize=8, va="bottom")
