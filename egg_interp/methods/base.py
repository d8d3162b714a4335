"""The shared pipeline of every attribution method.

All methods are called the same way, ``method.attribute(adapter, images, question,
target=...)``, and return an :class:`~egg_interp.maps.AttributionMap` on the images' token
grids. A method overrides one step, :meth:`AttributionMethod.relevance`, which returns one
flat relevance vector per image; the base builds the prompt, optionally decodes to the k-th
answer token, times the call and attaches the geometry.

Shared arguments (documented once, here)
----------------------------------------
adapter : VLMAdapter
    The loaded model (see :func:`egg_interp.models.load_model`).
images : sequence of PIL.Image.Image
    The image or images asked about, then any crops (one grid each in the map).
question : str
    Not empty.
target : str or Target, optional
    What to explain: ``"entropy"`` (EGG's objective), ``"answer_logprob"`` (the model's own
    greedy answer, teacher-forced; the captum baselines' default), ``"answer_logprob_first"``,
    ``"top_p_entropy"``, ``"logprob"`` (log-probability of the predicted, or a given, token),
    ... Default: the method's :attr:`default_target`. A target bound to the prompt's answer
    (:meth:`~egg_interp.methods.targets.Target.for_prompt`) extends the prompt by the answer's
    tokens but its last, and the map's ``meta`` records ``explained_ids`` and
    ``explained_answer``.
inputs : PromptInputs, optional
    A prompt already built for these images and question (saves the processor call).
record : ForwardRecorder, optional
    Keeps the call's unperturbed forward for answering the same prompt without a second
    prefill (:mod:`egg_interp.models.answering`); methods without one add nothing.
videos : sequence of Video, optional
    Videos (:func:`egg_interp.video.read_video`) before the images, for models that take
    video (the map then has one entry per temporal slice of each video, first); pixel-space
    variants take still images only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from PIL import Image

from egg_interp.errors import InputError, UnsupportedModelError
from egg_interp.maps import AttributionMap
from egg_interp.methods.targets import Entropy, Target, make_target
from egg_interp.models.answering import ForwardRecorder, offer, recording
from egg_interp.models.base import PromptInputs, VLMAdapter
from egg_interp.video import Video


@dataclass(frozen=True)
class Needs:
    """What a method costs and requires, as data (a runner plans and reports from it).

    Attributes
    ----------
    forwards, backwards : int
        Passes through the language model per map; when :attr:`scales_with` is set, per unit
        of that option (``n_steps``, ``n_samples``, ``patches``), plus :attr:`extra_forwards`.
    gradients : bool
        Needs autograd (a backward pass).
    attentions : bool
        Needs attention weights (eager attention is switched on for the call).
    space : str
        Where the attribution is taken: ``"tokens"`` (post-projector visual token
        embeddings) or ``"pixels"`` (``pixel_values``, pooled to the token grid).
    scales_with : str
        The option that multiplies ``forwards`` and ``backwards`` (empty: fixed cost).
    extra_forwards : int
        Forwards added once on top of the scaled ones (e.g. the unperturbed input).
    """

    forwards: int = 1
    backwards: int = 0
    gradients: bool = False
    attentions: bool = False
    space: str = "tokens"
    scales_with: str = ""
    extra_forwards: int = 0

    def describe(self) -> str:
        """The cost in words, e.g. ``"n_steps x (1 fwd + 1 bwd) + 3 fwd"`` or ``"2 fwd"``."""
        fwd = self.forwards if self.scales_with else self.forwards + self.extra_forwards
        unit = f"{fwd} fwd" + (f" + {self.backwards} bwd" if self.backwards else "")
        if not self.scales_with:
            return unit
        return f"{self.scales_with} x ({unit})" + (
            f" + {self.extra_forwards} fwd" if self.extra_forwards else ""
        )


class AttributionMethod:
    """Base class: subclasses set :attr:`name`, :attr:`needs` and implement :meth:`relevance`."""

    name: ClassVar[str] = ""
    needs: ClassVar[Needs] = Needs()
    default_target: ClassVar[str] = "entropy"
    uses_target: ClassVar[bool] = True
    """False for maps that read attention weights only (the map's target is then ``"none"``)."""

    def __init__(self, target: str | Target | None = None, answer_step: int = 1) -> None:
        if answer_step < 1:
            raise InputError(
                f"answer_step counts from 1 (the first answer token), got {answer_step}"
            )
        self.target = make_target(target, self.default_target)
        self.answer_step = answer_step

    def attribute(
        self,
        adapter: VLMAdapter,
        images: Sequence[Image.Image],
        question: str,
        target: str | Target | None = None,
        inputs: PromptInputs | None = None,
        record: ForwardRecorder | None = None,
        videos: Sequence[Video] = (),
    ) -> AttributionMap:
        """Compute the map (see the module docstring for the arguments)."""
        self.check_supported(adapter)
        tgt = make_target(target, self.default_target) if target is not None else self.target
        if inputs is None:  # videos only when given: adapters may override build_inputs
            video_kwargs = {"videos": videos} if videos else {}
            inputs = adapter.build_inputs(images, question, **video_kwargs)
        if inputs.videos and getattr(self, "space", self.needs.space) == "pixels":
            raise UnsupportedModelError(
                f"method {self.name!r} with space='pixels' takes still images only (video "
                "pixels are flattened temporal patches); use space='tokens'"
            )
        if self.answer_step > 1:
            ids = adapter.greedy_tokens(inputs, self.answer_step - 1)
            inputs = adapter.extend(inputs, ids)
        start = time.perf_counter()
        tgt, inputs = tgt.for_prompt(adapter, inputs)
        with recording(record):
            relevance, meta = self.relevance(adapter, inputs, tgt)
        meta["seconds"] = time.perf_counter() - start
        meta["answer_step"] = self.answer_step
        explained = getattr(tgt, "answer_ids", ())
        if explained and self.uses_target:
            meta["explained_ids"] = list(explained)
            meta["explained_answer"] = adapter.tokenizer.decode(list(explained))
        described = tgt.describe() if self.uses_target else "none"
        return adapter.to_map(inputs, relevance, self.name, described, meta)

    def relevance(
        self, adapter: VLMAdapter, inputs: PromptInputs, target: Target
    ) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """One ``(n_tokens,)`` relevance vector per image, plus JSON-able metadata."""
        raise NotImplementedError

    def cost(self) -> Needs:
        """This instance's :class:`Needs` with its options filled in (default: the class's)."""
        return self.needs

    def check_supported(self, adapter: VLMAdapter) -> None:
        """Raise :class:`UnsupportedModelError` before any work when ``adapter`` cannot run this.

        Checks attention weights (eager attention) and pixel-to-token pooling.
        """
        who = adapter.name or type(adapter).__name__
        if self.needs.attentions and not adapter.supports_attention_weights:
            raise UnsupportedModelError(
                f"method {self.name!r} needs attention weights, but {who} cannot switch to "
                "eager attention; use a gradient method (e.g. 'egg' or 'saliency')"
            )
        space = getattr(self, "space", self.needs.space)
        if space == "pixels" and not adapter.supports_pixel_space:
            raise UnsupportedModelError(
                f"method {self.name!r} with space='pixels' needs pixel-to-token pooling, which "
                f"{who} lacks; use space='tokens'"
            )

    batch_spaces: ClassVar[frozenset[str]] = frozenset()
    """Spaces (``"tokens"``, ``"pixels"``) in which :meth:`relevance_batch` runs a whole batch
    of prompts in one padded forward/backward (EGG: tokens); empty: the method loops."""

    internal_batch_option: ClassVar[str | None] = None
    """Name of the constructor argument that sets the method's own inner batch (integrated
    gradients: ``internal_batch_size``), or ``None``; the runner fills it from its batch size."""

    @property
    def batched(self) -> bool:
        """True when this instance batches prompts (its space is in :attr:`batch_spaces`)."""
        return getattr(self, "space", self.needs.space) in self.batch_spaces

    def attribute_batch(
        self,
        adapter: VLMAdapter,
        items: Sequence[tuple[Sequence[Image.Image], str]],
        target: str | Target | None = None,
        record: ForwardRecorder | None = None,
    ) -> list[AttributionMap]:
        """Maps for several ``(images, question)`` prompts.

        Methods with :attr:`batched` run them as one padded batch (per-row objectives are
        summed, so every row keeps its own gradients); the others loop. Inside
        :meth:`VLMAdapter.remember_maps <egg_interp.models.base.VLMAdapter.remember_maps>`, a
        batch of one-image prompts whose every prompt was mapped before by an equal method is
        not computed again. ``record`` receives the batch's forward (rows in ``items`` order;
        one forward per prompt when the method loops). Targets bound to each prompt's answer
        (:attr:`Target.per_prompt <egg_interp.methods.targets.Target.per_prompt>`) map one
        prompt at a time.
        """
        tgt = make_target(target, self.default_target) if target is not None else self.target
        if not self.batched or self.answer_step > 1 or len(items) == 1 or tgt.per_prompt:
            return [self.attribute(adapter, ims, q, target=tgt, record=record) for ims, q in items]
        memo = getattr(adapter, "map_memo", None)
        if memo is not None and any(len(ims) > 1 for ims, _ in items):
            memo = None  # only first-step prompts repeat: do not hash the crops of later steps
        keys = (
            [self._memo_key(adapter, ims, q, tgt) for ims, q in items] if memo is not None else []
        )
        if keys and all(k in memo for k in keys):
            return [memo[k] for k in keys]
        with recording(record):
            maps = self._attribute_batch(adapter, items, tgt)
        if memo is not None:
            memo.update(zip(keys, maps))
        return maps

    def _memo_key(
        self, adapter: VLMAdapter, images: Sequence[Image.Image], question: str, target: Target
    ) -> tuple:
        """What makes two batched map requests the same: this method's class and options, the
        target, the images' pixels, the question and the model's weights."""
        options = sorted((k, repr(v)) for k, v in vars(self).items() if k != "target")
        images_key = tuple(adapter.image_key(im) for im in images)
        return (
            type(self).__qualname__,
            tuple(options),
            target.describe(),
            images_key,
            question,
            adapter.weights_state(),
        )

    def _attribute_batch(
        self,
        adapter: VLMAdapter,
        items: Sequence[tuple[Sequence[Image.Image], str]],
        tgt: Target,
    ) -> list[AttributionMap]:
        inputs = adapter.build_batch(items)
        start = time.perf_counter()
        relevance, metas = self.relevance_batch(adapter, inputs, tgt)
        seconds = (time.perf_counter() - start) / len(items)
        maps, start_img = [], 0
        for row, layouts in enumerate(inputs.row_layouts()):
            n = len(layouts)
            sub = PromptInputs({}, inputs.images[start_img : start_img + n], layouts, items[row][1])
            meta = {**metas[row], "seconds": seconds, "answer_step": 1, "batch_size": len(items)}
            maps.append(
                adapter.to_map(
                    sub, relevance[start_img : start_img + n], self.name, tgt.describe(), meta
                )
            )
            start_img += n
        return maps

    def relevance_batch(
        self, adapter: VLMAdapter, inputs: PromptInputs, target: Target
    ) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
        """Relevance for every image of a batch, plus one metadata dict per row."""
        raise NotImplementedError


def logits_summary(adapter: VLMAdapter, logits: torch.Tensor) -> dict[str, Any]:
    """Entropy, top-1 token and probability of next-token logits ``(vocab,)``."""
    logits = logits.detach().float()
    probs = torch.softmax(logits, -1)
    top = int(probs.argmax())
    return {
        "next_token_entropy": float(Entropy()(logits)),
        "top1_prob": float(probs[top]),
        "top1_token_id": top,
        "top1_token": adapter.tokenizer.decode([top]),
    }


def read_positions(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """What ``target`` reads from logits of shape ``(rows, seq, vocab)``: the last position,
    ``(rows, vocab)``, or the last :attr:`~egg_interp.methods.targets.Target.positions`,
    ``(rows, n, vocab)``."""
    n = target.positions
    return logits[:, -1] if n == 1 else logits[:, -n:]


def first_position(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """The next-token logits right after the prompt out of what ``target`` reads (for the
    map's metadata: entropy, top-1 token)."""
    return logits if target.positions == 1 else logits[..., 0, :]


def feature_set_logits(
    adapter: VLMAdapter, inputs: PromptInputs, features: Sequence[torch.Tensor], target: Target
) -> torch.Tensor:
    """Logits ``target`` reads for a batch of feature sets of one prompt.

    ``features``: one ``(B, n_tokens, hidden)`` tensor per image (as
    :meth:`~egg_interp.models.base.VLMAdapter.perturbed_logits`). Returns ``(B, vocab)``,
    or ``(B, n, vocab)`` for a target reading ``n > 1`` positions; differentiable. One
    batched forward (the adapter's) for one position; one forward per row otherwise.
    """
    if target.positions == 1:
        return adapter.perturbed_logits(inputs, features)
    rows = [
        read_positions(
            adapter.forward_features(inputs, [f[b] for f in features], last_only=False).logits,
            target,
        )[0]
        for b in range(features[0].shape[0])
    ]
    return torch.stack(rows)


def pixel_set_logits(
    adapter: VLMAdapter, inputs: PromptInputs, pixel_values: torch.Tensor, target: Target
) -> torch.Tensor:
    """Logits ``target`` reads for a batch of ``pixel_values`` of one prompt,
    ``(B, *pixel_values.shape)`` -> ``(B, vocab)`` or ``(B, n, vocab)`` (vision tower
    included; differentiable)."""
    if target.positions == 1:
        return adapter.perturbed_pixel_logits(inputs, pixel_values)
    return torch.stack([pixel_logits(adapter, inputs, pv, target) for pv in pixel_values])


def pixel_logits(
    adapter: VLMAdapter, inputs: PromptInputs, pixel_values: torch.Tensor, target: Target
) -> torch.Tensor:
    """Logits ``target`` reads for the prompt with these ``pixel_values``: ``(vocab,)`` or
    ``(n, vocab)``; differentiable."""
    if target.positions == 1:
        return adapter.pixel_logits(inputs, pixel_values)
    batch = {**inputs.batch, "pixel_values": pixel_values}
    out = adapter.forward(replace(inputs, batch=batch), logits_to_keep=target.positions)
    return read_positions(out.logits, target)[0]


def prompt_logits(adapter: VLMAdapter, inputs: PromptInputs, target: Target) -> torch.Tensor:
    """Logits ``target`` reads for the unperturbed prompt, float32, no gradients: ``(vocab,)``
    (:meth:`~egg_interp.models.base.VLMAdapter.next_token_logits`) or ``(n, vocab)``."""
    if target.positions == 1:
        return adapter.next_token_logits(inputs)
    with torch.no_grad():
        out = adapter.forward_features(inputs, adapter.image_features(inputs), last_only=False)
    return read_positions(out.logits, target)[0].float()


def visual_token_gradients(
    adapter: VLMAdapter, inputs: PromptInputs, target: Target
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Gradient of ``target`` at the post-projector visual token embeddings.

    One forward of the language model on detached leaf copies of the cached vision
    features, then ``torch.autograd.grad`` to those leaves only: no parameter gradients,
    no backward through the vision tower, no graph kept after the call.

    Returns
    -------
    features : list of (n_tokens, hidden) tensors, one per image
    grads : list of (n_tokens, hidden) tensors, float32
    objective : 0-d tensor
    logits : (vocab,) tensor at the prompt's answer position, detached

    With a batch of several prompts, ``objective`` and ``logits`` have one row per prompt
    (the per-row objectives are summed for the backward, so gradients stay per row). When the
    map call was given a recorder (``record=``), the forward's logits and key/value cache are
    kept for answering the same prompts without a second prefill
    (:func:`egg_interp.models.answering.offer`; for targets that read the next token only: an
    answer target's prompt holds part of the answer).
    """
    feats = adapter.image_features(inputs)
    leaves = [f.detach().requires_grad_(True) for f in feats]
    with torch.enable_grad():
        out = adapter.forward_features(inputs, leaves, last_only=target.positions == 1)
        logits = read_positions(out.logits, target)
        objective = target(logits)
        grads = torch.autograd.grad(objective.sum(), leaves)
    logits = first_position(logits, target)
    if target.positions == 1:
        offer(adapter, inputs, logits, out)
    if inputs.batch_size == 1:
        objective, logits = objective[0], logits[0]
    return feats, [g.float() for g in grads], objective.detach(), logits.detach()


def pixel_gradients(
    adapter: VLMAdapter, inputs: PromptInputs, target: Target
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient of ``target`` at ``pixel_values`` (through the vision tower).

    Returns ``(pixel_values, grad, objective, logits)``; ``logits`` of shape ``(vocab,)``
    at the prompt's answer position.
    """
    pixels = inputs.batch["pixel_values"].detach().requires_grad_(True)
    with torch.enable_grad():
        logits = pixel_logits(adapter, inputs, pixels, target)
        objective = target(logits)
        (grad,) = torch.autograd.grad(objective, [pixels])
    return (
        pixels.detach(),
        grad.float(),
        objective.detach(),
        first_position(logits, target).detach(),
    )
