"""Adapter for ``paligemma`` checkpoints (PaliGemma and PaliGemma 2).

Layout. The SigLIP image processor squashes each image to S x S (224, 448 or 896 px; aspect
not kept), the tower cuts it into 14 px patches and the linear projector maps every patch
to one token, without pooling: ``(S / 14)^2`` tokens per image (256 at 224 px), row-major,
so token ``(r, c)`` covers ``[14 c W / S, 14 (c + 1) W / S) x [14 r H / S, ...)`` of a
``W x H`` original: LLaVA's squashed layout (:class:`~egg_interp.models.llava.LlavaAdapter`,
whose geometry and pixel pooling this adapter reuses). The prompt is
``image_seq_length`` x ``<image>`` per image, then ``<bos>``, the question and ``\\n``; the
processor itself inserts ``<bos>`` and the newline (there is no chat template), and adds
``<image>`` and the 1,152 ``<locXXXX>``/``<segXXX>`` tokens to the tokenizer. The mix
checkpoints expect task prefixes in the question (``"answer en <question>"``).

Prefix-LM attention. The prefix (images, ``<bos>``, question, newline: ``token_type_ids``
0) attends bidirectionally, so the image tokens read the question and the question's last
token reads every image token both ways. Answer tokens are the causal suffix: ``generate``
gives every generated token type 1, and so does :meth:`PaliGemmaAdapter.extend`: an
appended answer token sees the whole prefix and the earlier answer tokens, and the prefix
never sees it, exactly as in ``generate``'s cached decoding (a type-0 answer token would
join the prefix and change every prefix state). A map's forward over the prompt is the
prefill ``generate`` runs, so an answer continued from it is the same, token for token.
Positions are 1-indexed (PaliGemma counts from 1; with left padding, from the first real
token).

Several images per prompt: accepted. The processor and model place each image's tokens in
order before ``<bos>``, as the NLVR2 transfer checkpoint takes its image pair; the pt and mix
checkpoints were trained with one image per prefix, so the loop's answers with crops are
outside their training distribution.

The processor returns training ``labels`` (every prefix token -100); they are dropped from
built prompts, since the model would compute a loss over them.

What maps cannot show: anything finer than a 14 x 14 patch of the squashed image; the aspect
ratio (a token of a wide image is a wide rectangle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling

from egg_interp.models.base import PromptInputs
from egg_interp.models.gemma3 import extend_token_types
from egg_interp.models.llava import LlavaAdapter

SUFFIX_TYPE = 1
"""``token_type_ids`` of answer tokens (the causal suffix); the prompt is the prefix, 0."""


class PaliGemmaAdapter(LlavaAdapter):
    """PaliGemma: one squashed patch grid per image, a bidirectional prefix (module doc)."""

    model_types = ("paligemma",)
    image_token = "<image>"

    def fallback_prompt(self, n_images: int, text: str) -> str:
        """``<image>`` per image, then the text; the processor adds ``<bos>`` and ``\\n``."""
        return self.image_token * n_images + text

    def build_inputs(
        self, images: Sequence[Image.Image], question: str, *args: Any, **kwargs: Any
    ) -> PromptInputs:
        return _without_labels(super().build_inputs(images, question, *args, **kwargs))

    def build_batch(self, items: Sequence[tuple[Sequence[Image.Image], str]]) -> PromptInputs:
        return _without_labels(super().build_batch(items))

    def encoder_outputs(self, features: Sequence[torch.Tensor]) -> BaseModelOutputWithPooling:
        """All images' tokens in one ``(tokens, D)`` tensor (the model scatters them in order)."""
        return BaseModelOutputWithPooling(pooler_output=torch.cat(list(features), dim=0))

    def position_kwargs(self, batch: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """1-indexed positions from each row's first real token under left padding (as
        ``generate``: its 0-indexed count, plus PaliGemma's 1)."""
        mask = batch.get("attention_mask")
        if mask is not None and "position_ids" not in kwargs and not bool(mask.all()):
            kwargs = {**kwargs, "position_ids": mask.long().cumsum(-1).clamp(min=1)}
        return kwargs

    def extend_extra(self, batch: dict[str, Any], n: int) -> dict[str, Any]:
        """Answer tokens join the causal suffix (``token_type_ids`` 1), as in ``generate``."""
        return extend_token_types(batch, "token_type_ids", n, SUFFIX_TYPE)


def _without_labels(inputs: PromptInputs) -> PromptInputs:
    batch = {k: v for k, v in inputs.batch.items() if k != "labels"}
    return replace(inputs, batch=batch)
