"""Mistral 3 (Pixtral vision) adapter on a tiny random-weight checkpoint.

Patch 8 and a 2x2 merge: a token covers 16 processed pixels; longest edge 192. Sides are
rounded up to multiples of 16: 96x96 -> 96x96 (6x6 tokens); 150x100 -> 160x112 (10x7,
stretched by 16/15 and 28/25); 80x200 -> scaled to 76x192, rounded to 80x192 (5x12).
Without torchvision the prompt comes from ``PixtralImageOnlyProcessor``.
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
from transformers import PixtralImageProcessorPil
from transformers.utils import is_torchvision_available

from egg_interp.methods import attribute
from egg_interp.models.mistral3 import (
    Mistral3Adapter,
    PixtralImageOnlyProcessor,
    pixtral_image_tokens,
)
from egg_interp.models.offline.mistral3 import build_tiny_mistral3

ARCH = TinyArch(build_tiny_mistral3, tower="vision_tower")


def test_load_model_picks_the_adapter_and_the_processor(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "mistral3"
    saved = json.loads((ckpt / "processor_config.json").read_text())
    assert saved["processor_class"] == "PixtralProcessor"  # the real one, with torchvision
    assert isinstance(adapter, Mistral3Adapter)
    if not is_torchvision_available():
        assert isinstance(adapter.processor, PixtralImageOnlyProcessor)


@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 3), (4, 1)])
def test_expansion_follows_pixtral_processors_rule(rows, cols):
    """PixtralProcessor.replace_image_token: rows of ``[IMG] * cols + [IMG_BREAK]``, the last
    token replaced by ``[IMG_END]``; ``(cols + 1) * rows`` tokens in all."""
    expected = [["[IMG]"] * cols + ["[IMG_BREAK]"]] * rows
    expected = [t for row in expected for t in row]
    expected[-1] = "[IMG_END]"
    assert pixtral_image_tokens(rows, cols) == "".join(expected)
    assert len(expected) == (cols + 1) * rows


def test_sides_are_rounded_up_to_the_token_size():
    """The documented example: 128x64 at patch 14 and a 2x2 merge -> 140x84."""
    ip = PixtralImageProcessorPil(size={"longest_edge": 1540})
    out = ip([noise_image(128, 64)], patch_size={"height": 28, "width": 28}, return_tensors="pt")
    assert out["image_sizes"].tolist() == [[84, 140]]


@pytest.mark.parametrize(
    "size,grid,resized",
    [
        ((96, 96), (6, 6), (96, 96)),
        ((150, 100), (7, 10), (112, 160)),
        ((80, 200), (12, 5), (192, 80)),
    ],
)
def test_prompt_and_layout(adapter, size, grid, resized):
    inputs = adapter.build_inputs([noise_image(*size), noise_image(40, 70, 3)], "what ?")
    assert inputs.batch["image_sizes"][0].tolist() == list(resized)
    tokens = adapter.tokenizer.convert_ids_to_tokens(inputs.input_ids[0].tolist())
    start = tokens.index("[IMG]")
    rows, cols = grid
    assert "".join(tokens[start : start + (cols + 1) * rows]) == pixtral_image_tokens(rows, cols)
    assert tokens.count("[IMG_END]") == 2
    (view,) = inputs.layouts[0].views
    assert view.token_index.shape == grid
    # the boxes tile the image exactly, each stretched by the rounding up
    assert view.cell_boxes[-1, -1, 2:] == pytest.approx(size)
    assert view.cell_boxes[0, 0].tolist() == pytest.approx(
        [0, 0, 16 * size[0] / resized[1], 16 * size[1] / resized[0]]
    )


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"base": 16})


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    # the random projector's outputs are about 1e-3 in size, so a step of 1e-3 is not small
    check_entropy_gradient(adapter64, square_and_tall, eps=1e-4)


def test_map_and_pixel_space(adapter):
    check_egg_map(adapter, noise_image(150, 100))
    m = attribute(
        adapter, [noise_image(150, 100), noise_image(40, 70, 3)], "what ?", space="pixels"
    )
    assert [im.primary.values.shape for im in m.images] == [(7, 10), (5, 3)]
    assert all(np.isfinite(im.primary.values).all() for im in m.images) and m.grid.max() > 0


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_attention_columns(adapter, square_and_tall):
    check_attention_columns(adapter, square_and_tall)


def test_extend_matches_generate(adapter, wide_and_tall):
    check_extend_matches_generate(adapter, wide_and_tall)


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_every_registered_method(adapter, square_and_tall):
    check_every_method(adapter, square_and_tall, pixel_space=True)


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))
