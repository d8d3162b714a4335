"""Adapter for ``glm4v`` checkpoints (GLM-4.1V-Thinking and its successors of that type).

Layout: the processor resizes each image with GLM's ``smart_resize`` to ``rh x rw``, multiples
of 28 (patch 14 times the 2x2 downsample), without crop or padding (slightly anisotropic;
images under 28 px per side are scaled up first, and a still image counts twice against the
pixel budget, as two temporal copies). Placeholders: ``<|begin_of_image|>`` + ``<|image|>`` x
``t h w / 4`` + ``<|end_of_image|>``; tokens row-major over the merged grid
``(rh/28) x (rw/28)``, token ``(r, c)`` covering ``x in [28 c W / rw, 28 (c+1) W / rw)``,
likewise y, read from the ``image_grid_thw`` the processor returned (the same geometry as
Qwen2-VL: :func:`~egg_interp.models.qwen2_5_vl.merged_grid_view`).

Hook: ``get_image_features(...).pooler_output``, one tensor per image: a ViT with 2-D rotary
positions and a learned position table resampled (bicubic) at each patch's own coordinates,
then a 2x2 strided convolution joins each block of patches into one token and a gated MLP
projects it. Positions: 3-D rotary (mRoPE) from ``input_ids``, ``image_grid_thw`` and
``mm_token_type_ids`` (the processor types ``<|image|>`` as 1 outside video segments), with
cached ``rope_deltas``, handled as for Qwen2.5-VL (:mod:`egg_interp.models.qwen2_5_vl`).

What maps cannot show: detail finer than a 28 x 28 resized-pixel token. Pixel-space methods are
refused (``pixel_values`` holds flattened patches).

Video: the processor resizes all frames alike with the pixel budget counted over the frames
(GLM's video ``smart_resize``, the same function as Qwen3-VL's:
:func:`~egg_interp.models.video_inputs.qwen3_frame_size`), joins each two consecutive frames
into one temporal patch (a token spans both) and writes, per temporal patch,
``<|begin_of_image|>`` + ``<|image|>`` x ``h w / 4`` + ``<|end_of_image|>`` and the first frame's
whole second, all inside ``<|begin_of_video|>``/``<|end_of_video|>`` (type 2 in
``mm_token_type_ids``). The model finds video tokens by the *image* token id, so in
transformers 5.24 one prompt cannot hold a video and still images through its own vision
path (the image placeholder count includes the video's); from precomputed features it can:
:meth:`Glm4vAdapter.visual_encoder_outputs` passes all features, in sequence order, as images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from egg_interp.models.base import PromptInputs
from egg_interp.models.qwen2_5_vl import Qwen2_5_VLAdapter
from egg_interp.models.video_inputs import qwen3_frame_size


class Glm4vAdapter(Qwen2_5_VLAdapter):
    """GLM-4V: Qwen2-VL's geometry and positions with GLM's tokens (module docstring)."""

    model_types = ("glm4v",)
    image_token = "<|image|>"

    def fallback_prompt(self, n_images: int, text: str) -> str:
        image = "<|begin_of_image|><|image|><|end_of_image|>"
        return f"[gMASK]<sop><|user|>\n{image * n_images}{text}<|assistant|>\n"

    def video_frame_size(
        self, n_frames: int, height: int, width: int, settings: dict[str, Any]
    ) -> tuple[int, int]:
        """GLM-4V's video rule: the pixel budget counts all frames."""
        return qwen3_frame_size(n_frames, height, width, settings)

    def visual_encoder_outputs(
        self, inputs: PromptInputs, features: Sequence[torch.Tensor]
    ) -> dict[str, Any]:
        """Every feature under ``"image"``, in sequence order, when a prompt mixes a video and
        images: GLM-4V's placeholder masks both count every ``<|image|>`` token, so the
        ``"video"`` entry would be scattered over the images' tokens too (module docstring)."""
        if inputs.videos and inputs.images:
            return {"image": self.encoder_outputs(features)}
        return super().visual_encoder_outputs(inputs, features)

    def generate(self, inputs: PromptInputs, max_new_tokens: int = 20) -> str:
        """As the base; a prompt with a video and images, which the model's own vision path
        refuses, is answered from its precomputed features (the same greedy tokens)."""
        if inputs.videos and inputs.images:
            from egg_interp.models.answering import answer_from_features

            return answer_from_features(self, inputs, max_new_tokens)
        return super().generate(inputs, max_new_tokens)
