"""Gemma 3 adapter on a tiny random-weight checkpoint.

SigLIP at 48 px with patch 4 (12 x 12 patches), average-pooled 2 x 2 to a 6 x 6 grid: a
token covers 8 processed pixels, ``W / 6 x H / 6`` original ones (the image is squashed).
Layers alternate sliding (window 128) and full attention: prompts of four images or with
pan-and-scan crops are longer than the window, as the loop's prompts are on the released
models. Pan and scan (switched on per test, minimum crop 32 px): 150x100 -> 2 crops
of 75x100 side by side, 80x200 -> 3 stacked crops of 67, 67 and 66 rows, 96x96 -> none.
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
    make_vision_token_local,
)
from conftest import TinyArch, noise_image

from egg_interp.methods import attribute, get_method
from egg_interp.models import load_model
from egg_interp.models.gemma3 import Gemma3Adapter
from egg_interp.models.offline.gemma import build_tiny_gemma3

# the random model's next-token distribution is nearly uniform (entropy ~ log vocab) and its
# gradients ~1e-5, while Gemma's RMSNorm computes in float32 even in a float64 model: sharpen
# it, and step 1e-2 in the gradient check (central difference error ~1e-3 relative at 1e-3)
ARCH = TinyArch(build_tiny_gemma3, tower="vision_tower", sharpen=30.0)
PAN_AND_SCAN = {"do_pan_and_scan": True, "pan_and_scan_min_crop_size": 32}


def _pan_and_scan(adapter):
    adapter.processor.images_kwargs = {**adapter.processor.images_kwargs, **PAN_AND_SCAN}
    adapter.clear_cache()
    return adapter


@pytest.fixture(scope="module")
def scan_adapter(ckpt):
    """As served, with pan and scan on."""
    return _pan_and_scan(load_model(ckpt, device="cpu"))


@pytest.fixture(scope="module")
def local_scan_adapter(ckpt):
    """Token-local vision tower, pan and scan on."""
    adapter = load_model(ckpt, device="cpu")
    make_vision_token_local(adapter, ARCH.tower)
    return _pan_and_scan(adapter)


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "gemma3"
    assert isinstance(adapter, Gemma3Adapter)
    assert adapter.input_side == 48  # the squashed square, as ViCrop sizes its crops


def test_image_features_are_not_the_zero_initialised_projection(adapter):
    """transformers initialises the projection to zeros; the builder re-draws it."""
    (feats,) = adapter.image_features(adapter.build_inputs([noise_image(96, 96)], "what ?"))
    assert feats.shape == (36, 32) and feats.abs().min(dim=-1).values.max() > 0
    assert feats.norm(dim=-1).min() > 0.1


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_layout_is_one_squashed_grid(adapter, size):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")  # checks the count
    lay = inputs.layouts[0]
    (view,) = lay.views
    assert view.name == "global" and view.token_index.shape == (6, 6) and lay.n_tokens == 36
    np.testing.assert_allclose(view.cell_boxes[0, 0], [0, 0, size[0] / 6, size[1] / 6])
    assert view.cell_boxes[-1, -1, 2:] == pytest.approx(size)
    assert inputs.batch["token_type_ids"].sum() == 36  # the soft tokens, one block


@pytest.mark.parametrize(
    "size,crops,grid",
    [((150, 100), [(0, 0, 75, 100), (75, 0, 150, 100)], (6, 12)), ((96, 96), [], None)],
)
def test_pan_and_scan_crops_follow_the_processor(scan_adapter, size, crops, grid):
    image = noise_image(*size)
    assert scan_adapter.crop_boxes(image) == [tuple(map(float, c)) for c in crops]
    out = scan_adapter.processor.image_processor(
        [image], **{**scan_adapter.processor.images_kwargs, "return_tensors": "pt"}
    )
    assert out["num_crops"].tolist() == [len(crops)]  # what the processor itself did
    lay = scan_adapter.build_inputs([image], "what ?").layouts[0]
    assert lay.n_tokens == 36 * (1 + len(crops))
    assert [v.name for v in lay.views] == ["global"] + (["crops"] if crops else [])
    if grid:
        stitched = lay.views[1]
        assert stitched.token_index.shape == grid
        np.testing.assert_array_equal(stitched.token_index[0, :6], 36 + np.arange(6))
        np.testing.assert_array_equal(stitched.token_index[1, 6:], 72 + 6 + np.arange(6))
        assert stitched.cell_boxes[-1, -1, 2:] == pytest.approx(size)


def test_stacked_crops_of_a_tall_image(scan_adapter):
    lay = scan_adapter.build_inputs([noise_image(80, 200)], "what ?").layouts[0]
    _, crops = lay.views
    assert crops.token_index.shape == (18, 6) and lay.n_tokens == 4 * 36
    heights = crops.cell_boxes[::6, 0, 3] - crops.cell_boxes[::6, 0, 1]
    np.testing.assert_allclose(heights * 6, [67, 67, 66])  # the last crop is shorter
    assert crops.cell_boxes[..., 2].max() == 80 and crops.cell_boxes[-1, 0, 3] == 200


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"global": 8})


@pytest.mark.parametrize("size", [(150, 100), (80, 200)])
def test_perturbed_patch_with_pan_and_scan(local_scan_adapter, size):
    check_layout_by_perturbation(local_scan_adapter, size, cell_px={"global": 8, "crops": 8})


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall, eps=1e-2)  # lm_head sharpened: ARCH


def test_each_image_is_one_bidirectional_block(adapter):
    """A soft token reads the later soft tokens of its own image, not those of the next
    image; the text before an image never reads it."""
    inputs = adapter.build_inputs([noise_image(96, 96), noise_image(40, 70, 3)], "what ?")
    feats = adapter.image_features(inputs)
    pos = adapter.visual_positions(inputs)

    def hidden(moved):
        with torch.no_grad():
            out = adapter.forward_features(
                inputs, moved, last_only=False, output_hidden_states=True
            )
        return out.hidden_states[1][0]

    ref = hidden(feats)
    moved = [feats[0].clone(), feats[1]]
    moved[0][-1] += 1.0  # the last token of the first image
    diff = (hidden(moved) - ref).abs().amax(-1)
    assert diff[pos[0][0]] > 1e-4  # the first token of the same image sees it
    assert diff[: pos[0][0]].max() == 0  # the text before does not
    moved = [feats[0], feats[1].clone()]
    moved[1][-1] += 1.0  # the second image's last token: not in the first image's block
    assert (hidden(moved) - ref).abs().amax(-1)[pos[0]].max() == 0


def test_sliding_layers_miss_image_tokens_beyond_the_window(adapter):
    """The answer row of a sliding-window layer (layer 0 here, 5 of 6 in the released models)
    gives exactly 0 attention to image tokens more than ``sliding_window`` (128) positions
    back, so rel-att divides 0 by 0 there; the full-attention layer sees every token."""
    images = [
        noise_image(96, 96),
        noise_image(60, 40, 1),
        noise_image(70, 50, 2),
        noise_image(50, 50, 3),
    ]
    inputs = adapter.build_inputs(images, "what ?")
    first = adapter.visual_positions(inputs)[0]
    np.testing.assert_array_equal(inputs.layouts[0].views[0].token_index.ravel(), np.arange(36))
    far = inputs.input_ids.shape[1] - 1 - first >= 128
    assert 0 < int(far.sum()) < len(first)
    for layer, sees_all in ((0, False), (1, True)):
        raw = get_method("raw_attention", layers=layer).attribute(
            adapter, images, "what ?", inputs=inputs
        )
        values = raw.images[0].primary.values.ravel()  # the global view: token k at cell k
        rel = get_method("rel_att", layers=layer).attribute(
            adapter, images, "what ?", inputs=inputs
        )
        nan = np.isnan(rel.images[0].primary.values)
        if sees_all:
            assert (values > 0).all() and not nan.any()
        else:
            assert (values[far.numpy()] == 0).all() and (values[~far.numpy()] > 0).all()
            assert nan.sum() == int(far.sum())


def test_map_views_with_pan_and_scan(scan_adapter):
    m = check_egg_map(scan_adapter, noise_image(150, 100))
    im = m.images[0]
    assert [v.name for v in im.views] == ["global", "crops"] and im.primary.name == "crops"
    assert np.isfinite(im.heatmap()).all()


def test_pixel_space_pools_every_frame(scan_adapter):
    m = attribute(scan_adapter, noise_image(150, 100), "what colour ?", space="pixels")
    assert m.images[0].view("crops").values.shape == (6, 12) and m.grid.max() > 0


def test_extend_matches_generate(adapter, wide_and_tall):
    check_extend_matches_generate(adapter, wide_and_tall)


def test_extend_matches_generate_with_crops(scan_adapter, wide_and_tall):
    check_extend_matches_generate(scan_adapter, wide_and_tall)


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
