"""Localisation and answer metrics: pure functions on numpy arrays and strings.

Every score is declared once in :mod:`egg_interp.metrics.registry` (:data:`SCORES`: its
function, inputs, better direction, NaN policy and label), which scoring, the report and
the explorer read.
"""

from egg_interp.metrics.answers import (
    anls,
    exact_match,
    multiple_choice_letter,
    multiple_choice_match,
    normalize_vqa_answer,
    parse_yes_no,
    pope_scores,
    vqa_accuracy,
    yes_no_match,
)
from egg_interp.metrics.deletion import (
    Curve,
    apply_substrate,
    cells_to_pixels,
    deletion_insertion_curve,
)
from egg_interp.metrics.localisation import (
    argmax_point,
    auc,
    boxes_to_mask,
    energy_pointing_game,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
from egg_interp.metrics.regions import (
    all_boxes_covered,
    any_box_hit,
    box_coverage,
    box_hits,
    box_iou,
    region_hit,
    region_iou,
)
from egg_interp.metrics.registry import SCORES, Score, get_score, register, scores

__all__ = [
    "SCORES",
    "Curve",
    "Score",
    "all_boxes_covered",
    "anls",
    "any_box_hit",
    "apply_substrate",
    "argmax_point",
    "auc",
    "box_coverage",
    "box_hits",
    "box_iou",
    "boxes_to_mask",
    "cells_to_pixels",
    "deletion_insertion_curve",
    "energy_pointing_game",
    "exact_match",
    "get_score",
    "multiple_choice_letter",
    "multiple_choice_match",
    "normalize_vqa_answer",
    "parse_yes_no",
    "pointing_game",
    "pope_scores",
    "register",
    "region_hit",
    "region_iou",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "scores",
    "top_k_intersection",
    "vqa_accuracy",
    "yes_no_match",
]
