"""Deletion and insertion on VLMs (egg_interp.faithfulness): what is tracked, where, the batching.

The tiny random-weight LLaVA checks the wiring (its greedy answers run to several tokens,
so the teacher-forced sum is exercised); the organism checks the meaning: on its detail
questions, deleting the evidence first makes the answer fall faster than deleting it last.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import noise_image

from egg_interp.errors import UnsupportedModelError
from egg_interp.faithfulness import _check_droppable, _PixelProbe, faithfulness_scores
from egg_interp.maps import AttributionMap, GridView, ImageMap
from egg_interp.methods import attribute
from egg_interp.methods.base import feature_set_logits, prompt_logits
from egg_interp.methods.targets import AnswerLogProb
from egg_interp.metrics.deletion import FaithfulnessSettings

QUESTION = "what colour is the square ?"
SHORT = {"steps": 8, "orders": ("morf", "lerf"), "max_answer_tokens": 3}
"""A cheap measurement: 8 steps, MoRF and LeRF (16 masked inputs), a 3-token answer."""


def test_scores_curves_and_cost_on_a_tiny_llava(tiny_llava):
    image = noise_image(64, 64, 1)
    amap = attribute(tiny_llava, image, QUESTION, "egg")
    settings = FaithfulnessSettings(**SHORT)
    scores, curves = faithfulness_scores(tiny_llava, ([image], QUESTION), amap, settings)
    assert list(scores) == settings.score_names()
    # tracked: the original greedy answer, teacher-forced, summed over its tokens
    inputs = tiny_llava.build_inputs([image], QUESTION)
    target, extended = AnswerLogProb(max_tokens=3).for_prompt(tiny_llava, inputs)
    assert curves["answer_ids"] == list(target.answer_ids) and len(target.answer_ids) == 3
    full = float(target(prompt_logits(tiny_llava, extended, target)))
    assert curves["full_logprob"] == pytest.approx(full, abs=1e-4)
    deletion = curves["curves"]["deletion"]["morf"]
    assert deletion["logprob"][0] == pytest.approx(full, abs=1e-4)
    np.testing.assert_allclose(deletion["prob"], np.exp(deletion["logprob"]))
    assert curves["fractions"] == pytest.approx(np.linspace(0, 1, 9).tolist())
    # one substrate: insertion under MoRF is deletion under LeRF read backwards
    assert scores["insertion_auc"] == pytest.approx(scores["deletion_auc_lerf"])
    assert scores["deletion_gap"] == pytest.approx(
        scores["deletion_auc_lerf"] - scores["deletion_auc"]
    )
    # cost: 2 x 8 distinct masked inputs, in forwards of 8 rows on a CPU (rows_per_forward=0)
    assert (curves["rows"], curves["forwards"]) == (16, 2)
    _, one = faithfulness_scores(
        tiny_llava, ([image], QUESTION), amap, settings.replace(rows_per_forward=16)
    )
    assert (one["rows"], one["forwards"]) == (16, 1)
    # the areas integrate the probability; track="logprob" integrates its logarithm
    x = np.asarray(curves["fractions"])
    assert scores["deletion_auc"] == pytest.approx(np.trapezoid(deletion["prob"], x))
    logs, _ = faithfulness_scores(
        tiny_llava, ([image], QUESTION), amap, settings.replace(track="logprob")
    )
    assert logs["deletion_auc"] == pytest.approx(np.trapezoid(deletion["logprob"], x), abs=1e-4)


@pytest.mark.parametrize("space", ["pixels", "tokens"])
def test_batched_rows_equal_single_rows(tiny_llava, space):
    image = noise_image(64, 64, 2)
    amap = attribute(tiny_llava, image, QUESTION, "egg")
    runs = [
        faithfulness_scores(
            tiny_llava,
            ([image], QUESTION),
            amap,
            FaithfulnessSettings(**{**SHORT, "steps": 4}, space=space, rows_per_forward=rows),
        )
        for rows in (1, 8)
    ]
    (one, one_curves), (batched, batched_curves) = runs
    assert (one_curves["forwards"], batched_curves["forwards"]) == (8, 1)
    for key in one:
        assert one[key] == pytest.approx(batched[key], abs=1e-4)


def test_the_random_control_is_scored_once_per_prompt(tiny_llava):
    """The random order ignores the map: a second map of the same prompt reuses its curves
    (16 masked inputs instead of 30); changed weights or another prompt score it again."""
    image = noise_image(64, 64, 6)
    settings = FaithfulnessSettings(**{**SHORT, "steps": 4, "orders": ("morf", "lerf", "random")})
    egg = attribute(tiny_llava, image, QUESTION, "egg")
    raw = attribute(tiny_llava, image, QUESTION, "raw_attention")
    first, first_curves = faithfulness_scores(tiny_llava, ([image], QUESTION), egg, settings)
    second, second_curves = faithfulness_scores(tiny_llava, ([image], QUESTION), raw, settings)
    assert (first_curves["rows"], second_curves["rows"]) == (8 + 8, 8)
    assert second["deletion_auc_random"] == first["deletion_auc_random"]
    assert second["deletion_auc"] != first["deletion_auc"]
    with torch.no_grad():
        tiny_llava.model.lm_head.weight.mul_(1.5)
    _, again = faithfulness_scores(tiny_llava, ([image], QUESTION), raw, settings)
    assert again["rows"] == 16


def test_pixel_substrate_replaces_the_removed_cells_only(tiny_llava):
    image = noise_image(60, 44, 3)  # the processor centre-crops: border pixels in no cell
    amap = attribute(tiny_llava, image, QUESTION, "egg")
    settings = FaithfulnessSettings(**SHORT, substrate="mean")
    probe = _PixelProbe.build(tiny_llava, [image], QUESTION, amap, settings, "mean")
    keep = np.ones(amap.grid.shape, dtype=bool)
    keep[2, 3] = False
    out = np.asarray(probe.perturbed(keep), dtype=np.float64)
    original = np.asarray(image, dtype=np.float64)
    x0, y0, x1, y1 = amap.images[0].primary.cell_boxes[2, 3]
    cols = (np.arange(60) + 0.5 >= x0) & (np.arange(60) + 0.5 < x1)
    rows = (np.arange(44) + 0.5 >= y0) & (np.arange(44) + 0.5 < y1)
    inside = np.outer(rows, cols)
    assert inside.sum() > 0
    np.testing.assert_array_equal(out[~inside], original[~inside])
    np.testing.assert_allclose(
        out[inside], np.broadcast_to(original.mean((0, 1)), out[inside].shape), atol=0.5
    )


def test_token_space_starts_insertion_from_the_baseline(tiny_llava):
    image = noise_image(64, 64, 4)
    amap = attribute(tiny_llava, image, QUESTION, "egg")
    settings = FaithfulnessSettings(**SHORT, space="tokens")
    _, curves = faithfulness_scores(tiny_llava, ([image], QUESTION), amap, settings)
    inputs = tiny_llava.build_inputs([image], QUESTION)
    target, extended = AnswerLogProb(max_tokens=3).for_prompt(tiny_llava, inputs)
    (feats,) = tiny_llava.image_features(extended)
    with torch.no_grad():
        mean = feats.mean(0).expand_as(feats)[None]
        start = float(target(feature_set_logits(tiny_llava, extended, [mean], target))[0])
    assert curves["curves"]["insertion"]["morf"]["logprob"][0] == pytest.approx(start, abs=1e-4)


def test_dropping_tokens(tiny_llava):
    image = noise_image(64, 64, 5)
    amap = attribute(tiny_llava, image, QUESTION, "egg")
    dropped = FaithfulnessSettings(**SHORT, space="tokens", substrate="drop")
    scores, curves = faithfulness_scores(tiny_llava, ([image], QUESTION), amap, dropped)
    _, mean = faithfulness_scores(
        tiny_llava, ([image], QUESTION), amap, FaithfulnessSettings(**SHORT, space="tokens")
    )
    drop_del = curves["curves"]["deletion"]["morf"]["logprob"]
    mean_del = mean["curves"]["deletion"]["morf"]["logprob"]
    assert drop_del[0] == pytest.approx(mean_del[0], abs=1e-4)  # nothing dropped yet
    assert np.isfinite(drop_del).all() and not np.allclose(drop_del[1:], mean_del[1:])
    inputs = tiny_llava.build_inputs([image], QUESTION)
    inputs.batch["image_grid_thw"] = torch.ones(1, 3)  # a prompt the generic rebuild cannot drop
    with pytest.raises(UnsupportedModelError):
        _check_droppable(tiny_llava, inputs)


# ---------------------------------------------------------------------------- the organism
N_DETAIL = 6  # the first detail test scenes; deletion only, MoRF and LeRF, 8 steps, blur
EVIDENCE_GAP_MIN = 0.30  # measured 0.742 (evidence last) - 0.145 (evidence first) = 0.60
EGG_GAP_MIN = 0.25  # measured 0.58 (per scene 0.57, 0.57, 0.12, 0.69, 0.87, 0.66)


@pytest.fixture(scope="module")
def organism():
    from egg_interp.models import load_model

    return load_model("organism", device="cpu")


def evidence_map(amap: AttributionMap, box) -> AttributionMap:
    """``amap``'s geometry with each cell valued by the share of it inside ``box``."""
    view = amap.images[0].primary
    b = view.cell_boxes
    w = np.clip(np.minimum(b[..., 2], box[2]) - np.maximum(b[..., 0], box[0]), 0, None)
    h = np.clip(np.minimum(b[..., 3], box[3]) - np.maximum(b[..., 1], box[1]), 0, None)
    area = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    image = amap.images[0]
    grid = GridView(w * h / area, view.cell_boxes, view.name)
    return AttributionMap([ImageMap([grid], image.image_size, image.origin_box)], "evidence")


