"""Molmo 2 adapter on a tiny random-weight checkpoint.

Crops of 112 px, patch 16 (7 x 7 patches, odd like Molmo 2's 27), overlap margins of one
patch (stride 80 px), 2x2 pooling: the low-resolution view has 4 x 4 tokens (the last row
and column pool one patch). 96x96 -> one crop (4 x 4 high-resolution tokens), 150x100 ->
1 x 2 crops (4 x 6), 80x200 -> 3 x 1 crops (9 x 4), 200x200 -> 2 x 2 crops (6 x 6).
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
from PIL import Image
from video_checks import (
    check_video_entropy_gradient,
    check_video_every_method,
    check_video_features_match_pixels,
    check_video_greedy_matches_generate,
    check_video_grid_rule,
    check_video_layout_by_perturbation,
    noise_video,
)

from egg_interp.errors import UnsupportedModelError
from egg_interp.models import molmo2
from egg_interp.models.molmo2 import Molmo2Adapter, Molmo2ImageProcessor
from egg_interp.models.offline.molmo2 import build_tiny_molmo2

ARCH = TinyArch(build_tiny_molmo2, tower="vision_tower")

SIZES = [(96, 96), (150, 100), (80, 200), (200, 200)]
HIGH_RES = {(96, 96): (4, 4), (150, 100): (4, 6), (80, 200): (9, 4), (200, 200): (6, 6)}


def test_load_model_builds_the_processor_without_torchvision(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "molmo2"
    assert isinstance(adapter, Molmo2Adapter)
    assert type(adapter.processor).__name__ == "Molmo2Processor"
    assert isinstance(adapter.processor.image_processor, Molmo2ImageProcessor)
    assert adapter.input_side == 112  # the crop, as ViCrop sizes its crops


def test_docstring_examples():
    assert doctest.testmod(molmo2).failed == 0


@pytest.mark.parametrize("size", SIZES)
def test_layout_views_tile_the_image_from_the_pooling_table(adapter, size):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")  # checks the token count
    lay = inputs.layouts[0]
    low, high = lay.views
    assert (low.name, high.name) == ("low_res", "high_res")
    assert low.token_index.shape == (4, 4) and high.token_index.shape == HIGH_RES[size]
    ip = adapter.processor.image_processor
    assert lay.n_tokens == ip.get_number_of_image_patches(size[1], size[0])  # transformers' count
    width, height = size
    for view in (low, high):
        b = view.cell_boxes
        # a partition of the image: rows and columns abut, areas add up to the image
        np.testing.assert_allclose(b[:, 1:, 0], b[:, :-1, 2])
        np.testing.assert_allclose(b[1:, :, 1], b[:-1, :, 3])
        assert b[0, 0, :2] == pytest.approx((0, 0)) and b[-1, -1, 2:] == pytest.approx(size)
        area = ((b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])).sum()
        assert area == pytest.approx(width * height)
    # 7 patches per side: the last low-resolution row and column pool one patch, not two
    lw = low.cell_boxes[..., 2] - low.cell_boxes[..., 0]
    assert lw[0, -1] == pytest.approx(lw[0, 0] / 2)


def test_high_res_tokens_tile_the_canvas_although_the_crops_overlap(adapter):
    image = noise_image(200, 200)
    inputs = adapter.build_inputs([image], "what ?")
    crops = int(inputs.batch["image_num_crops"][0]) - 1
    assert crops == 4  # 2 x 2 crops of 112 px at a stride of 80 px: a 192 px canvas
    assert crops * 112**2 > 192**2
    high = inputs.layouts[0].views[1]
    assert high.token_index.shape == (6, 6)  # 192 / 16 / 2 tokens per side: no overlap


@pytest.mark.parametrize("size", SIZES[:3])  # one crop, 1 x 2 and 3 x 1 overlapping crops
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"low_res": 32, "high_res": 32})


def test_low_res_view_is_a_bilinear_resize_without_antialiasing(adapter):
    """Crop 0 is the whole image resized to 112 x 112 as torchvision's bilinear resize of a
    float tensor does (align_corners=False, no antialias, rounded to bytes): on an upscale
    that equals PIL's bilinear filter up to rounding; on a 3x downscale it samples only two
    source pixels per output pixel, so some source rows are never read."""
    ip = adapter.processor.image_processor

    def crop0(image):
        pv = ip(images=[image], return_tensors="pt")["pixel_values"][0]  # crop 0: (49, 16 * 16 * 3)
        patches = pv.reshape(7, 7, 16, 16, 3).permute(0, 2, 1, 3, 4).reshape(112, 112, 3)
        return (patches * 0.5 + 0.5) * 255  # undo the normalisation

    small = noise_image(80, 60, seed=5)
    pil = np.asarray(small.resize((112, 112), Image.BILINEAR), dtype=np.float64)
    assert np.abs(crop0(small).numpy() - pil).max() <= 1.0 + 1e-3
    big = noise_image(336, 336, seed=6)
    before = crop0(big)
    arr = np.asarray(big).copy()
    arr[:, 2::3] = 0  # every third column: sampled by no output pixel at scale 3
    assert torch.allclose(crop0(Image.fromarray(arr)), before, atol=1e-3)


def test_image_features_are_added_to_the_placeholder_embedding(adapter):
    inputs = adapter.build_inputs([noise_image(96, 96)], "what ?")
    feats = adapter.image_features(inputs)
    with torch.no_grad():
        out = adapter.forward_features(
            inputs, [torch.zeros_like(f) for f in feats], output_hidden_states=True
        )
        embed = adapter.model.get_input_embeddings()(
            torch.tensor([adapter.image_token_id])
        ).squeeze(0)
    positions = adapter.visual_positions(inputs)[0]
    torch.testing.assert_close(out.hidden_states[0][0, positions], embed.expand(len(positions), -1))


def test_all_image_tokens_share_one_bidirectional_block(adapter):
    """Appending a second image changes the first image's hidden states (its tokens attend
    to the later image's), while the text before the images is unchanged: a later loop
    step's map of the original sees its crops through the original's own tokens."""
    first = noise_image(96, 96, 1)
    alone = adapter.build_inputs([first], "what ?")
    both = adapter.build_inputs([first, noise_image(60, 40, 2)], "what ?")

    def last_hidden(inputs):
        with torch.no_grad():
            out = adapter.forward_features(
                inputs, adapter.image_features(inputs), output_hidden_states=True
            )
        return out.hidden_states[-1][0]

    pos = adapter.visual_positions(alone)[0]
    assert torch.equal(pos, adapter.visual_positions(both)[0])
    h_alone, h_both = last_hidden(alone), last_hidden(both)
    before = slice(0, int(pos[0]) - 1)  # BOS, chat markers: before the first image block
    torch.testing.assert_close(h_both[before], h_alone[before])
    assert (h_both[pos] - h_alone[pos]).abs().amax() > 1e-3


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall)


def test_map_views(adapter):
    m = check_egg_map(adapter, noise_image(150, 100))
    im = m.images[0]
    assert [v.name for v in im.views] == ["low_res", "high_res"] and im.primary.name == "high_res"
    assert np.isfinite(im.heatmap()).all()


def test_extend_matches_generate(adapter, wide_and_tall):
    check_extend_matches_generate(adapter, wide_and_tall)


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_attention_columns(adapter, square_and_tall):
    check_attention_columns(adapter, square_and_tall)


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_every_registered_method(adapter, square_and_tall):
    """Pixel-space variants are refused: ``pixel_values`` are flattened patches of
    overlapping crops."""
    check_every_method(adapter, square_and_tall, pixel_space=False)


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))


# ---------------------------------------------------------------------------- video
# One layout per frame: its low-resolution view (squashed to 112 x 112, 7 x 7 patches of 16)
# pooled 3 x 3 by the video table: 3 x 3 tokens of 48 processed px, the last row and column
# pooling one patch (padded windows).


def test_video_perturbed_patch_of_one_frame_changes_only_its_frames_covering_tokens(
    local_adapter,
):
    check_video_layout_by_perturbation(local_adapter, (80, 60), 3, cell_px=48)


def test_video_frame_is_the_low_resolution_view(adapter):
    """A frame's patches are the image processor's low-resolution crop of that image."""
    image = noise_image(80, 60, 5)
    still = adapter.build_inputs([image], "what ?")
    moving = adapter.build_inputs([], "what ?", videos=[noise_video((80, 60), 1, seed=5)])
    torch.testing.assert_close(
        moving.batch["pixel_values_videos"][0], still.batch["pixel_values"][0].float()
    )


def test_video_token_count_is_the_video_pooling_rule(adapter):
    """``arange_for_pooling`` (transformers' video module) over one frame's patch grid."""
    vp = adapter.pil_video_processor()
    side = vp.size.height // vp.patch_size
    grid = torch.arange(side * side).reshape(side, side)
    _, rows, cols = molmo2._tf_molmo2_video.arange_for_pooling(grid, *vp.pooling_size)
    check_video_grid_rule(adapter, lambda n, h, w: n * rows * cols, [(96, 72), (60, 150)], [1, 3])


def test_video_with_images_is_refused_in_one_line(adapter):
    with pytest.raises(UnsupportedModelError, match="a video or images in one prompt") as info:
        adapter.build_inputs([noise_image(40, 40)], "what ?", videos=[noise_video((80, 60), 2)])
    assert "\n" not in str(info.value)


def test_video_features_give_the_models_own_logits(adapter):
    check_video_features_match_pixels(adapter, noise_video((80, 60), 3))


def test_video_entropy_gradient_matches_finite_differences(adapter64):
    check_video_entropy_gradient(adapter64, noise_video((80, 60), 3))


def test_video_greedy_decoding_matches_generate(adapter):
    check_video_greedy_matches_generate(adapter, noise_video((80, 60), 3))


def test_video_every_registered_method(adapter):
    check_video_every_method(adapter, noise_video((80, 60), 2), images=())


def test_video_grounding_maps_and_answers_without_zooming(adapter):
    """No zoom loop on a video (the crops cannot join it in one prompt): the map and the
    answer to the video alone, equal to ``generate``, and a note saying why."""
    from egg_interp.loop.video import ground_video

    video = noise_video((80, 60), 3)
    result = ground_video(adapter, video, "what ?", max_new_tokens=3)
    assert result.loop is None and "cannot hold a video and zoomed frames" in result.zoom_note
    assert [im.frames for im in result.map.images] == [(0,), (1,), (2,)]
    expected = adapter.generate(adapter.build_inputs([], "what ?", videos=[video]), 3)
    assert result.answer == result.base_answer == expected
