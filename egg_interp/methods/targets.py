"""What an attribution explains: a scalar function of the next-token logits.

Every method takes a target by name (``"entropy"``, ``"logprob"``, ...) or as an object;
the target maps logits of shape ``(..., vocab)`` to one scalar per row, so a batch of
samples keeps per-sample gradients when the scalars are summed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from egg_interp.errors import InputError


@dataclass
class Target:
    """Base target: ``__call__(logits) -> (...,)`` scalars, float32."""

    name: ClassVar[str] = ""
    temperature: float = 1.0

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        # at least float32 (bf16 logits are upcast); float64 stays float64
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return torch.log_softmax(logits / self.temperature, dim=-1)

    def describe(self) -> str:
        return self.name


@dataclass
class Entropy(Target):
    """Shannon entropy of the next-token distribution, ``-sum p log p`` (EGG's objective)."""

    name: ClassVar[str] = "entropy"

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        logp = self.log_probs(logits)
        return -(logp.exp() * logp).sum(-1)


@dataclass
class TopPEntropy(Target):
    """Entropy of the renormalised top-p nucleus (the smallest set with mass >= p).

    The nucleus membership is chosen without gradients; the entropy is differentiated.
    """

    name: ClassVar[str] = "top_p_entropy"
    p: float = 0.9

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        logp = self.log_probs(logits)
        with torch.no_grad():
            probs = logp.exp()
            sorted_p, order = probs.sort(dim=-1, descending=True)
            before = sorted_p.cumsum(-1) - sorted_p
            keep_sorted = before < self.p
            keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        masked = logp.masked_fill(~keep, float("-inf"))
        q = torch.log_softmax(masked, dim=-1)
        return -(q.exp() * q.masked_fill(~keep, 0.0)).sum(-1)


@dataclass
class NegLogPMax(Target):
    """``-log p_max``: uncertainty about the top-1 token (the reference code's log-p-max variant)."""

    name: ClassVar[str] = "neg_log_pmax"

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return -self.log_probs(logits).max(-1).values


@dataclass
class KLUniform(Target):
    """KL divergence from the uniform distribution, ``log V - H`` (confidence)."""

    name: ClassVar[str] = "kl_uniform"

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return math.log(logits.shape[-1]) - Entropy(self.temperature)(logits)


@dataclass
class LogProb(Target):
    """Log-probability of one token: the given ``token_id``, else each row's top-1 token."""

    name: ClassVar[str] = "logprob"
    token_id: int | None = None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        logp = self.log_probs(logits)
        if self.token_id is None:
            idx = logp.detach().argmax(-1, keepdim=True)
        else:
            idx = torch.full((*logp.shape[:-1], 1), self.token_id, device=logp.device)
        return logp.gather(-1, idx).squeeze(-1)


TARGETS: dict[str, type[Target]] = {
    cls.name: cls for cls in (Entropy, TopPEntropy, NegLogPMax, KLUniform, LogProb)
}


def make_target(spec: str | Target | None, default: str = "entropy") -> Target:
    """A target from a name (``"entropy"``, ``"top_p_entropy"``, ``"logprob"``, ...) or object."""
    if isinstance(spec, Target):
        return spec
    name = spec or default
    if name not in TARGETS:
        raise InputError(f"unknown target {name!r}; valid: {', '.join(TARGETS)}")
    return TARGETS[name]()
