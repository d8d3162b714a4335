"""PaliGemma adapter on a tiny random-weight checkpoint (PaliGemma 2: Gemma 2 language model).

SigLIP at 64 px with patch 8: 8 x 8 tokens per image, no pooling, a token covers 8
processed pixels, ``W / 8 x H / 8`` original ones (the image is squashed). The prompt
(images, ``<bos>``, question) is one bidirectional prefix; answer tokens are the causal suffix.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from arch_checks import (
    QUESTION,
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

from egg_interp.methods import attribute
from egg_interp.models.offline.gemma import build_tiny_paligemma
from egg_interp.models.paligemma import PaliGemmaAdapter

# nearly uniform next-token distribution and Gemma's float32 RMSNorm: see test_arch_gemma3.py
ARCH = TinyArch(build_tiny_paligemma, tower="vision_tower", sharpen=30.0)

# transformers' PaliGemmaProcessor builds its training labels with np.array(..., copy=False)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "paligemma"
    assert isinstance(adapter, PaliGemmaAdapter)
    assert adapter.input_side == 64
    assert adapter.max_images_per_prompt is None  # several images: see the module docstring


def test_prompt_is_images_then_bos_then_question(adapter):
    inputs = adapter.build_inputs([noise_image(96, 96), noise_image(40, 70, 3)], "what colour ?")
    tokens = adapter.tokenizer.convert_ids_to_tokens(inputs.input_ids[0].tolist())
    assert tokens == ["<image>"] * 128 + ["<s>", "what", "colour", "?"]
    assert inputs.batch["token_type_ids"].sum() == 0  # all prefix
    assert "labels" not in inputs.batch  # the processor's training labels are dropped
    assert [lay.n_tokens for lay in inputs.layouts] == [64, 64]


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_layout_is_one_squashed_grid(adapter, size):
    lay = adapter.build_inputs([noise_image(*size)], "what ?").layouts[0]
    (view,) = lay.views
    assert view.token_index.shape == (8, 8)
    np.testing.assert_allclose(view.cell_boxes[0, 0], [0, 0, size[0] / 8, size[1] / 8])
    assert view.cell_boxes[-1, -1, 2:] == pytest.approx(size)


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"base": 8})


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall, eps=1e-2)  # lm_head sharpened: ARCH


def _layer0(adapter, inputs, feats):
    with torch.no_grad():
        out = adapter.forward_features(inputs, feats, last_only=False, output_hidden_states=True)
    return out.hidden_states[1][0]


def test_the_prefix_is_bidirectional(adapter):
    """Image tokens read the question (prefix-LM): another question changes them."""
    images = [noise_image(96, 96)]
    a = adapter.build_inputs(images, "what colour ?")
    b = adapter.build_inputs(images, "what pattern ?")
    feats = adapter.image_features(a)
    (pos,) = adapter.visual_positions(a)
    diff = (_layer0(adapter, a, feats) - _layer0(adapter, b, feats)).abs().amax(-1)
    assert diff[pos].min() > 1e-5


def test_answer_tokens_are_a_causal_suffix(adapter):
    """An appended answer token changes no prefix state (type 1, as ``generate`` decodes);
    as a prefix token (type 0) it would change them all, and the logits with it."""
    inputs = adapter.build_inputs([noise_image(96, 96)], QUESTION)
    feats = adapter.image_features(inputs)
    ext = adapter.extend(inputs, [7])
    assert ext.batch["token_type_ids"][0, -1] == 1
    n = inputs.input_ids.shape[1]
    ref = _layer0(adapter, inputs, feats)
    torch.testing.assert_close(_layer0(adapter, ext, feats)[:n], ref)
    wrong = dict(ext.batch)
    wrong["token_type_ids"] = torch.zeros_like(ext.batch["token_type_ids"])
    joined = type(ext)(wrong, ext.images, ext.layouts, ext.question)
    assert (_layer0(adapter, joined, feats)[:n] - ref).abs().max() > 1e-5


def test_eager_attention_is_restored_per_sub_model(adapter):
    """Gemma 2 supports only eager attention, the wrapper and SigLIP sdpa: switching to eager
    and back restores each (one name for all would fail on the language model)."""
    cfg = adapter.model.config

    def settings():
        return [c._attn_implementation for c in (cfg, cfg.text_config, cfg.vision_config)]

    assert settings() == ["sdpa", "eager", "sdpa"]
    with adapter.attention_implementation("eager"):
        assert settings() == ["eager"] * 3
    assert settings() == ["sdpa", "eager", "sdpa"]


def test_map_view(adapter):
    m = check_egg_map(adapter, noise_image(150, 100))
    assert m.images[0].primary.values.shape == (8, 8)


def test_pixel_space_variant_pools_to_every_token(adapter):
    m = attribute(adapter, noise_image(150, 100), "what colour ?", space="pixels")
    assert m.grid.shape == (8, 8) and m.grid.max() > 0


def test_extend_matches_generate(adapter, wide_and_tall):
    check_extend_matches_generate(adapter, wide_and_tall)


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_attention_columns(adapter, square_and_tall):
    check_attention_columns(adapter, square_and_tall)


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_every_registered_method(adapter):
    check_every_method(adapter, [noise_image(60, 40)], pixel_space=True)


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))
