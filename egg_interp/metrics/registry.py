"""The metric registry: every score declared once, read by scoring, reports and the explorer.

A :class:`Score` states what a score is called (its key in a results line), the function that
computes it and the inputs that function needs, which way is better, its NaN policy, and how
it is shown (a label, the table it belongs to, whether tables show it in percent).
:func:`egg_interp.scoring.score_map` computes every map score whose inputs it is given;
:func:`egg_interp.scoring.score_answer` the dataset's answer score; the report
(:mod:`egg_interp.report`) takes its columns, their order, the faithfulness table and the
POPE figures from here; the explorer its score columns and direction arrows.

Kinds of score
--------------
``"map"``
    One number per map line, under ``scores`` in the line. ``fn(*inputs)`` is called with
    the inputs named in ``needs`` (keys of :data:`MAP_INPUTS`), in that order. A map score
    is written only when every input it needs is given (so scores that cost extra forwards
    appear only in runs that asked for them); it is NaN when the map is degenerate, or when
    it needs ``boxes`` and the sample has none.
``"answer"``
    The per-question answer score a dataset names (``metric`` in its answer lines; the
    line's ``score``): ``fn(*inputs)`` with :data:`ANSWER_INPUTS`.
``"dataset"``
    A figure over a dataset's answers (POPE's precision, recall, ...): ``fn(*inputs)`` with
    :data:`DATASET_INPUTS`.

Adding a score is one :func:`register` call in this module (a new map input is one entry
of :data:`MAP_INPUTS`, given by the caller of ``score_map``).

>>> SCORES["pointing_game"].direction, SCORES["pointing_game"].header
('higher', 'pointing game ↑')
>>> [s.name for s in scores("map", "localisation")][:3]
['pointing_game', 'energy_pointing_game', 'relevance_mass_accuracy']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from egg_interp.errors import InputError
from egg_interp.metrics.answers import (
    anls,
    exact_match,
    multiple_choice_match,
    pope_scores,
    vqa_accuracy,
    yes_no_match,
)
from egg_interp.metrics.deletion import CURVES, ORDERS, area_input, auc_name, morf_lerf_gap
from egg_interp.metrics.localisation import (
    auc,
    energy_pointing_game,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from egg_interp.metrics.regions import all_boxes_covered, any_box_hit, region_hit, region_iou

Kind = Literal["map", "answer", "dataset"]
Direction = Literal["higher", "lower", "none"]

ARROWS = {"higher": "\u2191", "lower": "\u2193", "none": ""}
"""The arrow shown beside a score's label: up where higher is better, down where lower is."""

ORDER_WORDS = {
    "morf": "most relevant cells first (MoRF)",
    "lerf": "least relevant cells first (LeRF)",
    "random": "cells in a seeded random order (the map-free control)",
}
"""How tables and inputs describe each cell order of the faithfulness curves."""

MAP_INPUTS: dict[str, str] = {
    "heat": "ndarray of shape (H, W): the map on the original image's pixels (row = y), pixels "
    "no token covers filled with the map's lowest relevance",
    "boxes": "the sample's evidence boxes (x0, y0, x1, y1) in original-image pixels (a score "
    "that needs them is NaN when the sample has none)",
    "regions": "the map's top-k region boxes (x0, y0, x1, y1), best first "
    "(egg_interp.regions.find_regions)",
    "tolerance": "the pointing game's radius in original-image pixels",
    "top_k": "how many regions are kept",
    **{
        area_input(curve, order): f"area under the {curve} curve of the original answer's "
        f"probability (or log-probability), {ORDER_WORDS[order]}, on [0, 1] "
        "(egg_interp.faithfulness; given when the run measures it: evaluate --faithfulness)"
        for curve in CURVES
        for order in ORDERS
    },
}
"""Inputs a map score may need: what :func:`egg_interp.scoring.score_map` gives (the curves'
areas, ``deletion_morf`` ... ``insertion_random``, only when a run measures them)."""

ANSWER_INPUTS: dict[str, str] = {
    "prediction": "the model's answer (str)",
    "answers": "the reference answers (list of str)",
    "options": "the multiple-choice options (list of str; empty when none)",
}
"""Inputs an answer score may need: what :func:`egg_interp.scoring.score_answer` gives."""

DATASET_INPUTS: dict[str, str] = {
    "predictions": "the model's answers over a dataset (list of str)",
    "labels": "the reference yes/no labels, one per prediction",
}
"""Inputs of a figure over a dataset's answers."""

INPUTS: dict[str, dict[str, str]] = {
    "map": MAP_INPUTS,
    "answer": ANSWER_INPUTS,
    "dataset": DATASET_INPUTS,
}


