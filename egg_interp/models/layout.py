"""Token layouts: which rows of an image's features form which grid, covering which pixels.

These are the plain data an adapter produces for every prompt (:class:`PromptInputs`, with
one :class:`ImageLayout` per image, each with one or more :class:`ViewLayout` grids) and the
helper for the regular tilings all supported architectures use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from egg_interp.geometry import Box
from egg_interp.video import Video


@dataclass
class ViewLayout:
    """Where one view's tokens come from and which pixels they cover.

    Attributes
    ----------
    name : str
        ``"base"``, ``"highres"``, ``"tile"``, ``"thumbnail"``, ...
    token_index : ndarray of shape (rows, cols), int64
        Row of the image's feature matrix that holds each grid cell's token.
    cell_boxes : ndarray of shape (rows, cols, 4), float64
        ``(x0, y0, x1, y1)`` each token covers, in the image's own pixels.
    pixel_slices : list, optional
        For pixel-space methods: per cell, how to find its patch in ``pixel_values``
        (architecture specific; used only by the adapter itself).
    """

    name: str
    token_index: np.ndarray
    cell_boxes: np.ndarray
    pixel_slices: Any = None


@dataclass
class ImageLayout:
    """Token layout of one image of the prompt, or of one temporal slice of a video.

    Attributes
    ----------
    image_size : (int, int)
        ``(width, height)`` of the image (of the video's frames).
    n_tokens : int
        Visual tokens of this image (slice), its rows of the features.
    views : list of ViewLayout
    origin_box : Box
        Where the image lies in the original, in original pixels.
    frames : tuple of int
        For a video's slice: which sampled frames (0-based positions in
        :attr:`egg_interp.video.Video.frames`) its tokens see. One for a model that encodes
        frames one by one; two for a Qwen-style temporal patch of 2 (every token of the slice
        spans both frames; the last frame is repeated when their count is odd, so the last
        slice may list one frame). Empty for a still image.
    timestamps : tuple of float
        Time in seconds of each of :attr:`frames`.
    video_index : int
        Which video of the prompt the slice belongs to (``-1`` for a still image).
    """

    image_size: tuple[int, int]
    n_tokens: int
    views: list[ViewLayout]
    origin_box: Box = (0.0, 0.0, 0.0, 0.0)
    frames: tuple[int, ...] = ()
    timestamps: tuple[float, ...] = ()
    video_index: int = -1

    @property
    def is_video(self) -> bool:
        """Whether this layout is a temporal slice of a video."""
        return self.video_index >= 0


@dataclass
class PromptInputs:
    """A built prompt: processor outputs on the model's device plus the token layout.

    Attributes
    ----------
    batch : dict of str to Tensor
        What the processor returned (``input_ids``, ``attention_mask``, ``pixel_values``, ...).
    images : list of PIL.Image.Image
        The still images of the prompt, original first.
    layouts : list of ImageLayout
        One per still image and one per temporal slice of each video, in prompt order
        (videos come first in a prompt, then the images).
    question : str
    videos : list of Video
        The prompt's videos (:class:`egg_interp.video.Video`), in prompt order.
    """

    batch: dict[str, torch.Tensor]
    images: list[Image.Image]
    layouts: list[ImageLayout]
    question: str
    answer_ids: list[int] = field(default_factory=list)
    images_per_row: list[int] = field(default_factory=list)
    videos: list[Video] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.images_per_row:
            self.images_per_row = [len(self.images)]

    @property
    def input_ids(self) -> torch.Tensor:
        return self.batch["input_ids"]

    @property
    def batch_size(self) -> int:
        return len(self.images_per_row)

    def row_layouts(self) -> list[list[ImageLayout]]:
        """The layouts grouped by batch row (one prompt per row)."""
        if self.batch_size == 1:
            return [list(self.layouts)]
        out, start = [], 0
        for n in self.images_per_row:
            out.append(self.layouts[start : start + n])
            start += n
        return out
