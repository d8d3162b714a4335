"""The entropy gradient against central finite differences, and the map's invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import noise_image

from egg_interp.methods import attribute, make_target
from egg_interp.methods.base import visual_token_gradients
from egg_interp.models import load_model


@pytest.fixture()
def tiny_llava64(tiny_llava_dir):
    return load_model(tiny_llava_dir, device="cpu", dtype=torch.float64)


@pytest.mark.parametrize("target", ["entropy", "top_p_entropy", "logprob", "kl_uniform"])
def test_gradient_matches_central_finite_differences(tiny_llava64, target):
    adapter = tiny_llava64
    tgt = make_target(target)
    inputs = adapter.build_inputs([noise_image(64, 64), noise_image(40, 70, 3)], "what colour ?")
    feats, grads, objective, _ = visual_token_gradients(adapter, inputs, tgt)

    def value(image, token, dim, delta):
        moved = [f.clone() for f in feats]
        moved[image][token, dim] += delta
        with torch.no_grad():
            logits = adapter.forward_features(inputs, moved).logits[0, -1]
        return float(tgt(logits))

    # The model runs in float64, but Llama's RMSNorm computes its variance in float32, so the
    # objective is only float32-smooth: a step of 1e-3 keeps rounding noise (~1e-7) far below
    # the signal, and the central difference's O(eps^2) error below the tolerance.
    rng = np.random.default_rng(0)
    eps = 1e-3
    for _ in range(6):
        image = int(rng.integers(2))
        token = int(rng.integers(feats[image].shape[0]))
        dim = int(grads[image][token].abs().argmax())  # the token's most sensitive coordinate
        fd = (value(image, token, dim, eps) - value(image, token, dim, -eps)) / (2 * eps)
        assert grads[image][token, dim].item() == pytest.approx(fd, rel=2e-3, abs=1e-7)


def test_map_is_the_gradient_norm_and_finite(tiny_llava64):
    adapter = tiny_llava64
    image = noise_image(64, 64)
    m = attribute(adapter, image, "what colour is the square ?")
    inputs = adapter.build_inputs([image], "what colour is the square ?")
    _, grads, objective, logits = visual_token_gradients(adapter, inputs, make_target("entropy"))
    np.testing.assert_allclose(m.grid.ravel(), grads[0].norm(dim=-1).numpy(), rtol=1e-5)
    assert m.meta["objective"] == pytest.approx(float(objective))
    p = torch.softmax(logits, -1)
    assert m.meta["next_token_entropy"] == pytest.approx(float(-(p * p.log()).sum()), rel=1e-6)
    assert m.grid.dtype == np.float32 and np.isfinite(m.grid).all() and m.grid.max() > 0


def test_entropy_gradient_vanishes_at_a_uniform_distribution(tiny_llava):
    """dH/dz = 0 when p is uniform: the map is all zeros and `check` says so."""
    from egg_interp.errors import DegenerateMapError

    torch.nn.init.zeros_(tiny_llava.model.lm_head.weight)
    m = attribute(tiny_llava, noise_image(64, 64), "what colour ?")
    assert np.allclose(m.grid, 0)
    with pytest.raises(DegenerateMapError, match="all zeros"):
        m.check()


def test_answer_step_explains_a_later_token(tiny_llava):
    image = noise_image(64, 64)
    m1 = attribute(tiny_llava, image, "what colour ?")
    m2 = attribute(tiny_llava, image, "what colour ?", answer_step=2)
    assert m2.meta["answer_step"] == 2
    assert not np.allclose(m1.grid, m2.grid)


def test_pixel_space_variant_pools_pixel_gradients(tiny_llava):
    m = attribute(tiny_llava, noise_image(64, 64), "what colour ?", space="pixels")
    assert m.grid.shape == (8, 8) and m.grid.max() > 0
