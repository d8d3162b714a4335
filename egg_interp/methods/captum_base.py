"""The shared template of the captum baselines: forward function, inputs, baselines, reduction.

Every captum method explains a :class:`~egg_interp.methods.targets.Target` through captum's
own attribution classes. By default it is the target of these methods' own literature, the
log-probability of the model's own (greedy) answer, teacher-forced over its tokens
(``"answer_logprob"``, as captum's ``LLMGradientAttribution``); ``target="entropy"`` gives
EGG's objective, so EGG and a baseline can differ in the target alone or in the rule alone.
A subclass only says which captum class it runs and with which arguments
(:meth:`CaptumMethod.captum_attribute`).

Where the attribution is taken (``space``)
------------------------------------------
``"tokens"`` (default)
    The post-projector visual token embeddings, fed to the language model through
    :meth:`~egg_interp.models.base.VLMAdapter.perturbed_logits` from the adapter's cached
    vision features. This skips the vision tower (cheap, and no gradient through it) and is
    the space EGG differentiates in, so a baseline and EGG differ only in the attribution
    rule, not in where they look. captum sees one input per image of shape
    ``(1, n_tokens, hidden)``; its example dimension (dim 0) carries the interpolation steps
    or samples, and the forward function runs them as one batch (the prompt repeated along
    the batch dimension when the adapter can; otherwise one forward per row, inside the
    adapter).
``"pixels"``
    ``pixel_values`` through the vision tower (captum input ``(1, *pixel_values.shape)``,
    forward via :meth:`~egg_interp.models.base.VLMAdapter.perturbed_pixel_logits`). The
    per-pixel attribution is reduced over the channel axis (-3) and mean-pooled to the token
    grid by :meth:`~egg_interp.models.base.VLMAdapter.pixel_relevance_to_tokens`.

Baselines (the "absent" input of path and perturbation methods)
---------------------------------------------------------------
``"mean"`` (default)
    tokens: each image's mean visual token embedding at every position, which removes the
    spatial content but stays on the scale of real embeddings (a zero vector is far from
    anything the language model has seen); pixels: each image's mean value per channel.
``"zeros"``
    All zeros (for pixels: the processor's normalisation mean colour).

Reduction to one value per token (``reduce``)
---------------------------------------------
``"norm"`` (default): L2 norm over the hidden (or channel) axis, non-negative, as EGG does;
``"sum"``: signed sum over that axis (keeps completeness, e.g. for integrated gradients; the
map may be negative, so region finding refuses it).

Why not ``LLMGradientAttribution``: captum's LLM wrappers take text inputs for gradient
methods and explain the log-probability of a target *string*; the shared targets here
(entropy, the answer's log-probability read at the answer positions) and the cached token
features need a plain forward function over tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from egg_interp.errors import InputError
from egg_interp.methods.base import (
    AttributionMethod,
    Needs,
    feature_set_logits,
    first_position,
    logits_summary,
    pixel_set_logits,
    prompt_logits,
)
from egg_interp.methods.targets import Target
from egg_interp.models.base import PromptInputs, VLMAdapter

SPACES = ("tokens", "pixels")
BASELINES = ("mean", "zeros")
REDUCTIONS = ("norm", "sum")


@dataclass
class CaptumProblem:
    """What a captum class is run on.

    Attributes
    ----------
    forward : callable
        ``forward(*xs) -> Tensor of shape (batch,)``: the target of each example.
    xs : tuple of Tensor
        The attributed inputs, each with a leading example dimension of 1.
    baselines : tuple of Tensor
        Same shapes as ``xs``.
    adapter, inputs, space
        For methods that need the token layout (occlusion, Grad-CAM).
    """

    forward: Callable[..., torch.Tensor]
    xs: tuple[torch.Tensor, ...]
    baselines: tuple[torch.Tensor, ...]
    adapter: VLMAdapter
    inputs: PromptInputs
    space: str


def make_baseline(x: torch.Tensor, kind: str, space: str) -> torch.Tensor:
    """The baseline of one captum input ``x`` (see the module docstring)."""
    if kind == "zeros":
        return torch.zeros_like(x)
    dims = (1,) if space == "tokens" else (-2, -1)
    return x.mean(dim=dims, keepdim=True).expand_as(x).contiguous()


def build_problem(
    adapter: VLMAdapter, inputs: PromptInputs, target: Target, space: str, baseline: str
) -> CaptumProblem:
    """The forward function, inputs and baselines for ``space`` (``"tokens"`` or ``"pixels"``)."""
    if space == "tokens":
        xs = tuple(f.detach().unsqueeze(0) for f in adapter.image_features(inputs))

        def forward(*batch: torch.Tensor) -> torch.Tensor:
            return target(feature_set_logits(adapter, inputs, batch, target))

    else:
        xs = (inputs.batch["pixel_values"].detach().unsqueeze(0),)

        def forward(*batch: torch.Tensor) -> torch.Tensor:
            return target(pixel_set_logits(adapter, inputs, batch[0], target))

    bases = tuple(make_baseline(x, baseline, space) for x in xs)
    # fresh leaves (detached from the feature cache) that captum differentiates
    xs = tuple(x.detach().requires_grad_(True) for x in xs)
    return CaptumProblem(forward, xs, bases, adapter, inputs, space)


def reduce_to_tokens(
    problem: CaptumProblem, attributions: tuple[torch.Tensor, ...], reduce: str
) -> list[torch.Tensor]:
    """One ``(n_tokens,)`` float32 vector per image from captum's attributions."""
    if problem.space == "tokens":
        per_image = [a[0].float() for a in attributions]
        return [a.norm(dim=-1) if reduce == "norm" else a.sum(-1) for a in per_image]
    a = attributions[0][0].float()
    pixel_map = a.norm(dim=-3) if reduce == "norm" else a.sum(-3)
    return problem.adapter.pixel_relevance_to_tokens(problem.inputs, pixel_map)


