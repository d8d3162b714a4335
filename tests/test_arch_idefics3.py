"""Idefics3 adapter on a tiny random-weight checkpoint.

Tiles of 32 px, patch 4, pixel shuffle 2: 4x4 tokens per tile, each covering 8x8 tile
pixels; images resized to a longest side of 96 px, so at most 3x3 tiles plus the global
image. 96x96 -> 3x3 tiles, 150x100 -> 2 rows x 3 columns (64 of 96 rows stretched), 80x200 ->
3x2, and 96x96 without splitting -> the global image alone.
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
    make_vision_token_local,
    tiled_reach,
)
from conftest import TinyArch, noise_image

from egg_interp.models import load_model
from egg_interp.models.idefics3 import Idefics3Adapter
from egg_interp.models.offline.idefics3 import build_tiny_idefics3

# the random model's next-token distribution is nearly uniform (entropy ~ log vocab) and its
# gradients ~1e-5, at the float32 noise floor of finite differences: sharpen it, and step
# 1e-2 in the gradient check (the central difference's O(eps^2) error is then ~1e-4 relative)
ARCH = TinyArch(build_tiny_idefics3, tower="vision_model", sharpen=30.0)


@pytest.fixture(scope="module")
def local_unsplit_adapter(ckpt):
    """Token-local, and the processor does not split images into tiles."""
    adapter = load_model(ckpt, device="cpu")
    make_vision_token_local(adapter, ARCH.tower)
    return _unsplit(adapter)


def _unsplit(adapter):
    adapter.processor.image_processor.do_image_splitting = False
    adapter.clear_cache()
    return adapter


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "idefics3"
    assert isinstance(adapter, Idefics3Adapter)
    assert adapter.input_side == 32  # the tile, as ViCrop sizes its crops


@pytest.mark.parametrize(
    "size,tiles_shape", [((96, 96), (12, 12)), ((150, 100), (8, 12)), ((80, 200), (12, 8))]
)
def test_layout_tiles_then_global(adapter, size, tiles_shape):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")  # checks the count
    lay = inputs.layouts[0]
    assert [v.name for v in lay.views] == ["tiles", "global"]
    tiles, glob = lay.views
    assert tiles.token_index.shape == tiles_shape
    n_tiles = tiles_shape[0] * tiles_shape[1] // 16
    assert lay.n_tokens == 16 * (n_tiles + 1)
    np.testing.assert_array_equal(tiles.token_index[:4, :4].ravel(), np.arange(16))
    np.testing.assert_array_equal(glob.token_index.ravel(), 16 * n_tiles + np.arange(16))
    assert tiles.cell_boxes[-1, -1, 2:] == pytest.approx(size)


def test_layout_without_splitting_is_the_global_image(local_unsplit_adapter):
    lay = local_unsplit_adapter.build_inputs([noise_image(150, 100)], "what ?").layouts[0]
    assert [v.name for v in lay.views] == ["global"] and lay.n_tokens == 16


@pytest.mark.parametrize(
    "size,split", [((96, 96), True), ((150, 100), True), ((80, 200), True), ((150, 100), False)]
)
def test_perturbed_patch_changes_exactly_the_covering_tokens(request, size, split):
    adapter = request.getfixturevalue("local_adapter" if split else "local_unsplit_adapter")
    reach = tiled_reach(size)  # images resized to a longest side of 96 px first
    check_layout_by_perturbation(adapter, size, cell_px={"tiles": 8, "global": 8}, reach=reach)


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall, eps=1e-2)  # lm_head sharpened: ARCH


def test_map_views(adapter):
    m = check_egg_map(adapter, noise_image(150, 100))
    assert m.images[0].primary.name == "tiles" and np.isfinite(m.images[0].heatmap()).all()


def test_extend_matches_generate(adapter, wide_and_tall):
    check_extend_matches_generate(adapter, wide_and_tall)


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_attention_columns(adapter, square_and_tall):
    check_attention_columns(adapter, square_and_tall)


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_every_registered_method(adapter):
    check_every_method(adapter, [noise_image(60, 40)], pixel_space=True)  # 3x2 tiles + global


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))
