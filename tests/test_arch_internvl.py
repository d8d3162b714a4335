"""HF-native InternVL adapter on a tiny random-weight checkpoint.

Tiles of 32 px, patch 4, pixel shuffle 0.5: 4x4 tokens per tile, each covering 8x8 tile
pixels; at most 6 tiles. 96x96 -> 2x2 tiles + thumbnail, 150x100 -> 3x2 + thumbnail,
80x200 -> 1x3 + thumbnail (aspect 0.4 squashed to 0.33), 40x40 -> one tile, no thumbnail.
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
from egg_interp.models.internvl import InternVLAdapter
from egg_interp.models.offline.internvl import build_tiny_internvl

ARCH = TinyArch(build_tiny_internvl, tower="vision_tower")


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "internvl"
    assert isinstance(adapter, InternVLAdapter)
    assert adapter.input_side == 32  # the tile, as ViCrop sizes its crops


@pytest.mark.parametrize(
    "size,tiles_shape,thumbnail",
    [
        ((96, 96), (8, 8), True),
        ((150, 100), (8, 12), True),
        ((80, 200), (12, 4), True),
        ((40, 40), (4, 4), False),
    ],
)
def test_layout_tiles_then_thumbnail(adapter, size, tiles_shape, thumbnail):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")  # checks the count
    lay = inputs.layouts[0]
    assert [v.name for v in lay.views] == ["tiles", "thumbnail"][: 1 + thumbnail]
    tiles = lay.views[0]
    assert tiles.token_index.shape == tiles_shape
    n_tiles = tiles_shape[0] * tiles_shape[1] // 16
    assert lay.n_tokens == 16 * (n_tiles + thumbnail)
    # the first tile's 16 tokens fill the top-left 4x4 block, row-major
    np.testing.assert_array_equal(tiles.token_index[:4, :4].ravel(), np.arange(16))
    if thumbnail:  # the thumbnail comes last
        np.testing.assert_array_equal(
            lay.views[1].token_index.ravel(), 16 * n_tiles + np.arange(16)
        )
    b = tiles.cell_boxes
    assert b[0, 0, :2].tolist() == [0, 0] and b[-1, -1, 2:] == pytest.approx(size)


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200), (40, 40)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"tiles": 8, "thumbnail": 8})


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall)


def test_map_views_and_combined_heatmap(adapter):
    m = check_egg_map(adapter, noise_image(150, 100))
    im = m.images[0]
    assert im.primary.name == "tiles" and im.view("thumbnail").values.shape == (4, 4)
    assert np.isfinite(im.heatmap()).all()


def test_pixel_space_variant_pools_to_every_token(adapter):
    m = attribute(adapter, noise_image(150, 100), "what colour ?", space="pixels")
    assert m.grid.shape == (8, 12) and m.grid.max() > 0


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
