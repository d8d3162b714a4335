"""Shared plumbing of the attention heuristics: eager forwards, layer choice, image columns.

Attention weights exist only with eager attention (``sdpa`` returns an empty tuple), so every
forward here runs inside ``adapter.attention_implementation("eager")``, which switches back
afterwards. Attention rows are sliced to the answer position and the image columns as soon
as the forward returns (memory grows with the square of the sequence length).

Layer indices count the language model's decoder layers from 0 and may be negative. The
default is the middle layer, ``num_lm_layers // 2``, read from the config (16 of 32 for
LLaVA-1.5; ViCrop used 14 there and 22 of 28 for Qwen2.5-VL: pass ``layers=14`` to reproduce
it).

Hybrid models (:attr:`VLMAdapter.attention_layers <egg_interp.models.base.VLMAdapter.attention_layers>`
lists fewer layers than the model has, e.g. Qwen3.5 whose Gated DeltaNet layers have no
attention weights) are read at their attention layers only: the default is the middle one of
those, ``"all"`` means all of those, a layer without weights is refused in one line, and the
map's metadata says which layers exist and which were read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from egg_interp.errors import InputError, UnsupportedModelError
from egg_interp.methods.base import AttributionMethod, Needs
from egg_interp.methods.targets import Target
from egg_interp.models.base import PromptInputs, VLMAdapter

GENERIC_PROMPT = "Write a general description of the image."
"""ViCrop's question-free prompt (the denominator of rel-att and pure-grad)."""

Layers = int | Sequence[int] | str | None


def resolve_layers(adapter: VLMAdapter, layers: Layers) -> list[int]:
    """Layer indices (0-based, non-negative) from ``None`` (the middle one of the layers with
    attention weights), an int, a list or ``"all"`` (every layer with attention weights).

    Raises :class:`UnsupportedModelError` for a layer without attention weights (hybrid models).
    """
    n = adapter.num_lm_layers
    have = adapter.attention_layers
    if not have:
        raise UnsupportedModelError(f"{_who(adapter)} has no layer with attention weights")
    if layers is None:
        chosen = [have[len(have) // 2]]
    elif layers == "all":
        chosen = list(have)
    elif isinstance(layers, int):
        chosen = [layers]
    elif isinstance(layers, str):
        raise InputError(f"layers must be an int, a list of ints or 'all', not {layers!r}")
    else:
        chosen = [int(x) for x in layers]
    if not chosen:
        raise InputError("no attention layer selected")
    for x in chosen:
        if not -n <= x < n:
            raise InputError(f"layer {x} out of range: the language model has {n} layers")
    chosen = [x % n for x in chosen]
    if missing := [x for x in chosen if x not in have]:
        raise UnsupportedModelError(
            f"layer(s) {missing} of {_who(adapter)} have no attention weights (they mix tokens "
            f"by linear attention or convolution); layers with attention weights: {have}"
        )
    return chosen


def _who(adapter: VLMAdapter) -> str:
    return adapter.name or type(adapter).__name__


def image_columns(adapter: VLMAdapter, inputs: PromptInputs) -> tuple[torch.Tensor, list[int]]:
    """Sequence positions of all images' tokens (concatenated) and the count per image."""
    positions = adapter.visual_positions(inputs)
    return torch.cat(positions), [len(p) for p in positions]


def forward_with_attentions(
    adapter: VLMAdapter, inputs: PromptInputs, features: Sequence[torch.Tensor] | None = None
) -> Any:
    """One language-model forward with eager attention; ``out.attentions`` checked non-empty.

    ``out.attentions[i]`` is layer ``i``'s weights; on a hybrid model (fewer
    :attr:`~egg_interp.models.base.VLMAdapter.attention_layers` than layers) the entries
    the model returned for its attention layers are put at those layers' indices, with
    ``None`` at the others. Gradients follow the caller's mode (and ``features``'
    ``requires_grad``).
    """
    feats = adapter.image_features(inputs) if features is None else list(features)
    with adapter.attention_implementation("eager"):
        out = adapter.forward_features(inputs, feats, last_only=True, output_attentions=True)
    atts = getattr(out, "attentions", None)
    have, n = adapter.attention_layers, adapter.num_lm_layers
    if atts and len(have) < n and len(atts) == len(have):
        by_layer = dict(zip(have, atts, strict=True))
        atts = out.attentions = tuple(by_layer.get(i) for i in range(n))
    if not atts or len(atts) != n or any(atts[i] is None for i in have):
        raise UnsupportedModelError(
            f"{_who(adapter)} returned no attention weights even with eager attention; "
            "attention maps are not available for this model"
        )
    return out


def last_row(att: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``(heads, n_columns)`` float32: the answer position's attention to ``columns``."""
    return att[0, :, -1, columns.to(att.device)].float()


def split(values: torch.Tensor, counts: list[int]) -> list[torch.Tensor]:
    """Split a vector over the concatenated image columns into one vector per image."""
    return list(values.split(counts))


def raw_attention_vector(
    adapter: VLMAdapter, inputs: PromptInputs, layers: list[int]
) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """Answer-position attention to the image tokens, mean over heads and ``layers``.

    Returns ``(values over the concatenated image columns, counts per image, logits)``.
    """
    columns, counts = image_columns(adapter, inputs)
    with torch.no_grad():
        out = forward_with_attentions(adapter, inputs)
        rows = torch.stack([last_row(out.attentions[i], columns).mean(0) for i in layers])
        logits = out.logits[0, -1].detach()
    return rows.mean(0), counts, logits


class AttentionMethod(AttributionMethod):
    """Base of the attention maps: the ``layers`` option, eager attention, no target.

    Parameters
    ----------
    target, answer_step
        As for every method (the target is unused by pure attention maps).
    layers : int, list of int, "all" or None
        Language-model layers whose maps are averaged; default the middle one.
    """

    needs: ClassVar[Needs] = Needs(forwards=1, attentions=True)
    uses_target: ClassVar[bool] = False

    def __init__(
        self, target: str | Target | None = None, answer_step: int = 1, layers: Layers = None
    ) -> None:
        super().__init__(target, answer_step)
        self.layers = layers

    def layer_meta(self, adapter: VLMAdapter) -> dict[str, Any]:
        """The resolved layers and the depth, for the map's metadata; on a hybrid model also
        the layers that have attention weights and a note that the others are not read."""
        layers, n = resolve_layers(adapter, self.layers), adapter.num_lm_layers
        meta: dict[str, Any] = {"layers": layers, "num_layers": n}
        have = adapter.attention_layers
        if len(have) < n:
            meta["attention_layers"] = have
            meta["attention_note"] = (
                f"only {len(have)} of the {n} language-model layers have attention weights (the "
                f"others mix tokens by linear attention or convolution, which this map cannot "
                f"see); it reads layer(s) {layers}"
            )
        return meta
