"""The zoom-and-reground loop on a video, and :func:`ground_video`, its whole pipeline.

Grounding a question on a video: the map over every sampled frame, the zoom loop, answers.

:func:`ground_video` runs, for a model that takes video, the zoom-and-reground loop on the
prompt ``[video, question]`` (:mod:`egg_interp.loop.video`): step 0's map has one grid per
temporal slice of the video (a Qwen-style token spans two frames); regions are ranked across
the slices, each crop is cut from its slice's frame, and later steps map ``[video, crops]``.
It answers with the video alone (the base answer) and with the video plus the kept crops as
images (the grounded answer). :class:`VideoGroundingResult` gives each sampled frame its grid,
time and share of the relevance, which ``egg-interp ground --video`` writes as per-frame maps,
a relevance-over-time curve and a frame strip.

A model that cannot hold a video and images in one prompt (Molmo 2:
:attr:`VLMAdapter.video_with_images <egg_interp.models.base.VLMAdapter.video_with_images>`)
gets the map and the base answer only; the result says why in ``zoom_note``.

The loop. The zoom-and-reground loop on a video: zoomed frames as images after the video.

Every prompt holds the video, then the current crops as images. A step's map has one entry per
temporal slice of the video (a grid of the frame, or of the two frames a Qwen-style temporal
patch joins), then one per crop; the several-images loop (:class:`LoopState`) treats each slice
as a user image: regions are found in every slice's and crop's grid, ranked across all of them
together by their summed relevance, and each new crop is cut from its slice's frame. A slice of
two frames is cut from its **first** frame (its tokens see both frames alike: the map cannot
say which of the two holds the evidence). The stopping rule reads the slices' maps together
(the chain-rule spatial entropy of several images); the kept crops go back to the model as
images after the video.

Answers continue the maps' own recorded forwards where the prompts agree (the video alone is
step 0's prompt; the video with the kept crops the last step's when the rule keeps its
predecessor), else one forward on precomputed features, continued greedily: the same tokens as
``generate`` from pixels, and the path that works where the model's own vision path cannot take
a video and images in one forward (GLM-4V in transformers 5.24).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from egg_interp.errors import UnsupportedModelError
from egg_interp.geometry import Box, crop_image
from egg_interp.io import check_question
from egg_interp.loop import KEEP_FORWARDS, _loop_method, _region_kwargs, _step_maps
from egg_interp.loop.log import GroundingResult
from egg_interp.loop.state import LoopState, check_image_count
from egg_interp.maps import AttributionMap, SliceRelevance
from egg_interp.methods import get_method
from egg_interp.models.answering import (
    ForwardRecorder,
    RecordedForward,
    answer_from_features,
    continue_greedy,
)
from egg_interp.models.base import PromptInputs, VLMAdapter
from egg_interp.settings import LoopSettings
from egg_interp.stopping import StoppingRule
from egg_interp.video import Video


class VideoLoopState(LoopState):
    """One video's loop: the slices' frames are the "user images" crops are cut from.

    Parameters
    ----------
    video : Video
    slices : sequence of tuple of int
        The sampled frames of each temporal slice, in time order (the video's layouts'
        ``frames``); slice ``i``'s crops are cut from frame ``slices[i][0]``.
    """

    def __init__(
        self, video: Video, slices: Sequence[tuple[int, ...]], question: str, rule: StoppingRule
    ) -> None:
        self.video, self.slices = video, [tuple(s) for s in slices]
        super().__init__([video.frames[s[0]] for s in self.slices], question, rule)

    @property
    def several(self) -> bool:
        return True  # the log names each crop's slice

    def crop_frames(self, sources: Sequence[int]) -> list[int]:
        """The sampled frame each crop of these slices is cut from."""
        return [self.slices[s][0] for s in sources]

    def images(self) -> list[Image.Image]:
        """The next prompt's images: the current crops (the video comes before them)."""
        return [crop_image(self.originals[s], b) for s, b in zip(self.sources, self.crops)]

    def prompt(self, adapter: VLMAdapter) -> tuple[list[Image.Image], PromptInputs]:
        images = self.images()
        inputs = adapter.build_inputs(
            images, self.question, origin_boxes=self.crops, videos=[self.video]
        )
        return images, inputs

    def view_names(self) -> list[str]:
        def frames(s: int) -> str:
            f = self.slices[s]
            return f"frame {f[0]}" if len(f) == 1 else f"frames {f[0]}-{f[-1]}"

        return [
            *[frames(s) for s in range(len(self.slices))],
            *[f"crop {k + 1} of {frames(s)}" for k, s in enumerate(self.sources)],
        ]


