"""Shared fixtures: tiny random-weight checkpoints built offline (no hub, no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from egg_interp.models import load_model
from egg_interp.models.offline import build_tiny_llava

WORDS = "what colour is the square circle red blue green ? yes no pattern on a there".split()


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory):
    """A random-weight LLaVA checkpoint: 64 px input, patch 8 (8x8 token grid)."""
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"), WORDS, seed=0)


@pytest.fixture()
def tiny_llava(tiny_llava_dir):
    """A freshly loaded tiny LLaVA adapter (float32, CPU)."""
    return load_model(tiny_llava_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_llava_pad_dir(tmp_path_factory: pytest.TempPathFactory):
    """Same, but the processor pads to a square instead of centre-cropping."""
    from transformers import AutoProcessor

    d = build_tiny_llava(tmp_path_factory.mktemp("tiny_llava_pad"), WORDS, seed=0)
    proc = AutoProcessor.from_pretrained(d)
    proc.image_processor.do_pad = True
    proc.save_pretrained(d)
    return d


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A random RGB image (structure everywhere, so every token sees something)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def make_token_local(adapter) -> None:
    """Zero the vision tower's attention output projections: each token then sees only its patch."""
    for name, module in adapter.model.model.vision_tower.named_modules():
        if not name.endswith("self_attn"):
            continue
        layer = module
        torch.nn.init.zeros_(layer.out_proj.weight)
        torch.nn.init.zeros_(layer.out_proj.bias)
    adapter.clear_cache()
