"""GLM-4V (GLM-4.1V / GLM-4.5V-style ``glm4v``): the tiny random-weight checkpoint."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from egg_interp.models.offline.common import MEAN_STD, build_word_tokenizer, save_checkpoint
from egg_interp.models.offline.qwen import mute_placeholders

GLM4V_SPECIAL = (
    "[gMASK]",
    "<sop>",
    "<|user|>",
    "<|assistant|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|video|>",
)

GLM4V_CHAT_TEMPLATE = (
    "[gMASK]<sop>{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|begin_of_image|><|image|><|end_of_image|>"
    "{% elif item['type'] == 'video' %}<|begin_of_video|><|video|><|end_of_video|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""GLM-4V's chat format, one ``<|begin_of_image|><|image|><|end_of_image|>`` per image (the
processor repeats ``<|image|>`` once per merged token) and one
``<|begin_of_video|><|video|><|end_of_video|>`` per video (the processor writes each frame
pair's image block and time in place of ``<|video|>``)."""


def _glm4v_processor(tokenizer: Any, patch: int, max_tokens: int) -> Any:
    from transformers import Glm4vImageProcessorPil, Glm4vProcessor

    from egg_interp.models.processors import image_only_processor_class

    unit = (patch * 2) ** 2  # pixels per merged token
    # GLM's smart_resize counts both temporal copies of a still image against its pixel budget
    image_processor = Glm4vImageProcessorPil(
        size={"shortest_edge": 2 * 4 * unit, "longest_edge": 2 * max_tokens * unit},
        patch_size=patch,
        merge_size=2,
        temporal_patch_size=2,
        **MEAN_STD,
    )
    return image_only_processor_class(Glm4vProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=GLM4V_CHAT_TEMPLATE
    )


def build_tiny_glm4v(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    patch: int = 14,
    max_tokens: int = 64,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """A GLM-4V checkpoint: ViT with 2-D rotary and interpolated learned positions, a 2x2
    convolution downsample and gated-MLP merger, GLM-4 LM with 3-D rotary positions.

    Parameters
    ----------
    patch : int
        Vision patch size; a token covers ``2 * patch`` processed pixels per side.
    max_tokens : int
        The processor's pixel budget in merged tokens per image (at least 4 per image).
    """
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration

    tokenizer = build_word_tokenizer([*words, "user", "assistant"], special_tokens=GLM4V_SPECIAL)
    ids = tokenizer.convert_tokens_to_ids
    head_dim = hidden // 2
    half = head_dim // 2
    cfg = Glm4vConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 3,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "partial_rotary_factor": 1.0,
                "mrope_section": [half - 2 * (half // 4), half // 4, half // 4],
            },
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            depth=layers,
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_heads=2,
            image_size=patch * 8,
            patch_size=patch,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=hidden,
        ),
        image_token_id=ids("<|image|>"),
        video_token_id=ids("<|video|>"),
        image_start_token_id=ids("<|begin_of_image|>"),
        image_end_token_id=ids("<|end_of_image|>"),
        video_start_token_id=ids("<|begin_of_video|>"),
        video_end_token_id=ids("<|end_of_video|>"),
    )
    torch.manual_seed(seed)
    model = Glm4vForConditionalGeneration(cfg).eval()
    mute_placeholders(model, (cfg.image_token_id, cfg.video_token_id))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    processor = _glm4v_processor(tokenizer, patch, max_tokens)
    return save_checkpoint(directory, model, processor)
