"""What an attribution explains: a scalar function of the logits.

Every method takes a target by name (``"entropy"``, ``"answer_logprob"``, ...) or as an
object; the target maps logits of shape ``(..., vocab)`` to one scalar per row, so a batch of
samples keeps per-sample gradients when the scalars are summed.

Two kinds:

* **next-token targets** (``entropy``, ``top_p_entropy``, ``neg_log_pmax``, ``kl_uniform``,
  ``logprob``) read the distribution of the next token after the prompt;
* **answer targets** (``answer_logprob``, ``answer_logprob_first``) explain the model's own
  answer, teacher-forced: :meth:`Target.for_prompt` decodes the greedy answer once, extends
  the prompt by all its tokens but the last, and the target then reads the logits of the last
  :attr:`Target.positions` positions, ``(..., n, vocab)`` (``(..., vocab)`` when ``n = 1``),
  so the explained tokens stay fixed while a method perturbs the input.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar
from weakref import WeakKeyDictionary

import torch

from egg_interp.errors import InputError

if TYPE_CHECKING:
    from egg_interp.models.base import PromptInputs, VLMAdapter


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

    positions: ClassVar[int] = 1
    """How many of the last positions' logits the target reads (1: the next token only)."""

    per_prompt: ClassVar[bool] = False
    """True when :meth:`for_prompt` binds the target to each prompt's own answer (batches of
    prompts are then mapped one prompt at a time)."""

    def for_prompt(self, adapter: VLMAdapter, inputs: PromptInputs) -> tuple[Target, PromptInputs]:
        """This target for one prompt, and the inputs whose last :attr:`positions` logits it
        reads. Next-token targets: themselves and ``inputs`` unchanged."""
        return self, inputs


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


@dataclass
class AnswerLogProb(Target):
    """Log-probability of the model's own answer, teacher-forced (the gradient baselines' target).

    ``sum_k log p(a_k | prompt, a_1 .. a_{k-1})`` over the answer tokens ``a_1 .. a_n``, each
    read at its own position (captum's ``LLMGradientAttribution``: the log-softmax of each
    target token, teacher-forced, summed). The answer is the greedy one, decoded once by
    :meth:`for_prompt` up to the first special token (end of sequence) or :attr:`max_tokens`
    (at least one token), unless :attr:`answer_ids` gives it; with :attr:`first_token`, only
    ``log p(a_1 | prompt)`` (ViCrop's pure-grad target).

    Unlike ``logprob`` (each row's own top-1 token), the tokens stay fixed however the input
    is perturbed (integrated gradients' path, occlusion, noise).

    Parameters
    ----------
    answer_ids : tuple of int
        The answer to explain; empty (default): each prompt's greedy answer.
    first_token : bool, default False
    max_tokens : int, default 16
        Longest decoded answer.
    """

    name: ClassVar[str] = "answer_logprob"
    per_prompt: ClassVar[bool] = True
    answer_ids: tuple[int, ...] = ()
    first_token: bool = False
    max_tokens: int = 16
    decoded: bool = False
    """True when :attr:`answer_ids` came from decoding a prompt (decoded again for another)."""

    @property
    def positions(self) -> int:  # type: ignore[override]
        return 1 if self.first_token else max(1, len(self.answer_ids))

    def describe(self) -> str:
        return "answer_logprob_first" if self.first_token else "answer_logprob"

    def for_prompt(self, adapter: VLMAdapter, inputs: PromptInputs) -> tuple[Target, PromptInputs]:
        ids = self.answer_ids if self.answer_ids and not self.decoded else ()
        if not ids:
            ids = greedy_answer(adapter, inputs, 1 if self.first_token else self.max_tokens)
        ids = ids[:1] if self.first_token else ids
        bound = replace(self, answer_ids=tuple(ids), decoded=self.decoded or not self.answer_ids)
        return bound, adapter.extend(inputs, list(ids[:-1]))

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.answer_ids:
            raise InputError(f"{self.describe()}: no answer bound (call for_prompt first)")
        ids = self.answer_ids[: self.positions]
        logp = self.log_probs(logits)
        if len(ids) == 1:  # one position: logits (..., vocab), as every next-token target
            return logp[..., ids[0]]
        if logp.dim() < 2 or logp.shape[-2] != len(ids):
            raise InputError(
                f"{self.describe()}: logits of shape {tuple(logits.shape)} do not hold the "
                f"{len(ids)} answer positions this method needs; use 'answer_logprob_first'"
            )
        index = torch.as_tensor(ids, device=logp.device).expand(*logp.shape[:-1])
        return logp.gather(-1, index.unsqueeze(-1)).squeeze(-1).sum(-1)


