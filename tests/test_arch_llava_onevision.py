"""LLaVA-OneVision adapter on a tiny random-weight checkpoint.

Tiles of 60 px with patch 9: the tower sees 54 px of every tile (6 tokens per side, 36 per
tile), the last 6 never, as the real model sees 378 of 384. Canvases of 1..6 x 1..6 tiles;
``anyres_max_9`` shrinks grids above 1.21 * 9 * 36 cells. 96x96 -> 2x2 tiles (12x12
tokens); 150x100 -> 2x3 tiles, nothing to unpad; 80x200 -> 4x2 tiles, the image 96 of 120
canvas px wide: unpadding keeps 10 of 12 token columns, the first partly in the padding,
and the image's last 3 canvas px get no high-resolution token; 240x180 -> 3x4 tiles,
18x24 cells shrunk to 15x20; 240x240 -> 4x4 tiles, 24x24 cells shrunk to 18x18.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from arch_checks import (
    QUESTION,
    _invert,
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
from video_checks import (
    check_video_entropy_gradient,
    check_video_every_method,
    check_video_features_match_pixels,
    check_video_greedy_matches_generate,
    check_video_grid_rule,
    check_video_layout_by_perturbation,
    check_video_loop_answers,
    noise_video,
    processor_token_count,
)

from egg_interp.methods import attribute
from egg_interp.models.llava_onevision import LlavaOnevisionAdapter, bilinear_hull
from egg_interp.models.offline.llava_onevision import build_tiny_llava_onevision

ARCH = TinyArch(build_tiny_llava_onevision, tower="vision_tower")
TILE, SEEN = 60, 54


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "llava_onevision"
    assert isinstance(adapter, LlavaOnevisionAdapter)
    assert adapter.input_side == TILE  # the tile, as ViCrop sizes its crops


@pytest.mark.parametrize(
    "size,highres_shape",
    [((96, 96), (12, 12)), ((150, 100), (12, 18)), ((80, 200), (24, 10)), ((240, 180), (15, 20))],
)
def test_layout_counts_and_newlines(adapter, size, highres_shape):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")  # the processor's count
    lay = inputs.layouts[0]
    base, highres = lay.views
    assert base.token_index.shape == (6, 6) and highres.token_index.shape == highres_shape
    rows, cols = highres_shape
    assert lay.n_tokens == 36 + rows * (cols + 1)
    newlines = set(range(lay.n_tokens)) - set(base.token_index.ravel())
    newlines -= set(highres.token_index.ravel())
    assert sorted(newlines) == [36 + r * (cols + 1) + cols for r in range(rows)]


def test_unpadding_keeps_whole_rows_counted_at_the_nominal_pitch(adapter):
    """80x200 on a 120x240 canvas (scale 1.2, 12 px of padding left and right): the image is
    9.6 nominal columns wide, the model keeps columns 1-10 of 12. Column 1 starts in the
    padding (canvas x 9); column 10 ends at canvas x 105, so the image's last 3 canvas px
    (2.5 image px) have no high-resolution token."""
    inputs = adapter.build_inputs([noise_image(80, 200)], "what ?")
    boxes = inputs.layouts[0].views[1].cell_boxes
    assert boxes.shape[:2] == (24, 10)
    assert boxes[0, 0].tolist() == pytest.approx([0, 0, (18 - 12) / 1.2, 9 / 1.2])
    assert boxes[0, -1, 2] == pytest.approx((105 - 12) / 1.2)  # 77.5 of 80


def test_several_images_are_padded_squares_of_36_tokens_and_a_newline(adapter):
    inputs = adapter.build_inputs([noise_image(150, 100), noise_image(40, 70, 3)], "what ?")
    assert [lay.n_tokens for lay in inputs.layouts] == [37, 37]
    assert all([v.name for v in lay.views] == ["base"] for lay in inputs.layouts)
    wide = inputs.layouts[0].views[0]
    # 150x100 padded to 150x150 (25 px above and below), squashed to 60: 2.5 px per px; the
    # first token row (-25 to -2.5) is wholly padding and in no view
    assert wide.token_index.shape == (5, 6) and wide.token_index[0, 0] == 6
    assert wide.cell_boxes[0, 0].tolist() == pytest.approx([0, 0, 22.5, 20])
    assert wide.cell_boxes[1, 0].tolist() == pytest.approx([0, 45 - 25, 22.5, 67.5 - 25])
    # the last row reaches the padding below; nothing beyond 135 px across is seen
    assert wide.cell_boxes[-1, -1].tolist() == pytest.approx([112.5, 87.5, 135, 100])


def test_several_images_layout_by_perturbation(local_adapter):
    """Next to another image, a 150x100 image's padded-square tokens change exactly where
    their boxes say (within the bicubic reach of a 2.5x downscale), the other image's not."""
    image, other = noise_image(150, 100, 8), noise_image(40, 70, 3)
    inputs = local_adapter.build_inputs([image, other], QUESTION)
    local_adapter.clear_cache()
    before = local_adapter.image_features(inputs)
    view = inputs.layouts[0].views[0]
    boxes = view.cell_boxes.reshape(-1, 4)
    reach = 2 * 2.5 + 1
    for r, c in [(1, 0), (2, 4), (3, 2)]:
        x0, y0, x1, y1 = view.cell_boxes[r, c]
        for x, y in [(int((x0 + x1) / 2) - 1, int((y0 + y1) / 2) - 1), (int(x0) + 1, int(y0) + 1)]:
            moved = local_adapter.build_inputs([_invert(image, x, y), other], QUESTION)
            local_adapter.clear_cache()
            after = local_adapter.image_features(moved)
            torch.testing.assert_close(after[1], before[1], rtol=0, atol=0)
            changed = set(
                torch.nonzero((after[0] - before[0]).abs().amax(-1) > 1e-5).ravel().tolist()
            )
            near = (boxes[:, 0] < x + 2 + reach) & (boxes[:, 2] > x - reach)
            near &= (boxes[:, 1] < y + 2 + reach) & (boxes[:, 3] > y - reach)
            covering = set(view.token_index.ravel()[near].tolist())
            assert view.token_index[r, c] in changed and changed <= covering, (x, y)


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"base": 9, "highres": 9})


