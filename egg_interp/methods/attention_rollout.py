"""Attention rollout (Abnar and Zuidema, 2020) through the language model."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from egg_interp.errors import UnsupportedModelError
from egg_interp.methods.attention import (
    AttentionMethod,
    forward_with_attentions,
    image_columns,
    resolve_layers,
    split,
)
from egg_interp.methods.base import logits_summary
from egg_interp.methods.targets import Target
from egg_interp.models.base import PromptInputs, VLMAdapter


def rollout_last_row(attentions: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Last row of ``prod_l (residual * I + (1 - residual) * A_l)``, A_l head-averaged.

    Computed as a row vector times the matrices from the last layer down, so only
    vector-matrix products are needed.

    Parameters
    ----------
    attentions : list of Tensor of shape (seq, seq)
        Head-averaged attention of each layer, first layer first (rows sum to 1).
    residual : float
        Weight of the identity (the residual stream), 0.5 in the original.

    Returns
    -------
    Tensor of shape (seq,)
        How much the last position's output draws on each input position (sums to 1).
    """
    row = torch.zeros(attentions[0].shape[-1], dtype=torch.float32, device=attentions[0].device)
    row[-1] = 1.0
    for a in reversed(attentions):
        row = residual * row + (1.0 - residual) * (row @ a.float())
    return row


class AttentionRollout(AttentionMethod):
    """Attention rollout through all language-model layers, last row, image columns.

    Each layer's attention is averaged over heads, mixed with the identity for the residual
    connection (``residual``, default 0.5) and multiplied through the layers; the map is the
    last position's row at the image tokens. Target-free; cost: 1 forward with eager
    attention (all layers' full attention matrices are read, one at a time after the forward).

    Parameters
    ----------
    residual : float, default 0.5
    layers : "all", list of int, or None
        Layers rolled out (default and ``None``: all, in order).
    """

    name: ClassVar[str] = "attention_rollout"

    def __init__(
        self,
        target: str | Target | None = None,
        answer_step: int = 1,
        residual: float = 0.5,
        layers: Any = "all",
    ) -> None:
        super().__init__(target, answer_step, layers if layers is not None else "all")
        self.residual = residual

    def check_supported(self, adapter: VLMAdapter) -> None:
        """Also refuses hybrid models: the rollout is a product over every layer's token
        mixing, and their linear-attention (or convolution) layers have no mixing matrix."""
        super().check_supported(adapter)
        have, n = adapter.attention_layers, adapter.num_lm_layers
        if len(have) < n:
            raise UnsupportedModelError(
                f"attention_rollout multiplies the token mixing of every layer, but {n - len(have)} "
                f"of the {n} language-model layers of {adapter.name or type(adapter).__name__} mix "
                "tokens without attention weights (linear attention or convolution); use "
                "raw_attention, rel_att or grad_att (attention layers only) or a gradient method"
            )

    def relevance(
        self, adapter: VLMAdapter, inputs: PromptInputs, target: Target
    ) -> tuple[list[torch.Tensor], dict[str, Any]]:
        layers = sorted(resolve_layers(adapter, self.layers))
        columns, counts = image_columns(adapter, inputs)
        with torch.no_grad():
            out = forward_with_attentions(adapter, inputs)
            mats = [out.attentions[i][0].float().mean(0) for i in layers]
            logits = out.logits[0, -1].detach()
            del out
            row = rollout_last_row(mats, self.residual)
        meta = {**self.layer_meta(adapter), "residual": self.residual}
        return split(row[columns.to(row.device)], counts), {
            **meta,
            **logits_summary(adapter, logits),
        }
