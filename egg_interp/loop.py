"""The zoom-and-reground loop, and grounded answering.

Step 0 grounds on the original image alone and picks the top regions. Every later step
recomputes the map over the whole sequence ``[original, current crops]``, finds components
in each image's map separately, ranks all of them together by their summed raw relevance,
and crops the best ``top_k`` (boxes mapped back to original-image pixels, so a region found
inside a crop zooms further). The new crops replace the previous ones. A stopping rule
(:mod:`egg_interp.stopping`) reads the step log and decides when to stop and which step's
crops to keep; the default stops when the spatial entropy of the *original image's* map
rises. The kept crops go back to the model as extra images after the original.

One loop, batch first: :func:`zoom_and_reground_batch` runs several samples at once (each
step maps every sample still running in one padded batch when the method batches; each
sample then takes its own regions, crops and stopping decision); :func:`zoom_and_reground`
is the batch of one and :func:`ground` adds the base and grounded answers. The loop's
settings are one :class:`~egg_interp.settings.LoopSettings`.

Degenerate maps (all zeros, NaN): at step 0 the whole image becomes the only region and no
crop is made (the answer comes from the original alone); at a later step the loop stops and
keeps the previous step. Either way the step log says so in ``degenerate``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from egg_interp.entropy import shannon_entropy, spatial_entropy
from egg_interp.errors import DegenerateMapError
from egg_interp.geometry import Box, crop_image, pixel_box, to_original
from egg_interp.maps import AttributionMap
from egg_interp.methods import get_method
from egg_interp.methods.base import AttributionMethod
from egg_interp.models.answering import ForwardRecorder, RecordedPrompt, answer_prompts
from egg_interp.models.base import VLMAdapter
from egg_interp.regions import Region, find_regions, rank_regions
from egg_interp.settings import LoopSettings
from egg_interp.stopping import Decision, StoppingRule

KEEP_FORWARDS = ("first", "last")
"""Which maps' forwards the loop can keep for answering (``keep_forwards``): ``"first"``
(step 0, whose prompt ``[original, question]`` is the base answer's) and ``"last"`` (the last
step, kept only when its prompt holds the crops the rule kept: the final answer's prompt)."""


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
    """What the loop found: ranked regions of step 0, the kept crops and the step log.

    ``maps`` holds every step's map when the loop kept them; ``forwards`` the recorded map
    forwards it was asked to keep (``keep_forwards``: the first step's, whose prompt is the
    base answer's, and the last step's when its prompt holds the kept crops), which
    :func:`answer_batch` continues instead of prefilling those prompts again.
    """

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
    forwards: list[RecordedPrompt] = field(default_factory=list, repr=False)

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


def zoom_and_reground_batch(
    adapter: VLMAdapter,
    images: Sequence[Image.Image],
    questions: Sequence[str],
    *,
    settings: LoopSettings | None = None,
    keep_maps: bool = False,
    region_kwargs: dict[str, Any] | None = None,
    keep_forwards: Collection[str] = (),
) -> list[GroundingResult]:
    """Run the zoom-and-reground loop on several samples at once, one result per sample.

    Every step computes the maps of all samples still running in one padded batch (methods
    that batch, e.g. ``egg``; others, and a step with one sample running, map one prompt at
    a time), then each sample takes its step alone: its own regions, crop count and stopping
    decision. Results equal one-by-one runs (tested), up to the last digits of a padded
    batch's maps.

    Parameters
    ----------
    adapter : VLMAdapter
    images : sequence of PIL.Image.Image
        One original image per sample.
    questions : sequence of str
        One question per sample.
    settings : LoopSettings, optional
        Method and its options, target, stopping rule, top-k, steps, crop policy (default
        ``LoopSettings()``: EGG, the spatial-entropy rule, 2 crops a step, at most 15 steps).
    keep_maps : bool, default False
        Keep every step's map on the results (for figures).
    region_kwargs : dict, optional
        Passed to :func:`egg_interp.regions.find_regions` (``sigma``, ``threshold``,
        ``connectivity``, ``max_aspect``, ``margin``, ``min_side``, ...); ``sigma`` and
        ``min_side`` default to the settings' (``sigma``: the model's own, see
        :attr:`LoopSettings.sigma <egg_interp.settings.LoopSettings>`).
    keep_forwards : collection of {"first", "last"}
        Maps' forwards to keep on the results (:data:`KEEP_FORWARDS`,
        :attr:`GroundingResult.forwards`), for answers that continue them; empty (default):
        nothing is recorded.

    Returns
    -------
    list of GroundingResult
    """
    method, settings = _loop_method(adapter, settings)
    unknown = set(keep_forwards) - set(KEEP_FORWARDS)
    if unknown:
        raise ValueError(f"keep_forwards takes {KEEP_FORWARDS}, got {sorted(unknown)}")
    region_kwargs = _region_kwargs(settings, region_kwargs)
    for image in images:
        _warn_if_too_small(image, region_kwargs["min_side"])
    states = [_LoopState(im, q, settings.rule()) for im, q in zip(images, questions, strict=True)]
    while running := [st for st in states if not st.decision.stop]:
        start = time.perf_counter()
        maps = _step_maps(adapter, method, running, record=bool(keep_forwards))
        share = (time.perf_counter() - start) / len(running)
        for st, (amap, recorded) in zip(running, maps):
            st.advance(amap, settings.top_k, region_kwargs, keep_maps, time.perf_counter() - share)
            st.note_forward(recorded, keep_forwards)
    return [st.result(method.name) for st in states]


def zoom_and_reground(
    adapter: VLMAdapter,
    image: Image.Image,
    question: str,
    *,
    settings: LoopSettings | None = None,
    keep_maps: bool = True,
    region_kwargs: dict[str, Any] | None = None,
    keep_forwards: Collection[str] = (),
    **deprecated: Any,
) -> GroundingResult:
    """:func:`zoom_and_reground_batch` on one image and question (keeps the maps by default).

    ``method=``, ``stop=``, ``top_k=`` and ``max_steps=`` are deprecated (a
    ``DeprecationWarning``): pass ``settings=LoopSettings(...)``.
    """
    settings = _with_deprecated(settings, deprecated, "zoom_and_reground")
    [result] = zoom_and_reground_batch(
        adapter,
        [image],
        [question],
        settings=settings,
        keep_maps=keep_maps,
        region_kwargs=region_kwargs,
        keep_forwards=keep_forwards,
    )
    return result


def ground(
    adapter: VLMAdapter,
    image: Image.Image,
    question: str,
    *,
    settings: LoopSettings | None = None,
    max_new_tokens: int = 20,
    region_kwargs: dict[str, Any] | None = None,
    reuse_forward: bool = True,
    **deprecated: Any,
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
    settings : LoopSettings, optional
        All the loop's settings (default ``LoopSettings()``):

        - ``method`` (default ``"egg"``) and ``method_options``: the map that chooses the
          crops, any registered method (:func:`egg_interp.methods.attribute`); ``target``;
        - ``stop``: when to stop zooming and which step's crops to keep: ``"ent"`` (default;
          stop when the spatial entropy of the original image's map rises, keep the step
          before the rise, or when it reaches 0), ``"fixed:N"`` (exactly ``N`` steps, keep the
          last), ``"area:PX"`` (stop once the crops' area is at most ``PX`` pixels, default
          4000), ``"prob"`` (stop when the top-1 probability stops rising), ``"pixels"`` /
          ``"pixels:P"`` (``max(image side) // P`` steps, default P = 1000), ``"none"``
          (step 0 only, its crops kept). Every rule also stops after ``max_steps`` (default
          15) steps, step 0 included, and the loop stops when a step's crops repeat the
          previous ones (nothing left to zoom into);
        - ``top_k`` (default 2): regions (crops) chosen per step; ``min_crop_side``,
          ``sigma``: the crop policy and the maps' smoothing.
    max_new_tokens : int, default 20
        Longest answer, in generated tokens.
    region_kwargs : dict, optional
        Passed to :func:`egg_interp.regions.find_regions` (``sigma``, ``threshold``,
        ``connectivity``, ``max_aspect``, ``margin``, ``min_side``).
    reuse_forward : bool, default True
        Both answers continue from the maps' own forwards where the prompts agree
        (:mod:`egg_interp.models.answering`; the same answers, one prefill less each);
        ``False`` prefills every answer afresh (the old path, kept for the benchmark).
    **deprecated
        ``method=``, ``stop=``, ``top_k=``, ``max_steps=`` (names only) still work with a
        ``DeprecationWarning``; use ``settings``.

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
    settings = _with_deprecated(settings, deprecated, "ground")
    result = zoom_and_reground(
        adapter,
        image,
        question,
        settings=settings,
        region_kwargs=region_kwargs,
        keep_forwards=KEEP_FORWARDS if reuse_forward else (),
    )
    kept, n = result.forwards, max_new_tokens
    result.base_answer = answer_with_crops(adapter, image, question, (), n, kept)
    result.answer = answer_with_crops(adapter, image, question, result.crops, n, kept)
    return result


def answer_with_crops(
    adapter: VLMAdapter,
    image: Image.Image,
    question: str,
    crops: Sequence[Box] = (),
    max_new_tokens: int = 20,
    recorded: Sequence[RecordedPrompt] = (),
) -> str:
    """Greedy answer with the crops (original-image boxes) as extra images after the original.

    ``recorded``: map forwards kept by the loop (:attr:`GroundingResult.forwards`); one of the
    same prompt is continued instead of prefilling again (the same tokens as ``generate``).
    """
    return answer_batch(adapter, [(image, crops, question)], max_new_tokens, [recorded])[0]


def answer_batch(
    adapter: VLMAdapter,
    prompts: Sequence[tuple[Image.Image, Sequence[Box], str]],
    max_new_tokens: int = 20,
    recorded: Sequence[Sequence[RecordedPrompt]] | None = None,
) -> list[str]:
    """:func:`answer_with_crops` for several ``(image, crops, question)`` at once.

    ``recorded``: for each prompt, the forwards it may continue (its sample's
    :attr:`GroundingResult.forwards`); the rows of one forward continue together. The others
    are prefilled in one left-padded batch (rows may hold different numbers of crops). The
    same answers as one by one (tested).
    """
    items = [([im, *[crop_image(im, b) for b in crops]], q) for im, crops, q in prompts]
    return answer_prompts(adapter, items, max_new_tokens, recorded)


# ------------------------------------------------------------------------------ the loop's steps


def _loop_method(
    adapter: VLMAdapter, settings: LoopSettings | None
) -> tuple[AttributionMethod, LoopSettings]:
    """The loop's map method and its settings completed for this model (``sigma``)."""
    settings = settings or LoopSettings()
    method = get_method(settings.method_for("egg"), **settings.method_kwargs())
    return method, settings.for_model(adapter)


_DEPRECATED = ("method", "stop", "top_k", "max_steps")


def _with_deprecated(
    settings: LoopSettings | None, deprecated: dict[str, Any], caller: str
) -> LoopSettings | None:
    """The settings with the old keyword forms folded in (with a ``DeprecationWarning``)."""
    if not deprecated:
        return settings
    unknown = sorted(set(deprecated) - set(_DEPRECATED))
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword argument(s) {unknown}")
    objects = [k for k, v in deprecated.items() if isinstance(v, (AttributionMethod, StoppingRule))]
    if objects:
        raise TypeError(
            f"{caller}(): name the method and the stopping rule in LoopSettings (e.g. "
            "LoopSettings(method='egg', method_options={...}, stop='fixed:2')), not as objects"
        )
    warnings.warn(
        f"{caller}({', '.join(f'{k}=...' for k in deprecated)}) is deprecated: pass "
        f"settings=LoopSettings({', '.join(f'{k}=...' for k in deprecated)})",
        DeprecationWarning,
        stacklevel=3,
    )
    return (settings or LoopSettings()).replace(**deprecated)


def _region_kwargs(settings: LoopSettings, given: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`find_regions` keyword arguments: the settings' crop side and smoothing, then
    ``given`` (whose ``sigma``, if any, also smooths the spatial entropy)."""
    return {"min_side": settings.min_crop_side, "sigma": settings.sigma, **(given or {})}


def _step_maps(
    adapter: VLMAdapter, method: AttributionMethod, running: Sequence[_LoopState], record: bool
) -> list[tuple[AttributionMap, RecordedPrompt | None]]:
    """The maps of one step of every running sample, with each map's recorded forward (when
    ``record`` and the method ran one on the sample's prompt)."""
    if method.batched and len(running) > 1:
        items = [(st.images(), st.question) for st in running]
        recorder = ForwardRecorder() if record else None
        maps = method.attribute_batch(adapter, items, record=recorder)
        for st, amap in zip(running, maps):
            for im, box in zip(amap.images[1:], st.crops, strict=True):
                im.origin_box = box  # build_batch gives each image its own rectangle
        forward = recorder.last if recorder is not None else None
        if forward is None or len(recorder.forwards) != 1 or forward.rows != len(items):
            return [(amap, None) for amap in maps]
        return [
            (amap, RecordedPrompt(forward, row, tuple(ims), q))
            for row, (amap, (ims, q)) in enumerate(zip(maps, items))
        ]
    out = []
    for st in running:
        images, inputs = st.prompt(adapter)
        recorder = ForwardRecorder() if record else None
        amap = method.attribute(adapter, images, st.question, inputs=inputs, record=recorder)
        forward = recorder.last if recorder is not None else None
        prompt = RecordedPrompt(forward, 0, tuple(images), st.question) if forward else None
        out.append((amap, prompt))
    return out


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
        self.first: RecordedPrompt | None = None
        self.last: RecordedPrompt | None = None

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

    def note_forward(self, recorded: RecordedPrompt | None, keep: Collection[str]) -> None:
        """Keep the forward of the step just taken as the first and/or the last one (the last
        only while it may still be the final answer's prompt)."""
        if recorded is not None and "first" in keep and len(self.steps) == 1:
            self.first = recorded
        if "last" in keep:
            self.last = recorded
        if self.decision.stop and self.last is not None:
            if self.kept_crops() != self.steps[-1].crops_in:
                self.last = None  # the final prompt was never mapped: nothing to continue

    def kept_crops(self) -> list[Box]:
        """The crops of the step the rule keeps (none when it keeps no step)."""
        return next((s.crop_boxes for s in self.steps if s.step == self.decision.keep), [])

    def result(self, method_name: str) -> GroundingResult:
        kept = self.kept_crops()
        forwards = [self.first] if self.first is not None else []
        if self.last is not None and self.last is not self.first:
            forwards.append(self.last)
        return GroundingResult(
            question=self.question,
            image_size=self.image.size,
            steps=self.steps,
            decision=self.decision,
            crops=list(kept),
            method=method_name,
            stop_rule=repr(self.rule),
            maps=self.maps,
            forwards=forwards,
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
