"""Phi-4-multimodal: a tiny random-weight checkpoint (SigLIP crops pooled 2x2 with learned
row separators, a global view, a Phi-3 decoder; a minimal audio encoder the class needs)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from egg_interp.models.offline.common import MEAN_STD, build_word_tokenizer, save_checkpoint

PHI4_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|image|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
"""Phi-4's ``<|user|><|image|>{question}<|end|><|assistant|>``."""


def build_tiny_phi4_multimodal(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    crop: int = 128,
    max_crops: int = 4,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """A Phi-4-multimodal checkpoint with crops of ``crop`` px and patch ``crop / 32``.

    The processor counts 256 global tokens and 16 separators whatever the size, so a crop
    must hold 32 x 32 patches (Phi-4: 448 px, patch 14); here 128 px, patch 4. Images up to
    ``crop`` per side take one crop: 96 x 96 -> 1 crop (16 x 16 tokens, all useful);
    150 x 100 -> 2 x 1 crops, the image fitted to 192 x 128, 24 of 32 token columns useful.
    """
    from transformers import (
        Phi4MultimodalConfig,
        Phi4MultimodalFeatureExtractor,
        Phi4MultimodalForCausalLM,
        Phi4MultimodalProcessor,
    )

    from egg_interp.models.phi4_multimodal_image_processing import Phi4MultimodalImageProcessor

    tokenizer = build_word_tokenizer(
        [*words, "user", "assistant"],
        special_tokens=("<|user|>", "<|assistant|>", "<|end|>"),
        named_tokens={"image_token": "<|image|>", "audio_token": "<|audio|>"},
    )
    ids = tokenizer.convert_tokens_to_ids
    small = dict(hidden_size=hidden, intermediate_size=hidden * 2, num_attention_heads=2)
    cfg = Phi4MultimodalConfig(
        vocab_size=len(tokenizer),
        num_hidden_layers=layers,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        original_max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        vision_config=dict(
            num_hidden_layers=layers,
            image_size=crop,
            patch_size=crop // 32,
            crop_size=crop,
            image_token_id=ids("<|image|>"),
            **small,
        ),
        audio_config=dict(
            num_blocks=1,
            ext_pw_out_channel=hidden,
            depthwise_separable_out_channel=hidden,
            nemo_conv_channels=hidden,
            audio_token_id=ids("<|audio|>"),
            **small,
        ),
        **small,
    )
    torch.manual_seed(seed)
    model = Phi4MultimodalForCausalLM(cfg).eval()
    image_processor = Phi4MultimodalImageProcessor(
        size={"height": crop, "width": crop},
        patch_size=crop // 32,
        dynamic_hd=max_crops,
        **MEAN_STD,
    )
    processor = Phi4MultimodalProcessor(
        image_processor=image_processor,
        audio_processor=Phi4MultimodalFeatureExtractor(),
        tokenizer=tokenizer,
        chat_template=PHI4_CHAT_TEMPLATE,
    )
    return save_checkpoint(directory, model, processor)
