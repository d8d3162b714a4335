"""Greedy answers, continued from a map's own forward where one ran on the same prompt.

A gradient map at the visual tokens (EGG's) runs the language model once over the whole
prompt, or over a left-padded batch of prompts. When an answer is wanted for one of those
prompts (the base answer and the loop's first map share ``[original, question]``; the final
answer and the kept step's successor share ``[original, kept crops, question]``), that
forward already holds the first answer token's distribution and the key/value cache of the
prompt: greedy decoding continues from there instead of prefilling the prompt again.

Recording is explicit and off by default: a :class:`ForwardRecorder` passed to a map call
(``method.attribute(..., record=recorder)``) keeps that call's unperturbed forward as a
:class:`RecordedForward` (one row per prompt of the call); nothing is kept otherwise. Whoever
knows which images and question a row ran on (the loop) names it as a
:class:`RecordedPrompt`; :func:`answer_prompts` continues every prompt that matches one and
prefills the others afresh. Both paths give the same tokens as ``generate`` one prompt at a
time (tested on every architecture, batches included).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from egg_interp.models.base import PromptInputs, VLMAdapter


@dataclass
class RecordedForward:
    """One map forward over ``rows`` prompts, kept for answering them.

    Attributes
    ----------
    tokens : dict of str to Tensor of shape (rows, seq)
        The prompt's per-token inputs (``input_ids``, ``attention_mask`` and any other
        per-token tensor such as Qwen's ``mm_token_type_ids``), left-padded for a batch.
    logits : Tensor of shape (rows, vocab)
        Next-token logits at each row's last position.
    cache : transformers Cache or None
        Keys and values of every layer over the prompts (detached); ``None`` once consumed
        (decoding extends it in place, so it is continued at most once).
    positions : object
        The adapter's position state after this forward
        (:meth:`~egg_interp.models.base.VLMAdapter.saved_positions`, e.g. Qwen's rotary
        offsets of shape (rows, 1)), restored before decoding; a tensor whose first dimension
        is ``rows`` is selected with the rows, anything else is kept whole.
    """

    tokens: dict[str, torch.Tensor]
    logits: torch.Tensor
    cache: Any
    positions: Any = None

    @property
    def rows(self) -> int:
        return int(self.logits.shape[0])

    def select(self, rows: Sequence[int]) -> RecordedForward:
        """Keep only ``rows``, in this order, in place (the other rows' keys and values are
        freed: ``Cache.reorder_cache`` with the kept rows); returns ``self``."""
        rows = list(rows)
        if rows == list(range(self.rows)):
            return self
        n = self.rows
        index = torch.tensor(rows, dtype=torch.long, device=self.logits.device)
        self.tokens = {k: v[index.to(v.device)] for k, v in self.tokens.items()}
        self.logits = self.logits[index]
        if self.cache is not None:
            self.cache.reorder_cache(index)
        pos = self.positions
        if torch.is_tensor(pos) and pos.dim() >= 1 and pos.shape[0] == n:
            self.positions = pos[index.to(pos.device)]
        return self


@dataclass(frozen=True)
class RecordedPrompt:
    """Row ``row`` of a recorded forward, which ran on ``images`` and ``question``."""

    forward: RecordedForward
    row: int
    images: tuple[Image.Image, ...]
    question: str

    def matches(self, images: Sequence[Image.Image], question: str) -> bool:
        """Whether a prompt of these images (same pixels, same order) and question is this
        row's prompt (the adapter builds the same tokens from the same images and text)."""
        if question != self.question or len(images) != len(self.images):
            return False
        return all(_same_image(a, b) for a, b in zip(images, self.images))


def _same_image(a: Image.Image, b: Image.Image) -> bool:
    return a is b or (a.size == b.size and a.mode == b.mode and a.tobytes() == b.tobytes())


@dataclass
class ForwardRecorder:
    """Collects the unperturbed forwards of the map calls it is passed to.

    Attributes
    ----------
    forwards : list of RecordedForward
        In call order; a call that ran no recordable forward (a method without one, a map
        reused from :meth:`~egg_interp.models.base.VLMAdapter.remember_maps`, a map of a later
        answer token) adds nothing.
    """

    forwards: list[RecordedForward] = field(default_factory=list)

    @property
    def last(self) -> RecordedForward | None:
        return self.forwards[-1] if self.forwards else None


