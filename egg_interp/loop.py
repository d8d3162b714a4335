"""The zoom-and-reground loop, and grounded answering.

Step 0 grounds on the original image alone and picks the top regions. Every later step
recomputes the map over the whole sequence ``[original, current crops]``, finds components
in each image's map separately, ranks all of them together by their summed raw relevance,
and crops the best ``top_k`` (boxes mapped back to original-image pixels, so a region found
inside a crop zooms further). The new crops replace the previous ones. A stopping rule
(:mod:`egg_interp.stopping`) reads the step log and decides when to stop and which step's
crops to keep; the default stops when the spatial entropy of the *original image's* map
rises. The kept crops go back to the model as extra images after the original.

Degenerate maps (all zeros, NaN): at step 0 the whole image becomes the only region and no
crop is made (the answer comes from the original alone); at a later step the loop stops and
keeps the previous step. Either way the step log says so in ``degenerate``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from egg_interp.entropy import shannon_entropy, spatial_entropy
from egg_interp.errors import DegenerateMapError
from egg_interp.geometry import Box, crop_image, pixel_box, to_original
from egg_interp.maps import AttributionMap
from egg_interp.methods import get_method
from egg_interp.methods.base import AttributionMethod
from egg_interp.models import answering
from egg_interp.models.answering import PrefixState, record_prefixes
from egg_interp.models.base import VLMAdapter
from egg_interp.regions import Region, find_regions, rank_regions
from egg_interp.settings import LoopSettings
from egg_interp.stopping import Decision, StoppingRule


@dataclass
class LoopStep:
    """One step of the loop: what was measured on its map and which crops it chose.

    ``crops_in`` are the crops in the sequence when the map was computed; ``crop_boxes``
    the crops chosen from it (both in original-image pixels). The entropies may be ``inf``
    (spatial entropy when no cell rises above twice the map's mean: no focus) or ``nan`` (a
    degenerate map, see ``degenerate``); :meth:`to_dict` keeps them as floats, and
    ``steps.json`` (:func:`egg_interp.io.write_json`) writes every non-finite number as
    ``null``.
    """

    step: int
    crops_in: list[Box]
    regions: list[Region]
    crop_boxes: list[Box]
    spatial_entropy: float
    shannon_entropy: float
    next_token_entropy: float
    top1_prob: float
    top1_token: str
    seconds: float
    degenerate: str = ""

    @property
    def crop_areas(self) -> list[float]:
        return [(b[2] - b[0]) * (b[3] - b[1]) for b in self.crop_boxes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "crops_in": [list(b) for b in self.crops_in],
            "crop_boxes": [list(b) for b in self.crop_boxes],
            "regions": [
                {k: v for k, v in r.to_dict().items() if k != "cells"} for r in self.regions
            ],
            "spatial_entropy": self.spatial_entropy,
            "shannon_entropy": self.shannon_entropy,
            "next_token_entropy": self.next_token_entropy,
            "top1_prob": self.top1_prob,
            "top1_token": self.top1_token,
            "seconds": self.seconds,
            "degenerate": self.degenerate,
        }


@dataclass
class GroundingResult:
    """What the loop found: ranked regions of step 0, the kept crops and the step log."""

    question: str
    image_size: tuple[int, int]
    steps: list[LoopStep]
    decision: Decision
    crops: list[Box]
    method: str
    stop_rule: str
    maps: list[AttributionMap] = field(default_factory=list, repr=False)
    base_answer: str | None = None
    answer: str | None = None

    @property
    def regions(self) -> list[Region]:
        """The ranked regions of the first map (original image alone)."""
        return self.steps[0].regions if self.steps else []

    @property
    def first_map(self) -> AttributionMap:
        return self.maps[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "image_size": list(self.image_size),
            "method": self.method,
            "stop_rule": self.stop_rule,
            "decision": self.decision.to_dict(),
            "crops": [list(b) for b in self.crops],
            "base_answer": self.base_answer,
            "answer": self.answer,
            "steps": [s.to_dict() for s in self.steps],
        }


def _image_regions(
    amap: AttributionMap, top_k: int, region_kwargs: dict[str, Any]
) -> list[list[Region]]:
    """Regions of every image of the map, boxes mapped to original-image pixels."""
    out = []
    for i, im in enumerate(amap.images):
        view = im.primary
        regions = find_regions(
            view.values,
            view.cell_boxes,
            im.image_size,
            top_k=top_k,
            image_index=i,
            view="original" if i == 0 else f"crop {i}",
            **region_kwargs,
        )
        for r in regions:
            r.box = to_original(r.box, im.origin_box, im.image_size)
        out.append(regions)
    return out


def zoom_and_reground(
    adapter: VLMAdapter,
    image: Image.Image,
    question: str,
    method: str | AttributionMethod = "egg",
    stop: str | StoppingRule = "ent",
    top_k: int = 2,
    max_steps: int = 15,
    keep_maps: bool = True,
    region_kwargs: dict[str, Any] | None = None,
    *,
    settings: LoopSettings | None = None,
    prefixes: list[PrefixState] | None = None,
) -> GroundingResult:
    """Run the zoom-and-reground loop on one image and question.

    Parameters
    ----------
    adapter : VLMAdapter
    image : PIL.Image.Image
        The original image.
    question : str
    method : str or AttributionMethod
        Any registered map method (default ``"egg"``).
    stop : str or StoppingRule
        ``"ent"`` (default), ``"fixed:N"``, ``"area:PX"``, ``"prob"``, ``"pixels"``, ``"none"``.
    top_k : int
        Regions (crops) chosen per step.
    max_steps : int
        Upper bound on the steps, step 0 included (when ``stop`` is a name).
    keep_maps : bool
        Keep every step's map on the result (for figures).
    region_kwargs : dict, optional
        Passed to :func:`egg_interp.regions.find_regions` (``sigma``, ``threshold``,
        ``connectivity``, ``max_aspect``, ``margin``, ``min_side``, ...); ``sigma`` and
        ``min_side`` default to the settings' (``sigma``: the model's own, see
        :attr:`LoopSettings.sigma <egg_interp.settings.LoopSettings>`).
    settings : LoopSettings, optional
        All of the loop's settings at once (method and its options, target, stopping rule,
        top-k, steps, crop policy); when given, ``method``, ``stop``, ``top_k`` and
        ``max_steps`` are ignored unless they are objects (a method or rule instance).
    prefixes : list, optional
        When given, the maps' own forwards of the first step (``[original]``) and of the
        last step are appended to it (:mod:`egg_interp.models.answering`), so that the base
        answer and the final answer (whose prompt is the last step's when the rule kept the
        step before it) need no second prefill.

    Returns
    -------
    GroundingResult
    """
    method_obj, rule, settings = _resolve(adapter, method, stop, top_k, max_steps, settings)
    region_kwargs = _region_kwargs(settings, region_kwargs)
    _warn_if_too_small(image, region_kwargs["min_side"])
    state = _LoopState(image, question, rule)
    while not state.decision.stop:
        start = time.perf_counter()
        images, inputs = state.prompt(adapter)
        if prefixes is None:
            amap = method_obj.attribute(adapter, images, question, inputs=inputs)
        else:
            with record_prefixes(adapter) as recorded:
                amap = method_obj.attribute(adapter, images, question, inputs=inputs)
            del prefixes[1 if state.steps else 0 :]  # keep the first step's and this step's
            prefixes.extend(recorded[-1:])
        state.advance(amap, settings.top_k, region_kwargs, keep_maps, start)
    return state.result(method_obj.name)


def zoom_and_reground_batch(
    adapter: VLMAdapter,
    images: Sequence[Image.Image],
    questions: Sequence[str],
    *,
    settings: LoopSettings | None = None,
    keep_maps: bool = False,
    region_kwargs: dict[str, Any] | None = None,
) -> list[GroundingResult]:
    """:func:`zoom_and_reground` on several samples at once, one result per sample.

    Every step computes the maps of all samples still running in one padded batch (methods
    that batch, e.g. ``egg``; others loop), then each sample takes its step alone: its own
    regions, crop count and stopping decision. Results equal one-by-one runs (tested), up to
    the last digits of a padded batch's maps.
    """
    method_obj, _, settings = _resolve(adapter, "egg", "ent", 2, 15, settings)
    region_kwargs = _region_kwargs(settings, region_kwargs)
    for im in images:
        _warn_if_too_small(im, region_kwargs["min_side"])
    states = [_LoopState(im, q, settings.rule()) for im, q in zip(images, questions, strict=True)]
    while running := [st for st in states if not st.decision.stop]:
        start = time.perf_counter()
        if method_obj.batched and len(running) > 1:
            maps = method_obj.attribute_batch(
                adapter, [(st.images(), st.question) for st in running]
            )
            for st, amap in zip(running, maps):
                for im, box in zip(amap.images[1:], st.crops, strict=True):
                    im.origin_box = box  # build_batch gives each image its own rectangle
        else:
            maps = [
                method_obj.attribute(adapter, ims, st.question, inputs=inputs)
                for st in running
                for ims, inputs in [st.prompt(adapter)]
            ]
        share = (time.perf_counter() - start) / len(running)
        for st, amap in zip(running, maps):
            st.advance(amap, settings.top_k, region_kwargs, keep_maps, time.perf_counter() - share)
    return [st.result(method_obj.name) for st in states]


def _region_kwargs(settings: LoopSettings, given: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`find_regions` keyword arguments: the settings' crop side and smoothing, then
    ``given`` (whose ``sigma``, if any, also smooths the spatial entropy)."""
    return {"min_side": settings.min_crop_side, "sigma": settings.sigma, **(given or {})}


