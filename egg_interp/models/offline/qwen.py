"""The Qwen-VL family: tiny random-weight checkpoints of Qwen2-VL, Qwen2.5-VL, Qwen3-VL,
Qwen3-VL-MoE, Qwen3.5 and Qwen3.5-MoE, and the shared Qwen pieces (ChatML template, vision
special tokens, text configs with 3-D rotary sections, processor)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from egg_interp.models.offline.common import (
    MEAN_STD,
    SPECIAL_TOKENS,
    build_word_tokenizer,
    save_checkpoint,
)

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
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen-VL's ChatML format with one ``<|vision_start|><|image_pad|><|vision_end|>`` per image and
one ``<|vision_start|><|video_pad|><|vision_end|>`` per video, as the released templates."""


def qwen_tokenizer(words: Iterable[str]) -> Any:
    """The word-level tokenizer of the tiny Qwen-VL checkpoints: ``words`` plus ``user``,
    ``assistant`` and the Qwen vision special tokens (:data:`QWEN_SPECIAL`)."""
    return build_word_tokenizer([*words, "user", "assistant"], special_tokens=QWEN_SPECIAL)


def _byte_level_bpe_tokenizer(words: Iterable[str]) -> Any:
    """A byte-level BPE tokenizer with Qwen's pre-tokenizer, trained until every word (alone
    or after a space) is one token.

    Qwen3.5's ``AutoTokenizer`` always rebuilds its tokenizer as ``Qwen3_5Tokenizer`` (a
    byte-level BPE) from the vocabulary and merges in ``tokenizer.json``, whatever class the
    checkpoint names; a word-level vocabulary would lose its words there, a BPE one keeps them.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen3_5.tokenization_qwen3_5 import PRETOKENIZE_REGEX

    words = [*words, "user", "assistant"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=100_000,  # a bound only: training stops once every word is one token
        special_tokens=[*SPECIAL_TOKENS, *QWEN_SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*words, *(f" {w}" for w in words), "\n"], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
    )
    fast.padding_side = "left"
    return fast


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


def build_qwen_processor(
    cls: type, tokenizer: Any, patch: int, max_tokens: int, min_tokens: int = 4
) -> Any:
    """A Qwen-VL processor of class ``cls`` (image-only, see
    :func:`~egg_interp.models.processors.image_only_processor_class`) with the PIL image
    processor and :data:`QWEN_CHAT_TEMPLATE`.

    Parameters
    ----------
    cls : type
        ``Qwen2VLProcessor``, ``Qwen2_5_VLProcessor`` or ``Qwen3VLProcessor``.
    tokenizer : PreTrainedTokenizerFast
        With the Qwen vision special tokens (``<|image_pad|>`` ...).
    patch : int
        Vision patch side in pixels; a merged token covers ``2 * patch`` pixels per side.
    max_tokens, min_tokens : int
        The pixel budget in merged tokens: ``max_pixels = max_tokens * (2 patch)^2``, likewise
        ``min_pixels`` (the released Qwen3-VL processor: 16384 and 64 tokens of 32 x 32 px).
    """
    from transformers import Qwen2VLImageProcessorPil

    from egg_interp.models.processors import image_only_processor_class

    unit = (patch * 2) ** 2  # pixels per merged token
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": min_tokens * unit, "longest_edge": max_tokens * unit},
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

    tokenizer = qwen_tokenizer(words)
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
    processor = build_qwen_processor(Qwen2VLProcessor, tokenizer, patch, max_tokens)
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

    tokenizer = qwen_tokenizer(words)
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
    processor = build_qwen_processor(Qwen2_5_VLProcessor, tokenizer, patch, max_tokens)
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
    from transformers import Qwen3VLForConditionalGeneration, Qwen3VLProcessor

    tokenizer = qwen_tokenizer(words)
    cfg = qwen3_vl_config(tokenizer, hidden=hidden, layers=layers, patch=patch)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(cfg).eval()
    processor = build_qwen_processor(Qwen3VLProcessor, tokenizer, patch, max_tokens)
    return save_checkpoint(directory, model, processor)


def qwen3_vl_config(
    tokenizer: Any,
    text: dict[str, Any] | None = None,
    vision: dict[str, Any] | None = None,
    *,
    hidden: int = 32,
    layers: int = 2,
    patch: int = 16,
) -> Any:
    """A ``Qwen3VLConfig``: the tiny one of :func:`build_tiny_qwen3_vl` (width ``hidden``,
    ``layers`` layers in both towers, deepstack after every vision layer but the last), with
    the entries of ``text`` and ``vision`` replacing its text and vision settings (a released
    model's widths and depths, say). Token ids come from ``tokenizer``."""
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(
        text_config={**_qwen3_text(tokenizer, hidden, layers), **(text or {})},
        vision_config={**_qwen3_vision(hidden, layers, patch, deepstack=True), **(vision or {})},
        **_qwen_ids(tokenizer),
    )


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

    tokenizer = qwen_tokenizer(words)
    text = {**_qwen3_text(tokenizer, hidden, layers), **_moe(experts, top_k, hidden)}
    cfg = Qwen3VLMoeConfig(
        text_config=text,
        vision_config=_qwen3_vision(hidden, layers, patch, deepstack=True),
        **_qwen_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen3VLMoeForConditionalGeneration(cfg).eval()
    mute_placeholders(model, (cfg.image_token_id, cfg.video_token_id))
    processor = build_qwen_processor(Qwen3VLProcessor, tokenizer, patch, max_tokens)
    return save_checkpoint(directory, model, processor)


# ---------------------------------------------------------------------------- Qwen3.5
def _qwen3_5_text(
    tokenizer: Any, hidden: int, layers: int, full_attention_interval: int
) -> dict[str, Any]:
    """Qwen3.5's hybrid text config: Gated DeltaNet linear attention in every layer but each
    ``full_attention_interval``-th (the released models: 4), gated full attention there.
    Half of each head is rotated (the released models rotate a quarter of 256 dimensions; a
    quarter of the tiny heads' 16 leaves too few frequencies for three rotary sections)."""
    text = _qwen3_text(tokenizer, hidden, layers, rotary_fraction=0.5)
    text.update(
        linear_conv_kernel_dim=4,
        linear_key_head_dim=hidden // 4,
        linear_value_head_dim=hidden // 4,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        layer_types=[
            "full_attention" if (i + 1) % full_attention_interval == 0 else "linear_attention"
            for i in range(layers)
        ],
    )
    return text


def build_tiny_qwen3_5(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    patch: int = 16,
    max_tokens: int = 64,
    hidden: int = 32,
    layers: int = 4,
    full_attention_interval: int = 2,
) -> Path:
    """A Qwen3.5 checkpoint: Qwen3-VL's vision tower without deepstack, a hybrid LM.

    Parameters
    ----------
    layers, full_attention_interval : int
        Every ``full_attention_interval``-th layer has full attention, the others Gated
        DeltaNet linear attention. The released models use 4 (three linear layers in four);
        the default 2 over 4 layers gives two full-attention layers (1 and 3), so that tests
        can tell which layer an attention map came from.
    patch, max_tokens, hidden : int
        As :func:`build_tiny_qwen2_5_vl`.
    """
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration, Qwen3VLProcessor

    tokenizer = _byte_level_bpe_tokenizer(words)
    cfg = Qwen3_5Config(
        text_config=_qwen3_5_text(tokenizer, hidden, layers, full_attention_interval),
        vision_config=_qwen3_vision(hidden, layers, patch, deepstack=False),
        **_qwen_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen3_5ForConditionalGeneration(cfg).eval()
    mute_placeholders(model, (cfg.image_token_id, cfg.video_token_id))
    processor = build_qwen_processor(Qwen3VLProcessor, tokenizer, patch, max_tokens)
    return save_checkpoint(directory, model, processor)


def build_tiny_qwen3_5_moe(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    patch: int = 16,
    max_tokens: int = 64,
    hidden: int = 32,
    layers: int = 4,
    full_attention_interval: int = 2,
    experts: int = 4,
    top_k: int = 2,
) -> Path:
    """A Qwen3.5-MoE checkpoint: :func:`build_tiny_qwen3_5`'s hybrid LM with a mixture of
    ``experts`` experts (``top_k`` per token) plus a shared expert in every layer."""
    from transformers import (
        Qwen3_5MoeConfig,
        Qwen3_5MoeForConditionalGeneration,
        Qwen3VLProcessor,
    )

    tokenizer = _byte_level_bpe_tokenizer(words)
    text = _qwen3_5_text(tokenizer, hidden, layers, full_attention_interval)
    text.update(_moe(experts, top_k, hidden), shared_expert_intermediate_size=hidden)
    cfg = Qwen3_5MoeConfig(
        text_config=text,
        vision_config=_qwen3_vision(hidden, layers, patch, deepstack=False),
        **_qwen_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen3_5MoeForConditionalGeneration(cfg).eval()
    mute_placeholders(model, (cfg.image_token_id, cfg.video_token_id))
    processor = build_qwen_processor(Qwen3VLProcessor, tokenizer, patch, max_tokens)
    return save_checkpoint(directory, model, processor)
