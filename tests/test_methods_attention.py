"""Attention heuristics and ViCrop's maps against attention weights we read or control."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import noise_image

from egg_interp.errors import InputError, UnsupportedModelError
from egg_interp.methods import get_method, make_target
from egg_interp.methods.attention import GENERIC_PROMPT, resolve_layers
from egg_interp.methods.attention_rollout import rollout_last_row
from egg_interp.methods.base import pixel_gradients
from egg_interp.methods.pure_grad import high_pass_mask

QUESTION = "what colour is the square ?"


def _eager_attentions(adapter, inputs):
    with adapter.attention_implementation("eager"), torch.no_grad():
        out = adapter.forward_features(
            inputs, adapter.image_features(inputs), output_attentions=True
        )
    return out.attentions


def _uniform_attention(adapter):
    """Zero every query projection: scores are all equal, each row uniform over the prefix."""
    for layer in adapter.language_model.layers:
        torch.nn.init.zeros_(layer.self_attn.q_proj.weight)


def test_layers_come_from_the_config(tiny_llava):
    assert tiny_llava.num_lm_layers == 2
    assert resolve_layers(tiny_llava, None) == [1]  # the middle: num_layers // 2
    assert resolve_layers(tiny_llava, -2) == [0] and resolve_layers(tiny_llava, "all") == [0, 1]
    with pytest.raises(InputError, match="2 layers"):
        resolve_layers(tiny_llava, 5)


@pytest.mark.parametrize("layers", [None, 0, [0, 1]])
def test_raw_attention_is_the_answer_row_at_the_image_columns(tiny_llava, layers):
    images = [noise_image(64, 64), noise_image(40, 40, 1)]
    amap = get_method("raw_attention", layers=layers).attribute(tiny_llava, images, QUESTION)
    inputs = tiny_llava.build_inputs(images, QUESTION)
    atts = _eager_attentions(tiny_llava, inputs)
    chosen = [1] if layers is None else [layers] if isinstance(layers, int) else layers
    mean = torch.stack([atts[i][0, :, -1].mean(0) for i in chosen]).mean(0)
    for im, pos in zip(amap.images, tiny_llava.visual_positions(inputs)):
        np.testing.assert_allclose(im.primary.values.ravel(), mean[pos], rtol=1e-5)
    assert amap.target == "none" and amap.meta["layers"] == chosen


def test_rel_att_is_the_ratio_of_two_raw_attention_maps(tiny_llava):
    image = noise_image(64, 64)
    rel = get_method("rel_att").attribute(tiny_llava, [image], QUESTION)
    question = get_method("raw_attention").attribute(tiny_llava, [image], QUESTION)
    generic = get_method("raw_attention").attribute(tiny_llava, [image], GENERIC_PROMPT)
    np.testing.assert_allclose(rel.grid, question.grid / generic.grid, rtol=1e-5)


def test_rel_att_on_controlled_attention(tiny_llava):
    """Uniform attention: every image token gets 1 / prompt length, so rel-att is a length ratio."""
    _uniform_attention(tiny_llava)
    image = noise_image(64, 64)
    n_q = tiny_llava.build_inputs([image], QUESTION).input_ids.shape[1]
    n_g = tiny_llava.build_inputs([image], GENERIC_PROMPT).input_ids.shape[1]
    raw = get_method("raw_attention").attribute(tiny_llava, [image], QUESTION)
    np.testing.assert_allclose(raw.grid, 1.0 / n_q, rtol=1e-5)
    rel = get_method("rel_att").attribute(tiny_llava, [image], QUESTION)
    np.testing.assert_allclose(rel.grid, n_g / n_q, rtol=1e-5)


def test_rollout_on_controlled_attention(tiny_llava):
    """Uniform causal attention in both layers: rollout is a product we can write by hand."""
    _uniform_attention(tiny_llava)
    image = noise_image(64, 64)
    inputs = tiny_llava.build_inputs([image], QUESTION)
    n = inputs.input_ids.shape[1]
    causal = np.tril(np.ones((n, n)))
    a = causal / causal.sum(1, keepdims=True)
    step = 0.5 * np.eye(n) + 0.5 * a
    expected = (step @ step)[-1]  # layer 1 applied after layer 0: A_1_hat @ A_0_hat, last row
    amap = get_method("attention_rollout").attribute(tiny_llava, [image], QUESTION)
    pos = tiny_llava.visual_positions(inputs)[0].numpy()
    np.testing.assert_allclose(amap.grid.ravel(), expected[pos], rtol=1e-5)


def test_hybrid_models_are_read_at_their_attention_layers_only(tiny_llava):
    """An adapter that lists fewer attention layers than the model has (a hybrid
    linear-attention model, played here by LLaVA with layer 0 declared weightless): the
    default is the middle attention layer, the metadata says so, a weightless layer and the
    rollout are refused in one line. A model with attention everywhere keeps its metadata."""
    image = noise_image(64, 64)
    plain = get_method("raw_attention").attribute(tiny_llava, [image], QUESTION)
    assert "attention_layers" not in plain.meta and "attention_note" not in plain.meta
    hybrid = type("Hybrid", (type(tiny_llava),), {"attention_layers": property(lambda s: [1])})
    tiny_llava.__class__ = hybrid
    amap = get_method("raw_attention").attribute(tiny_llava, [image], QUESTION)
    assert amap.meta["layers"] == [1] and amap.meta["attention_layers"] == [1]
    assert "only 1 of the 2" in amap.meta["attention_note"]
    np.testing.assert_allclose(amap.grid, plain.grid)
    assert resolve_layers(tiny_llava, "all") == [1]
    with pytest.raises(UnsupportedModelError, match=r"layer\(s\) \[0\] .* no attention weights"):
        get_method("raw_attention", layers=0).attribute(tiny_llava, [image], QUESTION)
    with pytest.raises(UnsupportedModelError, match="attention_rollout multiplies"):
        get_method("attention_rollout").attribute(tiny_llava, [image], QUESTION)


def test_rollout_last_row_matches_the_matrix_product():
    rng = np.random.default_rng(0)
    mats = [rng.random((5, 5)) for _ in range(3)]
    mats = [m / m.sum(1, keepdims=True) for m in mats]
    hats = [0.3 * np.eye(5) + 0.7 * m for m in mats]
    expected = (hats[2] @ hats[1] @ hats[0])[-1]
    got = rollout_last_row([torch.tensor(m) for m in mats], residual=0.3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    assert got.sum().item() == pytest.approx(1.0)


def test_grad_att_is_attention_times_positive_gradient(tiny_llava):
    image = noise_image(64, 64)
    amap = get_method("grad_att", layers=0).attribute(tiny_llava, [image], QUESTION)
    inputs = tiny_llava.build_inputs([image], QUESTION)
    leaves = [f.detach().requires_grad_(True) for f in tiny_llava.image_features(inputs)]
    with tiny_llava.attention_implementation("eager"), torch.enable_grad():
        out = tiny_llava.forward_features(inputs, leaves, output_attentions=True)
        loss = make_target("logprob")(out.logits[0, -1])
        att = out.attentions[0]
        att.retain_grad()
        loss.backward()
    pos = tiny_llava.visual_positions(inputs)[0]
    expected = (att[0, :, -1, pos] * att.grad[0, :, -1, pos].clamp(min=0)).mean(0)
    np.testing.assert_allclose(amap.grid.ravel(), expected.detach().numpy(), rtol=1e-5)
    assert amap.target == "logprob" and amap.grid.max() > 0


def test_high_pass_mask_keeps_the_textured_half():
    img = np.zeros((3, 32, 32))
    img[:, :, 16:] = np.random.default_rng(0).random((3, 32, 16))  # texture on the right
    mask = high_pass_mask(img)
    assert mask.shape == (32, 32) and mask.dtype == bool
    assert mask[:, 20:].mean() > 0.9 and mask[:, :10].mean() == 0


def test_pure_grad_is_the_masked_gradient_ratio_pooled(tiny_llava):
    image = noise_image(64, 64)
    amap = get_method("pure_grad").attribute(tiny_llava, [image], QUESTION)
    target = make_target("logprob")
    q = tiny_llava.build_inputs([image], QUESTION)
    g = tiny_llava.build_inputs([image], GENERIC_PROMPT)
    pixels, grad_q, _, _ = pixel_gradients(tiny_llava, q, target)
    _, grad_g, _, _ = pixel_gradients(tiny_llava, g, target)
    ratio = (grad_q.norm(dim=-3) / grad_g.norm(dim=-3))[0].numpy()
    masked = ratio * high_pass_mask(pixels[0].numpy())
    pooled = masked.reshape(8, 8, 8, 8).mean(axis=(1, 3))  # 8x8 px per token
    np.testing.assert_allclose(amap.grid, pooled, rtol=1e-5)
    assert amap.meta["top1_token"]
