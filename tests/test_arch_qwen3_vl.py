"""Qwen3-VL adapter on a tiny random-weight checkpoint, deepstack paths included.

Patch 16 and 2x2 merge (a token covers 32 processed pixels), pixel budget 4 to 64 tokens:
96x96 -> 96x96 (3x3 tokens), 150x100 -> 160x96 (5x3), 80x200 -> 64x192 (2x6). One
deepstack layer: each feature row is ``[main, deepstack]``, 2 x 32 wide.
"""

from __future__ import annotations

import json

import numpy as np
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
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from video_checks import (
    check_video_entropy_gradient,
    check_video_every_method,
    check_video_features_match_pixels,
    check_video_greedy_matches_generate,
    check_video_grid_rule,
    check_video_layout_by_perturbation,
    check_video_loop_answers,
    check_video_pixels_match_image,
    noise_video,
    video_processor_token_count,
)

from egg_interp.methods import attribute, make_target
from egg_interp.methods.base import visual_token_gradients
from egg_interp.models.offline.qwen import build_tiny_qwen3_vl
from egg_interp.models.qwen3_vl import Qwen3VLAdapter

ARCH = TinyArch(build_tiny_qwen3_vl, tower="visual")


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "qwen3_vl"
    assert isinstance(adapter, Qwen3VLAdapter)


@pytest.mark.parametrize(
    "size,grid", [((96, 96), (3, 3)), ((150, 100), (3, 5)), ((80, 200), (6, 2))]
)
def test_layout_grid_covers_the_whole_image(adapter, size, grid):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")
    (view,) = inputs.layouts[0].views
    assert view.token_index.shape == grid
    assert view.cell_boxes[-1, -1, 2:] == pytest.approx(size)
    (feats,) = adapter.image_features(inputs)
    assert feats.shape == (grid[0] * grid[1], 2 * adapter.hidden_size)  # main + 1 deepstack


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"base": 32})


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall)


def test_deepstack_gradient_matches_finite_differences(adapter64):
    """The gradient reaches the deepstack part of each feature row, and it is right."""
    adapter = adapter64  # float64
    tgt = make_target("entropy")
    inputs = adapter.build_inputs([noise_image(150, 100)], "what colour ?")
    feats, grads, _, _ = visual_token_gradients(adapter, inputs, tgt)
    d = adapter.hidden_size
    deep = grads[0][:, d:]
    assert deep.abs().max() > 0
    token = int(deep.norm(dim=-1).argmax())
    dim = d + int(deep[token].abs().argmax())

    def value(delta):
        moved = feats[0].clone()
        moved[token, dim] += delta
        with torch.no_grad():
            return float(tgt(adapter.forward_features(inputs, [moved]).logits[0, -1]))

    eps = 1e-3
    fd = (value(eps) - value(-eps)) / (2 * eps)
    assert grads[0][token, dim].item() == pytest.approx(fd, rel=2e-3, abs=1e-7)


def test_egg_relevance_combines_main_and_deepstack_paths(adapter):
    image = noise_image(150, 100)
    m = check_egg_map(adapter, image)
    inputs = adapter.build_inputs([image], "what colour is the square ?")
    _, grads, _, _ = visual_token_gradients(adapter, inputs, make_target("entropy"))
    d = adapter.hidden_size
    main, deep = grads[0][:, :d].norm(dim=-1), grads[0][:, d:].norm(dim=-1)
    np.testing.assert_allclose(m.grid.ravel(), (main**2 + deep**2).sqrt().numpy(), rtol=1e-5)
    assert not np.allclose(m.grid.ravel(), main.numpy(), rtol=1e-3)


def test_positions_are_not_stale(adapter):
    inputs = adapter.build_inputs([noise_image(150, 100), noise_image(40, 70, 3)], "what ?")
    feats = adapter.image_features(inputs)
    with torch.no_grad():
        ref = adapter.forward_features(inputs, feats).logits[0, -1]
        adapter.generate(adapter.build_inputs([noise_image(80, 200)], "what ?"), 2)
        again = adapter.forward_features(inputs, feats).logits[0, -1]
    torch.testing.assert_close(again, ref)


def test_extend_matches_generate(adapter, wide_and_tall):
    check_extend_matches_generate(adapter, wide_and_tall)


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_attention_columns(adapter, square_and_tall):
    check_attention_columns(adapter, square_and_tall)


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_pixel_space_is_refused(adapter):
    """pixel_values are flattened patches: pixel-space maps are not offered."""
    from egg_interp.errors import UnsupportedModelError

    with pytest.raises((UnsupportedModelError, NotImplementedError, IndexError)):
        attribute(adapter, noise_image(96, 96), "what ?", space="pixels")


def test_every_registered_method(adapter, square_and_tall):
    check_every_method(adapter, square_and_tall, pixel_space=False)


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))


# ---------------------------------------------------------------------------- video
# A video is one layout per temporal patch of 2 frames; checks in tests/video_checks.py.


def test_video_perturbed_patch_of_one_frame_changes_only_its_slices_covering_tokens(
    local_adapter,
):
    check_video_layout_by_perturbation(local_adapter, (96, 72), 5, cell_px=32)


def test_video_of_two_equal_frames_is_the_image(adapter):
    check_video_pixels_match_image(adapter, (96, 64))


def test_video_grid_follows_the_video_processors_rule(adapter):
    check_video_grid_rule(
        adapter,
        video_processor_token_count(adapter, Qwen3VLVideoProcessor),
        [(96, 72), (60, 150)],
        [2, 5],
    )


def test_video_features_give_the_models_own_logits(adapter):
    check_video_features_match_pixels(adapter, noise_video((80, 60), 4), [noise_image(40, 40, 9)])


def test_video_entropy_gradient_matches_finite_differences(adapter64):
    check_video_entropy_gradient(adapter64, noise_video((80, 60), 4), [noise_image(40, 40, 9)])


def test_video_greedy_decoding_matches_generate(adapter):
    check_video_greedy_matches_generate(adapter, noise_video((80, 60), 4))


def test_video_every_registered_method(adapter):
    check_video_every_method(adapter, noise_video((80, 60), 3))


def test_video_zoom_loop_answers_equal_generate(adapter):
    check_video_loop_answers(adapter, noise_video((96, 72), 4))
