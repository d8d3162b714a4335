"""Ovis2: a tiny random-weight checkpoint (visual vocabulary and embedding table, thumbnail
first then tiles, Qwen2 language model)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from egg_interp.models.offline.common import MEAN_STD, build_word_tokenizer, save_checkpoint
from egg_interp.models.offline.qwen import QWEN_CHAT_TEMPLATE
from egg_interp.models.ovis2 import MARKERS

OVIS2_CHAT_TEMPLATE = QWEN_CHAT_TEMPLATE.replace(
    "<|vision_start|><|image_pad|><|vision_end|>", "<image>\n"
)
"""ChatML with ``<image>\\n`` per image, as Ovis2's."""


def build_tiny_ovis2(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    tile: int = 32,
    patch: int = 4,
    stride: int = 2,
    max_tiles: int = 9,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """An Ovis2 checkpoint with tiling on: ``(tile / patch / stride)^2`` tokens per tile (16).

    The processor tiles (``crop_to_patches``, up to ``max_tiles``) and resamples bilinearly
    (Ovis2: bicubic) so perturbations stay local: 96 x 96 -> 3 x 3 tiles, 150 x 100 -> 3 x 2
    (more rows of tiles would not be needed to cover 90 % of it), each after the thumbnail.
    """
    from transformers import (
        Ovis2Config,
        Ovis2ForConditionalGeneration,
        Ovis2ImageProcessorPil,
        Ovis2Processor,
    )

    tokenizer = build_word_tokenizer(
        [*words, "user", "assistant"],
        special_tokens=("<|im_start|>", "<|im_end|>", "<IMG_ATOM>", *MARKERS),
    )
    ids = tokenizer.convert_tokens_to_ids
    cfg = Ovis2Config(
        vision_config=dict(
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=2,
            image_size=tile,
            patch_size=patch,
            hidden_stride=stride,
            vocab_size=64,
        ),
        text_config=dict(
            model_type="qwen2",
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        image_token_id=ids("<IMG_ATOM>"),
        visual_indicator_token_ids=[ids(m) for m in MARKERS],
        vocab_size=len(tokenizer),
        hidden_size=hidden,
    )
    torch.manual_seed(seed)
    model = Ovis2ForConditionalGeneration(cfg).eval()
    image_processor = Ovis2ImageProcessorPil(
        size={"height": tile, "width": tile},
        crop_to_patches=True,
        max_patches=max_tiles,
        resample=2,  # bilinear
        **MEAN_STD,
    )
    processor = Ovis2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=OVIS2_CHAT_TEMPLATE,
        image_seq_length=(tile // patch // stride) ** 2,
    )
    return save_checkpoint(directory, model, processor)
