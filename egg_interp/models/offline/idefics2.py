"""Idefics2: a tiny random-weight checkpoint (SigLIP-style tower, Perceiver resampler, Llama
LM), to show why :func:`egg_interp.models.load_model` refuses the architecture."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from egg_interp.models.offline.common import (
    MEAN_STD,
    build_word_tokenizer,
    llama_text_config,
    save_checkpoint,
)
from egg_interp.models.offline.idefics3 import IDEFICS3_CHAT_TEMPLATE


def build_tiny_idefics2(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    image_size: int = 32,
    patch: int = 4,
    latents: int = 16,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """An Idefics2 checkpoint: ``(image_size / patch)^2`` patches per image, pooled by a
    two-layer Perceiver resampler into ``latents`` tokens (Idefics2: 64)."""
    from transformers import (
        Idefics2Config,
        Idefics2ForConditionalGeneration,
        Idefics2ImageProcessorPil,
        Idefics2Processor,
    )

    tokenizer = build_word_tokenizer(
        [*words, "User", "Assistant", ":"],
        special_tokens=("<fake_token_around_image>", "<end_of_utterance>"),
    )
    cfg = Idefics2Config(
        vision_config=dict(
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch,
        ),
        perceiver_config=dict(
            hidden_size=hidden,
            resampler_n_latents=latents,
            resampler_depth=2,
            resampler_n_heads=2,
            resampler_head_dim=hidden // 2,
            num_key_value_heads=2,
        ),
        text_config=llama_text_config(tokenizer, hidden, layers, 2).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = Idefics2ForConditionalGeneration(cfg).eval()
    image_processor = Idefics2ImageProcessorPil(
        size={"shortest_edge": image_size, "longest_edge": image_size}, **MEAN_STD
    )
    processor = Idefics2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=latents,
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    )
    return save_checkpoint(directory, model, processor)
