"""Grounding a question on a video: the map over every sampled frame, the zoom loop, answers.

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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from egg_interp.errors import UnsupportedModelError
from egg_interp.geometry import Box
from egg_interp.io import check_question
from egg_interp.loop.log import GroundingResult
from egg_interp.loop.video import answer_video, grounded_prompt, zoom_video
from egg_interp.maps import AttributionMap, SliceRelevance
from egg_interp.methods import get_method
from egg_interp.models.answering import ForwardRecorder
from egg_interp.models.base import VLMAdapter
from egg_interp.settings import LoopSettings
from egg_interp.video import Video


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
        for position, time, im in self.map.frame_maps():
            index = next(i for i, e in enumerate(self.map.images) if e is im)
            c = by_image[index]
            out.append(
                {
                    "frame": position,
                    "source_index": self.video.indices[position],
                    "time": time,
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
