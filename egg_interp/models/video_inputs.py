"""Video inputs without torchvision.

transformers' video processors (``Qwen2VLVideoProcessor``, ``Qwen3VLVideoProcessor``,
``Glm4vVideoProcessor``, ``LlavaOnevisionVideoProcessor``...) resize, normalise and patchify
frames with torchvision, which this project cannot require. A processor's *prompt* side needs no torchvision: its
``replace_video_token`` expands the video placeholder (Qwen3-VL writes ``<t seconds>`` and one
vision block per temporal patch, GLM-4V a block and a timestamp per frame pair), its
``create_mm_token_type_ids`` types the tokens, and Qwen2.5-VL derives ``second_per_grid_ts``
from the frames' metadata. So the processor runs as it is, with one stand-in in its video slot:

:class:`PilVideoProcessor` returns what those video processors return (``pixel_values_videos``,
``video_grid_thw`` and the frames' ``VideoMetadata``) by their own steps, done through the
PIL image processor (transformers' ``...ImageProcessorPil``): each frame resized to the video
rule's size (the adapter's :meth:`~egg_interp.models.base.VLMAdapter.video_frame_size`: Qwen2-VL
and Qwen2.5-VL resize every frame with the image ``smart_resize``; Qwen3-VL, Qwen3.5 and
GLM-4V count the pixel budget over all frames), rescaled and normalised by the image
processor's own methods, then cut into ``temporal_patch x patch x patch`` blocks in the video
processor's order (:func:`patchify_video`; an odd frame count repeats the last frame), or,
for models that take whole frames (LLaVA-OneVision: every frame squashed to the tile size),
stacked as ``(videos, frames, channels, height, width)``.

Where it differs from the torchvision processors: frames are resized by PIL (bicubic, as the
image path) instead of torchvision's tensor resize, so pixel values may differ by interpolation
rounding; sizes, grids, token counts, the prompt and the frames' metadata are the same. Its
settings are the image processor's, overridden by the checkpoint's
``video_preprocessor_config.json`` where it has one (:func:`video_settings`). With torchvision
installed, a processor that loaded with its own video processor keeps it
(:func:`video_processor_slot` leaves it alone).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from egg_interp.errors import InputError

SETTING_NAMES = (
    "size",
    "patch_size",
    "temporal_patch_size",
    "merge_size",
    "image_mean",
    "image_std",
    "resample",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
)
"""What the video rule reads: sizes and budgets, patches, normalisation."""

FrameSize = Callable[[int, int, int, dict[str, Any]], tuple[int, int]]
"""``(n_frames, height, width, settings) -> (resized_height, resized_width)``."""


def patchify_video(frames: np.ndarray, patch: int, merge: int, temporal: int) -> np.ndarray:
    """Flatten frames into the patch rows of a Qwen-style vision tower.

    The order of transformers' ``Qwen2VLVideoProcessor.patchify`` (and Qwen3-VL's, GLM-4V's):
    temporal patch, then merged-token row and column, then the ``merge x merge`` patches of a
    token, each patch ``(channel, temporal, patch, patch)`` flattened. A frame count that is
    not a multiple of ``temporal`` is padded by repeating the last frame.

    Parameters
    ----------
    frames : ndarray of shape (T, C, H, W)
        ``H`` and ``W`` multiples of ``patch * merge``.

    Returns
    -------
    ndarray of shape (ceil(T / temporal) * (H / patch) * (W / patch), C * temporal * patch**2)

    >>> patchify_video(np.zeros((3, 3, 4, 4)), patch=2, merge=1, temporal=2).shape
    (8, 24)
    """
    if pad := -frames.shape[0] % temporal:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
    t, c, h, w = frames.shape
    gt, gh, gw = t // temporal, h // patch, w // patch
    blocks = frames.reshape(gt, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    blocks = blocks.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return blocks.reshape(gt * gh * gw, c * temporal * patch * patch)


def saved_video_config(checkpoint: str | None) -> dict[str, Any]:
    """The checkpoint's ``video_preprocessor_config.json`` (a local directory or the hub
    cache, never downloaded), or ``{}``."""
    if not checkpoint:
        return {}
    from transformers.utils import cached_file

    path = cached_file(
        checkpoint,
        "video_preprocessor_config.json",
        local_files_only=True,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    return json.loads(open(path).read()) if path else {}


def video_settings(image_processor: Any, checkpoint: str | None = None) -> dict[str, Any]:
    """The video rule's settings: the image processor's, overridden by the checkpoint's
    ``video_preprocessor_config.json`` (:func:`saved_video_config`) where it exists."""
    settings = {name: getattr(image_processor, name, None) for name in SETTING_NAMES}
    if isinstance(settings["size"], dict) or hasattr(settings["size"], "items"):
        settings["size"] = dict(settings["size"].items())
    saved = saved_video_config(checkpoint)
    for name in SETTING_NAMES:
        if saved.get(name) is not None:
            settings[name] = saved[name]
    for key, name in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge")):
        if saved.get(key) is not None:
            settings["size"] = {**settings["size"], name: saved[key]}
    return settings


class PilVideoProcessor:
    """A torchvision-free stand-in for a model's video processor (module docstring).

    Parameters
    ----------
    image_processor : transformers image processor (PIL backend)
        Its ``rescale`` and ``normalize`` are used; its settings are the defaults.
    frame_size : callable
        ``(n_frames, height, width, settings) -> (resized_height, resized_width)``: the model's
        video resize rule.
    settings : dict
        :data:`SETTING_NAMES` (from :func:`video_settings`).
    packing : str
        ``"patches"``: Qwen-style rows of flattened temporal patches and ``video_grid_thw``;
        ``"frames"``: the frames stacked, ``(videos, frames, channels, height, width)``.
    """

    def __init__(
        self,
        image_processor: Any,
        frame_size: FrameSize,
        settings: dict[str, Any],
        packing: str = "patches",
    ):
        if packing not in ("patches", "frames"):
            raise ValueError(f"packing is 'patches' or 'frames', not {packing!r}")
        self.image_processor = image_processor
        self.frame_size = frame_size
        self.settings = dict(settings)
        self.packing = packing
        if packing == "patches":
            self.patch_size = int(settings["patch_size"])
            self.temporal_patch_size = int(settings["temporal_patch_size"])
            self.merge_size = int(settings["merge_size"])

    def __repr__(self) -> str:
        return f"PilVideoProcessor({self.packing})"

    def __call__(
        self,
        videos: Any,
        video_metadata: Any = None,
        return_tensors: str | None = None,
        **ignored: Any,
    ) -> Any:
        """``pixel_values_videos``, ``video_grid_thw`` and ``video_metadata`` of ``videos``
        (a list of videos, each a list of PIL frames or a ``(T, H, W, 3)`` uint8 array)."""
        from transformers import BatchFeature
        from transformers.video_utils import VideoMetadata, make_batched_videos

        videos = make_batched_videos(videos)
        metadata = list(video_metadata) if video_metadata is not None else [None] * len(videos)
        if len(metadata) != len(videos):
            raise InputError(f"{len(videos)} videos but {len(metadata)} metadata entries")
        metas = []
        for video, meta in zip(videos, metadata, strict=True):
            if not isinstance(meta, VideoMetadata):
                meta = VideoMetadata(**(meta or {"total_num_frames": len(video)}))
            metas.append(meta)
        frames = [self.frames_pixels(np.asarray(video)) for video in videos]
        if self.packing == "patches":
            data = self.pack(frames)
        else:
            data = {"pixel_values_videos": np.stack(frames)}
        data["video_metadata"] = metas
        return BatchFeature(
            data, tensor_type=return_tensors, skip_tensor_conversion=["video_metadata"]
        )

    def pack(self, videos: list[np.ndarray]) -> dict[str, Any]:
        """Qwen-style ``pixel_values_videos`` (the patch rows of all videos) and
        ``video_grid_thw`` of ``(T, C, H, W)`` frames."""
        p, tp = self.patch_size, self.temporal_patch_size
        rows = [patchify_video(frames, p, self.merge_size, tp) for frames in videos]
        grids = [[-(-f.shape[0] // tp), f.shape[2] // p, f.shape[3] // p] for f in videos]
        return {
            "pixel_values_videos": np.concatenate(rows).astype(np.float32),
            "video_grid_thw": np.array(grids, dtype=np.int64),
        }

    def frames_pixels(self, video: np.ndarray) -> np.ndarray:
        """Resized, rescaled, normalised frames ``(T, C, rh, rw)`` float32 of a
        ``(T, H, W, 3)`` uint8 video, by the image processor's own steps."""
        from transformers.image_transforms import resize
        from transformers.image_utils import ChannelDimension, PILImageResampling

        s, ip = self.settings, self.image_processor
        t, height, width = video.shape[:3]
        rh, rw = self.frame_size(t, height, width, s)
        resample = PILImageResampling(s["resample"] if s["resample"] is not None else 3)
        first = ChannelDimension.FIRST
        out = []
        for frame in video:
            chw = np.moveaxis(frame, -1, 0)
            chw = resize(
                chw, (rh, rw), resample=resample, data_format=first, input_data_format=first
            )
            if s["do_rescale"]:
                chw = ip.rescale(chw, s["rescale_factor"])
            if s["do_normalize"]:
                chw = ip.normalize(chw, s["image_mean"], s["image_std"])
            out.append(np.asarray(chw, dtype=np.float32))
        return np.stack(out)


