"""The metric registry: every score declared once, and scoring reads the declarations.

Hand-computed cases on a 2x2 map, the path a new score takes (one declaration, one input),
and the checks a declaration must pass.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from egg_interp.data.registry import METRICS
from egg_interp.data.sample import Sample
from egg_interp.errors import InputError
from egg_interp.maps import AttributionMap, GridView, ImageMap
from egg_interp.metrics import registry
from egg_interp.metrics.registry import MAP_INPUTS, SCORES, Score, register, scores
from egg_interp.models.base import regular_cell_boxes
from egg_interp.scoring import score_answer, score_map

LOCALISATION = (
    "pointing_game",
    "energy_pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "auc",
    "region_iou",
    "region_hit",
    "any_box_hit",
    "all_boxes_covered",
)


def _map(values) -> AttributionMap:
    """A 2x2 grid of 10x10-pixel cells on a 20x20 image."""
    grid = GridView(np.asarray(values, np.float32), regular_cell_boxes(2, 2, 0, 0, 10, 10))
    return AttributionMap([ImageMap([grid], (20, 20), (0, 0, 20, 20))], "egg", "entropy")


@pytest.fixture()
def declare():
    """Register scores for one test, removed afterwards."""
    added: list[str] = []

    def add(score: Score) -> Score:
        added.append(score.name)
        return register(score)

    yield add
    for name in added:
        SCORES.pop(name, None)


def test_every_score_is_declared_with_a_direction_label_and_nan_policy():
    assert [s.name for s in scores("map", "localisation")] == list(LOCALISATION)
    for s in SCORES.values():
        assert s.direction in ("higher", "lower", "none") and s.label and s.nan_policy
        assert set(s.needs) <= set(registry.INPUTS[s.kind]), s.name
    assert SCORES["pointing_game"].header == "pointing game \u2191"
    assert SCORES["pope_yes_ratio"].direction == "none" and SCORES["pope_yes_ratio"].arrow == ""
    assert SCORES["all_boxes_covered"].min_boxes == 2
    # every answer metric a dataset may name is a declared answer score ("pope": yes_no)
    answer_names = {s.name for s in scores("answer")}
    assert {("yes_no" if m == "pope" else m) for m in METRICS} <= answer_names


def test_score_map_writes_the_declared_scores_in_order_computed_by_hand():
    # relevance 3 in the top-left cell, 1 in the bottom-right; the evidence is the top-left
    out = score_map(_map([[3, 0], [0, 1]]), [(0, 0, 10, 10)], tolerance=1.0, top_k=1)
    assert list(out["scores"]) == list(LOCALISATION)
    s = out["scores"]
    assert s["pointing_game"] == 1.0 and s["any_box_hit"] == 1.0
    # the bilinear heat map is smooth, but the box holds most of the mass: more than 1/4
    assert 0.25 < s["relevance_mass_accuracy"] == s["energy_pointing_game"] <= 1.0
    # no evidence box: every score that needs one is NaN, and nothing is computed for it
    empty = score_map(_map([[3, 0], [0, 1]]), [])
    assert list(empty["scores"]) == list(LOCALISATION)
    assert all(math.isnan(v) for v in empty["scores"].values()) and empty["regions"]


def test_a_new_score_is_one_declaration(declare, monkeypatch):
    """What the faithfulness scores will do: declare a score with an input of its own; it is
    written only when that input is given, NaN on a degenerate map."""
    monkeypatch.setitem(MAP_INPUTS, "curves", "test curves: a dict of areas")
    declare(
        Score(
            "deletion_auc_test",
            "map",
            lambda curves: curves["deletion"],
            ("curves",),
            "lower",
            "NaN on a degenerate map",
            "deletion AUC (test)",
            "faithfulness",
            percent=False,
        )
    )
    boxes = [(0, 0, 10, 10)]
    assert "deletion_auc_test" not in score_map(_map([[3, 0], [0, 1]]), boxes)["scores"]
    given = score_map(_map([[3, 0], [0, 1]]), boxes, inputs={"curves": {"deletion": 0.25}})
    assert list(given["scores"])[-1] == "deletion_auc_test"
    assert given["scores"]["deletion_auc_test"] == 0.25
    degenerate = score_map(_map([[0, 0], [0, 0]]), boxes, inputs={"curves": {"deletion": 0.25}})
    assert math.isnan(degenerate["scores"]["deletion_auc_test"])
    assert SCORES["deletion_auc_test"].header == "deletion AUC (test) \u2193"
    with pytest.raises(InputError, match="unknown map-score inputs"):
        score_map(_map([[3, 0], [0, 1]]), boxes, inputs={"curve": {}})


def test_register_refuses_a_bad_declaration(declare):
    def score(**change):
        fields = dict(
            name="x_test",
            kind="map",
            fn=lambda heat: 0.0,
            needs=("heat",),
            direction="higher",
            nan_policy="never NaN",
            label="x",
            group="localisation",
        )
        return Score(**{**fields, **change})

    with pytest.raises(InputError, match="declared twice"):
        register(score(name="pointing_game"))
    with pytest.raises(InputError, match="unknown inputs"):
        register(score(needs=("heatmap",)))
    with pytest.raises(InputError, match="direction"):
        register(score(direction="up"))
    with pytest.raises(InputError, match="must not be empty"):
        register(score(nan_policy=" "))
    with pytest.raises(InputError, match="unknown score"):
        registry.get_score("x_test")
    declare(score())
    assert registry.direction("x_test") == "higher"


def test_score_answer_reads_the_registry():
    sample = Sample("s", "which?", ["B"], None, options=["red", "blue"])
    assert score_answer("multiple_choice", "(B) blue", sample) == 1.0
    assert score_answer("multiple_choice", "red", sample) == 0.0
    yes = Sample("p", "is there a cat?", ["yes"], None)
    assert score_answer("pope", "Yes, there is.", yes) == 1.0
    assert score_answer("exact", "no", yes) == 0.0
    with pytest.raises(InputError, match="unknown answer metric"):
        score_answer("bleu", "x", yes)


def test_pope_figures_come_from_the_registry():
    inputs = {"predictions": ["yes", "no", "maybe", "yes"], "labels": ["yes", "yes", "no", "no"]}
    figures = {s.name: s.compute(inputs) for s in scores("dataset", "pope")}
    # tp 1, fp 1, fn 1 (the "no"), the unparseable answer wrong: accuracy 1/4
    assert figures == {
        "pope_accuracy": 0.25,
        "pope_precision": 0.5,
        "pope_recall": 0.5,
        "pope_f1": 0.5,
        "pope_yes_ratio": 0.5,
    }
