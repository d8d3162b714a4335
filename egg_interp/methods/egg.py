"""Entropy-Gradient Grounding: ``||dH/dz_i||`` at each visual token embedding ``z_i``."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from egg_interp.errors import InputError
from egg_interp.methods.base import (
    AttributionMethod,
    Needs,
    logits_summary,
    pixel_gradients,
    visual_token_gradients,
)
from egg_interp.methods.targets import Target
from egg_interp.models.base import PromptInputs, VLMAdapter


class EntropyGradient(AttributionMethod):
    """EGG's relevance map (Gröpl et al., 2026).

    Parameters
    ----------
    target : str or Target
        Default ``"entropy"`` (temperature 1); ``"top_p_entropy"`` is the nucleus variant.
    answer_step : int
        Explain the k-th answer token (the first k-1 are decoded greedily, without gradients).
    reduce : {"norm", "grad_x_input"}
        ``"norm"``: L2 norm of the gradient over the hidden dimension (the paper's map);
        ``"grad_x_input"``: L2 norm of gradient times embedding.
    space : {"tokens", "pixels"}
        ``"pixels"`` backpropagates to ``pixel_values`` instead (through the vision tower),
        takes the per-pixel L2 norm over channels and mean-pools it to the token grid.
    """

    name: ClassVar[str] = "egg"
    needs: ClassVar[Needs] = Needs(forwards=1, backwards=1, gradients=True)
    batch_spaces: ClassVar[frozenset[str]] = frozenset({"tokens"})

    def __init__(
        self,
        target: str | Target | None = None,
        answer_step: int = 1,
        reduce: str = "norm",
        space: str = "tokens",
    ) -> None:
        super().__init__(target, answer_step)
        if reduce not in ("norm", "grad_x_input"):
            raise InputError(f"reduce must be 'norm' or 'grad_x_input', not {reduce!r}")
        if space not in ("tokens", "pixels"):
            raise InputError(f"space must be 'tokens' or 'pixels', not {space!r}")
        self.reduce, self.space = reduce, space

    def relevance(
        self, adapter: VLMAdapter, inputs: PromptInputs, target: Target
    ) -> tuple[list[torch.Tensor], dict[str, Any]]:
        if self.space == "pixels":
            pixels, grad, objective, logits = pixel_gradients(adapter, inputs, target)
            if self.reduce == "grad_x_input":
                grad = grad * pixels.float()
            rel = adapter.pixel_relevance_to_tokens(inputs, grad.norm(dim=-3))
        else:
            feats, grads, objective, logits = visual_token_gradients(adapter, inputs, target)
            rel = self._reduce(feats, grads)
        meta = {"objective": float(objective), **logits_summary(adapter, logits)}
        return rel, meta

    def _reduce(self, feats: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.reduce == "grad_x_input":
            grads = [g * f.float() for g, f in zip(grads, feats, strict=True)]
        return [g.norm(dim=-1) for g in grads]

    def relevance_batch(
        self, adapter: VLMAdapter, inputs: PromptInputs, target: Target
    ) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
        feats, grads, objective, logits = visual_token_gradients(adapter, inputs, target)
        metas = [
            {"objective": float(objective[i]), **logits_summary(adapter, logits[i])}
            for i in range(inputs.batch_size)
        ]
        return self._reduce(feats, grads), metas
