"""Randomising a model's weights block by block, and putting them back.

The blocks of any VLM are found from its structure (:func:`model_blocks`: the vision tower's
embeddings, layers and final norm, the projector, the language model's embeddings, layers and
norm with the head), or of a plain torch model (:func:`module_blocks`: quantus' ``MPRT``
layers). :func:`reinitialise` re-initialises a block with each module's own initialiser
(transformers' ``_init_weights`` of the pretrained model holding it; ``reset_parameters``
otherwise), seeded; :func:`stages` runs the cascading, bottom-up and independent orders and
:func:`restored` copies the weights back in place, so the adapter's caches, keyed on the
weights' version counters, follow. The sanity checks that use them are
:mod:`egg_interp.sanity`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from egg_interp.errors import InputError
from egg_interp.models.base import VLMAdapter


@dataclass(frozen=True)
class Block:
    """What one randomisation step re-initialises.

    Attributes
    ----------
    name : str
        ``"vision.layer.3"``, ``"projector"``, ``"language.post"``, ...
    part : {"vision", "projector", "language", "model"}
    modules : tuple of torch.nn.Module
        The modules whose own (direct) parameters and buffers the block holds; each is
        re-initialised on its own, not recursively.
    """

    name: str
    part: str
    modules: tuple[nn.Module, ...]

    def tensors(self) -> list[torch.Tensor]:
        """The parameters and buffers the block re-initialises."""
        return [t for m in self.modules for t in (*m.parameters(False), *m.buffers(False))]


def model_blocks(adapter: VLMAdapter, granularity: str = "layers") -> list[Block]:
    """The model's blocks in data-flow order: vision tower, projector, language model.

    Found from the model's structure, for any architecture: the language model is the
    model's decoder (transformers' ``get_decoder()``) plus the output embeddings (the head);
    the module holding it holds the vision tower (its child with the most parameters) and the
    projector (its other children with parameters, any parameters of its own such as
    LLaVA-NeXT's ``image_newline``, and any child of the vision tower named like a merger or
    projector, e.g. Qwen's ``visual.merger``). Within a part, ``layers`` are the entries of
    its largest ``ModuleList``; the part's parameters registered before them are ``pre``
    (embeddings), after them ``post`` (final norm, head).

    Parameters
    ----------
    granularity : {"layers", "parts"}
    """
    model = adapter.model
    language = model.get_decoder() if hasattr(model, "get_decoder") else adapter.language_model
    holder = next(m for m in model.modules() if any(c is language for c in m.children()))
    own = [holder] if list(holder.parameters(recurse=False)) else []
    others = [c for c in holder.children() if c is not language and _count(c) > 0]
    if not others:
        raise InputError(f"{type(adapter).__name__}: no vision tower next to the language model")
    tower = max(others, key=_count)
    named = list(tower.named_children())
    merged = [c for n, c in named if re.search(r"merger|projector|connector", n)]
    head = model.get_output_embeddings()
    parts = {
        "vision": [c for _, c in named if all(c is not m for m in merged)] or [tower],
        "projector": [*merged, *(c for c in others if c is not tower)],
        "language": [language, *([head] if head is not None else [])],
    }
    blocks: list[Block] = []
    for part, roots in parts.items():
        owners = _owning_modules(roots) + (own if part == "projector" else [])
        if granularity == "parts" or part == "projector":
            blocks.append(Block(part, part, tuple(owners)))
        else:
            blocks += _layer_blocks(part, roots, owners)
    return [b for b in blocks if b.modules]


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _owning_modules(roots: Sequence[nn.Module]) -> list[nn.Module]:
    """Every module under ``roots`` with parameters of its own, in registration order."""
    seen: dict[int, nn.Module] = {}
    for root in roots:
        for m in root.modules():
            if list(m.parameters(recurse=False)):
                seen.setdefault(id(m), m)
    return list(seen.values())


def _layer_blocks(part: str, roots: Sequence[nn.Module], owners: list[nn.Module]) -> list[Block]:
    """``pre``, one block per entry of the part's largest ``ModuleList``, ``post``."""
    lists = [m for root in roots for m in root.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        return [Block(part, part, tuple(owners))]
    layers = max(lists, key=_count)
    layer_of = {id(m): i for i, layer in enumerate(layers) for m in layer.modules()}
    pre: list[nn.Module] = []
    post: list[nn.Module] = []
    per_layer: list[list[nn.Module]] = [[] for _ in layers]
    for m in owners:
        if id(m) in layer_of:
            per_layer[layer_of[id(m)]].append(m)
        else:
            (post if any(per_layer) else pre).append(m)
    out = [Block(f"{part}.pre", part, tuple(pre))]
    out += [Block(f"{part}.layer.{i}", part, tuple(ms)) for i, ms in enumerate(per_layer)]
    return [*out, Block(f"{part}.post", part, tuple(post))]


def module_blocks(model: nn.Module) -> list[Block]:
    """Blocks of a plain torch model: every module with ``reset_parameters``, in
    ``named_modules`` order (quantus' ``MPRT`` layers)."""
    return [
        Block(name, "model", (m,))
        for name, m in model.named_modules()
        if hasattr(m, "reset_parameters")
    ]


# ------------------------------------------------------------------------------ randomising
def reinitialise(model: nn.Module, block: Block, seed: int) -> None:
    """Re-initialise ``block`` in place with each module's own initialiser, under ``seed``.

    A module inside a transformers pretrained model gets that model's ``_init_weights`` (the
    innermost one holding it; the "already initialised" flags transformers sets at loading
    are lifted for the call); a plain torch module gets ``reset_parameters()``.
    """
    owners = _owners(model)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for module in block.modules:
            _reinit_one(module, owners.get(id(module)))


def _owners(model: nn.Module) -> dict[int, Any]:
    """Module id -> the innermost transformers ``PreTrainedModel`` holding it."""
    from transformers import PreTrainedModel

    owners: dict[int, Any] = {}
    for m in model.modules():  # outer models first, so inner ones overwrite
        if isinstance(m, PreTrainedModel):
            owners.update({id(sub): m for sub in m.modules()})
    return owners


def _reinit_one(module: nn.Module, owner: Any) -> None:
    if owner is None:
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        return
    tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    flagged = [t for t in tensors if getattr(t, "_is_hf_initialized", False)]
    for t in flagged:
        t._is_hf_initialized = False
    try:
        owner._init_weights(module)
    finally:
        for t in flagged:
            t._is_hf_initialized = True


def stages(
    model: nn.Module,
    blocks: Sequence[Block],
    order: str,
    seed: int = 0,
    reinit: Callable[[nn.Module, Block, int], None] = reinitialise,
) -> Iterator[str]:
    """Randomise ``blocks`` (given in data-flow order) stage by stage, yielding each stage's
    block name with the model in that state; the weights are restored when the iteration ends
    (or is abandoned), and between blocks under ``"independent"``.

    Block ``i`` of ``blocks`` is re-initialised with seed ``seed + i`` whatever the order.
    """
    if order not in ("cascading", "bottom_up", "independent"):
        raise InputError(f"unknown order {order!r}")
    index = {id(b): i for i, b in enumerate(blocks)}
    sequence = list(blocks)[::-1] if order == "cascading" else list(blocks)
    with restored(blocks):
        for block in sequence:
            if order == "independent":
                with restored([block]):
                    reinit(model, block, seed + index[id(block)])
                    yield block.name
            else:
                reinit(model, block, seed + index[id(block)])
                yield block.name


@contextmanager
def restored(blocks: Sequence[Block]) -> Iterator[None]:
    """Inside, ``blocks`` may be changed in place; on exit their parameters and buffers are
    copied back (in place, so version counters move and the adapter's caches follow)."""
    tensors = {id(t): t for b in blocks for t in b.tensors()}
    saved = {i: t.detach().to("cpu", copy=True) for i, t in tensors.items()}
    try:
        yield
    finally:
        with torch.no_grad():
            for i, t in tensors.items():
                t.copy_(saved[i].to(t.device))


__all__ = [
    "Block",
    "model_blocks",
    "module_blocks",
    "reinitialise",
    "restored",
    "stages",
]
