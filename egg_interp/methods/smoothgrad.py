"""SmoothGrad (Smilkov et al., 2017): captum's ``NoiseTunnel`` around a gradient method."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import torch
from captum.attr import NoiseTunnel

from egg_interp.errors import InputError
from egg_interp.methods.base import Needs
from egg_interp.methods.captum_base import CaptumMethod, CaptumProblem, seeded
from egg_interp.methods.input_x_gradient import InputXGradientMethod
from egg_interp.methods.integrated_gradients import IntegratedGradientsMethod
from egg_interp.methods.saliency import SaliencyMethod
from egg_interp.methods.targets import Target

SMOOTHABLE: dict[str, type[CaptumMethod]] = {
    cls.name: cls for cls in (SaliencyMethod, InputXGradientMethod, IntegratedGradientsMethod)
}
"""Gradient methods a noise tunnel can wrap, by registered name."""


class SmoothGradMethod(CaptumMethod):
    """Average a gradient method's attributions over noisy copies of the input.

    The inner method's raw (signed) attributions are averaged by ``NoiseTunnel``, then reduced
    per token like any captum method (L2 norm by default): around ``"saliency"`` this is
    SmoothGrad's ``||E[grad]||``.

    Parameters
    ----------
    base : {"saliency", "input_x_gradient", "integrated_gradients"}, default "saliency"
        The wrapped method, by registered name.
    nt_samples : int, default 16
        Noisy copies.
    noise_level : float, default 0.15
        Noise standard deviation as a fraction of each input's standard deviation (the paper
        uses a fraction of max - min; embeddings have outlier dimensions that would inflate
        that range).
    nt_type : {"smoothgrad", "smoothgrad_sq", "vargrad"}, default "smoothgrad"
    nt_samples_batch_size : int or None, default 8
        Noisy copies per forward/backward (memory).
    seed : int or None, default 0
        Seeds the noise (the global random state is restored).
    base_options : dict, optional
        Options of the wrapped method (e.g. ``{"n_steps": 8}``).
    **options
        ``target``, ``answer_step``, ``space``, ``reduce``, ``baseline`` (shared with the
        wrapped method).

    Cost: ``nt_samples`` times the wrapped method's passes, plus 1 forward for the metadata.
    """

    name: ClassVar[str] = "smoothgrad"
    internal_batch_option: ClassVar[str | None] = "nt_samples_batch_size"
    needs: ClassVar[Needs] = Needs(
        forwards=1, backwards=1, gradients=True, scales_with="nt_samples", extra_forwards=1
    )

    def __init__(
        self,
        target: str | Target | None = None,
        answer_step: int = 1,
        base: str = "saliency",
        nt_samples: int = 16,
        noise_level: float = 0.15,
        nt_type: str = "smoothgrad",
        nt_samples_batch_size: int | None = 8,
        seed: int | None = 0,
        base_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(target, answer_step, **options)
        if base not in SMOOTHABLE:
            raise InputError(f"smoothgrad: base must be one of {sorted(SMOOTHABLE)}, not {base!r}")
        shared = {"space": self.space, "reduce": self.reduce, "baseline": self.baseline}
        self.inner = SMOOTHABLE[base](target, answer_step, **shared, **(base_options or {}))
        self.nt_samples, self.noise_level, self.nt_type = nt_samples, noise_level, nt_type
        self.nt_samples_batch_size, self.seed = nt_samples_batch_size, seed

    def captum_attribute(
        self, problem: CaptumProblem
    ) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
        tunnel = NoiseTunnel(self.inner.captum_class(problem.forward))
        stdevs = tuple(self.noise_level * float(x.detach().float().std()) for x in problem.xs)
        with seeded(self.seed):
            attributions = tunnel.attribute(
                problem.xs,
                nt_type=self.nt_type,
                nt_samples=self.nt_samples,
                nt_samples_batch_size=self.nt_samples_batch_size,
                stdevs=stdevs,
                **self.inner.captum_kwargs(problem),
            )
        return attributions, {"base": self.inner.name, "nt_samples": self.nt_samples}

    def cost(self) -> Needs:
        inner = self.inner.cost()
        n = self.nt_samples
        return replace(
            inner, forwards=n * inner.forwards, backwards=n * inner.backwards, extra_forwards=1
        )
