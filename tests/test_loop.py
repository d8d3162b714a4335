"""The zoom-and-reground loop: geometry of crops, step log, stopping, degenerate maps."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import noise_image

from egg_interp.entropy import spatial_entropy
from egg_interp.errors import InputError
from egg_interp.geometry import crop_image, to_original
from egg_interp.loop import KEEP_FORWARDS, ground, zoom_and_reground
from egg_interp.regions import find_regions
from egg_interp.settings import LoopSettings
from egg_interp.stopping import FixedSteps


def test_to_original_maps_crop_pixels_back():
    # a crop of original pixels (50, 20)-(150, 70) is 100x50; its pixel (10, 5) is at (60, 25)
    assert to_original((10, 5, 30, 25), (50, 20, 150, 70), (100, 50)) == (60, 25, 80, 45)
    # a resized crop: 200x100 image of the same rectangle -> half the offsets
    assert to_original((20, 10, 60, 50), (50, 20, 150, 70), (200, 100)) == (60, 25, 80, 45)


def test_crop_image_rounds_outwards_and_refuses_empty_boxes():
    image = noise_image(40, 30)
    # x: floor 2.5 -> 2, ceil 10.1 -> 11 (9 px); y: 3.2 -> 3, 9.0 -> 9 (6 px)
    assert crop_image(image, (2.5, 3.2, 10.1, 9.0)).size == (9, 6)
    with pytest.raises(InputError, match="under one pixel"):
        crop_image(image, (50, 10, 60, 20))
    with pytest.raises(InputError):
        crop_image(image, (5, 5, 5, 9))


def test_loop_logs_every_step_and_crops_zoom_into_previous_crops(tiny_llava):
    image = noise_image(160, 96, seed=4)
    result = zoom_and_reground(
        tiny_llava, image, "what colour is the square ?", settings=LoopSettings(stop="fixed:3")
    )
    assert [s.step for s in result.steps] == [0, 1, 2]
    assert result.decision.keep == 2 and result.crops == result.steps[2].crop_boxes
    for prev, cur in zip(result.steps, result.steps[1:]):
        assert cur.crops_in == prev.crop_boxes  # the new crops replace the previous ones
    for step in result.steps:
        assert 1 <= len(step.crop_boxes) <= 2
        for x0, y0, x1, y1 in step.crop_boxes:
            assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 96
        assert step.seconds > 0 and 0 < step.top1_prob <= 1
        # regions found in a crop carry the crop's index and lie inside that crop
        for r in step.regions:
            if r.image_index > 0:
                cx0, cy0, cx1, cy1 = step.crops_in[r.image_index - 1]
                assert cx0 - 1e-6 <= r.box[0] and r.box[2] <= cx1 + 1e-6
                assert cy0 - 1e-6 <= r.box[1] and r.box[3] <= cy1 + 1e-6
    # maps: image 0 is the original, the others the crops in order
    assert len(result.maps[1].images) == 1 + len(result.steps[0].crop_boxes)
    log = json.loads(json.dumps(result.to_dict()))
    assert len(log["steps"]) == 3 and log["decision"]["keep"] == 2


def test_spatial_entropy_rule_keeps_the_crops_before_the_rise(tiny_llava, monkeypatch):
    """Script the spatial entropy: 2.0, 1.0, 1.5 -> stop at step 2, keep step 1's crops."""
    import egg_interp.loop.state as state

    values = iter([2.0, 1.0, 1.5, 0.5])
    monkeypatch.setattr(state, "spatial_entropy", lambda grid, sigma: next(values))
    result = zoom_and_reground(tiny_llava, noise_image(96, 96), "what colour ?")
    assert len(result.steps) == 3
    assert result.decision.keep == 1 and result.crops == result.steps[1].crop_boxes


def test_loop_smooths_with_the_models_own_sigma_unless_told(tiny_llava):
    """Regions and the spatial entropy both use ``adapter.region_sigma`` (the checkpoint's
    ``egg_region_sigma``), and an explicit ``LoopSettings.sigma`` wins."""
    image, question = noise_image(160, 96, seed=4), "what colour is the square ?"
    assert tiny_llava.region_sigma == 1.5  # the paper's, when the config names none
    one_step = LoopSettings(stop="fixed:1")
    paper = zoom_and_reground(tiny_llava, image, question, settings=one_step)
    tiny_llava.model.config.egg_region_sigma = 0.0
    sharp = zoom_and_reground(tiny_llava, image, question, settings=one_step)
    view = sharp.maps[0].images[0].primary
    expected = find_regions(view.values, view.cell_boxes, image.size, sigma=0.0, min_side=8.0)
    assert [r.box for r in sharp.steps[0].regions] == [r.box for r in expected]
    assert sharp.steps[0].spatial_entropy == pytest.approx(spatial_entropy(view.values, 0.0))
    assert sharp.steps[0].spatial_entropy != pytest.approx(paper.steps[0].spatial_entropy)
    told = zoom_and_reground(
        tiny_llava, image, question, settings=LoopSettings(stop="fixed:1", sigma=1.5)
    )
    assert told.steps[0].spatial_entropy == pytest.approx(paper.steps[0].spatial_entropy)
    assert [r.box for r in told.steps[0].regions] == [r.box for r in paper.steps[0].regions]