def test_unseen_strips_reach_no_token(local_adapter):
    """The last 6 px of every tile and of the base view change nothing of that view."""
    image = noise_image(240, 180, 5)  # canvas = image: 3x4 tiles at scale 1
    inputs = local_adapter.build_inputs([image], QUESTION)
    before = local_adapter.image_features(inputs)[0]
    base, highres = inputs.layouts[0].views
    for (x, y), view, other in [
        ((SEEN + 2, 100), highres, base),  # tile 0's unseen columns 54-59
        ((100, TILE + SEEN + 2), highres, base),  # tile row 1's unseen rows 114-119
        ((228, 100), base, highres),  # base: 240 px squashed to 60, seen below 216
    ]:
        moved = local_adapter.build_inputs([_invert(image, x, y)], QUESTION)
        local_adapter.clear_cache()
        diff = (local_adapter.image_features(moved)[0] - before).abs().amax(-1) > 1e-5
        assert not diff[view.token_index.ravel()].any(), (x, y, view.name)
        assert diff[other.token_index.ravel()].any(), (x, y, other.name)


def test_shrunk_tokens_cover_the_hull_of_the_patches_they_blend(local_adapter):
    """240x240: 4x4 tiles, 24x24 cells shrunk bilinearly to 18x18 (a ratio of 4/3, so some
    tokens blend the last patch of one tile and the first of the next). A token's box is the
    hull of the (up to 2x2) patches it blends; perturbing a pixel changes exactly the tokens
    whose box holds it, within 3 px (the bicubic reach at scale 1), except in the unseen
    strips between tiles, which a seam token's hull spans without seeing."""
    image = noise_image(240, 240, 6)
    inputs = local_adapter.build_inputs([image], QUESTION)
    local_adapter.clear_cache()
    before = local_adapter.image_features(inputs)[0]
    highres = inputs.layouts[0].views[1]
    index, boxes = highres.token_index.ravel(), highres.cell_boxes.reshape(-1, 4)
    widths = boxes[:, 2] - boxes[:, 0]
    assert np.median(widths) == 18 and widths.max() == 24  # 2 patches; + 6 px strip on seams
    rng = np.random.default_rng(0)
    points = rng.integers([0, 0], [238, 238], size=(20, 2))
    for x, y in points:
        moved = local_adapter.build_inputs([_invert(image, int(x), int(y))], QUESTION)
        local_adapter.clear_cache()
        diff = (local_adapter.image_features(moved)[0] - before).abs().amax(-1) > 1e-5
        changed = set(index[diff[index].numpy()].tolist())
        near = (boxes[:, 0] < x + 2 + 3) & (boxes[:, 2] > x - 3)
        near &= (boxes[:, 1] < y + 2 + 3) & (boxes[:, 3] > y - 3)
        assert changed <= set(index[near].tolist()), (x, y)
        seen = x % TILE < SEEN - 3 and y % TILE < SEEN - 3
        inside = (boxes[:, 0] <= x - 3) & (boxes[:, 2] >= x + 5)
        inside &= (boxes[:, 1] <= y - 3) & (boxes[:, 3] >= y + 5)
        if seen:
            assert set(index[inside].tolist()) <= changed, (x, y)