def _resolve(
    adapter: VLMAdapter,
    method: str | AttributionMethod,
    stop: str | StoppingRule,
    top_k: int,
    max_steps: int,
    settings: LoopSettings | None,
) -> tuple[AttributionMethod, StoppingRule, LoopSettings]:
    """The loop's method object, stopping rule and settings from either way of passing them."""
    if settings is None:
        settings = LoopSettings(
            method=method if isinstance(method, str) else None,
            stop=stop if isinstance(stop, str) else "ent",
            top_k=top_k,
            max_steps=max_steps,
        )
    if isinstance(method, AttributionMethod):
        method_obj = method
    else:
        method_obj = get_method(settings.method_for("egg"), **settings.method_kwargs())
    rule = stop if isinstance(stop, StoppingRule) else settings.rule()
    return method_obj, rule, settings.for_model(adapter)


class _LoopState:
    """One sample's loop: its crops, step log and the stopping rule's latest decision."""

    def __init__(self, image: Image.Image, question: str, rule: StoppingRule) -> None:
        self.image, self.question, self.rule = image, question, rule
        rule.prepare(image.size)
        self.full: Box = (0.0, 0.0, float(image.width), float(image.height))
        self.crops: list[Box] = []
        self.steps: list[LoopStep] = []
        self.maps: list[AttributionMap] = []
        self.decision = rule.decide(self.steps)

    def images(self) -> list[Image.Image]:
        """The images of the next step's prompt: ``[original, current crops]``."""
        return [self.image, *[crop_image(self.image, b) for b in self.crops]]

    def prompt(self, adapter: VLMAdapter) -> tuple[list[Image.Image], Any]:
        """The next step's images and their built prompt."""
        images, boxes = self.images(), [self.full, *self.crops]
        return images, adapter.build_inputs(images, self.question, origin_boxes=boxes)

    def advance(
        self,
        amap: AttributionMap,
        top_k: int,
        region_kwargs: dict[str, Any],
        keep_maps: bool,
        start: float,
    ) -> None:
        """Record the step of ``amap`` (regions, entropies, new crops) and decide on stopping."""
        steps, image = self.steps, self.image
        degenerate = ""
        try:
            amap.check()
            ranked = rank_regions(_image_regions(amap, top_k, region_kwargs), top_k)
            new_crops = [pixel_box(r.box, image.size) for r in ranked]
            original = amap.images[0].primary.values
            h_spatial = spatial_entropy(original, sigma=region_kwargs["sigma"])
            h_shannon = shannon_entropy(original)
        except DegenerateMapError as exc:
            degenerate = str(exc)
            ranked = [] if steps else [_whole_image_region(amap, self.full)]
            new_crops, h_spatial, h_shannon = [], math.nan, math.nan
        if keep_maps:
            self.maps.append(amap)
        steps.append(
            LoopStep(
                step=len(steps),
                crops_in=list(self.crops),
                regions=ranked,
                crop_boxes=new_crops,
                spatial_entropy=h_spatial,
                shannon_entropy=h_shannon,
                next_token_entropy=float(amap.meta.get("next_token_entropy", math.nan)),
                top1_prob=float(amap.meta.get("top1_prob", math.nan)),
                top1_token=str(amap.meta.get("top1_token", "")),
                seconds=time.perf_counter() - start,
                degenerate=degenerate,
            )
        )
        self.decision = self.rule.decide(steps)
        if degenerate:
            keep = steps[-2].step if len(steps) > 1 else None
            self.decision = Decision(True, keep, f"degenerate map: {degenerate}")
        elif not self.decision.stop and self.crops and new_crops == self.crops:
            # the same prompt again would give the same map and the same crops forever
            self.decision = Decision(True, steps[-1].step, "crops repeat: nothing left to zoom")
        self.crops = new_crops

    def result(self, method_name: str) -> GroundingResult:
        kept = next((s.crop_boxes for s in self.steps if s.step == self.decision.keep), [])
        return GroundingResult(
            question=self.question,
            image_size=self.image.size,
            steps=self.steps,
            decision=self.decision,
            crops=list(kept),
            method=method_name,
            stop_rule=repr(self.rule),
            maps=self.maps,
        )


