"""Llama 4 adapter on a tiny random-weight checkpoint.

Tiles of 48 px, patch 8, pixel shuffle 0.5: 3 x 3 tokens of 16 px per tile, at most 16
tiles. 96x96 -> 2x2 tiles + global; 150x100 -> a 144x192 canvas (3x4 tiles), the image
pasted unresized at the top-left; 80x200 -> 5x2 tiles (a 240x96 canvas, the image again
unresized at its top-left); 60x40 -> 1x2 tiles, the image unresized in the left 60 of 96 px;
40x30 -> one tile (the image grows to 48x36) and no global view. Four text layers: three of chunked
attention (chunks of 128 tokens: prompts with a 150x100 image span two) and one of full
attention without rotary positions; mixture-of-experts every second layer.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from arch_checks import (
    QUESTION,
    check_answers_from_the_maps_forward,
    check_attention_columns,
    check_batched_maps_equal_single,
    check_egg_map,
    check_entropy_gradient,
    check_every_method,
    check_layout_by_perturbation,
    check_zoom_and_reground,
)
from conftest import TinyArch, noise_image

from egg_interp.methods import attribute
from egg_interp.models.answering import generate_batch
from egg_interp.models.llama4 import Llama4Adapter
from egg_interp.models.llama4_images import (
    Llama4ImageProcessorPil,
    best_fit,
    max_size_without_distortion,
    supported_resolutions,
)
from egg_interp.models.offline.llama4 import build_tiny_llama4

ARCH = TinyArch(build_tiny_llama4, tower="vision_model")


def test_load_model_picks_the_adapter_and_the_processor(ckpt, adapter):
    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "llama4"
    saved = json.loads((ckpt / "processor_config.json").read_text())
    assert saved["processor_class"] == "Llama4Processor"
    assert saved["image_processor"]["image_processor_type"] == "Llama4ImageProcessor"
    assert isinstance(adapter, Llama4Adapter)
    assert type(adapter.processor).__name__ == "Llama4Processor"  # transformers' own
    assert adapter.input_side == 48


def test_canvas_rules_match_the_documented_examples():
    """The examples in transformers' image_processing_llama4 docstrings. Those of
    ``get_max_res_without_distortion`` say (134, 200) and (450, 338), but its code floors
    (133.3 -> 133, 337.5 -> 337): the code is what runs, so the code's values are checked."""
    assert supported_resolutions(4, 224) == [
        (224, 896),
        (448, 448),
        (224, 224),
        (896, 224),
        (224, 672),
        (672, 224),
        (224, 448),
        (448, 224),
    ]
    candidates = [(224, 672), (672, 224), (224, 448), (448, 224), (224, 224)]
    assert best_fit((200, 300), candidates) == (224, 448)
    assert max_size_without_distortion((200, 300), (450, 200)) == (133, 200)
    assert max_size_without_distortion((800, 600), (450, 1300)) == (450, 337)