def test_evidence_first_falls_faster_on_the_organism(organism):
    """Deleting the evidence box's cells first (pixels, blur) makes the original answer fall
    faster than deleting them last, and EGG's map sides with the evidence."""
    from egg_interp.data import scenes

    samples = scenes.load(split="test", per_family=N_DETAIL, families=["detail"])
    settings = FaithfulnessSettings(orders=("morf", "lerf"), curves=("deletion",), steps=8)
    evidence, egg = [], []
    for sample in samples:
        amap = attribute(organism, sample.image, sample.question, "egg")
        scores, _ = faithfulness_scores(
            organism, sample, evidence_map(amap, sample.boxes[0]), settings
        )
        evidence.append(scores)
        egg.append(faithfulness_scores(organism, sample, amap, settings)[0])
    first = np.mean([s["deletion_auc"] for s in evidence])
    last = np.mean([s["deletion_auc_lerf"] for s in evidence])
    assert last - first >= EVIDENCE_GAP_MIN
    assert np.mean([s["deletion_gap"] for s in egg]) >= EGG_GAP_MIN


def test_the_curves_figure_draws_every_method_and_order():
    import matplotlib

    matplotlib.use("Agg")
    from egg_interp.figures.faithfulness import plot_faithfulness_curves

    x = np.linspace(0, 1, 5).tolist()
    record = {
        "fractions": x,
        "curves": {
            kind: {
                o: {"prob": [0.9, 0.5, 0.3, 0.2, 0.1], "logprob": [0.0] * 5}
                for o in ("morf", "lerf")
            }
            for kind in ("deletion", "insertion")
        },
    }
    fig, axes = plot_faithfulness_curves({"egg": record, "saliency": record})
    assert [ax.get_title() for ax in axes[0]] == ["deletion", "insertion"]
    labels = [t.get_text() for t in axes[0, -1].get_legend().get_texts()]
    assert labels == ["egg (morf)", "egg (lerf)", "saliency (morf)", "saliency (lerf)"]
    assert axes[0, 0].lines[1].get_linestyle() == "--"  # LeRF dashed
