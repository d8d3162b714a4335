"""The shipped model organism: loads offline, and reproduces its figures on fixed subsets.

Thresholds are the values measured on the same subsets (recorded below) minus a safety
margin. Answer accuracy uses 25 test scenes per family (the whole pipeline per sample); the
pointing game uses the first 200 detail scenes of the test split, the demo's own sample, as
one map per scene is cheap; the causal measures re-render 30 scenes; the legibility band
uses 100 single-object validation scenes.
"""

from __future__ import annotations

import math

import pytest

from egg_interp.data import scenes
from egg_interp.demo import demo_rows, summarise
from egg_interp.pipelines import PipelineOptions

# ---------------------------------------------------------------------------------------
# THRESHOLDS: measured on these subsets with the shipped weights (organism v2, step 5200,
# scenes-v2: objects of 40-56 px, contrast 24), minus a margin; the measured values are in
# the comments (the 200-per-family demo's in brackets). The targets are stated beside
# them where the test is stricter or looser.
SCENES_VERSION = "scenes-v2"
N_PER_FAMILY = 25  # answers: every pipeline on 25 test scenes per family
N_POINTING = 200  # pointing game: the EGG map of the first 200 detail test scenes
N_CAUSAL = 30  # causal measures: the first 30 detail test scenes with 2-3 objects
N_SINGLE = 100  # legibility band: 100 single-object scenes (validation seeds)
ORACLE_DETAIL_MIN = 0.92  # measured 0.96 [0.985] (issue target >= 0.95)
ZOOM_GAP_MIN = 0.15  # full 0.76 vs oracle 0.96 [0.595 vs 0.985]
EGG_OVER_FULL_DETAIL_MIN = 0.15  # EGG crops 0.96 vs full 0.76 [0.98 vs 0.595]
EGG_OVER_RANDOM_MIN = 0.20  # EGG 0.96 vs random crops of the oracle's size 0.68 [+0.315]
COARSE_FULL_MIN = 0.92  # measured 1.00
COARSE_EGG_DROP_MAX = 0.05  # measured 0.00 [0.01] (target <= 0.02)
EGG_PG_MIN = 0.90  # measured 0.995 (target >= 0.80)
EGG_OVER_RANDOM_OBJECT_MIN = 0.30  # measured 0.995 - 0.555 = 0.44 (target >= 0.30)
EGG_OVER_CENTRE_MIN = 0.50  # centre point 0.12
ANY_OBJECT_MIN = 0.95  # measured 1.00
SENSITIVITY_RATIO_MIN = 5.0  # measured 6.9 on this subset [10.6] (target >= 3)
TARGET_MOST_CAUSAL_MIN = 0.75  # measured 25/30 = 0.83 [0.93]
DISTRACTOR_FOLLOWING_MAX = 0.30  # measured 5/23 = 0.217 [0.200] (target <= 0.2; n is small)
SINGLE_FULL_BAND = (0.50, 0.78)  # target 0.55-0.75; measured 0.57 (100 val scenes) [0.574]
SINGLE_ORACLE_MIN = 0.95  # measured 0.99
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def organism():
    from egg_interp.models import load_model

    return load_model("organism", device="cpu")


@pytest.fixture(scope="session")
def organism_rows(organism, request):
    """One evaluation through the runner shared by every organism test: every pipeline on
    ``N_PER_FAMILY`` scenes per family, the EGG map (and reference pointers) on ``N_POINTING``
    detail scenes. Lines are kept in ``.pytest_cache/d/organism_eval/<source>/results.jsonl``:
    a folder per fingerprint of the results-affecting source
    (:func:`egg_interp.code_key.source_fingerprint`, recorded or not), older folders removed,
    and within it keyed by the runner's config hash (weights' fingerprint, options), so a
    later session with the same weights and source reuses them and no change of the code can
    pass on stale lines."""
    import shutil

    from egg_interp.code_key import source_fingerprint
    from egg_interp.runner import evaluate as run
    from egg_interp.summaries import current_records, sample_rows

    root = request.config.cache.mkdir("organism_eval")
    folder = root / source_fingerprint()
    for old in root.iterdir():  # lines of other source: never read again
        if old != folder:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    folder.mkdir(exist_ok=True)
    out = folder / "results.jsonl"
    options = PipelineOptions(max_new_tokens=4)
    answered = scenes.load(split="test", per_family=N_PER_FAMILY, version=SCENES_VERSION)
    rows = demo_rows(organism, answered, out, options, model="organism", batch_size=8)
    pointed = scenes.load(
        split="test", per_family=N_POINTING, families=["detail"], version=SCENES_VERSION
    )
    kw = dict(dataset="scenes", split="test", model="organism", pipeline_options=options)
    hashes = run(organism, pointed, methods=("egg",), pipelines=(), out=out, batch_size=8, **kw)
    from egg_interp.results import read_results

    records = current_records(read_results(out), hashes.config_hashes)
    return {"answers": rows, "pointing": sample_rows(records, pointed)}


