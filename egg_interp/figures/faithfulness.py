"""Deletion and insertion curves of several maps of one sample (or their means).

Draws what :func:`egg_interp.faithfulness.faithfulness_scores` returns as ``curves``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ORDER_STYLES = {"morf": "-", "lerf": "--", "random": ":"}
"""Line style per cell order: most relevant first solid, least relevant first dashed."""


def plot_faithfulness_curves(
    curves: dict[str, dict[str, Any]],
    kinds: Sequence[str] = ("deletion", "insertion"),
    value: str = "prob",
) -> tuple[Any, Any]:
    """Deletion and insertion curves of several methods, one panel per kind.

    Parameters
    ----------
    curves : dict
        Method name -> the ``curves`` record of
        :func:`~egg_interp.faithfulness.faithfulness_scores` (``fractions`` and
        ``curves[kind][order][value]``).
    kinds : sequence of {"deletion", "insertion"}
    value : {"prob", "logprob"}
        What the y-axis shows: the original answer's probability or log-probability.

    Returns
    -------
    (fig, axes)
        One axis per kind; one colour per method, one line style per order
        (:data:`ORDER_STYLES`).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(kinds), figsize=(4.4 * len(kinds), 3.6), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, kind in zip(axes[0], kinds):
        for i, (method, record) in enumerate(curves.items()):
            x = np.asarray(record["fractions"], dtype=float)
            for order, values in record["curves"].get(kind, {}).items():
                ax.plot(
                    x,
                    values[value],
                    ORDER_STYLES.get(order, "-"),
                    color=colours[i % len(colours)],
                    label=f"{method} ({order})",
                )
        ax.set_xlabel(f"fraction {'removed' if kind == 'deletion' else 'revealed'}")
        ax.set_title(kind)
        ax.set_xlim(0, 1)
    label = "p(original answer)" if value == "prob" else "log p(original answer)"
    axes[0, 0].set_ylabel(label)
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    return fig, axes
