"""Adapter for ``qwen3_vl_moe`` checkpoints (Qwen3-VL-30B-A3B, Qwen3-VL-235B-A22B).

Qwen3-VL with a mixture-of-experts language model: the vision tower, processor, token layout
(patch 16, 2x2 merge: a token covers 32 processed pixels), 3-D rotary positions and deepstack
features are Qwen3-VL's, and so is this adapter (see :mod:`egg_interp.models.qwen3_vl`: each
feature row is ``[main, deepstack_1, ..., deepstack_L]`` and every method differentiates or
perturbs all the paths through which a visual token enters the language model).

The experts: every decoder layer routes each token to its top-k experts (a softmax router);
routing is per token, so a row of a padded batch is routed as it would be alone, and the
router's choice is piecewise constant, so gradients flow through the chosen experts and the
routing weights only (a feature change that would switch experts is a discontinuity no
gradient sees; finite differences agree away from such switches). Router logits are not
requested (``output_router_logits`` stays off). transformers runs the experts with a grouped
matrix product that has no float64 kernel; a float64 model (the finite-difference checks)
runs them with the eager loop over experts instead, which computes the same.

What maps cannot show: detail finer than a 32 x 32 processed-pixel token; pixel-space methods
are refused (flattened patches).
"""

from __future__ import annotations

from typing import Any

import torch

from egg_interp.models.qwen3_vl import Qwen3VLAdapter


def experts_for_dtype(model: Any) -> None:
    """Run a mixture of experts with the eager loop when its weights are float64 (the grouped
    matrix product transformers uses by default has no float64 kernel); else leave it."""
    if next(model.parameters()).dtype == torch.float64:
        model.set_experts_implementation("eager")


class Qwen3VLMoeAdapter(Qwen3VLAdapter):
    """Qwen3-VL-MoE: Qwen3-VL's layout, deepstack and positions (module docstring)."""

    model_types = ("qwen3_vl_moe",)

    def __init__(self, model: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(model, processor, **kwargs)
        experts_for_dtype(model)
