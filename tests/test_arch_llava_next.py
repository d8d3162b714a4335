"""LLaVA-1.6 (anyres) adapter on a tiny random-weight checkpoint.

Tiles of 48 px with patch 8 (6x6 tokens per tile); canvases of 1x2, 2x1, 2x2, 1x3 and 3x1
tiles. 96x96 -> 2x2 tiles, nothing to unpad; 150x100 -> 2x2 tiles resized to 96x64, 2 of
12 token rows unpadded at top and bottom; 80x200 -> 3x1 tiles resized to 48x120 (12 px of
padding above, 1.5 token rows) and 1 of 18 rows unpadded at each end, so the outer kept rows
lie partly in the padding.
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
from egg_interp.models.llava_next import LlavaNextAdapter
from egg_interp.models.offline.llava_next import build_tiny_llava_next

ARCH = TinyArch(build_tiny_llava_next, tower="vision_tower")


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "llava_next"
    assert isinstance(adapter, LlavaNextAdapter)
    assert adapter.input_side == 48  # the tile, as ViCrop sizes its crops


@pytest.mark.parametrize(
    "size,highres_shape",
    [((96, 96), (12, 12)), ((150, 100), (8, 12)), ((80, 200), (16, 6))],
)
def test_layout_counts_and_newlines(adapter, size, highres_shape):
    inputs = adapter.build_inputs([noise_image(*size)], "what colour ?")  # checks the count
    lay = inputs.layouts[0]
    base, highres = lay.views
    assert base.token_index.shape == (6, 6) and highres.token_index.shape == highres_shape
    rows, cols = highres_shape
    assert lay.n_tokens == 36 + rows * (cols + 1)
    newlines = (
        set(range(lay.n_tokens)) - set(base.token_index.ravel()) - set(highres.token_index.ravel())
    )
    assert sorted(newlines) == [36 + r * (cols + 1) + cols for r in range(rows)]
    # the high-resolution cells tile the image exactly (unpadding removed the padding rows)
    b = highres.cell_boxes
    assert b[..., 0].min() == pytest.approx(0, abs=1e-9) and b[..., 2].max() == pytest.approx(
        size[0]
    )
    assert b[..., 1].min() <= 1e-9 and b[..., 3].max() == pytest.approx(size[1], abs=size[1] / 12)


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"base": 8, "highres": 8})


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall)


def test_map_views_and_combined_heatmap(adapter):
    m = check_egg_map(adapter, noise_image(150, 100))
    im = m.images[0]
    assert [v.name for v in im.views] == ["base", "highres"] and im.primary.name == "highres"
    heat = im.heatmap()
    assert heat.shape == (100, 150) and np.isfinite(heat).all()


def test_pixel_space_variant_pools_to_every_token(adapter):
    m = attribute(adapter, noise_image(150, 100), "what colour ?", space="pixels")
    assert m.images[0].view("highres").values.shape == (8, 12) and m.grid.max() > 0


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_attention_columns(adapter, square_and_tall):
    check_attention_columns(adapter, square_and_tall)


def test_extend_matches_generate(adapter, wide_and_tall):
    check_extend_matches_generate(adapter, wide_and_tall)


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_every_registered_method(adapter):
    check_every_method(adapter, [noise_image(48, 48)], pixel_space=True)  # base + 1x2 tiles


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))
