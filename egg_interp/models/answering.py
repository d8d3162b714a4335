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
from dataclasses import dataclass
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

    def matches(self, inputs: PromptInputs) -> bool:
        ids = inputs.input_ids
        same = ids.shape == self.input_ids.shape and bool((ids == self.input_ids).all())
        return same and self.cache is not None


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
        for name in ("keys", "values"):
            t = getattr(layer, name, None)
            if torch.is_tensor(t):
                setattr(layer, name, t.detach())
    positions = adapter.saved_positions()
    sink.append(PrefixState(inputs.input_ids, logits.detach().reshape(-1), cache, positions))


def continue_greedy(
    adapter: VLMAdapter, inputs: PromptInputs, state: PrefixState, max_new_tokens: int = 20
) -> str:
    """Greedy answer text for ``inputs`` from a recorded forward of the same prompt.

    The first token is the argmax of the recorded logits; ``generate`` then continues from
    the recorded key/value cache with the first token as its only new input.
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
        with torch.no_grad():
            out = adapter.model.generate(
                **batch,
                cache=state.cache,
                max_new_tokens=max_new_tokens - 1,
                do_sample=False,
                pad_token_id=adapter.tokenizer.pad_token_id,
            )
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
    with torch.no_grad():
        out = adapter.model.generate(
            **inputs.batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=adapter.tokenizer.pad_token_id,
        )
    new = out[:, inputs.input_ids.shape[1] :]
    return [adapter.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]


def greedy_ids(adapter: VLMAdapter, inputs: PromptInputs, max_new_tokens: int = 20) -> list[int]:
    """Token ids of the greedy answer for a one-row prompt (one ``generate``, key/value cache
    on; the end-of-sequence token is included when reached)."""
    adapter.reset_positions()  # Qwen: rotary offsets of an earlier prompt must not leak in
    with torch.no_grad():
        out = adapter.model.generate(
            **inputs.batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=adapter.tokenizer.pad_token_id,
        )
    return out[0, inputs.input_ids.shape[1] :].tolist()
