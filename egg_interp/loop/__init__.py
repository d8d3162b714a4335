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

Several user images (``ground(adapter, [a, b], question)``): every prompt holds them all, then
the crops; the map has one grid per image, regions are ranked across all the images, each
crop is cut from its own image and the step log says which (``sources_in``,
``crop_sources``); the stopping rule reads the spatial entropy of the images' maps taken
together (``pixels`` counts the largest image's side). The images are generic sources of
crops: a video mode can pass the frames it picks as the images.

Degenerate maps (all zeros, NaN): at step 0 the whole image becomes the only region and no
crop is made (the answer comes from the original alone); at a later step the loop stops and
keeps the previous step. Either way the step log says so in ``degenerate``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Collection, Sequence
from typing import Any

from PIL import Image

from egg_interp.geometry import Box
from egg_interp.loop.log import GroundingResult, LoopStep
from egg_interp.loop.state import (
    LoopState,
    answer_images,
    check_image_count,
    originals_of,
    warn_if_too_small,
)
from egg_interp.maps import AttributionMap
from egg_interp.methods import get_method
from egg_interp.methods.base import AttributionMethod
from egg_interp.models.answering import ForwardRecorder, RecordedPrompt, answer_prompts
from egg_interp.models.base import VLMAdapter
from egg_interp.settings import LoopSettings
from egg_interp.stopping import StoppingRule

__all__ = [
    "KEEP_FORWARDS",
    "GroundingResult",
    "LoopStep",
    "answer_batch",
    "answer_images",
    "answer_with_crops",
    "ground",
    "zoom_and_reground",
    "zoom_and_reground_batch",
]

KEEP_FORWARDS = ("first", "last")
"""Which maps' forwards the loop can keep for answering (``keep_forwards``): ``"first"``
(step 0, whose prompt ``[original, question]`` is the base answer's) and ``"last"`` (the last
step, kept only when its prompt holds the crops the rule kept: the final answer's prompt)."""


def zoom_and_reground_batch(
    adapter: VLMAdapter,
    images: Sequence[Image.Image | Sequence[Image.Image]],
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
    images : sequence of PIL.Image.Image, or of sequences of them
        Each sample's original image, or its several user images (all in one prompt, before
        the crops; regions are ranked across them and each crop is cut from its own image).
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

    Raises
    ------
    InputError
        A sample has no image, or the model takes fewer images per prompt than the user's
        images plus ``top_k`` crops (:attr:`VLMAdapter.max_images_per_prompt`).
    """
    method, settings = _loop_method(adapter, settings)
    unknown = set(keep_forwards) - set(KEEP_FORWARDS)
    if unknown:
        raise ValueError(f"keep_forwards takes {KEEP_FORWARDS}, got {sorted(unknown)}")
    region_kwargs = _region_kwargs(settings, region_kwargs)
    samples = [originals_of(im) for im in images]
    for originals in samples:
        check_image_count(adapter, len(originals), settings.top_k)
        for image in originals:
            warn_if_too_small(image, region_kwargs["min_side"])
    states = [LoopState(ims, q, settings.rule()) for ims, q in zip(samples, questions, strict=True)]
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
    image: Image.Image | Sequence[Image.Image],
    question: str,
    *,
    settings: LoopSettings | None = None,
    keep_maps: bool = True,
    region_kwargs: dict[str, Any] | None = None,
    keep_forwards: Collection[str] = (),
    **deprecated: Any,
) -> GroundingResult:
    """:func:`zoom_and_reground_batch` on one sample: one image, or several user images in one
    prompt, and a question (keeps the maps by default).

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
    image: Image.Image | Sequence[Image.Image],
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
    image : PIL.Image.Image or sequence of PIL.Image.Image
        The original image, or several user images asked about in one prompt: the map has
        one grid per image, regions are ranked across the images, each crop is cut from its
        own image, and the answers see the images, then the crops (the model must take that
        many images per prompt: :attr:`VLMAdapter.max_images_per_prompt`).
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
        ``base_answer`` (the user's images alone), ``answer`` (with the kept crops),
        ``crops`` (kept boxes, original-image pixels; ``crop_sources``: the image each is cut
        from), ``regions`` (ranked regions of step 0), ``steps`` (the step log), ``decision``
        (why it stopped, which step was kept), ``maps`` (every step's map); ``to_dict()`` is
        the log written to ``steps.json``.

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
    originals = originals_of(image)
    grounded = answer_images(originals, result.crops, result.crop_sources)
    for name, images in (("base_answer", originals), ("answer", grounded)):
        answer = answer_prompts(adapter, [(images, question)], max_new_tokens, [result.forwards])
        setattr(result, name, answer[0])
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
    items = [(answer_images([im], crops), q) for im, crops, q in prompts]
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
    adapter: VLMAdapter, method: AttributionMethod, running: Sequence[LoopState], record: bool
) -> list[tuple[AttributionMap, RecordedPrompt | None]]:
    """The maps of one step of every running sample, with each map's recorded forward (when
    ``record`` and the method ran one on the sample's prompt)."""
    if method.batched and len(running) > 1:
        items = [(st.images(), st.question) for st in running]
        recorder = ForwardRecorder() if record else None
        maps = method.attribute_batch(adapter, items, record=recorder)
        for st, amap in zip(running, maps):
            st.place_crops(amap)
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