_ACTIVE: ContextVar[ForwardRecorder | None] = ContextVar("egg_interp_recorder", default=None)
"""The recorder of the map call in progress (set by :func:`recording`, read by :func:`offer`)."""


@contextmanager
def recording(recorder: ForwardRecorder | None) -> Iterator[None]:
    """Make ``recorder`` the one :func:`offer` fills during this block (``None``: no-op).

    Map methods open it around their work when given ``record=``; the gradient helper
    (:func:`egg_interp.methods.base.visual_token_gradients`) then offers its forward.
    """
    if recorder is None:
        yield
        return
    token = _ACTIVE.set(recorder)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def offer(adapter: VLMAdapter, inputs: PromptInputs, logits: torch.Tensor, out: Any) -> None:
    """Keep this forward (model output ``out`` of ``inputs``) when a recorder is active.

    Only unperturbed forwards of a prompt without answer tokens may be offered (the gradient
    helper's); a forward of an extended prompt (a later answer token's map) is not kept.
    """
    recorder = _ACTIVE.get()
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if recorder is None or cache is None or inputs.answer_ids:
        return
    for layer in getattr(cache, "layers", ()):
        _detach_layer(layer)
    ids = inputs.input_ids
    tokens = {
        k: v
        for k, v in inputs.batch.items()
        if torch.is_tensor(v) and v.dim() == 2 and v.shape == ids.shape
    }
    logits = logits.detach().reshape(ids.shape[0], -1)
    recorder.forwards.append(RecordedForward(tokens, logits, cache, adapter.saved_positions()))


def _detach_layer(layer: Any) -> None:
    """Cut a cache layer's tensors from the map's autograd graph, in place: keys and values,
    and the convolution and recurrent states of linear-attention layers (Qwen3.5's Gated
    DeltaNet), which would otherwise keep the whole forward's graph alive."""
    for name, value in vars(layer).items():
        if torch.is_tensor(value) and value.requires_grad:
            setattr(layer, name, value.detach())
        elif isinstance(value, dict):
            for key, t in value.items():
                if torch.is_tensor(t) and t.requires_grad:
                    value[key] = t.detach()


def _eos_ids(adapter: VLMAdapter) -> set[int]:
    eos = adapter.model.generation_config.eos_token_id
    if eos is None:
        return set()
    return {eos} if isinstance(eos, int) else set(eos)


def _text(adapter: VLMAdapter, ids: list[int], eos: set[int]) -> str:
    """Decoded answer of greedy token ids, up to and including the first end token."""
    end = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
    return adapter.tokenizer.decode(ids[:end], skip_special_tokens=True).strip()


def continue_greedy(
    adapter: VLMAdapter, forward: RecordedForward, max_new_tokens: int = 20
) -> list[str]:
    """Greedy answer texts of every row of a recorded forward, one per row.

    Each row's first token is the argmax of its recorded logits; one decoding then continues
    every row from the recorded key/value cache with its first token as the only new input
    (:meth:`~egg_interp.models.base.VLMAdapter.generate_ids`: ``generate`` unless the
    architecture decodes itself; rows that end early are padded, and the text stops at the
    first end token). The cache is consumed (decoding extends it in place).
    """
    eos = _eos_ids(adapter)
    return [_text(adapter, seq, eos) for seq in continue_ids(adapter, forward, max_new_tokens)]


def continue_ids(
    adapter: VLMAdapter, forward: RecordedForward, max_new_tokens: int = 20
) -> list[list[int]]:
    """:func:`continue_greedy`'s token ids, one list per row (padding after an end token
    included)."""
    if forward.cache is None:
        raise ValueError("this recorded forward was already continued")
    eos = _eos_ids(adapter)
    first = forward.logits.argmax(-1)
    seqs = [[t] for t in first.tolist()]
    if max_new_tokens > 1 and any(s[0] not in eos for s in seqs):
        batch = dict(forward.tokens)
        ids = batch["input_ids"]
        batch["input_ids"] = torch.cat([ids, first.to(ids)[:, None]], dim=1)
        if "attention_mask" in batch:
            mask = batch["attention_mask"]
            batch["attention_mask"] = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        batch = adapter.extend_extra(batch, 1)
        adapter.restore_positions(forward.positions)
        out = adapter.generate_ids(batch, max_new_tokens - 1, cache=forward.cache)
        for seq, new in zip(seqs, out[:, batch["input_ids"].shape[1] :].tolist()):
            seq.extend(new)
    forward.cache = None
    return seqs


