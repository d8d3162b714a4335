"""How datasets, pipelines and evidence-size buckets are titled and ordered in tables and figures.

Shared by :mod:`egg_interp.report` (tables), :mod:`egg_interp.figures.bars` and the explorer,
so that a figure never imports the report that draws it.
"""

from __future__ import annotations

from collections.abc import Iterable

from egg_interp.scoring import SIZE_BUCKETS

PAPER_DATASETS = ("textvqa", "vstar", "docvqa", "pope", "infovqa", "gqa", "realworldqa")
"""Column order of the paper's Table 1; other datasets follow in name order."""

DATASET_TITLES = {
    "textvqa": "TextVQA",
    "vstar": "V*",
    "docvqa": "DocVQA",
    "pope": "POPE",
    "infovqa": "InfoVQA",
    "gqa": "GQA",
    "realworldqa": "RWQA",
    "scenes": "Scenes",
}

PIPELINE_ORDER = ("base", "vicrop", "egg", "oracle", "random", "random_egg")
PIPELINE_TITLES = {
    "base": "base",
    "vicrop": "+ViCrop",
    "egg": "+EGG",
    "oracle": "+oracle crops",
    "random": "+random crops",
    "random_egg": "+EGG's crops moved",
}
BUCKETS = tuple(name for name, _ in SIZE_BUCKETS)


def dataset_order(names: Iterable[str]) -> list[str]:
    """The paper's Table 1 order first, then the other datasets by name."""
    names = set(names)
    return [d for d in PAPER_DATASETS if d in names] + sorted(names - set(PAPER_DATASETS))


def pipeline_order(labels: Iterable[str]) -> list[str]:
    """Labels (``name`` or ``name@hash6``) in :data:`PIPELINE_ORDER`, unknown names last."""

    def rank(label: str) -> tuple[int, str]:
        name = label.split("@")[0]
        return (
            PIPELINE_ORDER.index(name) if name in PIPELINE_ORDER else len(PIPELINE_ORDER),
            label,
        )

    return sorted(set(labels), key=rank)