def test_pixels_are_the_padded_canvas_and_the_squashed_global_tile():
    ip = Llama4ImageProcessorPil(
        size={"height": 48, "width": 48}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    image = noise_image(60, 40, 2)  # 1x2 tiles; 60x40 pasted unresized
    out = ip([image], return_tensors="pt")
    assert out["aspect_ratios"].tolist() == [[1, 2]] and out["pixel_values"].dtype == torch.bfloat16
    tiles = out["pixel_values"].float()
    assert tiles.shape == (3, 3, 48, 48)
    expected = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(tiles[0, :, :40, :], expected[:, :, :48], atol=1e-2, rtol=0)
    torch.testing.assert_close(tiles[1, :, :40, :12], expected[:, :, 48:], atol=1e-2, rtol=0)
    assert (tiles[1, :, :, 12:] == -1).all() and (tiles[:2, :, 40:] == -1).all()  # black padding


@pytest.mark.parametrize(
    "size,shape,tiles,n_tiles",
    [
        ((96, 96), (6, 6), (2, 2), 5),
        ((150, 100), (7, 10), (3, 4), 13),  # 9x12 tokens; 2 rows and 2 columns of padding
        ((80, 200), (13, 5), (5, 2), 11),  # 15x6 tokens; 2 rows and 1 column of padding
        ((40, 30), (3, 3), (1, 1), 1),
    ],
)
def test_prompt_and_layout(adapter, size, shape, tiles, n_tiles):
    inputs = adapter.build_inputs([noise_image(*size)], "what ?")  # checks the token count
    lay = inputs.layouts[0]
    assert [v.token_index.shape for v in lay.views] == [shape] + ([(3, 3)] if n_tiles > 1 else [])
    assert inputs.batch["pixel_values"].shape[0] == n_tiles and lay.n_tokens == 9 * n_tiles
    view = lay.views[0]
    assert view.cell_boxes[..., 2].max() == size[0] and view.cell_boxes[..., 3].max() == size[1]
    assert ((view.cell_boxes[..., 2] - view.cell_boxes[..., 0]) > 0).all()  # no empty cell
    tokens = adapter.tokenizer.convert_ids_to_tokens(inputs.input_ids[0].tolist())
    rows, cols = tiles
    several = rows * cols > 1
    assert tokens.count("<|tile_x_separator|>") == (rows * (cols - 1) if several else 0)
    assert tokens.count("<|tile_y_separator|>") == (rows if several else 0)
    image_at = tokens.index("<|image|>")  # the global view comes last, after <|image|>
    assert tokens[image_at + 1 : image_at + 10] == ["<|patch|>"] * 9
    assert tokens[image_at + 10] == "<|image_end|>"


@pytest.mark.parametrize("size", [(96, 96), (150, 100), (80, 200)])
def test_perturbed_patch_changes_exactly_the_covering_tokens(local_adapter, size):
    check_layout_by_perturbation(local_adapter, size, cell_px={"tiles": 16, "global": 16})


def test_tokens_over_the_padding_see_only_padding(local_adapter):
    """60x40 on a 48x96 canvas (3x6 tile tokens): the two token columns wholly in the padding
    are in no view, and exactly they see the same black padding whatever the image."""
    feats = []
    for seed in (1, 2):
        inputs = local_adapter.build_inputs([noise_image(60, 40, seed)], QUESTION)
        local_adapter.clear_cache()
        feats.append(local_adapter.image_features(inputs)[0])
    lay = inputs.layouts[0]
    assert lay.views[0].token_index.shape == (3, 4)
    in_views = set().union(*(v.token_index.ravel().tolist() for v in lay.views))
    same = set(torch.nonzero((feats[0] - feats[1]).abs().amax(-1) < 1e-6).ravel().tolist())
    assert same == set(range(lay.n_tokens)) - in_views
    assert sorted(same) == [10, 11, 13, 14, 16, 17]  # columns 1-2 of the second tile (9-17)


@contextmanager
def _captured_language_model_output(model):
    """What the language model returns inside a call of the whole model."""
    seen = {}
    handle = model.language_model.register_forward_hook(
        lambda m, a, out: seen.setdefault("out", out)
    )
    try:
        yield seen
    finally:
        handle.remove()


def test_forward_matches_transformers_own_forward(adapter, wide_and_tall):
    """Transformers' forward runs the language model and then raises (5.24); its logits,
    captured on the way, equal the adapter's from pixels and from precomputed features."""
    inputs = adapter.build_inputs(wide_and_tall, QUESTION)
    with _captured_language_model_output(adapter.model) as seen, torch.no_grad():
        try:
            adapter.model(**inputs.batch)
        except AttributeError as exc:
            assert "image_outputs" in str(exc)
    reference = seen["out"].logits[0, -1]
    with torch.no_grad():
        from_pixels = adapter.forward(inputs).logits[0, -1]
    torch.testing.assert_close(from_pixels, reference)
    torch.testing.assert_close(adapter.next_token_logits(inputs), reference.float())


def _reference_generate(adapter, inputs, n):
    """``generate`` of the language model itself on the prompt's embeddings (features in)."""
    embeds = adapter._embeddings(inputs.input_ids, torch.cat(adapter.image_features(inputs)))
    with torch.no_grad():
        return adapter.model.language_model.generate(
            inputs_embeds=embeds,
            attention_mask=inputs.batch["attention_mask"],
            max_new_tokens=n,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=adapter.tokenizer.pad_token_id,
        )


@pytest.mark.parametrize("sizes", [[(150, 100), (40, 70)], [(96, 96)]])
def test_greedy_decoding_matches_the_language_models_generate(adapter, sizes):
    images = [noise_image(*s, seed=i) for i, s in enumerate(sizes)]
    inputs = adapter.build_inputs(images, QUESTION)
    ref = _reference_generate(adapter, inputs, 5)
    ids = ref.sequences[0].tolist()
    assert adapter.generate_ids(inputs.batch, 5)[0, inputs.input_ids.shape[1] :].tolist() == ids
    assert adapter.greedy_tokens(inputs, len(ids)) == ids
    for k in range(len(ids)):
        mine = adapter.next_token_logits(adapter.extend(inputs, ids[:k]))
        torch.testing.assert_close(mine, ref.logits[k][0].float(), rtol=1e-4, atol=1e-4)


def test_batched_answers_equal_one_by_one(adapter):
    """Left padding: positions and chunks count from each row's first real token."""
    items = [
        ([noise_image(96, 96, 1)], "what colour is the square ?"),
        ([noise_image(40, 30, 2)], "what ?"),
    ]
    batched = generate_batch(adapter, adapter.build_batch(items), 4)
    assert batched == [adapter.generate(adapter.build_inputs(ims, q), 4) for ims, q in items]


def test_entropy_gradient_matches_finite_differences(adapter64, square_and_tall):
    # the random projector's outputs are about 1e-3 in size, so a step of 1e-3 is not small;
    # and the top-1 expert routing is piecewise: a step can flip a token's expert (measured:
    # at 1e-3 the curvature, at 1e-4 a flip break the agreement; at 1e-5 all four agree)
    check_entropy_gradient(adapter64, square_and_tall, eps=1e-5)


def test_map_views_and_pixel_space(adapter):
    m = check_egg_map(adapter, noise_image(150, 100))
    assert [v.name for v in m.images[0].views] == ["tiles", "global"]
    assert m.images[0].primary.name == "tiles"
    px = attribute(adapter, noise_image(150, 100), "what colour ?", space="pixels")
    assert px.images[0].view("tiles").values.shape == (7, 10) and px.grid.max() > 0


def test_zoom_and_reground_with_crops_in_one_prompt(adapter):
    check_zoom_and_reground(adapter, noise_image(150, 100, seed=4))


def test_attention_columns(adapter, square_and_tall):
    check_attention_columns(adapter, square_and_tall)


def test_batched_maps_equal_single(adapter):
    check_batched_maps_equal_single(adapter)


def test_every_registered_method(adapter, square_and_tall):
    check_every_method(adapter, square_and_tall, pixel_space=True)


def test_answers_from_the_maps_forward_equal_generate(adapter):
    check_answers_from_the_maps_forward(adapter, noise_image(120, 90, 7))