def test_all_zero_map_falls_back_to_the_whole_image_without_crops(tiny_llava):
    torch.nn.init.zeros_(tiny_llava.model.lm_head.weight)  # uniform p: dH/dz = 0
    image = noise_image(80, 64)
    result = ground(tiny_llava, image, "what colour ?", max_new_tokens=2)
    assert len(result.steps) == 1 and "all zeros" in result.steps[0].degenerate
    assert result.crops == [] and result.decision.stop
    assert result.regions[0].box == (0.0, 0.0, 80.0, 64.0)
    assert math.isnan(result.steps[0].spatial_entropy)


def test_nan_map_is_reported_not_normalised(tiny_llava):
    with torch.no_grad():
        tiny_llava.model.lm_head.weight[0, 0] = float("nan")
    result = zoom_and_reground(tiny_llava, noise_image(64, 64), "what colour ?")
    assert "NaN" in result.steps[0].degenerate and result.crops == []


def test_ground_answers_with_and_without_crops(tiny_llava):
    image = noise_image(64, 64)
    result = ground(
        tiny_llava, image, "what colour ?", settings=LoopSettings(stop="fixed:1"), max_new_tokens=3
    )
    assert isinstance(result.base_answer, str) and isinstance(result.answer, str)
    assert len(result.crops) >= 1
    assert np.isfinite(result.steps[0].next_token_entropy)


def test_old_keyword_forms_warn_and_mean_the_same_settings(tiny_llava):
    image, question = noise_image(96, 64, seed=2), "what colour ?"
    settings = LoopSettings(stop="fixed:2", top_k=1)
    new = ground(tiny_llava, image, question, settings=settings, max_new_tokens=2)
    with pytest.warns(DeprecationWarning, match=r"settings=LoopSettings\(stop=\.\.\., top_k="):
        old = ground(tiny_llava, image, question, stop="fixed:2", top_k=1, max_new_tokens=2)
    assert (old.crops, old.answer, old.base_answer) == (new.crops, new.answer, new.base_answer)
    assert [s.crop_boxes for s in old.steps] == [s.crop_boxes for s in new.steps]
    with pytest.raises(TypeError, match="not as objects"):
        zoom_and_reground(tiny_llava, image, question, stop=FixedSteps(1))
    with pytest.raises(TypeError, match="unexpected keyword"):
        zoom_and_reground(tiny_llava, image, question, stopp="fixed:1")


def test_the_loop_returns_the_map_forwards_it_keeps(tiny_llava, monkeypatch):
    """``keep_forwards`` returns step 0's forward and the last step's when its prompt holds the
    kept crops; ``ground`` continues them instead of prefilling (counted), same answers."""
    image, question = noise_image(96, 64, seed=3), "what colour is the square ?"
    short = LoopSettings(max_steps=3)
    plain = zoom_and_reground(tiny_llava, image, question, settings=short, keep_maps=False)
    assert plain.forwards == []
    kept = zoom_and_reground(
        tiny_llava, image, question, settings=short, keep_forwards=KEEP_FORWARDS
    )
    first = kept.forwards[0]
    assert first.matches([image], question) and first.forward.rows == 1
    last_prompt = kept.steps[-1].crops_in
    assert (len(kept.forwards) == 2) == (kept.crops == last_prompt != [])
    with pytest.raises(ValueError, match="keep_forwards"):
        zoom_and_reground(tiny_llava, image, question, keep_forwards=("middle",))

    prefills = []
    generate = tiny_llava.generate
    monkeypatch.setattr(
        tiny_llava, "generate", lambda *a, **k: prefills.append(1) or generate(*a, **k)
    )
    one_step = LoopSettings(stop="fixed:1")  # keeps step 0's crops, which no map saw
    reused = ground(tiny_llava, image, question, settings=one_step, max_new_tokens=3)
    assert len(prefills) == 1  # the final answer; the base answer continued step 0's forward
    fresh = ground(
        tiny_llava, image, question, settings=one_step, max_new_tokens=3, reuse_forward=False
    )
    assert len(prefills) == 3
    assert (reused.base_answer, reused.answer) == (fresh.base_answer, fresh.answer)
