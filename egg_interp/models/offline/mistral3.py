"""Mistral 3 (Pixtral vision): the tiny random-weight checkpoint."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import (
    Mistral3Config,
    Mistral3ForConditionalGeneration,
    MistralConfig,
    PixtralImageProcessorPil,
    PixtralVisionConfig,
)

from egg_interp.models.mistral3 import PixtralImageOnlyProcessor
from egg_interp.models.offline.common import MEAN_STD, build_word_tokenizer, save_checkpoint

MISTRAL3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}[INST]"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}[IMG]{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}[/INST]"
    "{% else %}{% for item in message['content'] %}{% if item['type'] == 'text' %}"
    "{{ item['text'] }}{% endif %}{% endfor %}{{ eos_token }}"
    "{% endif %}{% endfor %}"
)
"""Mistral's instruction format, ``<s>[INST][IMG]{question}[/INST]``."""

PIXTRAL_TOKENS = ("[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]")


def build_tiny_mistral3(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    patch: int = 8,
    longest_edge: int = 192,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """A Mistral 3 checkpoint: Pixtral tower (patch ``patch``, 2x2 merge), Mistral LM.

    Parameters
    ----------
    patch : int
        A token covers ``2 * patch`` processed pixels (16 by default; 28 in the real model).
    longest_edge : int
        Larger images are scaled down to it before the sides are rounded up to multiples
        of ``2 * patch``.

    The processor is saved as ``PixtralProcessor`` (see
    :class:`~egg_interp.models.mistral3.PixtralImageOnlyProcessor`).
    """
    tokenizer = build_word_tokenizer(words, special_tokens=PIXTRAL_TOKENS)
    vision = PixtralVisionConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        head_dim=hidden // 2,
        patch_size=patch,
        image_size=longest_edge + 2 * patch,  # the rotary table covers every rounded-up side
    )
    text = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=hidden // 2,
        max_position_embeddings=4096,
        sliding_window=None,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    cfg = Mistral3Config(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=2,
        vision_feature_layer=-1,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Mistral3ForConditionalGeneration(cfg).eval()
    image_processor = PixtralImageProcessorPil(
        size={"longest_edge": longest_edge},
        patch_size={"height": 2 * patch, "width": 2 * patch},
        **MEAN_STD,
    )
    processor = PixtralImageOnlyProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        spatial_merge_size=2,
        chat_template=MISTRAL3_CHAT_TEMPLATE,
    )
    return save_checkpoint(directory, model, processor)
