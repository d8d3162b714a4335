"""Idefics2 is refused in one line, and the tiny checkpoint shows why: its Perceiver
resampler makes every visual token depend on the whole image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import WORDS, noise_image
from PIL import Image

from egg_interp.errors import UnsupportedModelError
from egg_interp.models import load_model
from egg_interp.models.offline.idefics2 import build_tiny_idefics2


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return build_tiny_idefics2(tmp_path_factory.mktemp("tiny_idefics2"), WORDS, seed=0)


def test_load_model_refuses_in_one_line_before_loading_weights(ckpt, monkeypatch):
    import transformers

    assert json.loads((ckpt / "config.json").read_text())["model_type"] == "idefics2"

    def no_loading(*args, **kwargs):
        raise AssertionError("the weights were loaded before the refusal")

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", no_loading)
    with pytest.raises(UnsupportedModelError, match="Perceiver resampler") as info:
        load_model(ckpt, device="cpu")
    assert "\n" not in str(info.value)


def test_every_visual_token_depends_on_the_whole_image(ckpt):
    """With the vision tower token-local (its attention outputs zeroed), a 2x2 pixel patch
    moves only the patch embeddings around it, but every one of the resampler's latents."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(ckpt).eval()
    processor = AutoProcessor.from_pretrained(ckpt)
    with torch.no_grad():
        for layer in model.model.vision_model.encoder.layers:
            layer.self_attn.out_proj.weight.zero_()
            layer.self_attn.out_proj.bias.zero_()

    def encode(image):
        batch = processor.image_processor(images=[image], return_tensors="pt")
        with torch.no_grad():
            out = model.model.get_image_features(
                batch["pixel_values"], batch["pixel_attention_mask"], return_dict=True
            )
            patches = model.model.vision_model(batch["pixel_values"][0]).last_hidden_state
        latents = torch.cat([f.reshape(-1, f.shape[-1]) for f in out.pooler_output])
        return latents, patches[0]

    image = noise_image(32, 32, seed=1)
    arr = np.asarray(image).copy()
    arr[4:6, 4:6] = 255 - arr[4:6, 4:6]
    latents, patches = encode(image)
    latents2, patches2 = encode(Image.fromarray(arr))
    moved_patches = (patches2 - patches).abs().amax(-1) > 1e-6
    moved_latents = (latents2 - latents).abs().amax(-1) > 1e-6
    assert moved_patches.sum() == 1 and int(moved_patches.nonzero()) == 1 * 8 + 1
    assert latents.shape[0] == 16 and bool(moved_latents.all())
