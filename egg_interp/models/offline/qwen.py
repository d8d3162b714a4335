"""The Qwen-VL family: tiny random-weight checkpoints of Qwen2-VL, Qwen2.5-VL, Qwen3-VL,
and Qwen3-VL-MoE, and the shared Qwen pieces (ChatML template, vision
special tokens, text configs with 3-D rotary sections, processor)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from egg_interp.models.offline.common import MEAN_STD, build_word_tokenizer, save_checkpoint

QWEN_SPECIAL = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen-VL's ChatML format with one ``<|vision_start|><|image_pad|><|vision_end|>`` per image."""


def _qwen_tokenizer(words: Iterable[str]) -> Any:
    return build_word_tokenizer([*words, "user", "assistant"], special_tokens=QWEN_SPECIAL)


def _qwen_ids(tokenizer: Any) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def _qwen_text(tokenizer: Any, hidden: int, layers: int) -> dict[str, Any]:
    heads = 2
    half = hidden // heads // 2  # rotary frequencies per head, split over (t, h, w)
    section = [half - 2 * (half // 3), half // 3, half // 3]
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def mute_placeholders(model: Any, token_ids: Iterable[int]) -> None:
    """Zero the output rows of the image and video placeholders, in place.

    A trained model never answers with its placeholders; a random one may (the tiny Qwen2-VL
    does, first), and an answer token that is a placeholder has no image features, so the
    prompt extended by it cannot run on precomputed features. A zero row gives the token a
    logit of 0, below the maximum of the other random logits.
    """
    with torch.no_grad():
        for i in token_ids:
            model.lm_head.weight[i].zero_()


def _qwen_processor(cls: type, tokenizer: Any, patch: int, max_tokens: int) -> Any:
    from transformers import Qwen2VLImageProcessorPil

    from egg_interp.models.processors import image_only_processor_class

    unit = (patch * 2) ** 2  # pixels per merged token
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": 4 * unit, "longest_edge": max_tokens * unit},
        patch_size=patch,
        merge_size=2,
        temporal_patch_size=2,
        **MEAN_STD,
    )
    return image_only_processor_class(cls)(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE
    )


def build_tiny_qwen2_vl(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    patch: int = 14,
    max_tokens: int = 64,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """A Qwen2-VL checkpoint: full-attention ViT with 2-D rotary positions, 2x2 patch merger,
    Qwen2 LM with 3-D rotary positions. Arguments as :func:`build_tiny_qwen2_5_vl`."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    tokenizer = _qwen_tokenizer(words)
    cfg = Qwen2VLConfig(
        text_config=_qwen_text(tokenizer, hidden, layers),
        vision_config=dict(
            depth=layers,
            embed_dim=hidden,
            hidden_size=hidden,
            mlp_ratio=2,
            num_heads=2,
            patch_size=patch,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        **_qwen_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(cfg).eval()
    mute_placeholders(model, (cfg.image_token_id, cfg.video_token_id))
    processor = _qwen_processor(Qwen2VLProcessor, tokenizer, patch, max_tokens)
    return save_checkpoint(directory, model, processor)


def build_tiny_qwen2_5_vl(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    patch: int = 14,
    max_tokens: int = 64,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """A Qwen2.5-VL checkpoint: window-attention vision tower, 2x2 merger, Qwen2 LM.

    Parameters
    ----------
    patch : int
        Vision patch size; a token covers ``2 * patch`` processed pixels per side.
    max_tokens : int
        The processor's pixel budget in tokens (``max_pixels = max_tokens * (2 patch)^2``);
        at least 4 tokens per image.
    """
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
    )

    tokenizer = _qwen_tokenizer(words)
    cfg = Qwen2_5_VLConfig(
        text_config=_qwen_text(tokenizer, hidden, layers),
        vision_config=dict(
            depth=layers,
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_heads=2,
            patch_size=patch,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=patch * 4,
            fullatt_block_indexes=[layers - 1],
            out_hidden_size=hidden,
        ),
        **_qwen_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    processor = _qwen_processor(Qwen2_5_VLProcessor, tokenizer, patch, max_tokens)
    return save_checkpoint(directory, model, processor)


# ---------------------------------------------------------------------------- Qwen3-VL
def build_tiny_qwen3_vl(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    patch: int = 16,
    max_tokens: int = 64,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """A Qwen3-VL checkpoint: vision tower with deepstack mergers after every layer but the
    last (``deepstack_visual_indexes = [0, ..., layers - 2]``), Qwen3 LM with interleaved
    3-D rotary positions. Arguments as :func:`build_tiny_qwen2_5_vl`.
    """
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor

    tokenizer = _qwen_tokenizer(words)
    cfg = Qwen3VLConfig(
        text_config=_qwen3_text(tokenizer, hidden, layers),
        vision_config=_qwen3_vision(hidden, layers, patch, deepstack=True),
        **_qwen_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(cfg).eval()
    processor = _qwen_processor(Qwen3VLProcessor, tokenizer, patch, max_tokens)
    return save_checkpoint(directory, model, processor)


def _qwen3_text(
    tokenizer: Any, hidden: int, layers: int, rotary_fraction: float = 1.0
) -> dict[str, Any]:
    """Qwen3's text config: ``head_dim`` explicit, interleaved 3-D rotary sections over the
    rotated part of each head (``rotary_fraction`` of it: Qwen3.5 rotates a quarter)."""
    text = _qwen_text(tokenizer, hidden, layers)
    head_dim = hidden // 2
    half = int(head_dim * rotary_fraction) // 2
    text["head_dim"] = head_dim
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": [half - 2 * (half // 4 or 1), half // 4 or 1, half // 4 or 1],
        "mrope_interleaved": True,
        **({"partial_rotary_factor": rotary_fraction} if rotary_fraction != 1.0 else {}),
    }
    return text


def _qwen3_vision(hidden: int, layers: int, patch: int, deepstack: bool) -> dict[str, Any]:
    """Qwen3-VL's vision tower (also Qwen3.5's, which has no deepstack mergers)."""
    vision = dict(
        depth=layers,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_heads=2,
        patch_size=patch,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=hidden,
        num_position_embeddings=64,
    )
    if deepstack:
        vision["deepstack_visual_indexes"] = list(range(max(layers - 1, 1)))
    return vision


def _moe(experts: int, top_k: int, hidden: int) -> dict[str, Any]:
    """A small mixture of experts: ``experts`` experts of width ``hidden``, ``top_k`` per token."""
    return dict(num_experts=experts, num_experts_per_tok=top_k, moe_intermediate_size=hidden)


# ---------------------------------------------------------------------------- Qwen3-VL-MoE
def build_tiny_qwen3_vl_moe(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    patch: int = 16,
    max_tokens: int = 64,
    hidden: int = 32,
    layers: int = 2,
    experts: int = 4,
    top_k: int = 2,
) -> Path:
    """A Qwen3-VL-MoE checkpoint: Qwen3-VL's vision tower with deepstack, a Qwen3 MoE LM
    (every layer sparse, ``experts`` experts, ``top_k`` routed per token). Other arguments as
    :func:`build_tiny_qwen2_5_vl`.
    """
    from transformers import (
        Qwen3VLMoeConfig,
        Qwen3VLMoeForConditionalGeneration,
        Qwen3VLProcessor,
    )

    tokenizer = _qwen_tokenizer(words)
    text = {**_qwen3_text(tokenizer, hidden, layers), **_moe(experts, top_k, hidden)}
    cfg = Qwen3VLMoeConfig(
        text_config=text,
        vision_config=_qwen3_vision(hidden, layers, patch, deepstack=True),
        **_qwen_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen3VLMoeForConditionalGeneration(cfg).eval()
    mute_placeholders(model, (cfg.image_token_id, cfg.video_token_id))
    processor = _qwen_processor(Qwen3VLProcessor, tokenizer, patch, max_tokens)
    return save_checkpoint(directory, model, processor)
