"""Gemma 4 adapter on a tiny random-weight checkpoint.

Patch 4 and 3x3 pooling (a token covers 12 processed pixels), 70 soft tokens at most:
96x96 -> 96x96 (8x8 tokens), 150x100 -> 120x72 (10 x 6), 80x200 -> 60x156 (5 x 13): sides
floored to multiples of 12, so the two scales differ. Four decoder layers (sliding, full,
sliding, full), the last two reusing the first two's keys and values; per-layer inputs of
width 8; ``use_bidirectional_attention="vision"``. A second checkpoint adds a
mixture-of-experts block (4 experts, top 2) to every layer, as Gemma 4 26B-A4B has.
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
from transformers.models.gemma4.image_processing_pil_gemma4 import (
    get_aspect_ratio_preserving_size,
)
from video_checks import (
    check_video_entropy_gradient,
    check_video_every_method,
    check_video_features_match_pixels,
    check_video_greedy_matches_generate,
    check_video_grid_rule,
    check_video_layout_by_perturbation,
    check_video_loop_answers,
    noise_video,
)

from egg_interp.errors import UnsupportedModelError
from egg_interp.methods import attribute, make_target
from egg_interp.methods.base import visual_token_gradients
from egg_interp.models import load_model
from egg_interp.models.gemma4 import Gemma4Adapter
from egg_interp.models.offline.gemma import build_tiny_gemma4

ARCH = TinyArch(build_tiny_gemma4, tower="vision_tower")


@pytest.fixture(scope="module")
def local_adapter(ckpt):
    """Token-local vision tower: every attention output projection zeroed (Gemma 4 wraps
    them in ``Gemma4ClippableLinear``, so the shared helper does not find them)."""
    adapter = load_model(ckpt, device="cpu")
    n = 0
    for layer in adapter.model.model.vision_tower.encoder.layers:
        torch.nn.init.zeros_(layer.self_attn.o_proj.linear.weight)
        n += 1
    assert n == 2
    adapter.clear_cache()
    return adapter


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "gemma4"
    assert isinstance(adapter, Gemma4Adapter)
    assert type(adapter.processor).__name__ == "Gemma4Processor"
    assert adapter.processor.tokenizer.boi_token == "<|image>"


@pytest.mark.parametrize(
    "size,grid", [((96, 96), (8, 8)), ((150, 100), (6, 10)), ((80, 200), (13, 5))]
)
def test_layout_grid_covers_the_whole_image(adapter, size, grid):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")  # checks the count
    lay = inputs.layouts[0]
    (view,) = lay.views
    assert view.token_index.shape == grid and lay.n_tokens == grid[0] * grid[1]
    assert view.cell_boxes[0, 0, :2].tolist() == [0, 0]
    assert view.cell_boxes[-1, -1, 2:] == pytest.approx(size)
    assert inputs.batch["mm_token_type_ids"].sum() == lay.n_tokens


def test_token_counts_follow_the_processor_and_its_budget(adapter):
    """The grid agrees with the processor's own count, at every budget; 128x64 at 280 tokens
    gives 23 x 11 (sides floored to multiples of 3 patches)."""
    ip = adapter.processor.image_processor
    sizes = [(128, 64), (150, 100), (80, 200), (300, 40)]
    try:
        for budget in (70, 140, 280):
            ip.max_soft_tokens = budget
            counts = adapter.processor._get_num_multimodal_tokens(
                image_sizes=[(h, w) for w, h in sizes]
            ).num_image_tokens
            for (w, h), count in zip(sizes, counts):
                lay = adapter.build_inputs([noise_image(w, h)], "what ?").layouts[0]
                assert lay.n_tokens == count <= budget
                if budget == 280 and (w, h) == (128, 64):
                    assert lay.views[0].token_index.shape == (11, 23)
    finally:
        ip.max_soft_tokens = 70


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"base": 12})


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall)


def test_gradient_covers_the_per_layer_input_path(adapter64):
    """The image enters the per-layer inputs through the projection of ``inputs_embeds``:
    without that projection the gradient at the features changes."""
    inputs = adapter64.build_inputs([noise_image(150, 100)], "what colour ?")
    tgt = make_target("entropy")
    _, full, _, _ = visual_token_gradients(adapter64, inputs, tgt)
    proj = adapter64.model.model.language_model.per_layer_model_projection
    saved = proj.weight.detach().clone()
    try:
        with torch.no_grad():
            proj.weight.zero_()
        _, without, _, _ = visual_token_gradients(adapter64, inputs, tgt)
    finally:
        with torch.no_grad():
            proj.weight.copy_(saved)
    assert (full[0] - without[0]).norm() > 1e-3 * full[0].norm()


def test_images_attend_bidirectionally_in_sliding_layers_only(adapter):
    """A soft token reads the later tokens of its image (sliding layer 0), the text before
    the image never does; mm_token_type_ids drive it."""
    inputs = adapter.build_inputs([noise_image(96, 96)], "what ?")
    feats = adapter.image_features(inputs)
    (pos,) = adapter.visual_positions(inputs)

    def layer0(moved):
        with torch.no_grad():
            out = adapter.forward_features(
                inputs, moved, last_only=False, output_hidden_states=True
            )
        return out.hidden_states[1][0]

    ref = layer0(feats)
    moved = feats[0].clone()
    moved[-1] += 1.0
    diff = (layer0([moved]) - ref).abs().amax(-1)
    assert diff[pos[0]] > 1e-4 and diff[: pos[0]].max() == 0


def test_map_view(adapter):
    m = check_egg_map(adapter, noise_image(150, 100))
    assert m.images[0].primary.values.shape == (6, 10)


def test_pixel_space_is_refused(adapter):
    """pixel_values are flattened patches: pixel-space maps are refused in one line."""
    with pytest.raises(UnsupportedModelError, match="pixel-to-token"):
        attribute(adapter, noise_image(96, 96), "what ?", space="pixels")


def test_vicrop_has_no_native_side(adapter):
    with pytest.raises(NotImplementedError, match="dynamic resolution"):
        _ = adapter.input_side


def test_extend_matches_generate(adapter, wide_and_tall):
    check_extend_matches_generate(adapter, wide_and_tall)


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_attention_columns(adapter, square_and_tall):
    check_attention_columns(adapter, square_and_tall)


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_every_registered_method(adapter):
    check_every_method(adapter, [noise_image(60, 40)], pixel_space=False)


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))


def test_features_differ_per_image(adapter):
    """Per-image features are split in prompt order (a wrong split would mix images)."""
    images = [noise_image(96, 96), noise_image(40, 70, 3)]
    both = adapter.image_features(adapter.build_inputs(images, "what ?"))
    alone = adapter.image_features(adapter.build_inputs(images[1:], "what ?"))
    np.testing.assert_allclose(both[1].numpy(), alone[0].numpy(), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def moe_ckpt(tmp_path_factory):
    """The mixture-of-experts variant (every layer: 4 experts, 2 per token)."""
    from conftest import WORDS

    return build_tiny_gemma4(tmp_path_factory.mktemp("gemma4_moe"), WORDS, experts=4)


def test_moe_variant_decodes_like_generate(moe_ckpt, wide_and_tall):
    adapter = load_model(moe_ckpt, device="cpu")
    assert adapter.model.model.language_model.layers[0].enable_moe_block
    check_extend_matches_generate(adapter, wide_and_tall)


def test_moe_variant_entropy_gradient(moe_ckpt):
    """float64 through the experts' eager path (transformers' grouped matmul takes no
    float64 on the CPU); the top-2 routing stays put within the finite-difference step."""
    adapter = load_model(
        moe_ckpt, device="cpu", dtype=torch.float64, experts_implementation="eager"
    )
    check_entropy_gradient(adapter, [noise_image(96, 96)], n_checks=2)


# ---------------------------------------------------------------------------- video
# Each frame is encoded alone at the video budget (70 soft tokens): one layout per frame, its
# aspect-kept grid of 3x3-pooled patches (12 processed px per token at patch 4). The tiny
# model slides a 128-token window: the prompts below keep the visual tokens within it.


def test_video_perturbed_patch_of_one_frame_changes_only_its_frames_covering_tokens(
    local_adapter,
):
    check_video_layout_by_perturbation(local_adapter, (80, 60), 3, cell_px=12)


def test_video_token_count_follows_the_video_budget(adapter):
    """Per frame ``get_aspect_ratio_preserving_size`` at 70 x 9 patches (the video processor's
    rule; transformers' image module holds the same function, its video module needs
    torchvision to import), 70 tokens per frame at most."""
    p = adapter.model.config.vision_config.patch_size

    def count(n, h, w):
        th, tw = get_aspect_ratio_preserving_size(h, w, p, 70 * 9, 3)
        return n * (th // (3 * p)) * (tw // (3 * p))

    check_video_grid_rule(adapter, count, [(96, 72), (60, 150)], [1, 3])


def test_video_features_give_the_models_own_logits(adapter):
    check_video_features_match_pixels(adapter, noise_video((80, 60), 2), [noise_image(40, 40, 9)])


def test_video_entropy_gradient_matches_finite_differences(adapter64):
    check_video_entropy_gradient(adapter64, noise_video((80, 60), 1), [noise_image(40, 40, 9)])


def test_video_greedy_decoding_matches_generate(adapter):
    check_video_greedy_matches_generate(adapter, noise_video((80, 60), 2))


def test_video_every_registered_method(adapter):
    """A one-frame video alone: rel-att's generic prompt then keeps every visual token inside
    the sliding window (beyond it the attention is 0 and rel-att 0 / 0: gemma3's docstring)."""
    check_video_every_method(adapter, noise_video((80, 60), 1), images=())


def test_video_zoom_loop_answers_equal_generate(adapter):
    check_video_loop_answers(adapter, noise_video((80, 60), 1))
