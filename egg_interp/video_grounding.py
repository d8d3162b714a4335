"""Grounding a question on a video: one map over every sampled frame, and the answer.

:func:`ground_video` builds the prompt ``[video, question]`` for a model that takes video,
computes the map with any registered method (EGG by default) and answers greedily from the
map's own forward. The map holds one grid per temporal slice (a Qwen-style token spans two
frames); :class:`VideoGroundingResult` gives each sampled frame its grid, time and share of
the relevance, which ``egg-interp ground --video`` writes as per-frame maps, a
relevance-over-time curve and a frame strip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from egg_interp.errors import UnsupportedModelError
from egg_interp.io import check_question
from egg_interp.maps import AttributionMap, SliceRelevance
from egg_interp.methods import get_method
from egg_interp.methods.base import AttributionMethod
from egg_interp.models.answering import ForwardRecorder, continue_greedy
from egg_interp.models.base import VLMAdapter
from egg_interp.video import Video


@dataclass
class VideoGroundingResult:
    """A video's map and the model's answer.

    Attributes
    ----------
    question : str
    video : Video
        The sampled frames the model saw.
    map : AttributionMap
        One entry per temporal slice of the video (:meth:`AttributionMap.frame_maps`).
    answer : str
        The greedy answer to ``[video, question]``.
    method : str
    """

    question: str
    video: Video
    map: AttributionMap
    answer: str
    method: str

    def curve(self) -> list[SliceRelevance]:
        """Relevance per temporal slice, in time order."""
        return self.map.relevance_over_time()

    def frames(self) -> list[dict[str, Any]]:
        """One record per sampled frame: its position among the sampled frames, index in the
        source, time, the slice whose tokens see it (and the frames that slice spans), and
        that slice's total relevance and share."""
        by_image = {c.image_index: c for c in self.curve()}
        out = []
        for position, time, im in self.map.frame_maps():
            index = next(i for i, e in enumerate(self.map.images) if e is im)
            c = by_image[index]
            out.append(
                {
                    "frame": position,
                    "source_index": self.video.indices[position],
                    "time": time,
                    "slice": self.map.video_slices().index(index),
                    "slice_frames": list(im.frames),
                    "slice_total": c.total,
                    "slice_share": c.share,
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        v = self.video
        return {
            "question": self.question,
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
            "frames": self.frames(),
            "slices": [c.to_dict() for c in self.curve()],
            "map_meta": self.map.meta,
        }


def ground_video(
    adapter: VLMAdapter,
    video: Video,
    question: str,
    method: str | AttributionMethod = "egg",
    max_new_tokens: int = 20,
) -> VideoGroundingResult:
    """Map ``question`` over ``video`` and answer it.

    Parameters
    ----------
    adapter : VLMAdapter
        A model that takes video (:attr:`VLMAdapter.supports_video
        <egg_interp.models.base.VLMAdapter.supports_video>`); others are refused in one line.
    video : Video
        From :func:`egg_interp.video.read_video`.
    method : str or AttributionMethod
        Any registered method that maps video prompts (pixel-space variants are refused).

    Returns
    -------
    VideoGroundingResult
        The answer continues the map's own forward when the method records one (EGG and the
        other gradient methods at the visual tokens), else a fresh ``generate``: the same
        tokens either way.
    """
    question = check_question(question)
    if not adapter.supports_video:
        who = adapter.name or type(adapter).__name__
        raise UnsupportedModelError(f"{who} does not take video (images only)")
    method = get_method(method)
    inputs = adapter.build_inputs([], question, videos=[video])
    recorder = ForwardRecorder()
    amap = method.attribute(adapter, [], question, inputs=inputs, record=recorder)
    if recorder.last is not None:
        answer = continue_greedy(adapter, recorder.last, max_new_tokens)[0]
    else:
        answer = adapter.generate(inputs, max_new_tokens)
    return VideoGroundingResult(question, video, amap, answer, method.name)


__all__ = ["VideoGroundingResult", "ground_video"]
