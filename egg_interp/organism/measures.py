"""Causal checks of the organism on scenes: does the answer follow the object the question names?

Two measures that need the scene re-rendered or a chosen crop, so they live beside the
organism rather than in the runner (which scores any benchmark):

* :func:`answer_sensitivity` re-renders the scene with one object's stripe pattern set to
  each of the four patterns, everything else (boxes, stripe phases, noise) kept, and
  measures how far the model's answer distribution moves (total variation distance). A
  model that answers about the named object moves with the target and not with the others.
* :func:`distractor_crop_following` adds a crop of *another* object (one whose pattern
  differs from the target's) after the full view and asks the same question: does the
  answer follow the named object or the crop?

Both take the adapter of any architecture, through its public ``build_inputs`` and
``next_token_logits``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from egg_interp.data import scenes
from egg_interp.data.sample import Sample
from egg_interp.geometry import crop_image, square_crop


def _rng(key: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha1(f"{seed}:{key}:distractor".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def pattern_distribution(adapter: Any, images: Sequence[Image.Image], question: str) -> np.ndarray:
    """The model's first-answer-token probabilities over :data:`scenes.PATTERNS`, renormalised.

    Returns
    -------
    ndarray of shape (4,), float64
        In the order of :data:`scenes.PATTERNS`; sums to 1.
    """
    ids = adapter.tokenizer.convert_tokens_to_ids(list(scenes.PATTERNS))
    logits = adapter.next_token_logits(adapter.build_inputs(list(images), question))
    z = logits[ids].double().cpu().numpy()
    p = np.exp(z - z.max())
    return p / p.sum()


def _attributes(sample: Sample) -> list[tuple[str, str, str]]:
    return [(o["colour"], o["shape"], o["pattern"]) for o in sample.meta["objects"]]


def _render(sample: Sample, attributes: Sequence[tuple[str, str, str]]) -> Image.Image:
    kwargs = {k: v for k, v in sample.meta["scene"].items() if k != "attributes"}
    return scenes.make_scene(**kwargs, attributes=list(attributes)).image


def answer_sensitivity(adapter: Any, sample: Sample) -> dict[str, Any]:
    """How far the answer moves when each object's pattern changes (a ``detail`` sample).

    For object ``i`` and each pattern ``p`` other than its own, the scene is re-rendered with
    object ``i`` carrying ``p`` and the total variation distance between the answer
    distributions (:func:`pattern_distribution`) with and without the change is taken; the
    object's sensitivity is the mean over the three changes.

    Returns
    -------
    dict
        ``target`` (float, the named object's sensitivity), ``distractors`` (list of float,
        the others'), ``n_objects`` (int).
    """
    if sample.family != "detail" or "objects" not in sample.meta:
        raise ValueError("answer_sensitivity needs a scenes 'detail' sample")
    attrs = _attributes(sample)
    target = sample.meta["evidence"][0]
    base = pattern_distribution(adapter, [_render(sample, attrs)], sample.question)
    sens = []
    for i, (colour, shape, pattern) in enumerate(attrs):
        moves = []
        for p in scenes.PATTERNS:
            if p == pattern:
                continue
            changed = list(attrs)
            changed[i] = (colour, shape, p)
            dist = pattern_distribution(adapter, [_render(sample, changed)], sample.question)
            moves.append(0.5 * float(np.abs(dist - base).sum()))
        sens.append(float(np.mean(moves)))
    return {
        "target": sens[target],
        "distractors": [s for i, s in enumerate(sens) if i != target],
        "n_objects": len(attrs),
    }


def distractor_crop_following(
    adapter: Any, sample: Sample, crop_scale: float = 1.5, seed: int = 0
) -> float:
    """1.0 when the answer with a distractor's crop added is the *distractor's* pattern.

    The distractor is drawn (deterministically by sample id and ``seed``) among the other
    objects whose pattern differs from the target's; NaN when there is none. The crop is a
    square of ``crop_scale`` times the distractor's longer side around it, as the oracle
    crop is around the target.
    """
    attrs = _attributes(sample)
    target = sample.meta["evidence"][0]
    others = [i for i, a in enumerate(attrs) if i != target and a[2] != attrs[target][2]]
    if sample.family != "detail" or not others:
        return math.nan
    j = others[int(_rng(sample.id, seed).integers(len(others)))]
    image = sample.image
    box = square_crop(tuple(sample.meta["objects"][j]["box"]), crop_scale, image.size)
    dist = pattern_distribution(adapter, [image, crop_image(image, box)], sample.question)
    return float(scenes.PATTERNS[int(dist.argmax())] == attrs[j][2])


def summarise_measures(
    sensitivities: Iterable[dict[str, Any]], following: Iterable[float]
) -> dict[str, Any]:
    """The figures that ``summary.json`` reports from the two measures.

    ``answer_sensitivity_ratio`` is the mean target sensitivity over the mean of each
    sample's *largest* distractor sensitivity (scenes with at least two objects);
    ``target_most_causal`` the share of those samples whose target moves the answer most;
    ``distractor_crop_following`` the mean of :func:`distractor_crop_following` (NaNs
    dropped). Every figure comes with its sample count.
    """
    multi = [s for s in sensitivities if s["distractors"]]
    following = [f for f in following if not math.isnan(f)]
    out: dict[str, Any] = {"n_sensitivity": len(multi), "n_following": len(following)}
    if multi:
        tgt = np.array([s["target"] for s in multi])
        dis = np.array([max(s["distractors"]) for s in multi])
        out["target_sensitivity"] = float(tgt.mean())
        out["largest_distractor_sensitivity"] = float(dis.mean())
        out["answer_sensitivity_ratio"] = float(tgt.mean() / max(dis.mean(), 1e-12))
        out["target_most_causal"] = float((tgt > dis).mean())
    out["distractor_crop_following"] = float(np.mean(following)) if following else math.nan
    return out


__all__ = [
    "answer_sensitivity",
    "distractor_crop_following",
    "pattern_distribution",
    "summarise_measures",
]
