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
            # above the box, or inside it when the box touches the top edge: never on a title
            top = min(ax.get_ylim())
            inside = y0 - top < 0.08 * abs(ax.get_ylim()[0] - ax.get_ylim()[1])
            ax.text(
                x0 + 1,
                y0 + 1 if inside else y0,
                labels[i],
                color=color,
                fontsize=8,
                va="top" if inside else "bottom",
                clip_on=True,
            )


def wrap(text: str, width: int = 44, max_lines: int = 4) -> str:
    r"""``text`` wrapped to ``width`` characters, at most ``max_lines`` lines (then "...").

    >>> wrap("a " * 100, width=10, max_lines=2)
    'a a a a a\na a a a...'
    """
    import textwrap

    lines = textwrap.wrap(" ".join(str(text).split()), width=width) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 3].rstrip() + "..."
    return "\n".join(lines)