def _warn_if_too_small(image: Image.Image, min_side: float) -> None:
    """Warn when no crop can be smaller than the image (e.g. 1 x 1): the loop cannot zoom."""
    if max(image.size) <= min_side:
        warnings.warn(
            f"the image is {image.width} x {image.height} px, no larger than the smallest crop "
            f"side ({min_side:g} px): the loop cannot zoom in (it stops when its crops repeat)",
            UserWarning,
            stacklevel=3,
        )


def _whole_image_region(amap: AttributionMap, full: Box) -> Region:
    import numpy as np

    view = amap.images[0].primary
    rows, cols = view.shape
    return Region(0.0, 0, np.ones((rows, cols), bool), (0, 0, rows, cols), full, 0, "original")


def answer_with_crops(
    adapter: VLMAdapter,
    image: Image.Image,
    question: str,
    crops: Sequence[Box] = (),
    max_new_tokens: int = 20,
    prefixes: Sequence[PrefixState] = (),
) -> str:
    """Greedy answer with the crops (original-image boxes) as extra images after the original.

    ``prefixes``: recorded forwards (:mod:`egg_interp.models.answering`); one of the same
    prompt is continued instead of prefilling again (same tokens as a fresh ``generate``).
    """
    images = [image, *[crop_image(image, b) for b in crops]]
    if not prefixes:
        return adapter.answer(image, question, images[1:], max_new_tokens=max_new_tokens)
    return answering.answer(
        adapter, adapter.build_inputs(images, question), prefixes, max_new_tokens
    )