Prompt = tuple[Sequence[Image.Image], str]
"""``(images, question)`` of one prompt (originals first, then crops)."""


def answer_prompts(
    adapter: VLMAdapter,
    prompts: Sequence[Prompt],
    max_new_tokens: int = 20,
    recorded: Sequence[Sequence[RecordedPrompt]] | None = None,
) -> list[str]:
    """Greedy answer texts of several prompts, one per prompt.

    Parameters
    ----------
    prompts : sequence of (images, question)
    recorded : sequence of sequences of RecordedPrompt, optional
        For each prompt, the recorded rows it may continue (e.g. the loop's
        :attr:`~egg_interp.loop.GroundingResult.forwards` of its sample). A prompt matching
        one (:meth:`RecordedPrompt.matches`) is continued from it, the rows needed from one
        forward together (:func:`continue_greedy`); a row is continued once, so two prompts
        equal to one row share its answer.

    The other prompts are prefilled afresh: one alone by :meth:`VLMAdapter.generate`, several
    in one left-padded batch (:func:`generate_batch`).
    """
    answers: list[str | None] = [None] * len(prompts)
    groups: dict[int, tuple[RecordedForward, dict[int, list[int]]]] = {}
    for i, (images, question) in enumerate(prompts):
        candidates = recorded[i] if recorded is not None else ()
        rec = next(
            (r for r in candidates if r.forward.cache is not None and r.matches(images, question)),
            None,
        )
        if rec is not None:
            _, rows = groups.setdefault(id(rec.forward), (rec.forward, {}))
            rows.setdefault(rec.row, []).append(i)
    for forward, rows in groups.values():
        order = sorted(rows)
        texts = continue_greedy(adapter, forward.select(order), max_new_tokens)
        for row, text in zip(order, texts):
            for i in rows[row]:
                answers[i] = text
    fresh = [i for i, a in enumerate(answers) if a is None]
    if len(fresh) == 1:
        images, question = prompts[fresh[0]]
        answers[fresh[0]] = adapter.generate(adapter.build_inputs(images, question), max_new_tokens)
    elif fresh:
        batch = adapter.build_batch([prompts[i] for i in fresh])
        for i, text in zip(fresh, generate_batch(adapter, batch, max_new_tokens)):
            answers[i] = text
    return [str(a) for a in answers]


def generate_batch(
    adapter: VLMAdapter, inputs: PromptInputs, max_new_tokens: int = 20
) -> list[str]:
    """Greedy answer texts for a left-padded batch of prompts (:meth:`VLMAdapter.build_batch`).

    One ``generate`` for every row; rows that end early are padded by ``generate`` and the
    padding is dropped with the special tokens, so each text equals the row's own answer.
    """
    adapter.reset_positions()  # Qwen: rotary offsets of an earlier prompt must not leak in
    out = adapter.generate_ids(inputs.batch, max_new_tokens)
    new = out[:, inputs.input_ids.shape[1] :]
    return [adapter.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]


def feature_forward(adapter: VLMAdapter, inputs: PromptInputs) -> RecordedForward:
    """One forward of a one-row prompt on its precomputed visual features, recorded (logits
    and key/value cache) for :func:`continue_ids`: the model's own vision path is not run, so
    this works for every prompt an adapter builds (e.g. GLM-4V's video with images, which
    transformers 5.24's pixel path refuses)."""
    recorder = ForwardRecorder()
    with recording(recorder), torch.no_grad():
        out = adapter.forward_features(inputs, adapter.image_features(inputs), last_only=True)
        offer(adapter, inputs, out.logits[:, -1], out)
    return recorder.forwards[-1]


def answer_from_features(
    adapter: VLMAdapter, inputs: PromptInputs, max_new_tokens: int = 20
) -> str:
    """Greedy answer text of one prompt from :func:`feature_forward`, continued from its
    cache (the same tokens as ``generate``)."""
    return continue_greedy(adapter, feature_forward(adapter, inputs), max_new_tokens)[0]


def greedy_ids(adapter: VLMAdapter, inputs: PromptInputs, max_new_tokens: int = 20) -> list[int]:
    """Token ids of the greedy answer of a one-row prompt, from :func:`feature_forward` (key
    and value cache on; the end-of-sequence token included when reached, nothing after it)."""
    (ids,) = continue_ids(adapter, feature_forward(adapter, inputs), max_new_tokens)
    eos = _eos_ids(adapter)
    end = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
    return ids[:end]