@dataclass(frozen=True)
class Score:
    """One score, declared once.

    Attributes
    ----------
    name : str
        Its key in a results line (``scores[name]`` of a map line; the ``metric`` of an
        answer line) and its column in tables and CSV files.
    kind : {"map", "answer", "dataset"}
        What it scores (see the module's docstring).
    fn : callable
        ``fn(*[inputs[n] for n in needs]) -> float``.
    needs : tuple of str
        The inputs ``fn`` takes, in order (keys of :data:`INPUTS` ``[kind]``).
    direction : {"higher", "lower", "none"}
        Which way is better ("none": neither, e.g. POPE's yes-ratio).
    nan_policy : str
        When the score is NaN (one sentence; NaN is skipped by every aggregate, never a miss).
    label : str
        How tables, figures and the explorer name it.
    group : str
        The report table it belongs to: ``"localisation"`` and ``"faithfulness"`` for map
        scores, ``"accuracy"`` for answer scores, ``"pope"`` for POPE's figures.
    percent : bool, default True
        Tables show it times 100 (scores in [0, 1]).
    min_boxes : int, default 0
        The report averages it over samples with at least this many evidence boxes (2 for
        scores about several boxes at once).
    """

    name: str
    kind: Kind
    fn: Callable[..., float]
    needs: tuple[str, ...]
    direction: Direction
    nan_policy: str
    label: str
    group: str
    percent: bool = True
    min_boxes: int = 0

    @property
    def arrow(self) -> str:
        """``"↑"`` (higher is better), ``"↓"`` (lower is better) or ``""``."""
        return ARROWS[self.direction]

    @property
    def header(self) -> str:
        """The label and its arrow, e.g. ``"deletion AUC ↓"``: a table's column header."""
        return f"{self.label} {self.arrow}".strip()

    def compute(self, inputs: dict[str, Any]) -> float:
        """``fn`` on the inputs it needs, as a float."""
        return float(self.fn(*(inputs[n] for n in self.needs)))

    def to_dict(self) -> dict[str, Any]:
        """What a page needs to show it: name, kind, label, header, direction, arrow, group,
        percent."""
        return {
            "name": self.name,
            "kind": self.kind,
            "label": self.label,
            "header": self.header,
            "direction": self.direction,
            "arrow": self.arrow,
            "group": self.group,
            "percent": self.percent,
        }


SCORES: dict[str, Score] = {}
"""Every declared score by name, in declaration order (the order of tables' columns)."""


def register(score: Score) -> Score:
    """Add ``score`` to :data:`SCORES`, checking its declaration; return it.

    Raises
    ------
    InputError
        If the name is taken, the kind or direction unknown, an input not one of its kind's,
        or the label or NaN policy empty.
    """
    if score.name in SCORES:
        raise InputError(f"score {score.name!r} is declared twice")
    if score.kind not in INPUTS:
        raise InputError(f"score {score.name!r}: unknown kind {score.kind!r}; use {list(INPUTS)}")
    if score.direction not in ARROWS:
        raise InputError(f"score {score.name!r}: direction must be one of {list(ARROWS)}")
    unknown = [n for n in score.needs if n not in INPUTS[score.kind]]
    if unknown:
        raise InputError(
            f"score {score.name!r} needs unknown inputs {unknown}; "
            f"{score.kind} inputs: {list(INPUTS[score.kind])}"
        )
    if not (score.label.strip() and score.nan_policy.strip() and score.group.strip()):
        raise InputError(f"score {score.name!r}: label, nan_policy and group must not be empty")
    SCORES[score.name] = score
    return score


def scores(kind: Kind, group: str | None = None) -> list[Score]:
    """The declared scores of one kind (and group), in declaration order."""
    return [s for s in SCORES.values() if s.kind == kind and group in (None, s.group)]


def get_score(name: str) -> Score:
    """The declaration of ``name``; an :class:`InputError` listing the valid names if none."""
    if name not in SCORES:
        raise InputError(f"unknown score {name!r}; valid: {', '.join(SCORES)}")
    return SCORES[name]


def direction(name: str) -> Direction:
    """Which way is better for ``name``: ``"higher"``, ``"lower"`` or ``"none"``."""
    return get_score(name).direction


# ---------------------------------------------------------------- map scores: localisation

_NO_BOX = "NaN when the sample has no evidence box or the map is degenerate"


def _map(name: str, fn: Callable[..., float], needs: Sequence[str], label: str, nan: str) -> None:
    register(Score(name, "map", fn, tuple(needs), "higher", nan, label, "localisation"))


