"""ViCrop's relative attention (Zhang et al., ICLR 2025): question attention over generic attention."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from egg_interp.methods.attention import (
    GENERIC_PROMPT,
    AttentionMethod,
    raw_attention_vector,
    resolve_layers,
    split,
)
from egg_interp.methods.base import Needs, logits_summary
from egg_interp.methods.targets import Target
from egg_interp.models.base import PromptInputs, VLMAdapter


class RelativeAttention(AttentionMethod):
    """``rel-att``: raw attention for the question divided by raw attention for a generic prompt.

    Both maps are the answer position's attention to the image tokens at the selected layer(s)
    (default the middle one), mean over heads; the generic prompt is ViCrop's "Write a general
    description of the image." with the same images. The ratio is taken elementwise without
    an epsilon, as ViCrop does (softmax weights are positive; an underflow to zero shows up as
    inf, which :meth:`~egg_interp.maps.AttributionMap.check` reports). Target-free; cost: 2
    forwards with eager attention.

    Parameters
    ----------
    layers : int, list of int, "all" or None
        See :class:`~egg_interp.methods.attention.AttentionMethod`.
    generic_prompt : str
        The question-free prompt.
    """

    name: ClassVar[str] = "rel_att"
    needs: ClassVar[Needs] = Needs(forwards=2, attentions=True)

    def __init__(
        self,
        target: str | Target | None = None,
        answer_step: int = 1,
        layers: Any = None,
        generic_prompt: str = GENERIC_PROMPT,
    ) -> None:
        super().__init__(target, answer_step, layers)
        self.generic_prompt = generic_prompt

    def relevance(
        self, adapter: VLMAdapter, inputs: PromptInputs, target: Target
    ) -> tuple[list[torch.Tensor], dict[str, Any]]:
        layers = resolve_layers(adapter, self.layers)
        origins = [lay.origin_box for lay in inputs.layouts if not lay.is_video]
        videos = {"videos": inputs.videos} if inputs.videos else {}
        generic = adapter.build_inputs(
            inputs.images, self.generic_prompt, origin_boxes=origins, warn_unknown=False, **videos
        )
        question, counts, logits = raw_attention_vector(adapter, inputs, layers)
        general, _, _ = raw_attention_vector(adapter, generic, layers)
        meta = {**self.layer_meta(adapter), **logits_summary(adapter, logits)}
        return split(question / general, counts), meta
