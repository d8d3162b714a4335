"""Adapter for ``gemma4`` checkpoints (Gemma 4).

Layout. The image processor keeps the aspect ratio: it resizes a ``W x H`` image (bicubic)
to the largest ``w x h`` with both sides multiples of ``3 * patch`` (48 px at patch 16)
whose patch count stays within ``9 * max_soft_tokens`` (``max_soft_tokens`` in 70, 140,
280, 560, 1120; 280 by default), and cuts it into patches; the vision encoder's pooler
averages each 3 x 3 block of patches by position into one soft token. An image thus gives
``(h / 48) x (w / 48)`` tokens, row-major, between ``<|image>`` and ``<image|>`` (e.g.
128 x 64 at 280 tokens -> 1104 x 528 px -> 23 x 11 tokens; the floor to multiples of 48
scales the two sides slightly differently). Token ``(r, c)`` covers
``[48 c W / w, 48 (c + 1) W / w) x [48 r H / h, 48 (r + 1) H / h)``; the grid is read from
the ``image_position_ids`` the processor returned (patch ``(x, y)``, ``-1`` for padding), so
it follows any processor setting. One view, ``"base"``.

Hook: ``get_image_features(...).pooler_output`` (one tensor per image, padding stripped),
after the multimodal embedder. Those vectors replace the ``<|image|>`` embeddings, and the
language model derives from ``inputs_embeds`` both its residual stream and the context part
of its per-layer inputs (the token-identity part of an image position is the pad token's),
so a gradient at the features covers every path by which the image enters. Positions are
1-D. With ``use_bidirectional_attention="vision"`` (the larger released models) each
image's tokens attend to each other in the sliding-window layers (``mm_token_type_ids`` = 1
on them), never in the full-attention ones; appended answer tokens are text (type 0). The
last ``num_kv_shared_layers`` layers reuse earlier layers' keys and values; with
``logits_to_keep=1`` they run on the last position only, which changes nothing upstream.
Mixture-of-experts variants (26B-A4B) need nothing more: the routing is part of the
language model the gradient runs through (piecewise: top-k choices do not move within a
gradient step).

The processor wants an audio ``feature_extractor`` and a ``video_processor`` (torchvision);
without torchvision it is built image-only
(:func:`egg_interp.models.processors.image_only_processor_class`), same prompts, same
tensors.

Video: every frame is encoded alone, as an image at the video budget (``max_soft_tokens`` 70 in
the video processor, against 280 for images: an aspect-kept grid of at most 70 3x3-pooled
tokens), so each frame is one layout (:func:`gemma4_grid_layout`, every token sees one frame);
the processor writes per frame ``mm:ss <|image>`` + ``<|video|>`` x tokens + ``<image|>``.
Without torchvision :class:`Gemma4VideoFrames` stands in for ``Gemma4VideoProcessor``: each
frame through the PIL image processor at the video budget, which is what the video processor
computes (same size rule, patch order and padding; resized by PIL, as images are).

Attention heuristics read one layer's answer row; at a sliding-window layer it sees only the
last ``sliding_window`` positions (512 or 1024 in the released models), so on a long prompt
(the loop's original plus crops, 280 tokens each by default) earlier image tokens get exactly
0 there and rel-att 0 / 0 = NaN: pass ``layers=`` a full-attention layer
(``config.text_config.layer_types``) to read every token (see :mod:`egg_interp.models.gemma3`).

Not supported: pixel-space methods (``pixel_values`` are flattened patches, not an image),
``gemma4_unified`` (no vision encoder). What maps cannot show: anything finer than 48 x 48
processed pixels, i.e. ``48 W / w`` original pixels per token side (at 280 tokens: 5.6 px
for a 128 x 64 image, 56 px for a 1280 x 640 one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from egg_interp.models.base import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
    VLMAdapter,
    regular_cell_boxes,
)
from egg_interp.models.gemma3 import extend_token_types
from egg_interp.models.video_inputs import saved_video_config
from egg_interp.video import Video


def gemma4_grid_layout(
    size: tuple[int, int], patch_grid: tuple[int, int], patch: int, kernel: int
) -> ImageLayout:
    """Layout of one image (or video frame) encoded on a ``patch_grid`` of patches.

    Parameters
    ----------
    size : (int, int)
        ``(width, height)`` of the original image.
    patch_grid : (int, int)
        ``(rows, cols)`` of patches of the resized image (multiples of ``kernel``).
    patch, kernel : int
        Patch side in processed pixels and the pooling kernel (3).

    Returns
    -------
    ImageLayout
        One ``"base"`` view of ``(rows / kernel) x (cols / kernel)`` tokens, row-major; each
        cell is ``kernel * patch`` processed pixels, rescaled to the original.
    """
    width, height = size
    prow, pcol = patch_grid
    rows, cols = prow // kernel, pcol // kernel
    cell_w = kernel * patch * width / (pcol * patch)
    cell_h = kernel * patch * height / (prow * patch)
    boxes = regular_cell_boxes(rows, cols, 0.0, 0.0, cell_w, cell_h)
    index = np.arange(rows * cols).reshape(rows, cols)
    return ImageLayout((width, height), rows * cols, [ViewLayout("base", index, boxes)])


class Gemma4VideoFrames:
    """A torchvision-free stand-in for ``Gemma4VideoProcessor``: every frame of a video through
    the PIL image processor at the video token budget.

    Returns what the video processor returns: ``pixel_values_videos`` (all frames' padded
    patch rows, ``(frames, max_patches, patch_pixels)``), ``video_position_ids`` (patch
    ``(x, y)``, ``-1`` for padding), ``num_frames_per_video``, ``num_soft_tokens_per_video``
    (per frame) and the frames' ``video_metadata``.
    """

    def __init__(self, image_processor: Any, max_soft_tokens: int) -> None:
        self.image_processor = image_processor
        self.max_soft_tokens = int(max_soft_tokens)

    def __call__(
        self, videos: Any, video_metadata: Any = None, return_tensors: str | None = None, **_: Any
    ) -> Any:
        from transformers import BatchFeature
        from transformers.video_utils import VideoMetadata

        pixels, positions, frames, tokens, metas = [], [], [], [], []
        for k, video in enumerate(videos):
            out = self.image_processor(
                images=list(video), max_soft_tokens=self.max_soft_tokens, return_tensors="np"
            )
            pixels.append(out["pixel_values"])
            positions.append(out["image_position_ids"])
            frames.append(len(video))
            tokens.append(int(out["num_soft_tokens_per_image"][0]))
            meta = None if video_metadata is None else video_metadata[k]
            metas.append(meta if isinstance(meta, VideoMetadata) else VideoMetadata(len(video)))
        data = {
            "pixel_values_videos": np.concatenate(pixels),
            "video_position_ids": np.concatenate(positions),
            "num_frames_per_video": frames,
            "num_soft_tokens_per_video": tokens,
            "video_metadata": metas,
        }
        return BatchFeature(
            data, tensor_type=return_tensors, skip_tensor_conversion=["video_metadata"]
        )


VIDEO_SOFT_TOKENS = 70
"""``Gemma4VideoProcessor.max_soft_tokens`` in transformers 5.24 (its module cannot even be
imported without torchvision, so the default is copied here)."""


def video_soft_tokens(checkpoint: str | None) -> int:
    """The video budget: the checkpoint's video processor setting, else
    :data:`VIDEO_SOFT_TOKENS`."""
    saved = saved_video_config(checkpoint).get("max_soft_tokens")
    return int(saved if saved is not None else VIDEO_SOFT_TOKENS)


class Gemma4Adapter(VLMAdapter):
    """Gemma 4: one aspect-preserving grid of 3x3-pooled patches per image (per video frame)."""

    model_types = ("gemma4",)
    batch_by_repeating_prompt = True
    image_token = "<|image|>"
    images_nested_per_prompt = True
    pixel_keys = ("pixel_values", "image_position_ids", "pixel_values_videos", "video_position_ids")

    def pil_video_processor(self) -> Gemma4VideoFrames:
        """:class:`Gemma4VideoFrames` over this model's image processor (built once)."""
        if getattr(self, "_pil_video_processor", None) is None:
            budget = video_soft_tokens(getattr(self.model, "name_or_path", None) or None)
            self._pil_video_processor = Gemma4VideoFrames(self.processor.image_processor, budget)
        return self._pil_video_processor

    def video_layouts(self, videos: Sequence[Video], batch: dict[str, Any]) -> list[ImageLayout]:
        """One layout per frame, its grid read from ``video_position_ids``."""
        vc = self.model.config.vision_config
        positions = batch["video_position_ids"]
        out, start = [], 0
        for v, video in enumerate(videos):
            for f, t in enumerate(video.timestamps):
                pos = positions[start + f]
                real = pos[(pos >= 0).all(dim=-1)]
                grid = (int(real[:, 1].max()) + 1, int(real[:, 0].max()) + 1)  # (rows, cols)
                lay = gemma4_grid_layout(video.size, grid, vc.patch_size, vc.pooling_kernel_size)
                lay.origin_box = (0.0, 0.0, float(video.size[0]), float(video.size[1]))
                lay.frames, lay.timestamps, lay.video_index = (f,), (t,), v
                out.append(lay)
            start += video.n_frames
        return out

    def compute_video_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        b = inputs.batch
        out = self.model.model.get_video_features(
            pixel_values_videos=b["pixel_values_videos"],
            video_position_ids=b["video_position_ids"],
            num_frames_per_video=b["num_frames_per_video"],
            return_dict=True,
        )
        return list(out.pooler_output)

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        vc = self.model.config.vision_config
        positions = batch["image_position_ids"]
        if positions.shape[0] != len(images):
            raise RuntimeError(
                f"Gemma4Adapter: {positions.shape[0]} encoded images for {len(images)} images"
            )
        out = []
        for im, pos in zip(images, positions):
            real = pos[(pos >= 0).all(dim=-1)]
            grid = (int(real[:, 1].max()) + 1, int(real[:, 0].max()) + 1)  # (rows, cols)
            out.append(gemma4_grid_layout(im.size, grid, vc.patch_size, vc.pooling_kernel_size))
        return out

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            pixel_values=inputs.batch["pixel_values"],
            image_position_ids=inputs.batch["image_position_ids"],
            return_dict=True,
        )
        return list(out.pooler_output)

    def extend_extra(self, batch: dict[str, Any], n: int) -> dict[str, Any]:
        """Answer tokens are text: ``mm_token_type_ids`` 0 (causal)."""
        return extend_token_types(batch, "mm_token_type_ids", n, 0)
