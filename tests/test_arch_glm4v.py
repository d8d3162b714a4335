"""GLM-4V adapter on a tiny random-weight checkpoint.

Patch 14 and a 2x2 convolution downsample (a token covers 28 processed pixels), pixel budget 4
to 64 tokens (GLM counts a still image's two temporal copies against it, so the builder
doubles the budget): 96x96 -> 84x84 (3x3 tokens), 150x100 -> 140x112 (5x4), 80x200 ->
84x196 (3x7). Placeholders ``<|begin_of_image|>`` + ``<|image|>`` x n + ``<|end_of_image|>``.
"""

from __future__ import annotations

import json

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
from transformers.models.glm4v.image_processing_pil_glm4v import smart_resize
from transformers.models.glm4v.video_processing_glm4v import Glm4vVideoProcessor
from video_checks import (
    check_video_entropy_gradient,
    check_video_every_method,
    check_video_features_match_pixels,
    check_video_greedy_matches_generate,
    check_video_grid_rule,
    check_video_layout_by_perturbation,
    check_video_pixels_match_image,
    noise_video,
    video_processor_token_count,
)

from egg_interp.geometry import crop_image
from egg_interp.loop.video import ground_video
from egg_interp.models.glm4v import Glm4vAdapter
from egg_interp.models.offline.glm4v import build_tiny_glm4v
from egg_interp.settings import LoopSettings

ARCH = TinyArch(build_tiny_glm4v, tower="visual")

# transformers' Glm4vProcessor.create_mm_token_type_ids calls np.array on each row of ids,
# which numpy 2 answers with a DeprecationWarning per prompt (harmless: the array is right)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_load_model_picks_the_adapter_from_config(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "glm4v"
    assert isinstance(adapter, Glm4vAdapter)


@pytest.mark.parametrize(
    "size,grid",
    [((96, 96), (3, 3)), ((150, 100), (4, 5)), ((80, 200), (7, 3)), ((20, 300), (15, 1))],
)
def test_layout_follows_glm_smart_resize(adapter, size, grid):
    """The grid is GLM's ``smart_resize`` (a side under 28 px is scaled up first: 20x300 ->
    28x420 -> 15 x 1 tokens, where Qwen2-VL gives 11 x 1), and the cells tile the image."""
    ip = adapter.processor.image_processor
    resized = smart_resize(
        2, size[1], size[0], 2, 28, ip.size["shortest_edge"], ip.size["longest_edge"]
    )
    assert (resized[0] // 28, resized[1] // 28) == grid
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")
    (view,) = inputs.layouts[0].views
    assert view.token_index.shape == grid
    assert view.cell_boxes[0, 0, :2].tolist() == [0, 0]
    assert view.cell_boxes[-1, -1, 2:] == pytest.approx(size)


def test_placeholders_and_token_types(adapter):
    """Each image is ``<|begin_of_image|>``, its tokens, ``<|end_of_image|>``; only the
    ``<|image|>`` tokens are typed as image (1), so two images never merge into one grid."""
    inputs = adapter.build_inputs([noise_image(96, 96), noise_image(40, 70, 3)], "what ?")
    tokens = adapter.tokenizer.convert_ids_to_tokens(inputs.input_ids[0])
    text = " ".join(t for t in tokens if t != "<|image|>")
    assert "<|begin_of_image|> <|end_of_image|> <|begin_of_image|> <|end_of_image|>" in text
    types = inputs.batch["mm_token_type_ids"][0]
    image = inputs.input_ids[0] == adapter.image_token_id
    assert bool((types[image] == 1).all()) and bool((types[~image] == 0).all())
    assert int(image.sum()) == sum(lay.n_tokens for lay in inputs.layouts) == 9 + 2 * 3


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"base": 28})


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    check_entropy_gradient(adapter64, square_and_tall)


def test_positions_are_3d_and_not_stale(adapter):
    inputs = adapter.build_inputs([noise_image(150, 100), noise_image(40, 70, 3)], "what ?")
    feats = adapter.image_features(inputs)
    with torch.no_grad():
        ref = adapter.forward_features(inputs, feats).logits[0, -1]
        adapter.generate(adapter.build_inputs([noise_image(80, 200)], "what ?"), 2)
        again = adapter.forward_features(inputs, feats).logits[0, -1]
        no_types = {
            k: v for k, v in inputs.batch.items() if k not in ("mm_token_type_ids", "pixel_values")
        }
        adapter.reset_positions()
        with pytest.raises(ValueError, match="mm_token_type_ids"):
            adapter.model(**no_types, mm_encoder_outputs={"image": adapter.encoder_outputs(feats)})
    torch.testing.assert_close(again, ref)


