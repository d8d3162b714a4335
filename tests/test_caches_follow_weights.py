"""The vision-feature cache and the map memo follow the weights (issue 21).

Every path that changes weights in place bumps a version counter, which the cache and memo
keys include: a map computed after the change is the changed model's map, never a cached one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import noise_image

from egg_interp.methods import attribute, get_method


def _egg(adapter, image):
    return attribute(adapter, image, "what colour is the square ?", "egg").grid.copy()


def _count_feature_computations(adapter, monkeypatch) -> list[int]:
    calls: list[int] = []
    original = type(adapter).compute_image_features
    monkeypatch.setattr(
        type(adapter),
        "compute_image_features",
        lambda self, inputs: calls.append(1) or original(self, inputs),
    )
    return calls


@pytest.mark.parametrize(
    "where",
    ["vision", "projector", "language model"],
)
def test_an_in_place_weight_change_changes_the_map(tiny_llava, monkeypatch, where):
    image = noise_image(64, 64, 3)
    calls = _count_feature_computations(tiny_llava, monkeypatch)
    before = _egg(tiny_llava, image)
    assert np.array_equal(_egg(tiny_llava, image), before) and len(calls) == 1  # cache hit
    inner = tiny_llava.model.model
    weight = {
        "vision": inner.vision_tower.encoder.layers[0].mlp.fc1.weight,
        "projector": inner.multi_modal_projector.linear_1.weight,
        "language model": inner.language_model.layers[0].mlp.down_proj.weight,
    }[where]
    with torch.no_grad():
        torch.nn.init.normal_(weight, std=float(weight.std()))
    after = _egg(tiny_llava, image)
    assert not np.allclose(after, before, rtol=1e-3, atol=0)
    if where != "language model":
        assert len(calls) == 2  # features recomputed
    tiny_llava.clear_cache()
    assert np.allclose(_egg(tiny_llava, image), after, rtol=1e-5, atol=1e-8)  # what the cache gave


def test_load_state_dict_and_writes_through_data(tiny_llava, monkeypatch):
    """Restoring weights with ``load_state_dict`` is seen; a write through ``p.data`` is not
    (it bypasses the version counter), and :meth:`clear_cache` is the documented remedy."""
    image = noise_image(64, 64, 4)
    calls = _count_feature_computations(tiny_llava, monkeypatch)
    saved = {k: v.clone() for k, v in tiny_llava.model.state_dict().items()}
    before = _egg(tiny_llava, image)
    fc1 = tiny_llava.model.model.vision_tower.encoder.layers[0].mlp.fc1.weight
    fc1.data.mul_(-3.0)
    assert np.array_equal(_egg(tiny_llava, image), before) and len(calls) == 1  # not seen
    tiny_llava.clear_cache()
    changed = _egg(tiny_llava, image)
    assert not np.allclose(changed, before, rtol=1e-3, atol=0) and len(calls) == 2
    tiny_llava.model.load_state_dict(saved)
    assert np.allclose(_egg(tiny_llava, image), before, rtol=1e-5, atol=1e-8)
    assert len(calls) == 3


def test_the_map_memo_follows_the_weights(tiny_llava):
    items = [([noise_image(64, 64, 1)], "what ?"), ([noise_image(64, 64, 2)], "what ?")]
    method = get_method("egg")
    proj = tiny_llava.model.model.multi_modal_projector.linear_2.weight
    with tiny_llava.remember_maps():
        first = method.attribute_batch(tiny_llava, items)
        assert method.attribute_batch(tiny_llava, items)[0] is first[0]
        with torch.no_grad():
            proj.mul_(-2.0)
        again = method.attribute_batch(tiny_llava, items)
    assert again[0] is not first[0]
    assert not np.allclose(again[0].grid, first[0].grid, rtol=1e-3, atol=0)
