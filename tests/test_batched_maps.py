"""Batched maps equal one-by-one maps (padding handled, gradients per sample)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import noise_image

from egg_interp.methods import get_method


@pytest.mark.parametrize("reduce", ["norm", "grad_x_input"])
def test_batched_egg_equals_one_by_one(tiny_llava, reduce):
    items = [
        ([noise_image(64, 64, 1)], "what colour is the square ?"),
        ([noise_image(90, 60, 2), noise_image(30, 30, 3)], "is there a red circle ?"),  # 2 images
        ([noise_image(50, 80, 4)], "what ?"),  # shorter prompt: left padding
    ]
    method = get_method("egg", reduce=reduce)
    batched = method.attribute_batch(tiny_llava, items)
    single = [method.attribute(tiny_llava, ims, q) for ims, q in items]
    assert [len(m.images) for m in batched] == [1, 2, 1]
    for b, s in zip(batched, single):
        for bi, si in zip(b.images, s.images):
            np.testing.assert_allclose(bi.primary.values, si.primary.values, rtol=2e-4, atol=1e-7)
            np.testing.assert_array_equal(bi.primary.cell_boxes, si.primary.cell_boxes)
        assert b.meta["top1_token"] == s.meta["top1_token"]
        assert b.meta["objective"] == pytest.approx(s.meta["objective"], rel=1e-4)
        assert b.meta["batch_size"] == 3


def test_methods_without_batching_loop(tiny_llava):
    method = get_method("egg", space="pixels")
    items = [([noise_image(64, 64, 1)], "what ?"), ([noise_image(64, 64, 2)], "what ?")]
    maps = method.attribute_batch(tiny_llava, items)
    assert len(maps) == 2 and "batch_size" not in maps[0].meta


def test_a_scope_remembers_batched_maps_of_equal_requests(tiny_llava, monkeypatch):
    """Inside ``remember_maps`` an equal request (method class and options, target, pixels,
    question) returns the maps already computed; anything different is computed."""
    items = [([noise_image(64, 64, 1)], "what ?"), ([noise_image(64, 64, 2)], "what ?")]
    method = get_method("egg")
    calls = []
    original = type(method).relevance_batch
    monkeypatch.setattr(
        type(method),
        "relevance_batch",
        lambda self, *a, **k: calls.append(1) or original(self, *a, **k),
    )
    with tiny_llava.remember_maps():
        first = method.attribute_batch(tiny_llava, items)
        again = get_method("egg").attribute_batch(tiny_llava, items)  # an equal method object
        assert len(calls) == 1 and all(a is f for a, f in zip(again, first))
        copies = [([im.copy() for im in ims], q) for ims, q in items]  # same pixels
        assert method.attribute_batch(tiny_llava, copies)[0] is first[0] and len(calls) == 1
        method.attribute_batch(tiny_llava, [(ims, "what colour ?") for ims, _ in items])
        get_method("egg", reduce="grad_x_input").attribute_batch(tiny_llava, items)
        method.attribute_batch(tiny_llava, items, target="logprob")
        assert len(calls) == 4  # another question, other options, another target
        other = [([noise_image(64, 64, 3)], "what ?"), *items[1:]]
        method.attribute_batch(tiny_llava, other)  # one prompt new: the whole batch runs
        assert len(calls) == 5
        two = [([noise_image(64, 64, 1), noise_image(32, 32, 4)], "what ?"), *items[1:]]
        method.attribute_batch(tiny_llava, two)
        method.attribute_batch(tiny_llava, two)  # prompts with crops are never remembered
        assert len(calls) == 7
    assert tiny_llava.map_memo is None
    method.attribute_batch(tiny_llava, items)  # outside a scope nothing is remembered
    assert len(calls) == 8
