"""Molmo 2: a tiny random-weight checkpoint (low-resolution view, overlapping crops pooled
through an index table, all image tokens in one bidirectional block)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from egg_interp.models.offline.common import MEAN_STD, build_word_tokenizer, save_checkpoint

MOLMO2_SPECIAL = (
    "<|im_start|>",
    "<|im_end|>",
    "<|image|>",
    "<|video|>",
    "<im_patch>",
    "<im_col>",
    "<im_start>",
    "<low_res_im_start>",
    "<frame_start>",
    "<im_end>",
    "<frame_end>",
    "<im_low>",
)
"""The prompt placeholders and the image markers ``Molmo2Processor`` expands them into."""

MOLMO2_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|image|>"
    "{% elif item['type'] == 'video' %}<|video|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML with one ``<|image|>`` per image and one ``<|video|>`` per video (the processor prepends
the BOS token)."""


def build_tiny_molmo2(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    crop: int = 112,
    patch: int = 16,
    margin: int = 1,
    max_crops: int = 8,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """A Molmo 2 checkpoint: ViT over crops, 2x2 attention pooling, Molmo 2 text model.

    Parameters
    ----------
    crop, patch : int
        Crop side and patch size: ``crop / patch`` patches per side (7 by default: odd like
        Molmo 2's 27, so the last row and column of the low-resolution grid pool one patch).
    margin : int
        Overlap margin in patches on each side: crops overlap by ``2 * margin`` patches and
        tile the canvas at a stride of ``crop - 2 * margin * patch`` pixels (80 by default).
    max_crops : int
        At most this many high-resolution crops (Molmo 2's 8).

    With the defaults, 96 x 96 -> one crop, 150 x 100 -> 1 x 2, 80 x 200 -> 3 x 1 and
    200 x 200 -> 2 x 2 crops; images up to about twice the crop side are resized by at most
    2x, so no pixel falls in a hole of the antialias-free bilinear resize.

    The vision tower and the pooling adapter are drawn with ``initializer_range`` 0.1: at
    transformers' 0.02 the SwiGLU projector multiplies two tiny numbers and the image
    features come out near 1e-8, below float32 noise; at 0.1 they are of the order of the
    token embeddings (about 0.02).
    """
    from transformers import Molmo2Config, Molmo2ForConditionalGeneration

    from egg_interp.models.molmo2 import Molmo2ImageProcessor, processor_class_without_video

    tokenizer = build_word_tokenizer([*words, "user", "assistant"], special_tokens=MOLMO2_SPECIAL)
    ids = tokenizer.convert_tokens_to_ids
    heads = dict(num_attention_heads=2, num_key_value_heads=2, head_dim=hidden // 2)
    cfg = Molmo2Config(
        vision_config=dict(
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            image_size=[crop, crop],
            patch_size=patch,
            initializer_range=0.1,
            **heads,
        ),
        adapter_config=dict(
            vision_feature_layer=[-1, 0],  # two ViT layers concatenated, as Molmo 2's [-3, -9]
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            text_hidden_size=hidden,
            initializer_range=0.1,
            **heads,
        ),
        text_config=dict(
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            vocab_size=len(tokenizer),
            additional_vocab_size=0,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            **heads,
        ),
        image_start_token_id=ids("<im_start>"),
        low_res_image_start_token_id=ids("<low_res_im_start>"),
        image_end_token_id=ids("<im_end>"),
        image_patch_id=ids("<im_patch>"),
        frame_start_token_id=ids("<frame_start>"),
        frame_end_token_id=ids("<frame_end>"),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = Molmo2ForConditionalGeneration(cfg).eval()
    image_processor = Molmo2ImageProcessor(
        size={"height": crop, "width": crop},
        patch_size=patch,
        overlap_margins=[margin, margin],
        max_crops=max_crops,
        **MEAN_STD,
    )
    processor = processor_class_without_video()(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=MOLMO2_CHAT_TEMPLATE
    )
    return save_checkpoint(directory, model, processor)
