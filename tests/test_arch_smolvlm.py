"""SmolVLM adapter on a tiny random-weight checkpoint (``model_type`` ``smolvlm``).

The same shapes as the Idefics3 test (SmolVLM shares its layout): tiles of 32 px, patch 4,
pixel shuffle 2, 4x4 tokens per tile, images resized to a longest side of 96 px. Built
offline with ``SmolVLMProcessor``, which needs ``num2words``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from arch_checks import (
    check_attention_columns,
    check_batched_maps_equal_single,
    check_egg_map,
    check_entropy_gradient,
    check_every_method,
    check_extend_matches_generate,
    check_layout_by_perturbation,
    check_zoom_and_reground,
    tiled_reach,
)
from conftest import TinyArch, noise_image

from egg_interp.models import ADAPTERS
from egg_interp.models.idefics3 import SmolVLMAdapter
from egg_interp.models.offline.idefics3 import build_tiny_smolvlm

ARCH = TinyArch(build_tiny_smolvlm, tower="vision_model", sharpen=30.0)  # as Idefics3


def test_registered_and_loaded_from_config(ckpt, adapter):
    import num2words  # noqa: F401  (the processor's dependency is installed)

    assert ADAPTERS["smolvlm"] is SmolVLMAdapter
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "smolvlm"
    assert isinstance(adapter, SmolVLMAdapter)
    assert type(adapter.model).__name__ == "SmolVLMForConditionalGeneration"
    assert type(adapter.processor).__name__ == "SmolVLMProcessor"
    assert adapter.input_side == 32


@pytest.mark.parametrize("size,tiles_shape", [((96, 96), (12, 12)), ((150, 100), (8, 12))])
def test_layout_tiles_then_global(adapter, size, tiles_shape):
    lay = adapter.build_inputs([noise_image(*size)], "what ?").layouts[0]
    assert [v.name for v in lay.views] == ["tiles", "global"]
    tiles, glob = lay.views
    assert tiles.token_index.shape == tiles_shape
    n_tiles = tiles_shape[0] * tiles_shape[1] // 16
    assert lay.n_tokens == 16 * (n_tiles + 1)
    np.testing.assert_array_equal(glob.token_index.ravel(), 16 * n_tiles + np.arange(16))


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    reach = tiled_reach(size)  # images resized to a longest side of 96 px first
    check_layout_by_perturbation(
        local_adapter, size, cell_px={"tiles": 8, "global": 8}, reach=reach
    )


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
    check_every_method(adapter, [noise_image(60, 40)], pixel_space=True)
