"""DeepSeek-VL adapter on a tiny random-weight checkpoint.

SigLIP of 32 px, patch 4: 8 x 8 tokens over the padded square. 96x96 -> 32x32 (no padding);
150x100 -> 32 wide, 21 tall, 5 px of padding above and 6 below (token rows 0 and 7 lie in
the padding); 80x200 -> 13 wide, 32 tall, 9 px of padding on the left and 10 on the right.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
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

from egg_interp.methods import attribute
from egg_interp.models.deepseek_vl import DeepseekVLAdapter
from egg_interp.models.offline.deepseek_vl import build_tiny_deepseek_vl

ARCH = TinyArch(build_tiny_deepseek_vl, tower="vision_model")


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "deepseek_vl"
    assert isinstance(adapter, DeepseekVLAdapter)
    assert adapter.input_side == 32


@pytest.mark.parametrize(
    "size,resized,pad_before,grid",
    [
        ((96, 96), (32, 32), (0, 0), (8, 8)),
        ((150, 100), (32, 21), (0, 5), (6, 8)),
        ((80, 200), (13, 32), (9, 0), (8, 4)),
    ],
)
def test_layout_follows_the_centred_padding(adapter, size, resized, pad_before, grid):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")  # checks the token count
    lay = inputs.layouts[0]
    (view,) = lay.views
    assert lay.n_tokens == 64 and view.token_index.shape == grid
    (rw, rh), (px, py) = resized, pad_before
    # rows and columns of tokens wholly in the padding are in no view
    rows, cols = np.divmod(view.token_index, 8)
    assert rows[0, 0] == py // 4 and cols[0, 0] == px // 4
    # token (r, c) covers processed [4c, 4c + 4) x [4r, 4r + 4), shifted by the padding and
    # scaled by original / resized, clipped to the image
    r, c = 3, 2
    k = view.token_index[r, c]
    expected = [(4 * (k % 8) - px) * size[0] / rw, (4 * (k // 8) - py) * size[1] / rh]
    assert view.cell_boxes[r, c, :2] == pytest.approx(expected)
    b = view.cell_boxes
    area = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    assert (area > 0).all() and area.sum() == pytest.approx(size[0] * size[1])


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"base": 4})


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall)


def test_map_heatmap_covers_the_whole_image(adapter):
    m = check_egg_map(adapter, noise_image(150, 100))
    heat = m.images[0].heatmap()
    assert heat.shape == (100, 150) and np.isfinite(heat).all()


def test_pixel_space_variant_pools_to_every_token(adapter):
    m = attribute(adapter, noise_image(150, 100), "what colour ?", space="pixels")
    assert m.grid.shape == (6, 8) and m.grid.max() > 0  # two rows wholly in the padding


def test_extend_matches_generate(adapter, wide_and_tall):
    check_extend_matches_generate(adapter, wide_and_tall)


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_attention_columns(adapter, square_and_tall):
    check_attention_columns(adapter, square_and_tall)


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_every_registered_method(adapter, square_and_tall):
    check_every_method(adapter, square_and_tall, pixel_space=True)


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))