def qwen2_frame_size(n_frames: int, height: int, width: int, s: dict[str, Any]) -> tuple[int, int]:
    """Qwen2-VL's and Qwen2.5-VL's video rule: each frame by the image ``smart_resize`` (a
    multiple of ``patch * merge`` within ``size``'s per-frame pixel budget)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    factor = int(s["patch_size"]) * int(s["merge_size"])
    size = s["size"]
    return smart_resize(height, width, factor, size["shortest_edge"], size["longest_edge"])


def squashed_frame_size(
    n_frames: int, height: int, width: int, s: dict[str, Any]
) -> tuple[int, int]:
    """LLaVA-OneVision's video rule: every frame squashed to ``size`` (``height x width``, the
    tile: 384 x 384 in the released models), aspect not kept."""
    size = s["size"]
    return int(size["height"]), int(size["width"])


def qwen3_frame_size(n_frames: int, height: int, width: int, s: dict[str, Any]) -> tuple[int, int]:
    """Qwen3-VL's (and GLM-4V's, the same function) video rule: ``smart_resize`` with the
    pixel budget counted over the frames (``t x h x w`` within ``size``), sides under one
    ``factor`` scaled up first; at least ``temporal_patch_size`` frames."""
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

    factor = int(s["patch_size"]) * int(s["merge_size"])
    temporal = int(s["temporal_patch_size"])
    if n_frames < temporal:
        raise InputError(f"this model needs at least {temporal} frames per video, got {n_frames}")
    size = s["size"]
    return smart_resize(
        n_frames, height, width, temporal, factor, size["shortest_edge"], size["longest_edge"]
    )


@contextmanager
def video_processor_slot(processor: Any, make: Callable[[], Any]) -> Iterator[Any]:
    """Within this scope ``processor.video_processor`` is a video processor: its own when it
    loaded with one (torchvision installed), else ``make()`` (a :class:`PilVideoProcessor`),
    removed again on exit. Yields the one in use."""
    own = getattr(processor, "video_processor", None)
    if own is not None:
        yield own
        return
    processor.video_processor = make()
    try:
        yield processor.video_processor
    finally:
        del processor.video_processor


__all__ = [
    "PilVideoProcessor",
    "patchify_video",
    "qwen2_frame_size",
    "qwen3_frame_size",
    "saved_video_config",
    "squashed_frame_size",
    "video_processor_slot",
    "video_settings",
]
