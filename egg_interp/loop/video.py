"""The zoom-and-reground loop on a video: zoomed frames as images after the video.

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
from typing import Any

from PIL import Image

from egg_interp.errors import UnsupportedModelError
from egg_interp.geometry import Box, crop_image
from egg_interp.loop import KEEP_FORWARDS, _loop_method, _region_kwargs, _step_maps
from egg_interp.loop.log import GroundingResult
from egg_interp.loop.state import LoopState, check_image_count
from egg_interp.models.answering import (
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
