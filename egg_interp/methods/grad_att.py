"""ViCrop's gradient-weighted attention (Zhang et al., ICLR 2025): ``A * ReLU(dL/dA)``."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from egg_interp.methods.attention import (
    AttentionMethod,
    forward_with_attentions,
    image_columns,
    last_row,
    resolve_layers,
    split,
)
from egg_interp.methods.base import Needs, logits_summary
from egg_interp.methods.targets import Target
from egg_interp.models.base import PromptInputs, VLMAdapter


class GradientAttention(AttentionMethod):
    """``grad-att``: attention weights times the positive part of their gradient.

    One forward with eager attention on leaf copies of the visual token features (so the
    attention weights are in the autograd graph; no parameter gradients), ``L = target``
    (default ``"logprob"``: log p of the top-1 next token, as ViCrop), then
    ``torch.autograd.grad(L, A)`` for the selected layer(s)' attention weights ``A``. The map
    is ``mean_heads(A * ReLU(dL/dA))`` at the answer row and the image columns (averaged over
    the layers). Cost: 1 forward + 1 backward, attentions kept for the backward.

    Parameters
    ----------
    layers : int, list of int, "all" or None
        See :class:`~egg_interp.methods.attention.AttentionMethod` (default the middle layer).
    """

    name: ClassVar[str] = "grad_att"
    needs: ClassVar[Needs] = Needs(forwards=1, backwards=1, gradients=True, attentions=True)
    default_target: ClassVar[str] = "logprob"
    uses_target: ClassVar[bool] = True

    def relevance(
        self, adapter: VLMAdapter, inputs: PromptInputs, target: Target
    ) -> tuple[list[torch.Tensor], dict[str, Any]]:
        layers = resolve_layers(adapter, self.layers)
        columns, counts = image_columns(adapter, inputs)
        leaves = [f.detach().requires_grad_(True) for f in adapter.image_features(inputs)]
        with torch.enable_grad():
            out = forward_with_attentions(adapter, inputs, leaves)
            logits = out.logits[0, -1]
            objective = target(logits)
            weights = [out.attentions[i] for i in layers]
            grads = torch.autograd.grad(objective, weights)
        rows = [
            (last_row(a.detach(), columns) * last_row(g, columns).clamp(min=0)).mean(0)
            for a, g in zip(weights, grads)
        ]
        del out, weights, grads
        meta = {"objective": float(objective.detach()), **self.layer_meta(adapter)}
        return split(torch.stack(rows).mean(0), counts), {
            **meta,
            **logits_summary(adapter, logits.detach()),
        }
