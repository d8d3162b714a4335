"""Qwen2-VL adapter on a tiny random-weight checkpoint.

Patch 14 and 2x2 merge as in the real model (a token covers 28 processed pixels), pixel
budget 4 to 64 tokens: 96x96 -> 84x84 (3x3 tokens), 150x100 -> 140x112 (5x4), 80x200 ->
84x196 (3x7), each slightly anisotropic. The vision tower attends over the whole image.
"""

from __future__ import annotations

import json

import pytest
import torch
from arch_checks import (
    check_answers_from_the_maps_forward,
    check_attention_columns,
    check_batched_maps_equal_single,
    check_egg_map,
    check_entropy_gradient,
    check_every_method,
    check_extend_matches_generate,
    check_layout_by_perturbation,
    check_zoom_and_reground,
)
from conftest import TinyArch, noise_image
from video_checks import (
    check_video_entropy_gradient,
    check_video_every_method,
    check_video_features_match_pixels,
    check_video_greedy_matches_generate,
    check_video_grid_rule,
    check_video_layout_by_perturbation,
    check_video_pixels_match_image,
    noise_video,
    qwen2_token_count,
)

from egg_interp.models.offline.qwen import build_tiny_qwen2_vl
from egg_interp.models.qwen2_vl import Qwen2VLAdapter

ARCH = TinyArch(build_tiny_qwen2_vl, tower="visual")


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "qwen2_vl"
    assert isinstance(adapter, Qwen2VLAdapter)


@pytest.mark.parametrize(
    "size,grid", [((96, 96), (3, 3)), ((150, 100), (4, 5)), ((80, 200), (7, 3))]
)
def test_layout_grid_covers_the_whole_image(adapter, size, grid):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")
    lay = inputs.layouts[0]
    (view,) = lay.views
    assert view.token_index.shape == grid and lay.n_tokens == grid[0] * grid[1]
    assert inputs.batch["image_grid_thw"][0].tolist() == [1, 2 * grid[0], 2 * grid[1]]
    assert view.cell_boxes[0, 0, :2].tolist() == [0, 0]
    assert view.cell_boxes[-1, -1, 2:] == pytest.approx(size)


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"base": 28})


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall)


def test_positions_are_3d_and_not_stale(adapter):
    images = [noise_image(150, 100), noise_image(40, 70, 3)]
    inputs = adapter.build_inputs(images, "what colour ?")
    feats = adapter.image_features(inputs)
    with torch.no_grad():
        ref = adapter.forward_features(inputs, feats).logits[0, -1]
        adapter.forward(adapter.build_inputs([noise_image(80, 200)], "what ?"))
        again = adapter.forward_features(inputs, feats).logits[0, -1]
        positions = adapter.model.model.get_rope_index(
            inputs.input_ids, inputs.batch["mm_token_type_ids"], inputs.batch["image_grid_thw"]
        )[0]
    torch.testing.assert_close(again, ref)
    # each image is its own grid (its run of image-typed tokens is closed by text tokens)
    for where, (rows, cols) in zip(adapter.visual_positions(inputs), [(4, 5), (3, 2)]):
        height, width = positions[1, 0, where], positions[2, 0, where]
        assert (height.max() - height.min() + 1, width.max() - width.min() + 1) == (rows, cols)


def test_extend_matches_generate(adapter, wide_and_tall):
    check_extend_matches_generate(adapter, wide_and_tall)


def test_egg_map(adapter):
    check_egg_map(adapter, noise_image(150, 100))


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_attention_columns(adapter, square_and_tall):
    check_attention_columns(adapter, square_and_tall)


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_every_registered_method(adapter, square_and_tall):
    check_every_method(adapter, square_and_tall, pixel_space=False)


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))


# ---------------------------------------------------------------------------- video
# A video is one layout per temporal patch of 2 frames; checks in tests/video_checks.py.


def test_video_perturbed_patch_of_one_frame_changes_only_its_slices_covering_tokens(
    local_adapter,
):
    check_video_layout_by_perturbation(local_adapter, (96, 72), 5, cell_px=28)


def test_video_of_two_equal_frames_is_the_image(adapter):
    check_video_pixels_match_image(adapter, (96, 64))


def test_video_grid_follows_the_video_processors_rule(adapter):
    check_video_grid_rule(adapter, qwen2_token_count(adapter), [(96, 72), (60, 150)], [2, 5])


def test_video_features_give_the_models_own_logits(adapter):
    check_video_features_match_pixels(adapter, noise_video((80, 60), 4), [noise_image(40, 40, 9)])


def test_video_entropy_gradient_matches_finite_differences(adapter64):
    check_video_entropy_gradient(adapter64, noise_video((80, 60), 4), [noise_image(40, 40, 9)])


def test_video_greedy_decoding_matches_generate(adapter):
    check_video_greedy_matches_generate(adapter, noise_video((80, 60), 4))


def test_video_every_registered_method(adapter):
    check_video_every_method(adapter, noise_video((80, 60), 3))
