"""The captum baselines against hand computations, and occlusion on a toy model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import noise_image

from egg_interp.methods import get_method, make_target
from egg_interp.methods.base import visual_token_gradients
from egg_interp.models import load_model
from egg_interp.models.base import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
    VLMAdapter,
    regular_cell_boxes,
)

QUESTION = "what colour is the square ?"


@pytest.fixture()
def tiny_llava64(tiny_llava_dir):
    return load_model(tiny_llava_dir, device="cpu", dtype=torch.float64)


def test_batched_perturbed_logits_equal_one_forward_per_row(tiny_llava):
    adapter = tiny_llava
    assert type(adapter).batch_by_repeating_prompt  # LLaVA takes the one-forward path
    inputs = adapter.build_inputs([noise_image(64, 64), noise_image(40, 70, 1)], QUESTION)
    feats = adapter.image_features(inputs)
    batch = [torch.stack([f, f * 0.5, f + 0.1]) for f in feats]
    pv = inputs.batch["pixel_values"]
    pixels = torch.stack([pv, pv.flip(-1)])
    batched = adapter.perturbed_logits(inputs, batch)  # the prompt repeated: one forward
    batched_pixels = adapter.perturbed_pixel_logits(inputs, pixels)
    adapter.batch_by_repeating_prompt = False  # the generic loop, one forward per row
    try:
        looped = adapter.perturbed_logits(inputs, batch)
        looped_pixels = adapter.perturbed_pixel_logits(inputs, pixels)
    finally:
        del adapter.batch_by_repeating_prompt
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched_pixels, looped_pixels, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("target", ["entropy", "logprob"])
def test_saliency_is_the_gradient_norm(tiny_llava, target):
    images = [noise_image(64, 64), noise_image(50, 30, 4)]
    amap = get_method("saliency", target=target).attribute(tiny_llava, images, QUESTION)
    inputs = tiny_llava.build_inputs(images, QUESTION)
    _, grads, objective, _ = visual_token_gradients(tiny_llava, inputs, make_target(target))
    for im, g in zip(amap.images, grads):
        np.testing.assert_allclose(im.primary.values.ravel(), g.norm(dim=-1), rtol=1e-5)
    assert amap.meta["objective"] == pytest.approx(float(objective), rel=1e-5)
    # and therefore EGG's map, computed through captum
    egg = get_method("egg").attribute(tiny_llava, images, QUESTION)
    if target == "entropy":
        np.testing.assert_allclose(amap.grid, egg.grid, rtol=1e-5)


def test_input_x_gradient_and_gradcam_match_hand_computations(tiny_llava):
    image = noise_image(64, 64)
    inputs = tiny_llava.build_inputs([image], QUESTION)
    feats, grads, _, _ = visual_token_gradients(tiny_llava, inputs, make_target("entropy"))
    f, g = feats[0].float(), grads[0]
    ixg = get_method("input_x_gradient", target="entropy").attribute(tiny_llava, [image], QUESTION)
    np.testing.assert_allclose(ixg.grid.ravel(), (f * g).norm(dim=-1), rtol=1e-5)
    # Grad-CAM: ReLU(sum_c mean_cells(g_c) * A_c) on the 8x8 grid (row-major tokens)
    cam = torch.relu((f * g.mean(0)).sum(-1))
    gradcam = get_method("gradcam", target="entropy").attribute(tiny_llava, [image], QUESTION)
    np.testing.assert_allclose(gradcam.grid.ravel(), cam, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("baseline", ["mean", "zeros"])
def test_integrated_gradients_completeness(tiny_llava64, baseline):
    """Signed token sums add up to target(x) - target(baseline); captum's delta is small."""
    adapter = tiny_llava64
    image = noise_image(64, 64)
    method = get_method(
        "integrated_gradients",
        n_steps=48,
        internal_batch_size=16,
        reduce="sum",
        baseline=baseline,
        target="entropy",
    )
    amap = method.attribute(adapter, [image], QUESTION)
    inputs = adapter.build_inputs([image], QUESTION)
    (feat,) = adapter.image_features(inputs)
    base = torch.zeros_like(feat) if baseline == "zeros" else feat.mean(0).expand_as(feat)
    target = make_target("entropy")
    with torch.no_grad():
        f_x = float(target(adapter.forward_features(inputs, [feat]).logits[0, -1]))
        f_b = float(target(adapter.forward_features(inputs, [base]).logits[0, -1]))
    assert abs(f_x - f_b) > 1e-4  # a non-trivial difference to explain
    assert amap.grid.sum(dtype=np.float64) == pytest.approx(f_x - f_b, rel=1e-3, abs=1e-6)
    assert amap.meta["convergence_delta"] < 1e-3 * abs(f_x - f_b) + 1e-6


def test_smoothgrad_without_noise_is_saliency(tiny_llava):
    image = noise_image(64, 64)
    smooth = get_method("smoothgrad", nt_samples=3, noise_level=0.0).attribute(
        tiny_llava, [image], QUESTION
    )
    plain = get_method("saliency").attribute(tiny_llava, [image], QUESTION)
    np.testing.assert_allclose(smooth.grid, plain.grid, rtol=1e-5)
    noisy = get_method("smoothgrad", nt_samples=3, noise_level=0.5).attribute(
        tiny_llava, [image], QUESTION
    )
    assert not np.allclose(noisy.grid, plain.grid)
    again = get_method("smoothgrad", nt_samples=3, noise_level=0.5).attribute(
        tiny_llava, [image], QUESTION
    )
    np.testing.assert_array_equal(noisy.grid, again.grid)  # seeded


