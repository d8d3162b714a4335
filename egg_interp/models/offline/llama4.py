"""Llama 4: the tiny random-weight checkpoint."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import (
    Llama4Config,
    Llama4ForConditionalGeneration,
    Llama4Processor,
    Llama4TextConfig,
    Llama4VisionConfig,
)

from egg_interp.models.llama4_images import Llama4ImageProcessorPil
from egg_interp.models.offline.common import MEAN_STD, build_word_tokenizer, save_checkpoint

LLAMA4_TOKENS = (
    "<|image_start|>",
    "<|image_end|>",
    "<|image|>",
    "<|patch|>",
    "<|tile_x_separator|>",
    "<|tile_y_separator|>",
    "<|header_start|>",
    "<|header_end|>",
    "<|eot|>",
)


def build_tiny_llama4(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    tile: int = 48,
    patch: int = 8,
    max_tiles: int = 16,
    hidden: int = 32,
    vision_layers: int = 2,
    text_layers: int = 4,
    chunk: int = 128,
) -> Path:
    """A Llama 4 checkpoint: tiles of ``tile`` px, patch ``patch``, pixel shuffle 0.5.

    Parameters
    ----------
    tile, patch : int
        ``(tile / patch / 2)^2`` tokens per tile, each covering ``2 * patch`` px (3 x 3
        tokens of 16 px by default; 12 x 12 of 28 px in the real model).
    max_tiles : int
        Most tiles per image (16, as released).
    text_layers : int
        Four, so that the language model has the real layer pattern: three layers of
        chunked attention with rotary positions, then one of full attention without.
    chunk : int
        ``attention_chunk_size`` in tokens (8192 in the real model), small here so that the
        tests' longer prompts span two chunks (the shorter ones, one).

    The chat template is Llama 4's; the text layers are mixture-of-experts every second
    layer (4 experts, top-1), dense otherwise, as Maverick interleaves them.
    """
    tokenizer = build_word_tokenizer(words, special_tokens=LLAMA4_TOKENS)
    vision = Llama4VisionConfig(
        hidden_size=hidden,
        num_hidden_layers=vision_layers,
        num_attention_heads=2,
        intermediate_size=4 * hidden,  # = hidden / shuffle ratio^2, the adapter MLP's input
        vision_output_dim=hidden,
        projector_input_dim=hidden,
        projector_output_dim=hidden,
        image_size=tile,
        patch_size=patch,
        pixel_shuffle_ratio=0.5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    text = Llama4TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        intermediate_size_mlp=3 * hidden,
        num_hidden_layers=text_layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=hidden // 2,
        num_local_experts=4,
        num_experts_per_tok=1,
        interleave_moe_layer_step=2,
        attention_chunk_size=chunk,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    cfg = Llama4Config(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<|patch|>"),
        boi_token_index=tokenizer.convert_tokens_to_ids("<|image_start|>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<|image_end|>"),
    )
    torch.manual_seed(seed)
    model = Llama4ForConditionalGeneration(cfg).eval()
    image_processor = Llama4ImageProcessorPil(
        size={"height": tile, "width": tile}, max_patches=max_tiles, **MEAN_STD
    )
    processor = Llama4Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        pixel_shuffle_ratio=0.5,
    )
    return save_checkpoint(directory, model, processor)
