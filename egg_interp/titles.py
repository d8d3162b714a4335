"""How methods, datasets, pipelines and evidence-size buckets are titled and ordered.

Shared by :mod:`egg_interp.report` (tables), :mod:`egg_interp.figures` and the explorer, so
that a figure never imports the report that draws it.

Labels
------
A map method's label is its name, with its target in brackets when the map explains another
target than the method's default (:func:`method_label`: ``saliency[entropy]`` once the
gradient baselines default to the answer's log-probability); a table that holds several
configs of one label adds the config hash (``egg@1a2b3c``), the explorer the model when it
shows several (``egg [organism]``). :func:`label_name` reads the name back.
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

DEFAULT_TARGETS: dict[str, str] = {
    "egg": "entropy",
    "saliency": "entropy",
    "input_x_gradient": "entropy",
    "integrated_gradients": "entropy",
    "gradient_shap": "entropy",
    "smoothgrad": "entropy",
    "occlusion": "entropy",
    "gradcam": "entropy",
    "raw_attention": "none",
    "attention_rollout": "none",
    "rel_att": "none",
    "grad_att": "logprob",
    "pure_grad": "logprob",
}
"""Each registered method's default target, as its maps record it (``"none"``: the method
reads attention weights only). Mirrors ``default_target`` and ``uses_target`` of
:data:`egg_interp.methods.METHODS` without importing torch (a test keeps them equal)."""


def method_label(name: str, target: str | None = None) -> str:
    """A map method's label: ``name``, or ``name[target]`` when ``target`` is not its default.

    ``target`` is what a map line records (``AttributionMap.target``); ``None``, ``""`` and
    ``"none"`` (no target) give the name alone, and so does a method's own default. A method
    this table does not know always shows its target.

    >>> method_label("egg", "entropy"), method_label("saliency", "logprob")
    ('egg', 'saliency[logprob]')
    >>> method_label("rel_att", "none"), method_label("grad_att", "entropy")
    ('rel_att', 'grad_att[entropy]')
    """
    if not target or target == "none" or DEFAULT_TARGETS.get(name) == target:
        return name
    return f"{name}[{target}]"


def label_name(label: str) -> str:
    """The method or pipeline name of a label (its target, config hash and model dropped).

    >>> label_name("saliency[entropy]@1a2b3c [organism]"), label_name("egg")
    ('saliency', 'egg')
    """
    return label.split(" ")[0].split("@")[0].split("[")[0]


def method_order(labels: Iterable[str]) -> list[str]:
    """Method labels with EGG's first (its name, then its variants), the others by label.

    >>> method_order(["saliency", "egg[logprob]", "egg", "gradcam"])
    ['egg', 'egg[logprob]', 'gradcam', 'saliency']
    """
    labels = sorted(set(labels))
    return [x for x in labels if label_name(x) == "egg"] + [
        x for x in labels if label_name(x) != "egg"
    ]


def dataset_order(names: Iterable[str]) -> list[str]:
    """The paper's Table 1 order first, then the other datasets by name."""
    names = set(names)
    return [d for d in PAPER_DATASETS if d in names] + sorted(names - set(PAPER_DATASETS))


def pipeline_order(labels: Iterable[str]) -> list[str]:
    """Labels (``name`` or ``name@hash6``) in :data:`PIPELINE_ORDER`, unknown names last."""

    def rank(label: str) -> tuple[int, str]:
        name = label_name(label)
        return (
            PIPELINE_ORDER.index(name) if name in PIPELINE_ORDER else len(PIPELINE_ORDER),
            label,
        )

    return sorted(set(labels), key=rank)
