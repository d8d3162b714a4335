"""Greedy answers that reuse a map's own forward instead of prefilling the prompt again.

A gradient map at the visual tokens (EGG's) runs the language model once over the whole
prompt. When an answer is wanted for that same prompt (the base answer and the loop's first
map share ``[original, question]``; the final answer and the kept step's successor share
``[original, kept crops, question]``), that forward already holds the first answer token's
distribution and the key/value cache of the prompt: greedy decoding continues from there.

:func:`record_prefixes` switches the recording on around map calls (off by default: nothing
is kept, no memory spent); :func:`answer` takes a built prompt and a list of recorded
:class:`PrefixState`, continues from the one whose ``input_ids`` equal the prompt's, and
falls back to a fresh :meth:`VLMAdapter.generate` otherwise. Both paths give the same tokens
(tested on every architecture against ``generate``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from egg_interp.models.base import PromptInputs, VLMAdapter


@dataclass
class PrefixState:
    """One prompt's forward, kept for answering.

    Attributes
    ----------
    input_ids : Tensor of shape (1, seq)
        The prompt it ran on.
    logits : Tensor of shape (vocab,)
        Next-token logits at the prompt's last position.
    cache : transformers Cache
        Keys and values of every layer over the prompt (detached).
    positions : object
        The adapter's position state after this forward
        (:meth:`~egg_interp.models.base.VLMAdapter.saved_positions`, e.g. Qwen's rotary
        offsets), restored before decoding, since a later forward of another prompt
        overwrites it.
    """

    input_ids: torch.Tensor
    logits: torch.Tensor
    cache: Any
    positions: Any = None
    visual_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    """The prompt's other tensors (``pixel_values``, grids...): two prompts whose crops differ
    but have the same sizes have the same ``input_ids``; these tell them apart."""

    def matches(self, inputs: PromptInputs) -> bool:
        """Whether ``inputs`` is the prompt this forward ran on (same tokens and images)."""
        ids = inputs.input_ids
        same = ids.shape == self.input_ids.shape and bool((ids == self.input_ids).all())
        return same and self.cache is not None and _same(visual_inputs(inputs), self.visual_inputs)


def visual_inputs(inputs: PromptInputs) -> dict[str, torch.Tensor]:
    """The tensors of a built prompt other than ``input_ids`` and ``attention_mask``."""
    skip = ("input_ids", "attention_mask")
    return {k: v for k, v in inputs.batch.items() if torch.is_tensor(v) and k not in skip}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a
    )


@contextmanager
def record_prefixes(adapter: VLMAdapter) -> Iterator[list[PrefixState]]:
    """While active, single-prompt gradient maps at the visual tokens append their forward
    (:func:`offer_prefix`) to the yielded list."""
    previous = getattr(adapter, "_prefix_sink", None)
    sink: list[PrefixState] = []
    adapter._prefix_sink = sink  # type: ignore[attr-defined]
    try:
        yield sink
    finally:
        adapter._prefix_sink = previous  # type: ignore[attr-defined]


def offer_prefix(adapter: VLMAdapter, inputs: PromptInputs, logits: torch.Tensor, out: Any) -> None:
    """Keep this forward (the model output ``out`` of ``inputs``) when recording is on.

    Only unperturbed single-prompt forwards may be offered (the map methods' own
    ``visual_token_gradients`` is the one caller).
    """
    sink = getattr(adapter, "_prefix_sink", None)
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if sink is None or cache is None or inputs.batch_size != 1:
        return
    for layer in getattr(cache, "layers", ()):
        _detach_layer(layer)
    positions = adapter.saved_positions()
    state = PrefixState(inputs.input_ids, logits.detach().reshape(-1), cache, positions)
    state.visual_inputs = visual_inputs(inputs)
    sink.append(state)


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


def continue_greedy(
    adapter: VLMAdapter, inputs: PromptInputs, state: PrefixState, max_new_tokens: int = 20
) -> str:
    """Greedy answer text for ``inputs`` from a recorded forward of the same prompt.

    The first token is the argmax of the recorded logits; the adapter's
    :meth:`~egg_interp.models.base.VLMAdapter.generate_ids` (``generate`` by default) then
    continues from the recorded key/value cache with the first token as its only new input.
    """
    first = int(state.logits.argmax())
    gen = adapter.model.generation_config
    eos = gen.eos_token_id if gen.eos_token_id is not None else []
    eos = {eos} if isinstance(eos, int) else set(eos)
    ids = [first]
    if max_new_tokens > 1 and first not in eos:
        ext = adapter.extend(inputs, [first])
        batch = {k: v for k, v in ext.batch.items() if k not in adapter.pixel_keys}
        adapter.restore_positions(state.positions)
        out = adapter.generate_ids(batch, max_new_tokens - 1, cache=state.cache)
        ids += out[0, ext.input_ids.shape[1] :].tolist()
    state.cache = None  # generate extended it in place: it no longer holds this prompt alone
    return adapter.tokenizer.decode(ids, skip_special_tokens=True).strip()


def answer(
    adapter: VLMAdapter,
    inputs: PromptInputs,
    states: Sequence[PrefixState] = (),
    max_new_tokens: int = 20,
) -> str:
    """Greedy answer for a built prompt: from a matching recorded forward, else ``generate``."""
    state = next((s for s in states if s.matches(inputs)), None)
    if state is None:
        return adapter.generate(inputs, max_new_tokens)
    return continue_greedy(adapter, inputs, state, max_new_tokens)


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
