"""HF-native InternVL (InternVL3/3.5): the tiny random-weight checkpoint."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from egg_interp.models.offline.common import MEAN_STD, build_word_tokenizer, save_checkpoint

INTERNVL_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}

INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""InternVL's ChatML format: one ``<IMG_CONTEXT>`` per image, expanded by the processor."""


def build_tiny_internvl(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    tile: int = 32,
    patch: int = 4,
    max_tiles: int = 6,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """An HF-native InternVL checkpoint: InternViT-style tower, pixel shuffle, Qwen2 LM.

    Parameters
    ----------
    tile, patch : int
        Tile side and patch size: ``(tile / patch / 2)^2`` tokens per tile (16 by default,
        each covering 8 x 8 tile pixels).
    max_tiles : int
        The processor's ``max_patches`` (tiles per image, thumbnail not counted).
    """
    from transformers import (
        GotOcr2ImageProcessorPil,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVisionConfig,
        Qwen2Config,
    )

    from egg_interp.models.processors import image_only_processor_class

    tokenizer = build_word_tokenizer(
        [*words, "user", "assistant"],
        special_tokens=("<|im_start|>", "<|im_end|>"),
        named_tokens=INTERNVL_TOKENS,
    )
    vision = InternVLVisionConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        image_size=[tile, tile],
        patch_size=[patch, patch],
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    per_tile = (tile // patch // 2) ** 2
    cfg = InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=per_tile,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(cfg).eval()
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": tile, "width": tile},
        crop_to_patches=True,
        min_patches=1,
        max_patches=max_tiles,
        **MEAN_STD,
    )
    processor = image_only_processor_class(InternVLProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_length=per_tile,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )
    return save_checkpoint(directory, model, processor)
