"""Raw attention from the answer position to the image tokens."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from egg_interp.methods.attention import (
    AttentionMethod,
    raw_attention_vector,
    resolve_layers,
    split,
)
from egg_interp.methods.base import logits_summary
from egg_interp.methods.targets import Target
from egg_interp.models.base import PromptInputs, VLMAdapter


class RawAttention(AttentionMethod):
    """Attention weight of the last prompt position to each visual token.

    The weights of the selected language-model layer(s) (default: the middle one), mean over
    heads and over the layers. Target-free; cost: 1 forward with eager attention. Options:
    ``layers`` (see :class:`~egg_interp.methods.attention.AttentionMethod`).
    """

    name: ClassVar[str] = "raw_attention"

    def relevance(
        self, adapter: VLMAdapter, inputs: PromptInputs, target: Target
    ) -> tuple[list[torch.Tensor], dict[str, Any]]:
        layers = resolve_layers(adapter, self.layers)
        values, counts, logits = raw_attention_vector(adapter, inputs, layers)
        return split(values, counts), {
            **self.layer_meta(adapter),
            **logits_summary(adapter, logits),
        }