def video_slices(adapter: VLMAdapter, video: Video, question: str) -> list[tuple[int, ...]]:
    """The frames of each temporal slice of ``video`` in this model's prompt."""
    inputs = adapter.build_inputs([], question, videos=[video])
    return [lay.frames for lay in inputs.layouts if lay.is_video]


def zoom_video(
    adapter: VLMAdapter,
    video: Video,
    question: str,
    *,
    settings: LoopSettings | None = None,
    keep_maps: bool = True,
    region_kwargs: dict[str, Any] | None = None,
) -> tuple[GroundingResult, VideoLoopState]:
    """The zoom-and-reground loop on ``video`` (module docstring).

    Returns
    -------
    (GroundingResult, VideoLoopState)
        The loop's result (``crop_sources``: each kept crop's slice; boxes in its frame's
        pixels; ``forwards``: the recorded first and last forwards) and the state
        (:meth:`VideoLoopState.crop_frames` turns slices into frames).

    Raises
    ------
    UnsupportedModelError
        A model that cannot hold a video and images in one prompt
        (:attr:`VLMAdapter.video_with_images`), or fewer than ``top_k`` images with it.
    """
    who = adapter.name or type(adapter).__name__
    if not adapter.video_with_images:
        raise UnsupportedModelError(
            f"{who} cannot hold a video and zoomed frames in one prompt: no zoom loop on video"
        )
    method, settings = _loop_method(adapter, settings)
    region_kwargs = _region_kwargs(settings, region_kwargs)
    check_image_count(adapter, 0, settings.top_k)
    state = VideoLoopState(video, video_slices(adapter, video, question), question, settings.rule())
    while not state.decision.stop:
        start = time.perf_counter()
        [(amap, recorded)] = _step_maps(adapter, method, [state], record=True)
        state.advance(amap, settings.top_k, region_kwargs, keep_maps, start)
        state.note_forward(recorded, KEEP_FORWARDS)
    return state.result(method.name), state


def answer_video(
    adapter: VLMAdapter,
    inputs: PromptInputs,
    recorded: RecordedForward | None = None,
    max_new_tokens: int = 20,
) -> str:
    """Greedy answer to a video prompt: ``recorded`` continued when given (and not consumed),
    else one forward on precomputed features, continued (the same tokens as ``generate``)."""
    if recorded is None or recorded.cache is None:
        return answer_from_features(adapter, inputs, max_new_tokens)
    return continue_greedy(adapter, recorded, max_new_tokens)[0]


def grounded_prompt(
    adapter: VLMAdapter, state: VideoLoopState, crops: Sequence[Box], sources: Sequence[int]
) -> PromptInputs:
    """The final answer's prompt: the video, then the kept crops cut from their frames."""
    images = [crop_image(state.originals[s], b) for s, b in zip(sources, crops, strict=True)]
    return adapter.build_inputs(images, state.question, origin_boxes=crops, videos=[state.video])


__all__ = ["VideoLoopState", "answer_video", "grounded_prompt", "video_slices", "zoom_video"]