@dataclass
class AnswerFirstLogProb(AnswerLogProb):
    """:class:`AnswerLogProb` of the first answer token only (``first_token=True``)."""

    name: ClassVar[str] = "answer_logprob_first"
    first_token: bool = True


def greedy_answer(adapter: VLMAdapter, inputs: PromptInputs, max_tokens: int) -> tuple[int, ...]:
    """The greedy answer's token ids, up to the first special token (end of sequence).

    The first :data:`SHORT_ANSWER` tokens are decoded by forwards on the cached vision
    features (a short answer, a word and its end token, costs no more); a longer answer is
    decoded by one ``generate`` (:func:`egg_interp.models.answering.greedy_ids`, key/value
    cache on), the tokens a run's answer has. The first token is kept even when it is special
    (an empty answer still has a first token to explain); the stopping token never is. The
    model's image and video placeholders count as special here.
    Answers are remembered per adapter (prompt, pixels, weights), so the methods mapping one
    sample decode it once.
    """
    from egg_interp.models.answering import greedy_ids

    max_tokens = max(1, max_tokens)
    key = (
        tuple(inputs.input_ids.flatten().tolist()),
        tuple(adapter.image_key(im) for im in inputs.images),
        adapter.weights_state(),
        max_tokens,
    )
    answers = _ANSWERS.setdefault(adapter, OrderedDict())
    if key in answers:
        answers.move_to_end(key)
        return answers[key]
    special = set(getattr(adapter.tokenizer, "all_special_ids", ()) or ())
    # a visual placeholder cannot be an answer token (appended, it would ask for features
    # nobody has): it ends the answer like a special token (a random tiny model emits them)
    special |= {t for t in (adapter.image_token_id, adapter.video_token_id) if t is not None}
    ids: list[int] = []
    while len(ids) < min(max_tokens, SHORT_ANSWER) and not (ids and ids[-1] in special):
        ids.append(int(adapter.next_token_logits(adapter.extend(inputs, ids)).argmax()))
    if len(ids) == SHORT_ANSWER < max_tokens and ids[-1] not in special:
        ids = greedy_ids(adapter, inputs, max_tokens)
    end = next((i for i, t in enumerate(ids) if t in special), len(ids))
    answers[key] = tuple(ids[: max(end, 1)])
    while len(answers) > 64:
        answers.popitem(last=False)
    return answers[key]


SHORT_ANSWER = 2
"""Answer tokens decoded by plain forwards before :func:`greedy_answer` calls ``generate``."""

_ANSWERS: WeakKeyDictionary[VLMAdapter, OrderedDict[tuple, tuple[int, ...]]] = WeakKeyDictionary()
"""The last 64 greedy answers per adapter, keyed by prompt ids, image pixels and weights (the
baselines mapping one sample share one decoding)."""


TARGETS: dict[str, type[Target]] = {
    cls.name: cls
    for cls in (
        Entropy,
        TopPEntropy,
        NegLogPMax,
        KLUniform,
        LogProb,
        AnswerLogProb,
        AnswerFirstLogProb,
    )
}


def make_target(spec: str | Target | None, default: str = "entropy") -> Target:
    """A target from a name (``"entropy"``, ``"answer_logprob"``, ``"logprob"``, ...) or object.

    >>> make_target("answer_logprob_first").describe()
    'answer_logprob_first'
    >>> make_target(None, default="answer_logprob").positions
    1
    """
    if isinstance(spec, Target):
        return spec
    name = spec or default
    if name not in TARGETS:
        raise InputError(f"unknown target {name!r}; valid: {', '.join(TARGETS)}")
    return TARGETS[name]()
