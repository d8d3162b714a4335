"""The randomisation sanity checks' figures: the classic grid of maps, and similarity curves.

Both draw what :func:`egg_interp.sanity.run_sanity` returns (its ``figure`` and ``result``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _normalised(grid: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (a constant grid gives zeros)."""
    grid = np.asarray(grid, dtype=np.float64)
    span = np.ptp(grid) if np.isfinite(grid).all() else 0.0
    return (grid - grid.min()) / span if span > 0 else np.zeros_like(grid)


def plot_randomisation_grid(
    figure: dict[str, Any], order: str = "cascading", cmap: str = "inferno"
) -> tuple[Any, Any]:
    """Adebayo et al.'s figure: one row per method, one column per randomisation depth.

    Parameters
    ----------
    figure : dict
        The ``figure`` of :func:`~egg_interp.sanity.run_sanity`: ``image``, and per order its
        ``stages`` (block names) and ``maps`` (per method, the first sample's grids: trained
        first, then one per stage).
    order : str
        Which order's columns to draw.

    Returns
    -------
    (fig, axes)
        ``axes`` of shape ``(methods, stages + 2)``: the image, the trained map, each stage.
        Each map is min-max normalised on its own.
    """
    import matplotlib.pyplot as plt

    data = figure[order]
    methods, stages = list(data["maps"]), ["trained", *data["stages"]]
    fig, axes = plt.subplots(
        len(methods),
        len(stages) + 1,
        figsize=(1.1 * (len(stages) + 1) + 1.2, 1.1 * len(methods) + 0.5),
        squeeze=False,
        layout="constrained",
    )
    for row, method in enumerate(methods):
        axes[row, 0].imshow(figure["image"])
        axes[row, 0].set_ylabel(method, rotation=0, ha="right", va="center", fontsize=8)
        for col, grid in enumerate(data["maps"][method], start=1):
            axes[row, col].imshow(_normalised(grid), cmap=cmap, vmin=0, vmax=1)
    for col, name in enumerate(["image", *stages]):
        axes[0, col].set_title(name.replace(".", "\n", 1), fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"maps as the weights are randomised ({order.replace('_', ' ')})", fontsize=9)
    return fig, axes


def plot_similarity_curves(
    result: dict[str, Any],
    order: str = "cascading",
    similarities: Sequence[str] = ("spearman", "spearman_abs", "ssim", "topk"),
) -> tuple[Any, Any]:
    """Similarity to the trained model's map after each stage, mean and 95 % band per method.

    Parameters
    ----------
    result : dict
        ``sanity.json``'s content (:func:`~egg_interp.sanity.run_sanity`).
    order : str
    similarities : sequence of str
        One panel each.

    Returns
    -------
    (fig, axes)
        One axis per similarity; x = the stages (block names), the trained model first.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1,
        len(similarities),
        figsize=(4.2 * len(similarities) + 1.6, 3.6),
        squeeze=False,
        layout="constrained",
    )
    methods = list(result["methods"])
    colours = dict(zip(methods, plt.get_cmap("tab20").colors * 2))  # one colour per method
    for ax, name in zip(axes[0], similarities):
        blocks: list[str] = []
        for method, entry in result["methods"].items():
            rows = entry.get(order) or []
            if not rows:
                continue
            blocks = ["trained", *(r["block"] for r in rows)]
            stats = [entry["rerun"][name], *(r[name] for r in rows)]
            mean = np.array([s["mean"] for s in stats], dtype=float)
            lo, hi = (np.array([s["ci95"][k] for s in stats], dtype=float) for k in (0, 1))
            x = np.arange(len(stats))
            style = ":" if entry.get("control") else "-"
            colour = "black" if entry.get("control") else colours[method]
            ax.plot(x, mean, style, color=colour, marker="o", markersize=3, label=method)
            ax.fill_between(x, lo, hi, color=colour, alpha=0.15, linewidth=0)
        ax.set_xticks(range(len(blocks)), blocks, rotation=90, fontsize=7)
        ax.set_title(name.replace("_", " "))
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_ylim(-1.05, 1.05)
    axes[0, 0].set_ylabel("similarity to the trained map")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="outside right center")
    fig.suptitle(f"{order.replace('_', ' ')} randomisation", fontsize=9)
    return fig, axes