@dataclass
class VideoGroundingResult:
    """A video's map, the zoom loop's crops and the model's answers.

    Attributes
    ----------
    question : str
    video : Video
        The sampled frames the model saw.
    map : AttributionMap
        Step 0's map (the video alone): one entry per temporal slice
        (:meth:`AttributionMap.frame_maps`).
    base_answer : str
        The greedy answer to ``[video, question]``.
    answer : str
        The greedy answer to ``[video, kept crops, question]`` (the base answer when no crop
        was kept).
    method : str
    loop : GroundingResult or None
        The loop's steps, kept crops (``crops``, in their frames' pixels) and decision;
        ``None`` when the model cannot zoom on video (``zoom_note`` says why).
    crop_frames : list of int
        The sampled frame each kept crop is cut from.
    region_frames : list of int
        The frame of each of step 0's ranked regions (``loop.regions``).
    """

    question: str
    video: Video
    map: AttributionMap
    base_answer: str
    answer: str
    method: str
    loop: GroundingResult | None = None
    crop_frames: list[int] = field(default_factory=list)
    region_frames: list[int] = field(default_factory=list)
    zoom_note: str = ""

    @property
    def crops(self) -> list[Box]:
        """The kept crops, ``(x0, y0, x1, y1)`` in the pixels of their frames."""
        return list(self.loop.crops) if self.loop is not None else []

    def curve(self) -> list[SliceRelevance]:
        """Relevance per temporal slice of step 0's map, in time order."""
        return self.map.relevance_over_time()

    def frames(self) -> list[dict[str, Any]]:
        """One record per sampled frame: its position among the sampled frames, index in the
        source, time, the slice whose tokens see it (and the frames that slice spans), that
        slice's total relevance and share, and whether a kept crop is cut from it."""
        by_image = {c.image_index: c for c in self.curve()}
        slices = self.map.video_slices()
        out = []
        for position, seconds, im in self.map.frame_maps():
            index = next(i for i, e in enumerate(self.map.images) if e is im)
            c = by_image[index]
            out.append(
                {
                    "frame": position,
                    "source_index": self.video.indices[position],
                    "time": seconds,
                    "slice": slices.index(index),
                    "slice_frames": list(im.frames),
                    "slice_total": c.total,
                    "slice_share": c.share,
                    "zoomed": position in self.crop_frames,
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        v = self.video
        return {
            "question": self.question,
            "base_answer": self.base_answer,
            "answer": self.answer,
            "method": self.method,
            "target": self.map.target,
            "video": {
                "source": v.source,
                "fps": v.fps,
                "total_frames": v.total_frames,
                "size": list(v.size),
                "sampled_indices": list(v.indices),
                "timestamps": list(v.timestamps),
            },
            "crops": [list(b) for b in self.crops],
            "crop_frames": self.crop_frames,
            "region_frames": self.region_frames,
            "zoom_note": self.zoom_note,
            "frames": self.frames(),
            "slices": [c.to_dict() for c in self.curve()],
            "loop": self.loop.to_dict() if self.loop is not None else None,
            "map_meta": self.map.meta,
        }


def ground_video(
    adapter: VLMAdapter,
    video: Video,
    question: str,
    *,
    settings: LoopSettings | None = None,
    max_new_tokens: int = 20,
) -> VideoGroundingResult:
    """Map ``question`` over ``video``, zoom into the most relevant frames, answer.

    Parameters
    ----------
    adapter : VLMAdapter
        A model that takes video (:attr:`VLMAdapter.supports_video
        <egg_interp.models.base.VLMAdapter.supports_video>`); others are refused in one line.
    video : Video
        From :func:`egg_interp.video.read_video`.
    settings : LoopSettings, optional
        The loop's method, stopping rule, ``top_k`` and crop policy (default
        ``LoopSettings()``: EGG, the spatial-entropy rule, 2 crops a step); any registered
        method that maps video prompts (pixel-space variants are refused).

    Returns
    -------
    VideoGroundingResult
        Answers continue the maps' own recorded forwards where the prompts agree, else one
        forward on precomputed features (:func:`egg_interp.loop.video.answer_video`): the same
        tokens as ``generate``.
    """
    question = check_question(question)
    who = adapter.name or type(adapter).__name__
    if not adapter.supports_video:
        raise UnsupportedModelError(f"{who} does not take video (images only)")
    settings = settings or LoopSettings()
    base_inputs = adapter.build_inputs([], question, videos=[video])
    if not adapter.video_with_images:
        return _map_only(adapter, video, question, settings, max_new_tokens)
    loop, state = zoom_video(adapter, video, question, settings=settings)
    first = state.first.forward if state.first is not None else None
    base = answer_video(adapter, base_inputs, first, max_new_tokens)
    answer = base
    if loop.crops:
        last = state.last.forward if state.last is not None else None
        inputs = grounded_prompt(adapter, state, loop.crops, loop.crop_sources)
        answer = answer_video(adapter, inputs, last, max_new_tokens)
    return VideoGroundingResult(
        question,
        video,
        loop.maps[0],
        base,
        answer,
        loop.method,
        loop,
        state.crop_frames(loop.crop_sources),
        state.crop_frames(loop.region_sources),
    )


def _map_only(
    adapter: VLMAdapter, video: Video, question: str, settings: LoopSettings, max_new_tokens: int
) -> VideoGroundingResult:
    """Step 0's map and the base answer, for a model that cannot zoom on video."""
    method = get_method(settings.method_for("egg"), **settings.method_kwargs())
    inputs = adapter.build_inputs([], question, videos=[video])
    recorder = ForwardRecorder()
    amap = method.attribute(adapter, [], question, inputs=inputs, record=recorder)
    base = answer_video(adapter, inputs, recorder.last, max_new_tokens)
    note = (
        f"{adapter.name or type(adapter).__name__} cannot hold a video and zoomed frames in one "
        "prompt: the map and the answer to the video alone"
    )
    return VideoGroundingResult(question, video, amap, base, base, method.name, zoom_note=note)


__all__ = ["VideoGroundingResult", "ground_video"]
