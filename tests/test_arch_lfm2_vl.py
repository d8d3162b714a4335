"""LFM2-VL adapter on a tiny random-weight checkpoint.

Patch 4, pixel unshuffle x2 (a token covers 8 px), tiles of 32 px (4 x 4 tokens), a budget
of 16 tokens per single image or thumbnail: 30x30 -> one 32x32 image (4 x 4 tokens);
96x96 -> 3 x 3 tiles + a 4 x 4 thumbnail; 150x100 -> 3 columns x 2 rows of tiles + a 3 x 4
thumbnail; 80x200 -> 2 x 5 tiles + a 6 x 2 thumbnail. The language model has one short
convolution layer and one attention layer.
"""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest
from arch_checks import (
    check_answers_from_the_maps_forward,
    check_batched_maps_equal_single,
    check_egg_map,
    check_entropy_gradient,
    check_every_method,
    check_extend_matches_generate,
    check_layout_by_perturbation,
    check_zoom_and_reground,
)
from conftest import TinyArch, noise_image
from linear_attention_checks import check_attention_maps_read_attention_layers
from PIL import Image

from egg_interp.methods import METHODS, get_method
from egg_interp.models import lfm2_vl_image_processing
from egg_interp.models.lfm2_vl import Lfm2VlAdapter
from egg_interp.models.lfm2_vl_image_processing import Lfm2VlImageProcessor
from egg_interp.models.offline.lfm2_vl import build_tiny_lfm2_vl

ARCH = TinyArch(build_tiny_lfm2_vl, tower="vision_tower")

VIEWS = {
    (30, 30): {"image": (4, 4)},
    (96, 96): {"tiles": (12, 12), "thumbnail": (4, 4)},
    (150, 100): {"tiles": (8, 12), "thumbnail": (3, 4)},
    (80, 200): {"tiles": (20, 8), "thumbnail": (6, 2)},
}
ATTENTION_METHODS = sorted(name for name, cls in METHODS.items() if cls.needs.attentions)


def test_load_model_builds_the_processor_without_torchvision(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "lfm2_vl"
    assert isinstance(adapter, Lfm2VlAdapter)
    assert type(adapter.processor).__name__ == "Lfm2VlProcessor"
    assert isinstance(adapter.processor.image_processor, Lfm2VlImageProcessor)
    assert adapter.input_side == 32  # the tile, as ViCrop sizes its crops


def test_docstring_examples():
    assert doctest.testmod(lfm2_vl_image_processing).failed == 0


@pytest.mark.parametrize("size", list(VIEWS))
def test_layout_views_and_counts(adapter, size):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")  # checks the token count
    lay = inputs.layouts[0]
    assert {v.name: v.token_index.shape for v in lay.views} == VIEWS[size]
    # the count by transformers' own rule: tiles x tokens per tile + the thumbnail's tokens
    proc = adapter.processor
    resized = [int(s) * 4 for s in inputs.batch["spatial_shapes"][-1]]  # thumbnail / image px
    per_tile, per_image = proc._get_image_num_tokens(resized)
    n_tiles = sum(v.token_index.size for v in lay.views if v.name == "tiles") // per_tile
    assert lay.n_tokens == n_tiles * per_tile + per_image
    for view in lay.views:  # every view covers the whole image, cells abutting
        b = view.cell_boxes
        np.testing.assert_allclose(b[:, 1:, 0], b[:, :-1, 2])
        np.testing.assert_allclose(b[1:, :, 1], b[:-1, :, 3])
        assert b[0, 0, :2] == pytest.approx((0, 0)) and b[-1, -1, 2:] == pytest.approx(size)


@pytest.mark.parametrize("size", list(VIEWS))
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    cells = {"tiles": 8, "thumbnail": 8, "image": 8}
    check_layout_by_perturbation(local_adapter, size, cell_px=cells)


def test_tiles_are_an_antialiased_bilinear_resize(adapter):
    """A tile's pixels are the image resized onto the 3 x 2 tile canvas as PIL's bilinear
    filter (antialiased on downscales) resizes it, up to one grey level of rounding, then
    cut at the tile grid: what torchvision's antialiased resize computes."""
    image = noise_image(150, 100, seed=5)
    out = adapter.processor.image_processor(images=[image], return_tensors="pt")
    canvas = np.asarray(image.resize((96, 64), Image.BILINEAR), dtype=np.float64)
    for k, (row, col) in enumerate([(0, 0), (0, 2), (1, 1)]):
        index = row * 3 + col
        patches = out["pixel_values"][index, :64].reshape(8, 8, 4, 4, 3)
        tile = patches.permute(0, 2, 1, 3, 4).reshape(32, 32, 3).numpy() * 127.5 + 127.5
        expected = canvas[row * 32 : (row + 1) * 32, col * 32 : (col + 1) * 32]
        assert np.abs(tile - expected).max() <= 1.0 + 1e-3, (k, row, col)
    assert out["pixel_attention_mask"][-1].sum() == 6 * 8  # the 24 x 32 thumbnail's patches


def test_attention_maps_read_the_attention_layer_only(adapter, square_and_tall):
    """Raw attention equals the attention layer's weights; the convolution layer has none
    (refused), nor has the rollout; the metadata names the layers."""
    check_attention_maps_read_attention_layers(adapter, square_and_tall, [1])


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall)


def test_map_views(adapter):
    m = check_egg_map(adapter, noise_image(150, 100))
    im = m.images[0]
    assert [v.name for v in im.views] == ["tiles", "thumbnail"] and im.primary.name == "tiles"
    assert np.isfinite(im.heatmap()).all()


def test_extend_matches_generate(adapter, wide_and_tall):
    check_extend_matches_generate(adapter, wide_and_tall)


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_every_registered_method(adapter):
    """The rollout is refused in one line (the convolution layer has no attention weights);
    pixel-space variants too (``pixel_values`` are flattened, padded patches)."""
    get_method("raw_attention").attribute(adapter, [noise_image(60, 40)], "what ?")  # warm-up
    refused = {"attention_rollout": "without attention weights"}
    check_every_method(adapter, [noise_image(60, 40)], pixel_space=False, refused=refused)


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))
