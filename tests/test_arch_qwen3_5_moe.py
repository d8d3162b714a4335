"""Qwen3.5-MoE adapter on a tiny random-weight checkpoint (hybrid linear attention + experts).

Qwen3.5's geometry (patch 16, 2x2 merge: 96x96 -> 3x3 tokens, 150x100 -> 5x3, 80x200 -> 2x6)
and layers (Gated DeltaNet in 0 and 2, full attention in 1 and 3), with 4 routed experts (2
per token) and a shared expert in every layer.
"""

from __future__ import annotations

import json

import pytest
import torch
from arch_checks import (
    check_answers_from_the_maps_forward,
    check_attention_columns,
    check_batched_maps_equal_single,
    check_entropy_gradient,
    check_every_method,
    check_extend_matches_generate,
    check_layout_by_perturbation,
    check_zoom_and_reground,
)
from conftest import TinyArch, noise_image
from linear_attention_checks import (
    check_attention_maps_read_attention_layers,
    check_left_padding_is_exact,
    check_recorded_cache_holds_detached_states,
)
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from video_checks import (
    check_video_entropy_gradient,
    check_video_every_method,
    check_video_features_match_pixels,
    check_video_greedy_matches_generate,
    check_video_grid_rule,
    check_video_layout_by_perturbation,
    check_video_pixels_match_image,
    noise_video,
    video_processor_token_count,
)

from egg_interp.methods import get_method
from egg_interp.models.offline.qwen import build_tiny_qwen3_5_moe
from egg_interp.models.qwen3_5_moe import Qwen3_5MoeAdapter

ARCH = TinyArch(build_tiny_qwen3_5_moe, tower="visual")


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    config = json.loads((ckpt / "config.json").read_text())
    assert config["model_type"] == "qwen3_5_moe"
    assert config["text_config"]["num_experts"] == 4
    assert isinstance(adapter, Qwen3_5MoeAdapter)
    assert adapter.attention_layers == [1, 3]


@pytest.mark.parametrize(
    "size,grid", [((96, 96), (3, 3)), ((150, 100), (3, 5)), ((80, 200), (6, 2))]
)
def test_layout_grid_covers_the_whole_image(adapter, size, grid):
    (view,) = adapter.build_inputs([noise_image(*size)], "what ?").layouts[0].views
    assert view.token_index.shape == grid
    assert view.cell_boxes[-1, -1, 2:] == pytest.approx(size)


@pytest.mark.parametrize("size", [(150, 100), (80, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"base": 32})


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall)


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


def test_attention_maps_read_the_full_attention_layers_only(adapter, square_and_tall):
    check_attention_maps_read_attention_layers(adapter, square_and_tall, [1, 3])


def test_left_padded_rows_equal_rows_alone(adapter):
    check_left_padding_is_exact(adapter)


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_every_registered_method(adapter, square_and_tall):
    """Attention rollout is refused (it needs every layer's mixing); the others run (after
    a warm-up of transformers' output-capturing hooks, see test_arch_qwen3_5.py)."""
    get_method("raw_attention").attribute(adapter, square_and_tall, "what ?")
    refused = {"attention_rollout": "linear attention"}
    check_every_method(adapter, square_and_tall, pixel_space=False, refused=refused)


def test_recorded_cache_holds_detached_linear_attention_states(adapter):
    check_recorded_cache_holds_detached_states(adapter, noise_image(120, 90, 7))


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
    check_video_every_method(
        adapter, noise_video((80, 60), 3), refused={"attention_rollout": "linear attention"}
    )
