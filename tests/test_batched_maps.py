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
