"""GradientShap (Lundberg and Lee, 2017; expected gradients) through captum."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar

import torch
from captum.attr import GradientShap

from egg_interp.methods.base import Needs
from egg_interp.methods.captum_base import CaptumMethod, CaptumProblem, seeded
from egg_interp.methods.targets import Target


class GradientShapMethod(CaptumMethod):
    """Gradients at random points between the baseline and the input, times (input - baseline).

    captum's ``GradientShap`` with the method's single ``baseline`` (``"mean"`` by default):
    each sample draws ``alpha ~ U(0, 1)`` and optional Gaussian input noise, a stochastic
    integrated-gradients estimate.

    Parameters
    ----------
    n_samples : int, default 16
        Random points.
    stdevs : float, default 0.0
        Standard deviation of the Gaussian noise added to the input at each sample.
    samples_per_batch : int, default 8
        Points per forward/backward (memory): captum's ``GradientShap`` has no internal batch
        size, so the samples are run in chunks and their means averaged (weighted by size).
    seed : int or None, default 0
        Seeds the draws (the global random state is restored); ``None`` does not seed.
    **options
        ``target``, ``answer_step``, ``space``, ``reduce``, ``baseline`` of
        :class:`~egg_interp.methods.captum_base.CaptumMethod`.

    Cost: ``n_samples`` forwards + backwards, plus 1 forward for the metadata.
    """

    name: ClassVar[str] = "gradient_shap"
    captum_class: ClassVar[type] = GradientShap
    needs: ClassVar[Needs] = Needs(
        forwards=1, backwards=1, gradients=True, scales_with="n_samples", extra_forwards=1
    )

    def __init__(
        self,
        target: str | Target | None = None,
        answer_step: int = 1,
        n_samples: int = 16,
        stdevs: float = 0.0,
        samples_per_batch: int = 8,
        seed: int | None = 0,
        **options: Any,
    ) -> None:
        super().__init__(target, answer_step, **options)
        self.n_samples, self.stdevs = n_samples, stdevs
        self.samples_per_batch, self.seed = max(1, samples_per_batch), seed

    def captum_attribute(
        self, problem: CaptumProblem
    ) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
        gs = GradientShap(problem.forward)
        total: list[torch.Tensor] | None = None
        left = self.n_samples
        with seeded(self.seed):
            for _ in range(math.ceil(self.n_samples / self.samples_per_batch)):
                n = min(left, self.samples_per_batch)
                part = gs.attribute(
                    problem.xs, baselines=problem.baselines, n_samples=n, stdevs=self.stdevs
                )
                part = [p.float() * (n / self.n_samples) for p in part]
                total = part if total is None else [t + p for t, p in zip(total, part)]
                left -= n
        return tuple(total or ()), {"n_samples": self.n_samples}

    def cost(self) -> Needs:
        n = self.n_samples
        return replace(super().cost(), forwards=n, backwards=n, scales_with="")
