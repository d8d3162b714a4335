"""Ovis2 adapter on a tiny random-weight checkpoint.

Tiles of 32 px, patch 4, 2x2 hidden stride: 4 x 4 tokens per tile, each covering 8 x 8 tile
pixels; tiling on, up to 9 tiles. 30x30 -> one 32 px view; 96x96 -> the thumbnail, then
3 x 3 tiles; 150x100 -> the thumbnail, then 4 rows x 2 columns of tiles (transformers 5.24's
covering-grid search returns (rows, cols) as (cols, rows): a wide image gets a tall grid);
80x200 -> 2 rows x 4 columns.
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

from egg_interp.methods import attribute
from egg_interp.models.offline.ovis2 import build_tiny_ovis2
from egg_interp.models.ovis2 import Ovis2Adapter

ARCH = TinyArch(build_tiny_ovis2, tower="vision_tower")

VIEWS = {
    (30, 30): {"image": (4, 4)},
    (96, 96): {"image": (4, 4), "tiles": (12, 12)},
    (150, 100): {"image": (4, 4), "tiles": (16, 8)},
    (80, 200): {"image": (4, 4), "tiles": (8, 16)},
}


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "ovis2"
    assert isinstance(adapter, Ovis2Adapter)
    assert adapter.input_side == 32


@pytest.mark.parametrize("size", list(VIEWS))
def test_layout_views_from_the_prompt_markers(adapter, size):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")  # checks the token count
    lay = inputs.layouts[0]
    assert {v.name: v.token_index.shape for v in lay.views} == VIEWS[size]
    np.testing.assert_array_equal(lay.views[0].token_index.ravel(), np.arange(16))  # first
    assert inputs.batch["pixel_values"].shape[0] == lay.n_tokens // 16
    for view in lay.views:
        b = view.cell_boxes
        np.testing.assert_allclose(b[:, 1:, 0], b[:, :-1, 2])
        assert b[0, 0, :2] == pytest.approx((0, 0)) and b[-1, -1, 2:] == pytest.approx(size)


@pytest.mark.parametrize("size", list(VIEWS))
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"image": 8, "tiles": 8})


def test_marker_tokens_carry_the_visual_indicator_features(adapter):
    """The five markers are overwritten by the visual table's last rows, as from pixels."""
    inputs = adapter.build_inputs([noise_image(96, 96)], "what ?")
    feats = adapter.image_features(inputs)
    with torch.no_grad():
        mine = adapter.forward_features(inputs, feats, last_only=False).logits
        ref = adapter.forward(inputs).logits
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-6)


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall)


def test_map_views(adapter):
    m = check_egg_map(adapter, noise_image(150, 100))
    im = m.images[0]
    assert [v.name for v in im.views] == ["image", "tiles"] and im.primary.name == "tiles"
    assert np.isfinite(im.heatmap()).all()


def test_pixel_space_variant_pools_to_every_token(adapter):
    m = attribute(adapter, noise_image(150, 100), "what colour ?", space="pixels")
    assert m.images[0].view("tiles").values.shape == (16, 8) and m.grid.max() > 0


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