def test_gradient_shap_is_seeded_and_leaves_the_global_generators_alone(tiny_llava):
    """captum draws GradientShap's points with numpy: the seed must cover numpy too, whatever
    the global state before the call, and restore it after."""
    image = noise_image(64, 64)
    method = get_method("gradient_shap", n_samples=3, samples_per_batch=3)
    np.random.seed(1)
    first = method.attribute(tiny_llava, [image], QUESTION)
    after_first = np.random.random()
    np.random.seed(2)
    second = method.attribute(tiny_llava, [image], QUESTION)
    np.testing.assert_array_equal(first.grid, second.grid)
    np.random.seed(1)
    assert np.random.random() == after_first  # the call restored numpy's state
    unseeded = get_method("gradient_shap", n_samples=3, samples_per_batch=3, seed=None)
    np.random.seed(3)
    a = unseeded.attribute(tiny_llava, [image], QUESTION)
    np.random.seed(4)
    b = unseeded.attribute(tiny_llava, [image], QUESTION)
    assert not np.array_equal(a.grid, b.grid)


# ----------------------------------------------------------------------------- occlusion toy
class ToyAdapter(VLMAdapter):
    """A 4x4 token grid whose answer logit is decided by token 5 (cell (1, 1)) alone."""

    DECIDING = 5

    def __init__(self) -> None:
        model = torch.nn.Linear(1, 1).requires_grad_(False)
        tokenizer = SimpleNamespace(decode=lambda ids: f"tok{ids[0]}")
        super().__init__(model, SimpleNamespace(tokenizer=tokenizer), "toy", feature_cache_size=0)
        self.feats = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))

    def build_inputs(self, images, question, origin_boxes=None):
        index = np.arange(16).reshape(4, 4)
        layout = ImageLayout(
            (32, 32), 16, [ViewLayout("base", index, regular_cell_boxes(4, 4, 0, 0, 8, 8))]
        )
        ids = torch.zeros(1, 3, dtype=torch.long)
        return PromptInputs({"input_ids": ids}, list(images), [layout], question)

    def compute_image_features(self, inputs):
        return [self.feats]

    def perturbed_logits(self, inputs, features):
        z = 2.0 * features[0][:, self.DECIDING].sum(-1)
        return torch.stack([z, torch.zeros_like(z)], dim=-1)

    def forward_features(self, inputs, features, last_only=True, **kwargs):
        logits = self.perturbed_logits(inputs, [features[0][None]])
        return SimpleNamespace(logits=logits[:, None])


@pytest.mark.parametrize("baseline", ["mean", "zeros"])
def test_occlusion_finds_the_patch_that_decides_the_answer(baseline):
    toy = ToyAdapter()
    target = make_target("logprob")  # log p of the top-1 answer
    image = noise_image(32, 32)
    amap = get_method("occlusion", patch=2, reduce="signed", baseline=baseline, target=target)
    grid = amap.attribute(toy, [image], "which ?").grid
    # patch 0 = cells rows 0-1 x cols 0-1 (it holds the deciding token); all others are inert
    assert np.all(grid[2:, :] == 0) and np.all(grid[:, 2:] == 0)
    assert np.all(grid[:2, :2] == grid[0, 0]) and grid[0, 0] != 0
    # the value is target(x) - target(x with the patch's tokens replaced by the baseline)
    feats = toy.feats
    ablated = feats.clone()
    patch = [0, 1, 4, 5]
    ablated[patch] = 0.0 if baseline == "zeros" else feats.mean(0)
    expected = target(toy.perturbed_logits(None, [feats[None]])) - target(
        toy.perturbed_logits(None, [ablated[None]])
    )
    assert grid[0, 0] == pytest.approx(float(expected[0]), rel=1e-5)
    unsigned = get_method("occlusion", patch=2, baseline=baseline, target=target)
    np.testing.assert_allclose(unsigned.attribute(toy, [image], "which ?").grid, np.abs(grid))


def test_pixel_occlusion_paints_the_patch_in_the_original_image(tiny_llava):
    """A patch painted in the image changes only its own tokens' features (token-local tower)."""
    from conftest import make_token_local

    from egg_interp.methods.occlusion import occlude_image, patch_ids

    make_token_local(tiny_llava)
    image = noise_image(64, 64)
    inputs = tiny_llava.build_inputs([image], QUESTION)
    ids = patch_ids(inputs, 4)[0]
    assert sorted(set(ids.tolist())) == [0, 1, 2, 3] and ids.reshape(8, 8)[0, 4] == 1
    cells = inputs.layouts[0].views[0].cell_boxes.reshape(-1, 4)
    painted = occlude_image(image, cells[ids == 1], (0, 0, 0))
    before = tiny_llava.image_features(inputs)[0]
    after = tiny_llava.image_features(tiny_llava.build_inputs([painted], QUESTION))[0]
    changed = (before - after).abs().amax(-1) > 1e-6
    np.testing.assert_array_equal(changed.numpy(), ids == 1)