def answer_batch(
    adapter: VLMAdapter,
    prompts: Sequence[tuple[Image.Image, Sequence[Box], str]],
    max_new_tokens: int = 20,
) -> list[str]:
    """:func:`answer_with_crops` for several ``(image, crops, question)`` at once.

    One left-padded batch and one ``generate`` (rows may hold different numbers of crops);
    the same answers as one by one (tested).
    """
    if len(prompts) == 1:
        image, crops, question = prompts[0]
        return [answer_with_crops(adapter, image, question, crops, max_new_tokens)]
    items = [([im, *[crop_image(im, b) for b in crops]], q) for im, crops, q in prompts]
    return answering.generate_batch(adapter, adapter.build_batch(items), max_new_tokens)


def ground(
    adapter: VLMAdapter,
    image: Image.Image,
    question: str,
    method: str | AttributionMethod = "egg",
    stop: str | StoppingRule = "ent",
    top_k: int = 2,
    max_steps: int = 15,
    max_new_tokens: int = 20,
    region_kwargs: dict[str, Any] | None = None,
    *,
    settings: LoopSettings | None = None,
    reuse_forward: bool = True,
) -> GroundingResult:
    """The whole EGG pipeline: base answer, zoom-and-reground loop, grounded answer.

    Parameters
    ----------
    adapter : VLMAdapter
        A loaded model (:func:`egg_interp.models.load_model`).
    image : PIL.Image.Image
        The original image.
    question : str
        Must not be empty.
    method : str or AttributionMethod, default "egg"
        The map that chooses the crops: any registered method (see
        :func:`egg_interp.methods.attribute`) or an instance with its options.
    stop : str or StoppingRule, default "ent"
        When to stop zooming and which step's crops to keep:

        - ``"ent"``: stop when the spatial entropy of the original image's map rises (keep
          the step before the rise) or reaches 0;
        - ``"fixed:N"``: exactly ``N`` steps, keep the last;
        - ``"area:PX"``: stop once the crops' area is at most ``PX`` pixels (default 4000);
        - ``"prob"``: stop when the top-1 probability stops rising;
        - ``"pixels"`` / ``"pixels:P"``: ``max(image side) // P`` steps (default P = 1000);
        - ``"none"``: step 0 only (its crops are kept).

        Every rule also stops after ``max_steps`` steps, and the loop stops when a step's
        crops repeat the previous ones (nothing left to zoom into).
    top_k : int, default 2
        Regions (crops) chosen per step.
    max_steps : int, default 15
        Upper bound on the steps, step 0 included.
    max_new_tokens : int, default 20
        Longest answer, in generated tokens.
    region_kwargs : dict, optional
        Passed to :func:`egg_interp.regions.find_regions` (``sigma``, ``threshold``,
        ``connectivity``, ``max_aspect``, ``margin``, ``min_side``).
    settings : LoopSettings, optional
        All loop settings at once (method and its options, target, stopping rule, top-k,
        steps, crop policy); then ``method``, ``stop``, ``top_k`` and ``max_steps`` are
        ignored unless they are objects.
    reuse_forward : bool, default True
        Both answers continue from the maps' own forwards where the prompts agree
        (:mod:`egg_interp.models.answering`; the same answers, one prefill less each);
        ``False`` prefills every answer afresh (the old path, kept for the benchmark).

    Returns
    -------
    GroundingResult
        ``base_answer`` (original image alone), ``answer`` (with the kept crops), ``crops``
        (kept boxes, original-image pixels), ``regions`` (ranked regions of step 0), ``steps``
        (the step log), ``decision`` (why it stopped, which step was kept), ``maps`` (every
        step's map); ``to_dict()`` is the log written to ``steps.json``.

    Warns
    -----
    UserWarning
        When the image is no larger than the smallest crop side (nothing to zoom into), and
        (from the adapter, once per model) when words of the question are unknown to the
        model's tokenizer.
    """
    prefixes: list[PrefixState] | None = [] if reuse_forward else None
    result = zoom_and_reground(
        adapter,
        image,
        question,
        method,
        stop,
        top_k,
        max_steps,
        True,
        region_kwargs,
        settings=settings,
        prefixes=prefixes,
    )
    kept = prefixes or ()
    result.base_answer = answer_with_crops(adapter, image, question, (), max_new_tokens, kept)
    result.answer = answer_with_crops(adapter, image, question, result.crops, max_new_tokens, kept)
    return result
