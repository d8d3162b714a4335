"""The answer targets: the model's own answer, teacher-forced, and the baselines' defaults.

``answer_logprob`` = ``sum_k log p(a_k | prompt, a_<k)`` over the greedy answer; checked
against one forward per prefix, its gradient against finite differences, the batched
paths against the one-row paths, and the defaults (baselines explain the answer, EGG the
entropy).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import noise_image

from egg_interp.methods import METHODS, get_method, make_target
from egg_interp.methods.base import (
    feature_set_logits,
    pixel_set_logits,
    prompt_logits,
    visual_token_gradients,
)
from egg_interp.methods.captum_base import CaptumMethod
from egg_interp.methods.targets import AnswerLogProb, greedy_answer
from egg_interp.models import load_model

QUESTION = "what colour is the square ?"


@pytest.fixture(scope="module")
def tiny64(tiny_llava_dir):
    return load_model(tiny_llava_dir, device="cpu", dtype=torch.float64)


def teacher_forced(adapter, inputs, ids) -> float:
    """``sum_k log p(a_k | prompt, a_<k)``, one forward per prefix (the definition)."""
    total = 0.0
    for k, token in enumerate(ids):
        logits = adapter.next_token_logits(adapter.extend(inputs, list(ids[:k])))
        total += float(torch.log_softmax(logits.double(), -1)[token])
    return total


def test_the_greedy_answer_is_what_generate_answers(tiny_llava):
    """The tokens ``generate`` produces, up to the first special token (excluded)."""
    inputs = tiny_llava.build_inputs([noise_image(64, 64)], QUESTION)
    ids = greedy_answer(tiny_llava, inputs, 16)
    assert len(ids) > 1  # the random model answers with several tokens: the sum is exercised
    with torch.no_grad():
        out = tiny_llava.model.generate(**inputs.batch, max_new_tokens=16, do_sample=False)
    generated = out[0, inputs.input_ids.shape[1] :].tolist()
    special = set(tiny_llava.tokenizer.all_special_ids)
    end = next((i for i, t in enumerate(generated) if t in special), len(generated))
    assert list(ids) == generated[:end]


def test_the_objective_is_the_teacher_forced_answer_log_probability(tiny64):
    inputs = tiny64.build_inputs([noise_image(64, 64), noise_image(40, 56, 2)], QUESTION)
    target, extended = make_target("answer_logprob").for_prompt(tiny64, inputs)
    ids = target.answer_ids
    assert target.positions == len(ids) > 1 and extended.answer_ids == list(ids[:-1])
    expected = teacher_forced(tiny64, inputs, ids)
    assert float(target(prompt_logits(tiny64, extended, target))) == pytest.approx(expected)
    first, same = make_target("answer_logprob_first").for_prompt(tiny64, inputs)
    assert first.answer_ids == ids[:1] and same is inputs
    assert float(first(prompt_logits(tiny64, same, first))) == pytest.approx(
        teacher_forced(tiny64, inputs, ids[:1])
    )
    # a given answer is explained as given, on any input
    given, _ = AnswerLogProb(answer_ids=(7, 9)).for_prompt(tiny64, inputs)
    assert given.answer_ids == (7, 9)


def test_the_gradient_matches_finite_differences(tiny64):
    inputs = tiny64.build_inputs([noise_image(64, 64, 5)], QUESTION)
    target, extended = make_target("answer_logprob").for_prompt(tiny64, inputs)
    feats, grads, objective, _ = visual_token_gradients(tiny64, extended, target)
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(feats[0].shape, generator=generator, dtype=torch.float64)
    direction /= direction.norm()
    # float64, but Llama's RMSNorm computes in float32 (see test_egg_gradient.py): eps 1e-3
    eps = 1e-3

    def value(shift: float) -> float:
        f = [(feats[0] + shift * direction)[None]]
        with torch.no_grad():
            return float(target(feature_set_logits(tiny64, extended, f, target))[0])

    numeric = (value(eps) - value(-eps)) / (2 * eps)
    analytic = float((grads[0].double() * direction).sum())
    assert value(0.0) == pytest.approx(float(objective), rel=1e-10)
    assert analytic == pytest.approx(numeric, rel=1e-3)


def test_batched_answer_logits_equal_the_rows(tiny64):
    """Several feature sets (and pixel sets) in one call read the same logits as each alone;
    the pixel path (vision tower included) reads those of the cached features."""
    inputs = tiny64.build_inputs([noise_image(64, 64, 6)], QUESTION)
    target, extended = AnswerLogProb(max_tokens=3).for_prompt(tiny64, inputs)
    (f,) = tiny64.image_features(extended)
    batch = [torch.stack([f, 0.5 * f, f + 0.1])]
    with torch.no_grad():
        together = feature_set_logits(tiny64, extended, batch, target)
        alone = [feature_set_logits(tiny64, extended, [b[None]], target)[0] for b in batch[0]]
        pv = extended.batch["pixel_values"]
        pixels = pixel_set_logits(tiny64, extended, torch.stack([pv, pv]), target)
    assert together.shape == (3, target.positions, together.shape[-1])
    torch.testing.assert_close(together, torch.stack(alone))
    torch.testing.assert_close(pixels[0], together[0])
    torch.testing.assert_close(pixels[1], together[0])


def test_integrated_gradients_completeness_for_the_answer(tiny64):
    """Signed IG sums add up to target(x) - target(baseline) with a multi-token answer, the
    path points evaluated in batches of 8 rows."""
    image = noise_image(64, 64, 7)
    answer = AnswerLogProb(max_tokens=3)  # a 3-token answer keeps the test short
    method = get_method(
        "integrated_gradients", n_steps=24, internal_batch_size=8, reduce="sum", target=answer
    )
    amap = method.attribute(tiny64, [image], QUESTION)
    inputs = tiny64.build_inputs([image], QUESTION)
    target, extended = answer.for_prompt(tiny64, inputs)
    assert target.positions == 3
    (feat,) = tiny64.image_features(extended)
    with torch.no_grad():
        f_x, f_b = (
            float(target(feature_set_logits(tiny64, extended, [x[None]], target))[0])
            for x in (feat, feat.mean(0).expand_as(feat))
        )
    assert amap.meta["explained_ids"] == list(target.answer_ids)
    assert abs(f_x - f_b) > 1e-3
    assert amap.grid.sum(dtype=np.float64) == pytest.approx(f_x - f_b, rel=1e-3)


def test_the_baselines_explain_the_answer_and_egg_the_entropy(tiny_llava):
    for name, cls in METHODS.items():
        if issubclass(cls, CaptumMethod):
            assert get_method(name).target.describe() == "answer_logprob", name
    assert get_method("egg").target.describe() == "entropy"
    image = noise_image(64, 64, 8)
    saliency = get_method("saliency").attribute(tiny_llava, [image], QUESTION)
    egg = get_method("egg").attribute(tiny_llava, [image], QUESTION)
    same_target = get_method("saliency", target="entropy").attribute(tiny_llava, [image], QUESTION)
    assert (saliency.target, egg.target, same_target.target) == (
        "answer_logprob",
        "entropy",
        "entropy",
    )
    np.testing.assert_allclose(same_target.grid, egg.grid, rtol=1e-5)  # the rule is the same
    assert not np.allclose(saliency.grid, egg.grid, rtol=1e-2)  # the target is not
    explained = greedy_answer(tiny_llava, tiny_llava.build_inputs([image], QUESTION), 16)
    assert saliency.meta["explained_ids"] == list(explained)


def test_a_batch_with_answer_targets_maps_one_prompt_at_a_time(tiny_llava):
    items = [([noise_image(64, 64, 1)], QUESTION), ([noise_image(64, 64, 2)], QUESTION)]
    method = get_method("egg", target=AnswerLogProb(max_tokens=3))
    batched = method.attribute_batch(tiny_llava, items)
    for amap, (images, question) in zip(batched, items):
        alone = method.attribute(tiny_llava, images, question)
        np.testing.assert_allclose(amap.grid, alone.grid, rtol=1e-6)
        assert amap.target == "answer_logprob"


def test_pixel_space_and_occlusion_take_the_answer_target(tiny_llava):
    image = noise_image(64, 64, 9)
    answer = AnswerLogProb(max_tokens=3)
    pixels = get_method("saliency", space="pixels", target=answer)
    pixels = pixels.attribute(tiny_llava, [image], QUESTION)
    egg_pixels = get_method("egg", space="pixels", target=answer)
    np.testing.assert_allclose(
        pixels.grid, egg_pixels.attribute(tiny_llava, [image], QUESTION).grid, rtol=1e-4
    )
    occlusion = get_method("occlusion", patch=4, space="pixels", target=answer)
    occlusion = occlusion.attribute(tiny_llava, [image], QUESTION)
    assert occlusion.target == "answer_logprob" and np.isfinite(occlusion.grid).all()
    assert np.ptp(occlusion.grid) > 0


def test_gradient_shap_is_reproducible(tiny_llava):
    """captum draws GradientShap's path points with numpy: ``seed`` seeds it too (and leaves
    the global state as it was)."""
    image = noise_image(64, 64, 10)
    method = get_method("gradient_shap", n_samples=4, samples_per_batch=2, target="entropy")
    state = np.random.get_state()[1].copy()
    first = method.attribute(tiny_llava, [image], QUESTION).grid
    np.testing.assert_array_equal(method.attribute(tiny_llava, [image], QUESTION).grid, first)
    assert np.array_equal(np.random.get_state()[1], state)


def test_target_examples_run():
    import doctest

    from egg_interp.methods import targets

    result = doctest.testmod(targets)
    assert result.attempted > 0 and result.failed == 0
