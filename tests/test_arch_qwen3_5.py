"""Qwen3.5 adapter on a tiny random-weight checkpoint (a hybrid linear-attention LM).

Patch 16 and 2x2 merge (a token covers 32 processed pixels), pixel budget 4 to 64 tokens:
96x96 -> 96x96 (3x3 tokens), 150x100 -> 160x96 (5x3), 80x200 -> 64x192 (2x6). Four decoder
layers, Gated DeltaNet in layers 0 and 2, full attention in layers 1 and 3 (the released
models: three linear layers in four); no deepstack, so a feature row is the embedding alone.
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
from linear_attention_checks import (
    check_attention_maps_read_attention_layers,
    check_generate_batch_equals_single,
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
    check_video_loop_answers,
    check_video_pixels_match_image,
    noise_video,
    video_processor_token_count,
)

from egg_interp.methods import get_method
from egg_interp.models.offline.qwen import build_tiny_qwen3_5
from egg_interp.models.qwen3_5 import Qwen3_5Adapter
from egg_interp.video import Video

ARCH = TinyArch(build_tiny_qwen3_5, tower="visual")


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    config = json.loads((ckpt / "config.json").read_text())
    assert config["model_type"] == "qwen3_5"
    assert config["text_config"]["layer_types"] == ["linear_attention", "full_attention"] * 2
    assert isinstance(adapter, Qwen3_5Adapter)
    words = "what colour is the square ?"
    assert adapter.tokenizer.decode(adapter.tokenizer(words)["input_ids"]) == words
    assert len(adapter.tokenizer(words)["input_ids"]) == 6  # one token per word


@pytest.mark.parametrize(
    "size,grid", [((96, 96), (3, 3)), ((150, 100), (3, 5)), ((80, 200), (6, 2))]
)
def test_layout_grid_covers_the_whole_image(adapter, size, grid):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")
    (view,) = inputs.layouts[0].views
    assert view.token_index.shape == grid
    assert view.cell_boxes[0, 0, :2].tolist() == [0, 0]
    assert view.cell_boxes[-1, -1, 2:] == pytest.approx(size)
    (feats,) = adapter.image_features(inputs)
    assert feats.shape == (grid[0] * grid[1], adapter.model.config.text_config.hidden_size)


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
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


def test_egg_map(adapter):
    check_egg_map(adapter, noise_image(150, 100))


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


def test_batched_generation_equals_single(adapter):
    check_generate_batch_equals_single(adapter)


def test_every_registered_method(adapter, square_and_tall):
    """Attention rollout is refused (it needs every layer's mixing); the others run.

    transformers adds its output-capturing hooks at the first eager forward that returns
    attentions, for good; with the rollout refused, that forward is warmed up first so that
    the check's hook count starts after it."""
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


def test_video_zoom_loop_answers_equal_generate(adapter):
    check_video_loop_answers(adapter, noise_video((96, 72), 4))


def test_video_prompt_writes_each_temporal_patchs_time(adapter):
    """Qwen3-VL's processor (transformers' code) writes ``<t seconds>`` before each temporal
    patch's block, the mean time of its frames, from the frames' indices and rate."""
    frames = noise_video((80, 60), 4).frames
    video = Video(frames, (0, 3, 6, 9), fps=6.0, total_frames=12)  # 0, 0.5, 1, 1.5 s
    inputs = adapter.build_inputs([], "what ?", videos=[video])
    text = adapter.tokenizer.decode(inputs.input_ids[0])
    assert "<0.2 seconds>" in text and "<1.2 seconds>" in text  # (0 + 0.5) / 2, (1 + 1.5) / 2
    assert text.count("<|vision_start|>") == 1 + 2  # the template's, then one per patch
