"""DeepSeek-VL: a tiny random-weight checkpoint (SigLIP tower, MLP aligner, Llama LM; the
image resized by its longest side and padded to a centred square)."""

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

DEEPSEEK_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}User: {% else %}Assistant: {% endif %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image_placeholder>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}\n\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
"""DeepSeek-VL's ``User: <image_placeholder>{question}\\n\\nAssistant:`` (no system prompt)."""


def build_tiny_deepseek_vl(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    image_size: int = 32,
    patch: int = 4,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """A DeepSeek-VL checkpoint: ``(image_size / patch)^2`` tokens per image (64 by default).

    The image processor (``DeepseekVLImageProcessorPil``, bicubic as DeepSeek-VL's) resizes
    the longest side to ``image_size`` and pads to a centred square: 150 x 100 -> 32 x 21
    with 5 rows of padding above, 80 x 200 -> 13 x 32 with 9 columns on the left.
    """
    from transformers import (
        DeepseekVLConfig,
        DeepseekVLForConditionalGeneration,
        DeepseekVLImageProcessorPil,
        DeepseekVLProcessor,
    )

    image_token = "<image_placeholder>"
    tokenizer = build_word_tokenizer(
        [*words, "User", "Assistant", ":"], named_tokens={"image_token": image_token}
    )
    cfg = DeepseekVLConfig(
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch,
            vision_use_head=False,
        ),
        text_config=llama_text_config(tokenizer, hidden, layers, 2).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids(image_token),
    )
    torch.manual_seed(seed)
    model = DeepseekVLForConditionalGeneration(cfg).eval()
    image_processor = DeepseekVLImageProcessorPil(
        size={"height": image_size, "width": image_size}, min_size=patch, **MEAN_STD
    )
    processor = DeepseekVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=DEEPSEEK_VL_CHAT_TEMPLATE,
        num_image_tokens=(image_size // patch) ** 2,
    )
    return save_checkpoint(directory, model, processor)
