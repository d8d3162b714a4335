"""Phi-4-multimodal adapter on a tiny random-weight checkpoint.

Crops of 128 px, patch 4 (32 x 32 patches, pooled 2x2: 16 x 16 tokens of 8 canvas px per
crop; the processor's fixed counts of 256 and 16 need 32 patches per side). 96x96 -> one
crop; 200x100 -> 2 x 1 crops and 100x200 -> 1 x 2, both fitting the canvas exactly;
150x100 -> 2 x 1 crops with the image fitted to 192 x 128, so 24 of 32 token columns are
useful and the global view's last 4 columns lie in the white padding.
"""

from __future__ import annotations

import doctest
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

from egg_interp.models import load_model, phi4_multimodal_image_processing
from egg_interp.models.offline.phi4_multimodal import build_tiny_phi4_multimodal
from egg_interp.models.phi4_multimodal import Phi4MultimodalAdapter

# the random model's next-token distribution is nearly uniform and its entropy gradients
# (~1e-5) sit at the finite-difference noise floor: sharpen it for the float64 checks
ARCH = TinyArch(build_tiny_phi4_multimodal, tower="embed_tokens_extend", sharpen=30.0)

# size -> (highres grid, global grid kept, tokens)
LAYOUTS = {
    (96, 96): ((16, 16), (16, 16), 16 * 17 + 1 + 16 * 17),
    (200, 100): ((16, 32), (16, 16), 16 * 33 + 1 + 16 * 17),
    (100, 200): ((32, 16), (16, 16), 32 * 17 + 1 + 16 * 17),
    (150, 100): ((16, 24), (16, 12), 16 * 25 + 1 + 16 * 17),
}


def test_load_model_uses_the_causal_lm_class(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "phi4_multimodal"
    assert isinstance(adapter, Phi4MultimodalAdapter)
    assert type(adapter.model).__name__ == "Phi4MultimodalForCausalLM"
    assert adapter.input_side == 128


def test_docstring_examples():
    assert doctest.testmod(phi4_multimodal_image_processing).failed == 0


@pytest.mark.parametrize("size", list(LAYOUTS))
def test_layout_useful_grid_separators_and_global_view(adapter, size):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")  # checks the token count
    lay = inputs.layouts[0]
    high, glob = lay.views
    (hr, hc), (gr, gc), n = LAYOUTS[size]
    assert high.token_index.shape == (hr, hc) and glob.token_index.shape == (gr, gc)
    assert lay.n_tokens == n
    # a separator after every row of both grids, and the global separator between them
    in_views = set(high.token_index.ravel()) | set(glob.token_index.ravel())
    separators = sorted(set(range(n)) - in_views)
    expected = [r * (hc + 1) + hc for r in range(hr)] + [hr * (hc + 1)]
    expected += [hr * (hc + 1) + 1 + r * 17 + 16 for r in range(16)]
    expected += [hr * (hc + 1) + 1 + r * 17 + c for r in range(16) for c in range(gc, 16)]
    assert separators == sorted(expected)
    for view in (high, glob):
        b = view.cell_boxes
        assert b[0, 0, :2] == pytest.approx((0, 0)) and b[-1, -1, 2:] == pytest.approx(size)
        area = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
        assert (area > 0).all() and area.sum() == pytest.approx(size[0] * size[1])


@pytest.mark.parametrize("size", [(96, 96), (200, 100), (100, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"highres": 8, "global": 8})


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall)


def test_map_views(adapter):
    m = check_egg_map(adapter, noise_image(150, 100))
    im = m.images[0]
    assert [v.name for v in im.views] == ["highres", "global"] and im.primary.name == "highres"
    assert np.isfinite(im.heatmap()).all()


def test_extend_matches_generate(adapter, wide_and_tall):
    check_extend_matches_generate(adapter, wide_and_tall)


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_attention_columns(adapter, square_and_tall):
    check_attention_columns(adapter, square_and_tall)


@pytest.fixture(scope="module")
def eager_adapter(ckpt):
    """Loaded with eager attention: the vision tower then attends both ways in every batch."""
    return load_model(ckpt, device="cpu", attn_implementation="eager")


def test_sdpa_vision_tower_is_causal_when_no_crop_is_padded(adapter, eager_adapter):
    """transformers 5.24 marks Phi-4's vision attention causal: with sdpa and no padded patch
    in the call (no mask) the tower attends causally, with a padded image in the same call
    both ways, so an unpadded image's features depend on the images beside it. Eager
    attention ignores the flag."""
    square, padded = noise_image(96, 96, 1), noise_image(150, 100, 2)

    def first_features(a, images):
        a.clear_cache()
        return a.image_features(a.build_inputs(images, "what ?"))[0]

    alone, beside = first_features(adapter, [square]), first_features(adapter, [square, padded])
    assert (alone - beside).abs().max() > 1e-2
    torch.testing.assert_close(
        first_features(eager_adapter, [square]), first_features(eager_adapter, [square, padded])
    )
    torch.testing.assert_close(first_features(eager_adapter, [square, padded]), beside)


def test_batched_maps_equal_single(eager_adapter):
    """With sdpa the batch's padding changes the features (above); eager keeps them equal."""
    check_batched_maps_equal_single(eager_adapter)


def test_image_features_survive_an_attention_forward(adapter):
    """The capture hooks are installed once, top-down, at load (see the adapter): after a
    forward that returns attention weights, image features still compute, unchanged."""
    inputs = adapter.build_inputs([noise_image(120, 90, 7)], "what ?")
    adapter.clear_cache()
    before = adapter.image_features(inputs)[0]
    with adapter.attention_implementation("eager"), torch.no_grad():
        adapter.forward_features(inputs, [before], output_attentions=True)
    adapter.clear_cache()
    torch.testing.assert_close(adapter.image_features(inputs)[0], before)


def test_every_registered_method(adapter):
    """Pixel-space variants are refused (no per-token pooling of the crops is written)."""
    check_every_method(adapter, [noise_image(60, 40)], pixel_space=False)


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))
