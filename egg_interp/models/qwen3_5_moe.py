"""Adapter for ``qwen3_5_moe`` checkpoints (Qwen3.5-MoE, e.g. Qwen3.5-35B-A3B).

Qwen3.5 with a mixture of experts (top-k routed experts plus a shared expert) in every
decoder layer: the layout, positions, Gated DeltaNet layers, attention layers, padding and
cache behaviour are Qwen3.5's, and so is this adapter (see :mod:`egg_interp.models.qwen3_5`).
Routing is per token (a padded row is routed as it would be alone) and piecewise constant:
gradients flow through the chosen experts and the routing weights, not through a switch of
experts. Router logits are not requested. A float64 model runs its experts with the eager
loop (see :func:`~egg_interp.models.qwen3_vl_moe.experts_for_dtype`).
"""

from __future__ import annotations

from typing import Any

from egg_interp.models.qwen3_5 import Qwen3_5Adapter
from egg_interp.models.qwen3_vl_moe import experts_for_dtype


class Qwen3_5MoeAdapter(Qwen3_5Adapter):
    """Qwen3.5-MoE: Qwen3.5's adapter (module docstring)."""

    model_types = ("qwen3_5_moe",)

    def __init__(self, model: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(model, processor, **kwargs)
        experts_for_dtype(model)
