"""No hooks, gradients or graphs are left behind by repeated calls."""

from __future__ import annotations

import gc

from conftest import noise_image

from egg_interp.methods import attribute


def _hook_count(model) -> int:
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        n += len(getattr(m, "_full_backward_hooks", {}) or {})
    return n


def test_fifty_calls_leave_no_hooks_or_parameter_grads(tiny_llava):
    model = tiny_llava.model
    image = noise_image(64, 64)
    # transformers installs its own output-capturing hooks once, on the first call
    attribute(tiny_llava, image, "what colour is the square ?", space="pixels")
    hooks_before = _hook_count(model)
    for i in range(50):
        method_opts = {"space": "pixels"} if i % 10 == 0 else {}
        attribute(tiny_llava, image, "what colour is the square ?", **method_opts)
    assert _hook_count(model) == hooks_before
    assert all(p.grad is None for p in model.parameters())
    assert not any(p.requires_grad for p in model.parameters())
    gc.collect()
    # the cache holds one image's features, detached
    for feats in tiny_llava._feature_cache.values():
        assert all(not f.requires_grad and f.grad_fn is None for f in feats)