def test_bilinear_hull_matches_torch_interpolate():
    """The hull of each output cell is where an impulse at an input cell shows."""
    for n_in, n_out in [(18, 15), (24, 20), (30, 13), (7, 7)]:
        first, last = bilinear_hull(n_in, n_out)
        eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, 1, n_in)
        rows = torch.nn.functional.interpolate(eye, (1, n_out), mode="bilinear")[:, 0, 0]
        reads = rows.T.abs() > 1e-12  # (n_out, n_in): output i reads input j
        for i in range(n_out):
            assert np.flatnonzero(reads[i].numpy()).tolist() == list(range(first[i], last[i] + 1))


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall)


def test_map_views_and_pixel_space(adapter):
    m = check_egg_map(adapter, noise_image(150, 100))
    assert [v.name for v in m.images[0].views] == ["base", "highres"]
    assert m.images[0].primary.name == "highres"
    px = attribute(adapter, noise_image(240, 180), "what colour ?", space="pixels")
    assert px.images[0].view("highres").values.shape == (15, 20) and px.grid.max() > 0


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_attention_columns(adapter, square_and_tall):
    check_attention_columns(adapter, square_and_tall)


def test_extend_matches_generate(adapter):
    # random weights over 22 words: most images make the model emit its own <image> token,
    # which a re-run prompt would read as a placeholder; these two do not
    check_extend_matches_generate(adapter, [noise_image(150, 100, 5), noise_image(40, 70, 3)])
    check_extend_matches_generate(adapter, [noise_image(80, 200, 2)])


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_every_registered_method(adapter):
    check_every_method(adapter, [noise_image(60, 60)], pixel_space=True)  # base + 1 tile


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))


# ---------------------------------------------------------------------------- video
# One layout per frame: its 3 x 3 pooled grid (6 x 6 features pooled bilinearly: each token
# blends 2 x 2 features, 2 patches = 18 tile px), the video's newline after the last frame.


def test_video_perturbed_patch_of_one_frame_changes_only_its_frames_covering_tokens(
    local_adapter,
):
    layouts = check_video_layout_by_perturbation(local_adapter, (80, 60), 3, cell_px=18)
    assert [lay.n_tokens for lay in layouts] == [9, 9, 10]  # the newline ends the video


def test_video_frame_is_the_base_view_pooled(adapter):
    """A frame's pixels are the image processor's base view of that image (squashed to the
    tile), and its tokens are the model's own 2 x 2 bilinear pooling of the base features."""
    image = noise_image(80, 60, 5)
    still = adapter.build_inputs([image], "what ?")
    moving = adapter.build_inputs([], "what ?", videos=[noise_video((80, 60), 1)])
    vp = adapter.pil_video_processor()
    frames = vp([[image]], return_tensors="pt")["pixel_values_videos"]
    torch.testing.assert_close(frames[0, 0], still.batch["pixel_values"][0, 0].float())
    assert moving.batch["pixel_values_videos"].shape == (1, 1, 3, 60, 60)
    g = adapter.tile_size // adapter.patch_size
    with torch.no_grad():
        base = adapter.image_features(still)[0][: g * g]
        pooled = adapter.model.model.apply_pooling(base[None])[0]
        video = adapter.compute_video_features(
            adapter.build_inputs([], "what ?", videos=[noise_video((80, 60), 1, seed=5)])
        )[0]
    torch.testing.assert_close(video[:-1], pooled)
    torch.testing.assert_close(video[-1], adapter.model.model.image_newline)


def test_video_token_count_is_the_processors(adapter):
    check_video_grid_rule(adapter, processor_token_count(adapter), [(96, 72), (60, 150)], [1, 4])


def test_video_features_give_the_models_own_logits(adapter):
    check_video_features_match_pixels(adapter, noise_video((80, 60), 3), [noise_image(40, 40, 9)])


def test_video_entropy_gradient_matches_finite_differences(adapter64):
    check_video_entropy_gradient(adapter64, noise_video((80, 60), 3), [noise_image(40, 40, 9)])


def test_video_greedy_decoding_matches_generate(adapter):
    check_video_greedy_matches_generate(adapter, noise_video((80, 60), 3))


def test_video_every_registered_method(adapter):
    check_video_every_method(adapter, noise_video((80, 60), 2))


def test_video_zoom_loop_answers_equal_generate(adapter):
    check_video_loop_answers(adapter, noise_video((80, 60), 2))