class CaptumMethod(AttributionMethod):
    """Template of the captum baselines: a subclass names :attr:`captum_class` and its arguments.

    Parameters
    ----------
    target, answer_step
        As for every method; the default target is ``"answer_logprob"`` (the log-probability
        of the model's own answer, teacher-forced), the methods' own; ``"entropy"`` is EGG's.
    space : {"tokens", "pixels"}
        Where the attribution is taken (module docstring).
    reduce : {"norm", "sum"}, optional
        How each token's (or pixel's) attribution vector becomes one value; default
        :attr:`default_reduce`.
    baseline : {"mean", "zeros"}
        The reference input of path and perturbation methods (ignored by the others).
    """

    needs: ClassVar[Needs] = Needs(forwards=1, backwards=1, gradients=True, extra_forwards=1)
    default_target: ClassVar[str] = "answer_logprob"
    captum_class: ClassVar[type]
    """The captum attribution class (constructed with the forward function)."""
    default_reduce: ClassVar[str] = "norm"
    pixel_space: ClassVar[bool] = True
    """False for methods that cannot attribute to ``pixel_values``."""

    def __init__(
        self,
        target: str | Target | None = None,
        answer_step: int = 1,
        space: str = "tokens",
        reduce: str | None = None,
        baseline: str = "mean",
    ) -> None:
        super().__init__(target, answer_step)
        reduce = reduce or self.default_reduce
        for option, value, valid in (
            ("space", space, SPACES if self.pixel_space else ("tokens",)),
            ("reduce", reduce, REDUCTIONS),
            ("baseline", baseline, BASELINES),
        ):
            if value not in valid:
                raise InputError(f"{self.name}: {option} must be one of {valid}, not {value!r}")
        self.space, self.reduce, self.baseline = space, reduce, baseline

    def captum_kwargs(self, problem: CaptumProblem) -> dict[str, Any]:
        """Keyword arguments of ``captum_class.attribute`` (also used inside a noise tunnel)."""
        return {}

    def captum_attribute(
        self, problem: CaptumProblem
    ) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
        """Run :attr:`captum_class`: attributions shaped like ``problem.xs``, plus metadata."""
        method = self.captum_class(problem.forward)
        return method.attribute(problem.xs, **self.captum_kwargs(problem)), {}

    def relevance(
        self, adapter: VLMAdapter, inputs: PromptInputs, target: Target
    ) -> tuple[list[torch.Tensor], dict[str, Any]]:
        problem = build_problem(adapter, inputs, target, self.space, self.baseline)
        attributions, meta = self.captum_attribute(problem)
        rel = reduce_to_tokens(problem, attributions, self.reduce)
        logits = prompt_logits(adapter, inputs, target)  # the extra forward of Needs
        meta = {"objective": float(target(logits)), **meta}
        meta.update(logits_summary(adapter, first_position(logits, target)))
        meta.update(space=self.space, reduce=self.reduce)
        return rel, meta

    def cost(self) -> Needs:
        """The class's :class:`Needs` with this instance's space."""
        return replace(self.needs, space=self.space)


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the body with torch's and numpy's global generators seeded, restoring both after
    (captum's GradientShap draws its path points with ``np.random``).

    Both are needed: captum draws GradientShap's interpolation points with ``np.random`` and
    the noise tunnel's noise with torch. ``None`` leaves the random state alone.
    """
    if seed is None:
        yield
        return
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed)
            yield
    finally:
        np.random.set_state(numpy_state)
