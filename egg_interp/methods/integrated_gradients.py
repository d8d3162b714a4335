"""Integrated Gradients (Sundararajan et al., 2017) through captum."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import torch
from captum.attr import IntegratedGradients

from egg_interp.methods.base import Needs
from egg_interp.methods.captum_base import CaptumMethod, CaptumProblem
from egg_interp.methods.targets import Target


class IntegratedGradientsMethod(CaptumMethod):
    """Path integral of the target's gradient from the baseline to the input: captum's IG.

    Completeness: with ``reduce="sum"`` the token values add up to ``target(input) -
    target(baseline)`` up to the quadrature error, which captum reports as the convergence
    delta (``meta["convergence_delta"]``, the largest absolute one). The default ``"norm"``
    reduction gives a non-negative map comparable to EGG's.

    Parameters
    ----------
    n_steps : int, default 32
        Quadrature points on the path (captum's ``"gausslegendre"`` rule by default).
    internal_batch_size : int or None, default 8
        Points evaluated per forward/backward (memory); ``None`` runs all at once. The forward
        function takes such a batch of feature sets and runs it as one language-model batch
        (the prompt repeated along the batch dimension) when the adapter can, else one
        forward per point (see :meth:`~egg_interp.models.base.VLMAdapter.perturbed_logits`).
    method : str, default "gausslegendre"
        captum's quadrature rule (``"riemann_trapezoid"``, ``"riemann_middle"``, ...).
    **options
        ``target``, ``answer_step``, ``space``, ``reduce``, ``baseline`` of
        :class:`~egg_interp.methods.captum_base.CaptumMethod`.

    Cost: ``n_steps`` forwards + backwards, 2 forwards for the convergence delta and 1 for the
    metadata.
    """

    name: ClassVar[str] = "integrated_gradients"
    internal_batch_option: ClassVar[str | None] = "internal_batch_size"
    captum_class: ClassVar[type] = IntegratedGradients
    needs: ClassVar[Needs] = Needs(
        forwards=1, backwards=1, gradients=True, scales_with="n_steps", extra_forwards=3
    )

    def __init__(
        self,
        target: str | Target | None = None,
        answer_step: int = 1,
        n_steps: int = 32,
        internal_batch_size: int | None = 8,
        method: str = "gausslegendre",
        **options: Any,
    ) -> None:
        super().__init__(target, answer_step, **options)
        self.n_steps, self.internal_batch_size, self.method = n_steps, internal_batch_size, method

    def captum_kwargs(self, problem: CaptumProblem) -> dict[str, Any]:
        return {
            "baselines": problem.baselines,
            "n_steps": self.n_steps,
            "method": self.method,
            "internal_batch_size": self.internal_batch_size,
        }

    def captum_attribute(
        self, problem: CaptumProblem
    ) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
        ig = IntegratedGradients(problem.forward)
        attributions, delta = ig.attribute(
            problem.xs, return_convergence_delta=True, **self.captum_kwargs(problem)
        )
        meta = {"convergence_delta": float(delta.abs().max()), "n_steps": self.n_steps}
        return attributions, meta

    def cost(self) -> Needs:
        return replace(
            super().cost(), forwards=self.n_steps, backwards=self.n_steps, scales_with=""
        )