_map(
    "pointing_game",
    pointing_game,
    ("heat", "boxes", "tolerance"),
    "pointing game",
    f"{_NO_BOX}; 1.0 when the map's maximum lies within the tolerance of a box",
)
_map(
    "energy_pointing_game",
    energy_pointing_game,
    ("heat", "boxes"),
    "energy pointing game",
    f"{_NO_BOX} or has no positive relevance",
)
_map(
    "relevance_mass_accuracy",
    relevance_mass_accuracy,
    ("heat", "boxes"),
    "relevance mass accuracy",
    f"{_NO_BOX} or sums to zero",
)
_map(
    "relevance_rank_accuracy",
    relevance_rank_accuracy,
    ("heat", "boxes"),
    "relevance rank accuracy",
    _NO_BOX,
)
_map("auc", auc, ("heat", "boxes"), "AUC (box pixels vs the rest)", f"{_NO_BOX} or boxes cover it")
_map(
    "region_iou",
    region_iou,
    ("regions", "boxes"),
    "top region's IoU",
    f"{_NO_BOX}; 0.0 when the map has no region",
)
_map(
    "region_hit",
    region_hit,
    ("regions", "boxes"),
    "top region hits (IoU >= 0.5)",
    f"{_NO_BOX}; 0.0 when the map has no region",
)
_map(
    "any_box_hit",
    any_box_hit,
    ("heat", "boxes", "tolerance"),
    "peak hits any box",
    f"{_NO_BOX} or is constant",
)


def _top_k_cover_all(regions: Any, boxes: Any, top_k: int) -> float:
    return all_boxes_covered(regions, boxes, k=top_k)


register(
    Score(
        "all_boxes_covered",
        "map",
        _top_k_cover_all,
        ("regions", "boxes", "top_k"),
        "higher",
        f"{_NO_BOX}; the report averages it over samples with two boxes or more",
        "top-k regions cover every box",
        "localisation",
        min_boxes=2,
    )
)


# ---------------------------------------------------------------- map scores: faithfulness

_FAITHFUL_NAN = (
    "written only when the run measures this curve and order (evaluate --faithfulness); NaN "
    "when the map is degenerate (it cannot rank the cells)"
)
_AUC_DIRECTION: dict[tuple[str, str], Direction] = {
    ("deletion", "morf"): "lower",  # the answer should fall fast when the top cells go
    ("deletion", "lerf"): "higher",  # ... and hold while the least relevant ones go
    ("insertion", "morf"): "higher",
    ("insertion", "lerf"): "lower",
    ("deletion", "random"): "none",  # the control: no map, no better way
    ("insertion", "random"): "none",
}
_ORDER_LABEL = {"morf": "MoRF", "lerf": "LeRF", "random": "random order"}


def _area(value: float) -> float:
    return value


def _faithfulness_scores(curve: str) -> None:
    """The AUC of ``curve`` under each order, then its MoRF-LeRF gap (higher is better)."""
    for order in ORDERS:
        register(
            Score(
                auc_name(curve, order),
                "map",
                _area,
                (area_input(curve, order),),
                _AUC_DIRECTION[curve, order],
                _FAITHFUL_NAN,
                f"{curve} AUC ({_ORDER_LABEL[order]})",
                "faithfulness",
                percent=False,
            )
        )

    def gap(morf: float, lerf: float) -> float:
        return morf_lerf_gap(curve, morf, lerf)

    gap.__name__ = f"{curve}_gap"
    register(
        Score(
            f"{curve}_gap",
            "map",
            gap,
            (area_input(curve, "morf"), area_input(curve, "lerf")),
            "higher",
            _FAITHFUL_NAN,
            f"{curve} MoRF-LeRF gap",
            "faithfulness",
            percent=False,
        )
    )


for _curve in CURVES:
    _faithfulness_scores(_curve)


# ---------------------------------------------------------------- answer scores

_NO_ANSWER = "NaN when the sample has no reference answer"


def _answer(name: str, fn: Callable[..., float], label: str, needs: Sequence[str] = ()) -> None:
    needs = tuple(needs) or ("prediction", "answers")
    register(Score(name, "answer", fn, needs, "higher", _NO_ANSWER, label, "accuracy"))


_answer("vqa", vqa_accuracy, "VQA accuracy")
_answer("anls", anls, "ANLS")
_answer("exact", exact_match, "exact match")
_answer("yes_no", yes_no_match, "yes/no match")
_answer(
    "multiple_choice",
    multiple_choice_match,
    "multiple-choice match",
    ("prediction", "answers", "options"),
)


# ---------------------------------------------------------------- POPE's figures


def _pope(figure: str, label: str, direction: Direction = "higher") -> None:
    def fn(predictions: Sequence[str], labels: Sequence[str]) -> float:
        return pope_scores(predictions, labels)[figure]

    fn.__name__ = f"pope_{figure}"
    nan = "NaN over no question; an unparseable answer counts as wrong, never as a yes"
    needs = ("predictions", "labels")
    register(Score(f"pope_{figure}", "dataset", fn, needs, direction, nan, label, "pope"))


_pope("accuracy", "accuracy")
_pope("precision", "precision")
_pope("recall", "recall")
_pope("f1", "F1")
_pope("yes_ratio", "yes-ratio (0.5: balanced)", "none")


__all__ = [
    "ANSWER_INPUTS",
    "ARROWS",
    "DATASET_INPUTS",
    "INPUTS",
    "MAP_INPUTS",
    "ORDER_WORDS",
    "SCORES",
    "Score",
    "direction",
    "get_score",
    "register",
    "scores",
]
