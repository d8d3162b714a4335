"""Shared fixtures: tiny random-weight checkpoints built offline (no hub, no downloads)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


# --- the per-architecture tests (test_arch_*.py) -------------------------------------------
#
# Each test_arch_*.py names its architecture once, ``ARCH = TinyArch(build_tiny_x, "tower")``;
# the module-scoped fixtures below read it, so each tiny checkpoint is built once per module
# and each of its variants (as served, token-local, float64) loaded once per module.


@dataclass(frozen=True)
class TinyArch:
    """How to build one architecture's tiny checkpoint and make its vision tower token-local.

    Attributes
    ----------
    build : callable
        ``build(directory, words, seed=0) -> Path``, from :mod:`egg_interp.models.offline`.
    tower : str
        Attribute of ``model.model`` holding the vision tower (``vision_model``, ``visual``...).
    sharpen : float
        Factor on ``lm_head`` for the float64 gradient checks: a random model's next-token
        distribution can be so flat that its entropy gradients sit at the finite-difference
        noise floor; sharpening it moves them above.
    """

    build: Callable[..., Path]
    tower: str
    sharpen: float = 1.0


def _arch(request: pytest.FixtureRequest) -> TinyArch:
    arch = getattr(request.module, "ARCH", None)
    assert isinstance(arch, TinyArch), f"{request.module.__name__} sets no ARCH = TinyArch(...)"
    return arch


@pytest.fixture(scope="module")
def ckpt(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's tiny random-weight checkpoint, built offline once."""
    arch = _arch(request)
    return arch.build(tmp_path_factory.mktemp(arch.build.__name__), WORDS, seed=0)


@pytest.fixture(scope="module")
def adapter(ckpt):
    """The checkpoint loaded as served (float32, CPU), shared by the module's tests."""
    return load_model(ckpt, device="cpu")


@pytest.fixture(scope="module")
def local_adapter(request: pytest.FixtureRequest, ckpt):
    """A separate load whose vision tower is token-local (for the layout-by-perturbation checks)."""
    from arch_checks import make_vision_token_local

    adapter = load_model(ckpt, device="cpu")
    make_vision_token_local(adapter, _arch(request).tower)
    return adapter


@pytest.fixture(scope="module")
def adapter64(request: pytest.FixtureRequest, ckpt):
    """A float64 load (``lm_head`` times ``ARCH.sharpen``) for the finite-difference checks."""
    adapter = load_model(ckpt, device="cpu", dtype=torch.float64)
    sharpen = _arch(request).sharpen
    if sharpen != 1.0:
        with torch.no_grad():
            adapter.model.lm_head.weight.mul_(sharpen)
    return adapter


@pytest.fixture()
def square_and_tall():
    """Two images for one prompt: a 96x96 square and a small 40x70 portrait."""
    return [noise_image(96, 96), noise_image(40, 70, 3)]


@pytest.fixture()
def wide_and_tall():
    """Two images for one prompt: a 150x100 landscape and a small 40x70 portrait."""
    return [noise_image(150, 100), noise_image(40, 70, 3)]