@pytest.fixture(scope="session")
def summary(organism_rows):
    return summarise(organism_rows["answers"])


@pytest.fixture(scope="session")
def pointing(organism_rows):
    return summarise(organism_rows["pointing"])["pointing_game"]


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
    assert acc["base"] <= acc["oracle"] - ZOOM_GAP_MIN


def test_egg_crops_lift_detail_accuracy(summary):
    acc = summary["accuracy"]["detail"]
    assert acc["egg"] >= acc["base"] + EGG_OVER_FULL_DETAIL_MIN
    assert acc["egg"] >= acc["random"] + EGG_OVER_RANDOM_MIN
    # EGG's own crops at random places: where it looks matters, not only how much it zooms
    assert acc["egg"] > acc["random_egg"]


def test_coarse_questions_are_answered_from_the_full_view(summary):
    assert summary["accuracy"]["coarse"]["base"] >= COARSE_FULL_MIN


def test_egg_map_points_at_the_asked_about_object(pointing):
    assert pointing["egg"] >= EGG_PG_MIN
    assert pointing["egg"] > pointing["random"]
    assert pointing["egg"] >= pointing["centre"] + EGG_OVER_CENTRE_MIN
    # the bar that separates grounding from object saliency: a random object of the scene
    assert pointing["egg"] >= pointing["random_object"] + EGG_OVER_RANDOM_OBJECT_MIN


def test_egg_map_finds_objects_not_background(pointing):
    assert pointing["any_object"] >= ANY_OBJECT_MIN


def test_egg_crops_do_not_wreck_coarse_questions(summary):
    acc = summary["accuracy"]["coarse"]
    assert acc["egg"] >= acc["base"] - COARSE_EGG_DROP_MAX
    assert math.isfinite(summary["multi_evidence"]["top2_cover_both"])


@pytest.fixture(scope="session")
def causal(organism):
    from egg_interp.organism.measures import (
        answer_sensitivity,
        distractor_crop_following,
        summarise_measures,
    )

    pool = scenes.load(split="test", per_family=4 * N_CAUSAL, families=["detail"])
    picked = [s for s in pool if s.meta["n_objects"] >= 2][:N_CAUSAL]
    sens = [answer_sensitivity(organism, s) for s in picked]
    follow = [distractor_crop_following(organism, s) for s in picked]
    return summarise_measures(sens, follow)


def test_the_answer_follows_the_named_object(causal):
    assert causal["n_sensitivity"] == N_CAUSAL
    assert causal["answer_sensitivity_ratio"] >= SENSITIVITY_RATIO_MIN
    assert causal["target_most_causal"] >= TARGET_MOST_CAUSAL_MIN


def test_a_distractors_crop_does_not_capture_the_answer(causal):
    assert causal["n_following"] >= N_CAUSAL // 2
    assert causal["distractor_crop_following"] <= DISTRACTOR_FOLLOWING_MAX


def test_the_detail_is_partly_legible_in_the_full_view_and_legible_in_a_crop(organism):
    from egg_interp.geometry import crop_image, square_crop
    from egg_interp.organism.measures import pattern_distribution

    full = oracle = 0
    for k in range(N_SINGLE):
        scene = scenes.make_scene(scenes.SPLITS["val"][0] + 50_000 + k, n_objects=1)
        o = scene.objects[0]
        question = f"what pattern is on the {o.colour} object?"
        views = [scene.image]
        full += (
            scenes.PATTERNS[pattern_distribution(organism, views, question).argmax()] == o.pattern
        )
        views.append(crop_image(scene.image, square_crop(o.box, 1.5, scene.image.size)))
        oracle += (
            scenes.PATTERNS[pattern_distribution(organism, views, question).argmax()] == o.pattern
        )
    lo, hi = SINGLE_FULL_BAND
    assert lo <= full / N_SINGLE <= hi
    assert oracle / N_SINGLE >= SINGLE_ORACLE_MIN
