"""Localisation and answer metrics: pure functions on numpy arrays and strings.

Every score's better direction is in :data:`SCORE_DIRECTION` ("higher", "lower" or "none").
"""

from egg_interp.metrics import answers, deletion, localisation, regions
from egg_interp.metrics.answers import (
    ANSWER_METRICS,
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
    MAP_METRICS,
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

SCORE_DIRECTION: dict[str, str] = {
    **localisation.SCORE_DIRECTION,
    **regions.SCORE_DIRECTION,
    **deletion.SCORE_DIRECTION,
    **answers.SCORE_DIRECTION,
}

__all__ = [
    "ANSWER_METRICS",
    "MAP_METRICS",
    "SCORE_DIRECTION",
    "Curve",
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
    "multiple_choice_letter",
    "multiple_choice_match",
    "normalize_vqa_answer",
    "parse_yes_no",
    "pointing_game",
    "pope_scores",
    "region_hit",
    "region_iou",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "top_k_intersection",
    "vqa_accuracy",
    "yes_no_match",
]