def test_extend_matches_generate(adapter, wide_and_tall):
    check_extend_matches_generate(adapter, wide_and_tall)


def test_egg_map(adapter):
    check_egg_map(adapter, noise_image(150, 100))


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_attention_columns(adapter, square_and_tall):
    check_attention_columns(adapter, square_and_tall)


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_every_registered_method(adapter, square_and_tall):
    check_every_method(adapter, square_and_tall, pixel_space=False)


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))


# ---------------------------------------------------------------------------- video
# A video is one layout per temporal patch of 2 frames; checks in tests/video_checks.py.


def test_video_perturbed_patch_of_one_frame_changes_only_its_slices_covering_tokens(
    local_adapter,
):
    check_video_layout_by_perturbation(local_adapter, (96, 72), 5, cell_px=28)


def test_video_of_two_equal_frames_is_the_image(adapter):
    check_video_pixels_match_image(adapter, (96, 64))


def test_video_grid_follows_the_video_processors_rule(adapter):
    check_video_grid_rule(
        adapter,
        video_processor_token_count(adapter, Glm4vVideoProcessor),
        [(96, 72), (60, 150)],
        [2, 5],
    )


def test_video_features_give_the_models_own_logits(adapter):
    check_video_features_match_pixels(adapter, noise_video((80, 60), 4))


def test_video_entropy_gradient_matches_finite_differences(adapter64):
    check_video_entropy_gradient(adapter64, noise_video((80, 60), 4), [noise_image(40, 40, 9)])


def test_video_greedy_decoding_matches_generate(adapter):
    check_video_greedy_matches_generate(adapter, noise_video((80, 60), 4))


def test_video_every_registered_method(adapter):
    check_video_every_method(adapter, noise_video((80, 60), 3))


def test_video_and_images_in_one_prompt_from_features(adapter):
    """transformers 5.24's GLM-4V finds video tokens by the image token id, so its own vision
    path cannot take a video and an image in one prompt; from precomputed features (all passed
    as images, in sequence order) the logits equal a forward built by hand: every ``<|image|>``
    row replaced in order, the model's own 3-D positions."""
    inputs = adapter.build_inputs(
        [noise_image(40, 40, 9)], "what ?", videos=[noise_video((80, 60), 4)]
    )
    feats = adapter.image_features(inputs)
    with pytest.raises(ValueError, match="features and image tokens do not match"):
        adapter.forward(inputs)
    model, ids = adapter.model.model, inputs.input_ids
    with torch.no_grad():
        ours = adapter.forward_features(inputs, feats).logits[0, -1]
        embeds = model.get_input_embeddings()(ids)
        embeds[0, ids[0] == adapter.image_token_id] = torch.cat(feats)
        positions, _ = model.get_rope_index(
            ids,
            inputs.batch["mm_token_type_ids"],
            inputs.batch["image_grid_thw"],
            inputs.batch["video_grid_thw"],
        )
        hidden = model.language_model(inputs_embeds=embeds, position_ids=positions)
        theirs = adapter.model.lm_head(hidden.last_hidden_state[0, -1])
    torch.testing.assert_close(ours, theirs)


def test_video_loop_answers_with_the_video_and_crops_from_features(adapter):
    """The zoom loop on a video: the grounded prompt holds the video and the crops, which
    GLM-4V's own vision path refuses; its answer (continued from a forward on features) equals
    greedy decoding on precomputed features, one full forward per token."""
    video = noise_video((96, 72), 4)
    settings = LoopSettings(stop="fixed:2")
    result = ground_video(adapter, video, "what ?", settings=settings, max_new_tokens=3)
    assert result.loop.crops and len(result.loop.maps[1].images) > 2
    crops = [crop_image(video.frames[f], b) for f, b in zip(result.crop_frames, result.crops)]
    inputs = adapter.build_inputs(crops, "what ?", origin_boxes=result.crops, videos=[video])
    ids = adapter.greedy_tokens(inputs, 3)
    eos = adapter.model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos or ())
    end = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
    assert result.answer == adapter.tokenizer.decode(ids[:end], skip_special_tokens=True).strip()
    assert adapter.generate(inputs, 3) == result.answer  # generate answers it from features too
