"""Every registered method on the tiny model: one verb, one map type, nothing left behind."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import noise_image

from egg_interp.errors import DegenerateMapError, InputError, UnsupportedModelError
from egg_interp.maps import AttributionMap
from egg_interp.methods import METHODS, get_method
from egg_interp.methods.base import Needs
from egg_interp.models.base import VLMAdapter

QUESTION = "what colour is the square ?"

# cheap settings for the methods whose cost scales with an option
CHEAP = {
    "integrated_gradients": {"n_steps": 3, "internal_batch_size": 2},
    "gradient_shap": {"n_samples": 3, "samples_per_batch": 2},
    "smoothgrad": {"nt_samples": 2},
    "occlusion": {"patch": 4},
}
PIXEL_CAPABLE = ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "occlusion"]


def _hook_count(model) -> int:
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        n += len(getattr(m, "_full_backward_hooks", {}) or {})
    return n


def _attn_impls(model) -> tuple:
    cfg = model.config
    return (cfg._attn_implementation, cfg.get_text_config()._attn_implementation)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_runs_and_leaves_nothing_behind(tiny_llava, name):
    adapter = tiny_llava
    images = [noise_image(64, 64), noise_image(48, 80, 2)]  # original + one crop
    method = get_method(name, **CHEAP.get(name, {}))
    impl_before = _attn_impls(adapter.model)
    method.attribute(adapter, images, QUESTION)  # warm-up: transformers adds capture hooks once
    hooks = _hook_count(adapter.model)
    amap = method.attribute(adapter, images, QUESTION)
    assert isinstance(amap, AttributionMap) and amap.method == name
    assert [im.primary.shape for im in amap.images] == [(8, 8), (8, 8)]
    assert all(im.primary.values.dtype == np.float32 for im in amap.images)
    assert np.isfinite(amap.grid).all()
    assert amap.meta["top1_token"] and "seconds" in amap.meta
    assert _hook_count(adapter.model) == hooks
    assert not any(p.requires_grad for p in adapter.model.parameters())
    assert all(p.grad is None for p in adapter.model.parameters())
    assert _attn_impls(adapter.model) == impl_before == ("sdpa", "sdpa")
    for feats in adapter._feature_cache.values():
        assert all(not f.requires_grad and f.grad_fn is None for f in feats)


@pytest.mark.parametrize("name", PIXEL_CAPABLE)
def test_pixel_space_variants_run_on_the_token_grid(tiny_llava, name):
    method = get_method(name, space="pixels", **CHEAP.get(name, {}))
    assert method.cost().space == "pixels"
    amap = method.attribute(tiny_llava, [noise_image(64, 64)], QUESTION)
    assert amap.grid.shape == (8, 8) and amap.meta["space"] == "pixels"
    assert np.isfinite(amap.grid).all() and amap.grid.max() > 0


def test_needs_describe_the_cost():
    assert Needs(forwards=2, attentions=True).describe() == "2 fwd"
    ig = METHODS["integrated_gradients"]
    assert ig.needs.describe() == "n_steps x (1 fwd + 1 bwd) + 3 fwd"
    cost = get_method("integrated_gradients", n_steps=10).cost()
    assert (cost.forwards, cost.backwards, cost.extra_forwards) == (10, 10, 3)
    smooth_ig = get_method(
        "smoothgrad", nt_samples=4, base="integrated_gradients", base_options={"n_steps": 5}
    )
    assert smooth_ig.cost().forwards == 20
    attention_based = {"raw_attention", "attention_rollout", "rel_att", "grad_att"}
    for cls in METHODS.values():
        assert isinstance(cls.needs, Needs) and cls.needs.describe()
        assert cls.needs.attentions == (cls.name in attention_based)


def test_unknown_names_and_options_list_the_valid_ones():
    with pytest.raises(InputError, match="valid: .*rel_att.*saliency"):
        get_method("grad-cam++")
    assert get_method("rel-att").name == "rel_att"  # hyphens work too
    with pytest.raises(InputError, match="space must be one of"):
        get_method("gradcam", space="pixels")
    with pytest.raises(InputError, match="base must be one of"):
        get_method("smoothgrad", base="occlusion")


def test_attention_methods_refuse_a_model_without_eager_before_any_work(tiny_llava, monkeypatch):
    monkeypatch.setattr(VLMAdapter, "supports_attention_weights", property(lambda self: False))
    calls = []
    monkeypatch.setattr(tiny_llava, "build_inputs", lambda *a, **k: calls.append(a))
    for name in ("raw_attention", "attention_rollout", "rel_att", "grad_att"):
        with pytest.raises(UnsupportedModelError, match="needs attention weights"):
            get_method(name).attribute(tiny_llava, [noise_image(64, 64)], QUESTION)
    assert calls == []


def test_pixel_methods_refuse_an_adapter_without_pixel_pooling(tiny_llava, monkeypatch):
    monkeypatch.setattr(VLMAdapter, "supports_pixel_space", property(lambda self: False))
    with pytest.raises(UnsupportedModelError, match="pixel-to-token pooling"):
        get_method("pure_grad").attribute(tiny_llava, [noise_image(64, 64)], QUESTION)
    get_method("saliency").attribute(tiny_llava, [noise_image(64, 64)], QUESTION)  # tokens: fine


def test_empty_attentions_give_a_clear_error(tiny_llava, monkeypatch):
    """If eager cannot be switched on (sdpa stays), the empty attentions are caught."""
    import contextlib

    monkeypatch.setattr(
        type(tiny_llava), "attention_implementation", lambda self, impl: contextlib.nullcontext()
    )
    with pytest.raises(UnsupportedModelError, match="no attention weights"):
        get_method("raw_attention").attribute(tiny_llava, [noise_image(64, 64)], QUESTION)


def test_all_zero_maps_are_reported_not_normalised(tiny_llava):
    """A uniform next-token distribution has zero entropy gradient: check() says so."""
    import torch

    torch.nn.init.zeros_(tiny_llava.model.lm_head.weight)
    for name in ("saliency", "gradcam", "occlusion"):
        amap = get_method(name, **CHEAP.get(name, {})).attribute(
            tiny_llava, [noise_image(64, 64)], QUESTION
        )
        assert np.allclose(amap.grid, 0)
        with pytest.raises(DegenerateMapError, match="all zeros"):
            amap.check()
