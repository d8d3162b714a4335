"""Adapter for ``qwen3_vl`` checkpoints (Qwen3-VL), deepstack included.

Token layout, placeholders and 3-D rotary positions are Qwen2.5-VL's (see
:mod:`egg_interp.models.qwen2_5_vl`; patch 16, so a token covers 32 processed pixels).

**Deepstack.** Besides the merger output that replaces the ``<|image_pad|>`` embeddings,
Qwen3-VL's vision tower emits one more vector per visual token from each of a few
intermediate vision layers (``deepstack_visual_indexes``, 3 in the released models); the
language model *adds* the l-th of them to the hidden state at the same positions after its
decoder layer l. A gradient taken only at the input embeddings would miss these paths. So
this adapter's visual token "features" are the concatenation

    ``z_i = [main_i, deepstack_1_i, ..., deepstack_L_i]``, shape ``(n_tokens, (1 + L) * D)``,

and :meth:`forward_features` splits them and feeds every part to where the model uses it.
Every method that differentiates with respect to the features then covers all the paths
through which the visual token enters the language model: EGG's relevance ``||dH/dz_i||``
is the L2 norm over all ``(1 + L) * D`` coordinates, i.e.
``sqrt(||dH/dmain_i||^2 + sum_l ||dH/ddeepstack_l_i||^2)`` (the norms combine in
quadrature, not as a plain sum), and ``grad_x_input`` multiplies each part by its own vector.
Nothing is left out. Methods that replace features by a baseline (zeros, noise) replace all
parts of a token together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

from egg_interp.models.base import PromptInputs
from egg_interp.models.qwen2_5_vl import Qwen2_5_VLAdapter
from egg_interp.models.video_inputs import qwen3_frame_size


class Qwen3VLAdapter(Qwen2_5_VLAdapter):
    """Qwen3-VL: Qwen2.5-VL's layout; features carry the deepstack vectors (module doc)."""

    model_types = ("qwen3_vl",)

    @property
    def hidden_size(self) -> int:
        """Width ``D`` of one part of a feature row (the language model's hidden size)."""
        return int(self.model.config.text_config.hidden_size)

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            pixel_values=inputs.batch["pixel_values"],
            image_grid_thw=inputs.batch["image_grid_thw"],
            return_dict=True,
        )
        return _with_deepstack(out)

    def compute_video_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        """Each video's main and deepstack vectors, joined per token as for images."""
        out = self.model.model.get_video_features(
            pixel_values_videos=inputs.batch["pixel_values_videos"],
            video_grid_thw=inputs.batch["video_grid_thw"],
            return_dict=True,
        )
        return _with_deepstack(out)

    def video_frame_size(
        self, n_frames: int, height: int, width: int, settings: dict[str, Any]
    ) -> tuple[int, int]:
        """Qwen3-VL's video rule: the pixel budget counts all frames."""
        return qwen3_frame_size(n_frames, height, width, settings)

    def encoder_outputs(
        self, features: Sequence[torch.Tensor]
    ) -> BaseModelOutputWithDeepstackFeatures:
        parts = [torch.split(f, self.hidden_size, dim=-1) for f in features]
        n_deepstack = len(parts[0]) - 1
        return BaseModelOutputWithDeepstackFeatures(
            pooler_output=tuple(p[0] for p in parts),
            deepstack_features=[tuple(p[1 + k] for p in parts) for k in range(n_deepstack)],
        )


def _with_deepstack(out: BaseModelOutputWithDeepstackFeatures) -> list[torch.Tensor]:
    """``[main, deepstack_1, ..., deepstack_L]`` joined per token, one tensor per image/video."""
    per_layer = out.deepstack_features  # L tuples of one tensor per image (video)
    return [
        torch.cat([main, *(layer[i] for layer in per_layer)], dim=-1)
        for i, main in enumerate(out.pooler_output)
    ]
