"""LLaVA-1.5: the tiny random-weight checkpoint and the pieces the model organism reuses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaImageProcessorPil,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from egg_interp.models.offline.common import build_word_tokenizer

LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>{{ '\\n' }}"
    "{% elif item['type'] == 'video' %}<video>{{ '\\n' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{{ '\\n' }}"
    "{% else %}ASSISTANT: "
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
    "</s>{{ '\\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
"""LLaVA-1.5's conversation format, ``USER: <image>\\n{question}\\nASSISTANT:``."""


def build_llava_processor(
    tokenizer: PreTrainedTokenizerFast,
    image_size: int,
    patch_size: int,
    *,
    do_center_crop: bool = True,
    do_pad: bool = False,
    image_mean: Sequence[float] = (0.5, 0.5, 0.5),
    image_std: Sequence[float] = (0.5, 0.5, 0.5),
) -> LlavaProcessor:
    """A LLaVA-1.5 style processor (shortest edge resize + centre crop) with a chat template."""
    image_processor = LlavaImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=do_center_crop,
        do_pad=do_pad,
        image_mean=list(image_mean),
        image_std=list(image_std),
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )


def llava_config(
    tokenizer: PreTrainedTokenizerFast,
    *,
    image_size: int = 64,
    patch_size: int = 8,
    vision_hidden: int = 32,
    vision_layers: int = 2,
    vision_heads: int = 2,
    text_hidden: int = 32,
    text_layers: int = 2,
    text_heads: int = 2,
    text_intermediate: int | None = None,
    vision_intermediate: int | None = None,
    vocab_size: int | None = None,
    vision_feature_layer: int = -2,
) -> LlavaConfig:
    """A small ``LlavaConfig`` (CLIP-style vision tower, Llama-style language model)."""
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=vision_intermediate or vision_hidden * 4,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=max(vocab_size or 0, len(tokenizer)),
        hidden_size=text_hidden,
        intermediate_size=text_intermediate or text_hidden * 3,
        num_hidden_layers=text_layers,
        num_attention_heads=text_heads,
        num_key_value_heads=text_heads,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_llava(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    **config_kwargs: int,
) -> Path:
    """Save a random-weight LLaVA checkpoint (model, tokenizer, processor) to ``directory``.

    Returns the directory, loadable with :func:`egg_interp.models.load_model`.
    """
    directory = Path(directory)
    tokenizer = build_word_tokenizer(words)
    cfg = llava_config(tokenizer, **config_kwargs)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg).eval()
    processor = build_llava_processor(
        tokenizer, cfg.vision_config.image_size, cfg.vision_config.patch_size
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
