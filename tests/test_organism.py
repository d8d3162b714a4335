"""The shipped model organism: loads offline, and reproduces its figures on a fixed subset.

Thresholds are the values measured with ``egg-interp demo`` (recorded in the README) minus a
safety margin for the small subset used here (12 test scenes per family, fixed seeds).
"""

from __future__ import annotations

import numpy as np
import pytest

from egg_interp.data import scenes
from egg_interp.demo import evaluate_sample, summarise
from egg_interp.pipelines import PipelineOptions

N_PER_FAMILY = 12

# Measured on this subset (organism of step 4200): detail full 0.50 / oracle 0.83;
# coarse full 0.92; EGG pointing game 0.50 vs random object 0.08 (any object 1.00).
ORACLE_DETAIL_MIN = 0.65
ZOOM_GAP_MIN = 0.15
COARSE_FULL_MIN = 0.75
EGG_PG_MIN = 0.30
EGG_OVER_RANDOM_OBJECT_MIN = 0.15
ANY_OBJECT_MIN = 0.80
COARSE_EGG_DROP_MAX = 0.20


@pytest.fixture(scope="module")
def organism():
    from egg_interp.models import load_model

    return load_model("organism", device="cpu")


@pytest.fixture(scope="module")
def summary(organism):
    samples = scenes.load(split="test", per_family=N_PER_FAMILY)
    rows = [evaluate_sample(organism, s, PipelineOptions(max_new_tokens=4)) for s in samples]
    return summarise(rows)


def test_organism_loads_offline_through_the_standard_path(monkeypatch):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from egg_interp.organism import ORGANISM_DIR, organism_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = AutoModelForImageTextToText.from_pretrained(organism_path())
    processor = AutoProcessor.from_pretrained(organism_path())
    assert model.config.model_type == "llava"
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_id
    size = sum(f.stat().st_size for f in ORGANISM_DIR.iterdir())
    assert size < 20e6  # small enough to ship in the package


def test_detail_needs_zoom_and_the_oracle_crop_reads_it(summary):
    acc = summary["accuracy"]["detail"]
    assert acc["oracle"] >= ORACLE_DETAIL_MIN
    assert acc["full"] <= acc["oracle"] - ZOOM_GAP_MIN


def test_coarse_questions_are_answered_from_the_full_view(summary):
    assert summary["accuracy"]["coarse"]["full"] >= COARSE_FULL_MIN


def test_egg_map_points_at_the_asked_about_object(summary):
    pg = summary["pointing_game"]
    assert pg["egg"] >= EGG_PG_MIN
    assert pg["egg"] > pg["random"]
    # the bar that separates grounding from object saliency: a random object of the scene
    assert pg["egg"] > pg["random_object"] + EGG_OVER_RANDOM_OBJECT_MIN


def test_egg_map_finds_objects_not_background(summary):
    assert summary["pointing_game"]["any_object"] >= ANY_OBJECT_MIN


def test_egg_crops_do_not_wreck_coarse_questions(summary):
    acc = summary["accuracy"]["coarse"]
    assert acc["egg"] >= acc["full"] - COARSE_EGG_DROP_MAX
    assert np.isfinite(summary["multi_evidence"]["top2_cover_both"])
