"""Gemma 3, Gemma 4 and PaliGemma: tiny random-weight checkpoints and the Gemma pieces
(turn-based chat template, begin/end-of-image tokens exposed as tokenizer attributes).

Each builder writes what a real checkpoint of its family holds, at toy sizes: the config
(vision tower + Gemma language model), the weights, a word-level ``tokenizer.json`` whose
tokenizer exposes the attributes the processor reads without fallback (Gemma 3 and 4:
``boi_token``, ``eoi_token``, ``image_token`` and their ids; Gemma 4 also its audio markers,
which its processor checks even for images), the PIL image processor and, for Gemma 3 and 4,
the chat template (PaliGemma checkpoints have none: the processor itself puts ``bos`` after
the image tokens and a newline after the prompt).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from egg_interp.models.offline.common import MEAN_STD, build_word_tokenizer, save_checkpoint
from egg_interp.models.offline.qwen import mute_placeholders

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ image_placeholder }}"
    "{% elif item['type'] == 'video' %}{{ video_placeholder }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}"
    "{% endfor %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
"""Gemma's turn format, ``<bos><start_of_turn>user\\n{images}{question}<end_of_turn>\\n
<start_of_turn>model\\n``; ``image_placeholder`` and ``video_placeholder`` are filled per family
below (an empty video placeholder for the families without video)."""

GEMMA3_IMAGE_TOKENS = {
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
    "image_token": "<image_soft_token>",
}
"""Gemma 3's image markers (the prompt's placeholder is ``boi_token``, which the processor
expands to ``\\n\\n<boi>`` + soft tokens + ``<eoi>\\n\\n``)."""

GEMMA4_IMAGE_TOKENS = {
    "boi_token": "<|image>",
    "eoi_token": "<image|>",
    "image_token": "<|image|>",
    "boa_token": "<|audio>",
    "eoa_token": "<audio|>",
    "audio_token": "<|audio|>",
}
"""Gemma 4's image and audio markers (the prompt's placeholder is ``image_token``)."""

GEMMA4_VIDEO_TOKEN = "<|video|>"
"""Added by ``Gemma4Processor`` itself when missing; part of the vocabulary here so that the
saved model's embedding covers it."""


def _gemma_tokenizer(words: Iterable[str], named: dict[str, str], extra: tuple[str, ...] = ()):
    return build_word_tokenizer(
        [*words, "user", "model"],
        special_tokens=("<start_of_turn>", "<end_of_turn>", *extra),
        named_tokens=named,
    )


def _chat_template(placeholder: str, video: str = "") -> str:
    template = GEMMA_CHAT_TEMPLATE.replace("{{ image_placeholder }}", placeholder)
    return template.replace("{{ video_placeholder }}", video)


def _siglip(hidden: int, layers: int, image_size: int, patch: int) -> dict[str, Any]:
    return dict(
        model_type="siglip_vision_model",
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
        vision_use_head=False,
    )


def _gemma_text(tokenizer: Any, hidden: int, layers: int, **extra: Any) -> dict[str, Any]:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=hidden // 2,
        query_pre_attn_scalar=hidden // 2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        **extra,
    )


# ------------------------------------------------------------------------------- Gemma 3
def build_tiny_gemma3(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    image_size: int = 48,
    patch: int = 4,
    tokens_per_side: int = 6,
    hidden: int = 32,
    layers: int = 2,
    sliding_window: int = 128,
) -> Path:
    """A Gemma 3 checkpoint: SigLIP tower, average pooling to a square token grid, Gemma 3 LM.

    Parameters
    ----------
    image_size, patch : int
        The SigLIP input side (images are squashed to it) and patch size.
    tokens_per_side : int
        Side of the pooled token grid (16 in the released models): ``mm_tokens_per_image =
        tokens_per_side^2``; a token averages ``image_size / patch / tokens_per_side`` patches
        per side.
    sliding_window : int
        Window of the sliding-attention layers; layers alternate sliding and full attention
        (5 of 6 layers slide in the released models), so with a window shorter than the
        prompt both kinds of mask occur.

    Notes
    -----
    transformers initialises the projector's ``mm_input_projection_weight`` to zeros (every
    image feature would be 0); it is re-drawn here, ``N(0, 1 / vision_hidden)``.
    """
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
    )

    tokenizer = _gemma_tokenizer(words, GEMMA3_IMAGE_TOKENS)
    ids = tokenizer.convert_tokens_to_ids
    layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    cfg = Gemma3Config(
        text_config=_gemma_text(
            tokenizer, hidden, layers, sliding_window=sliding_window, layer_types=layer_types
        ),
        vision_config=_siglip(hidden, layers, image_size, patch),
        mm_tokens_per_image=tokens_per_side**2,
        boi_token_index=ids(GEMMA3_IMAGE_TOKENS["boi_token"]),
        eoi_token_index=ids(GEMMA3_IMAGE_TOKENS["eoi_token"]),
        image_token_index=ids(GEMMA3_IMAGE_TOKENS["image_token"]),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        proj = model.model.multi_modal_projector.mm_input_projection_weight
        proj.normal_(0.0, hidden**-0.5)
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(
            size={"height": image_size, "width": image_size}, **MEAN_STD
        ),
        tokenizer=tokenizer,
        chat_template=_chat_template(GEMMA3_IMAGE_TOKENS["boi_token"]),
        image_seq_length=tokens_per_side**2,
    )
    return save_checkpoint(directory, model, processor)


# ------------------------------------------------------------------------------- Gemma 4
def build_tiny_gemma4(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    patch: int = 4,
    max_soft_tokens: int = 70,
    hidden: int = 32,
    layers: int = 4,
    kv_shared_layers: int = 2,
    sliding_window: int = 128,
    bidirectional_vision: bool = True,
    experts: int = 0,
) -> Path:
    """A Gemma 4 checkpoint: Gemma 4 vision encoder (3x3 pooling by patch position), the
    multimodal embedder, and a Gemma 4 LM with per-layer inputs and shared KV.

    Parameters
    ----------
    patch : int
        Vision patch size (16 in the released models); a token covers ``3 * patch``
        processed pixels per side.
    max_soft_tokens : int
        The image processor's token budget, one of 70, 140, 280, 560, 1120.
    layers, kv_shared_layers : int
        Decoder layers, alternating sliding and full attention (the last is full); the last
        ``kv_shared_layers`` reuse the keys and values of the last earlier layer of their kind.
    bidirectional_vision : bool
        ``use_bidirectional_attention="vision"`` (each image's tokens attend to each other in
        the sliding layers, as in the larger released models; ``mm_token_type_ids`` drive it).
    experts : int
        With ``experts > 0``, every decoder layer also has a mixture-of-experts block of that
        many experts, two per token (Gemma 4 26B-A4B's layout); 0: dense (the default).
    """
    from transformers import (
        Gemma4Config,
        Gemma4ForConditionalGeneration,
        Gemma4ImageProcessorPil,
        Gemma4Processor,
    )

    from egg_interp.models.processors import image_only_processor_class

    tokenizer = _gemma_tokenizer(words, GEMMA4_IMAGE_TOKENS, extra=(GEMMA4_VIDEO_TOKEN,))
    ids = tokenizer.convert_tokens_to_ids
    layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    text = _gemma_text(
        tokenizer,
        hidden,
        layers,
        sliding_window=sliding_window,
        layer_types=layer_types,
        global_head_dim=hidden // 2,
        hidden_size_per_layer_input=8,
        vocab_size_per_layer_input=len(tokenizer),
        num_kv_shared_layers=kv_shared_layers,
        final_logit_softcapping=30.0,
        use_bidirectional_attention="vision" if bidirectional_vision else None,
        **(
            dict(
                enable_moe_block=True,
                num_experts=experts,
                top_k_experts=2,
                moe_intermediate_size=hidden // 2,
            )
            if experts
            else {}
        ),
    )
    vision = dict(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=hidden // 2,
        patch_size=patch,
        pooling_kernel_size=3,
        position_embedding_size=4 * max_soft_tokens,
    )
    cfg = Gemma4Config(
        text_config=text,
        vision_config=vision,
        audio_config=None,
        boi_token_id=ids(GEMMA4_IMAGE_TOKENS["boi_token"]),
        eoi_token_id=ids(GEMMA4_IMAGE_TOKENS["eoi_token"]),
        image_token_id=ids(GEMMA4_IMAGE_TOKENS["image_token"]),
        video_token_id=ids(GEMMA4_VIDEO_TOKEN),
        boa_token_id=ids(GEMMA4_IMAGE_TOKENS["boa_token"]),
        eoa_token_index=ids(GEMMA4_IMAGE_TOKENS["eoa_token"]),
        audio_token_id=ids(GEMMA4_IMAGE_TOKENS["audio_token"]),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Gemma4ForConditionalGeneration(cfg).eval()
    mute_placeholders(model, (cfg.video_token_id,))  # the random model answered it first
    processor = image_only_processor_class(Gemma4Processor)(
        feature_extractor=None,
        image_processor=Gemma4ImageProcessorPil(
            patch_size=patch, max_soft_tokens=max_soft_tokens, pooling_kernel_size=3
        ),
        tokenizer=tokenizer,
        video_processor=None,
        chat_template=_chat_template(GEMMA4_IMAGE_TOKENS["image_token"], GEMMA4_VIDEO_TOKEN),
        image_seq_length=max_soft_tokens,
    )
    return save_checkpoint(directory, model, processor)


# ------------------------------------------------------------------------------ PaliGemma
def build_tiny_paligemma(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    image_size: int = 64,
    patch: int = 8,
    hidden: int = 32,
    layers: int = 2,
    sliding_window: int = 128,
) -> Path:
    """A PaliGemma 2 checkpoint: SigLIP tower (no pooling), linear projector, Gemma 2 LM.

    ``(image_size / patch)^2`` tokens per image (256 at 224 px and patch 14 in the released
    models). The processor adds ``<image>`` (already in the vocabulary here) and the 1,152
    ``<locXXXX>``/``<segXXX>`` tokens itself; the model's vocabulary is sized after it did.
    The language model is Gemma 2's (PaliGemma 2), alternating sliding and full attention.
    """
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
    )

    tokenizer = build_word_tokenizer(words)
    processor = PaliGemmaProcessor(
        image_processor=SiglipImageProcessorPil(
            size={"height": image_size, "width": image_size},
            image_seq_length=(image_size // patch) ** 2,
            **MEAN_STD,
        ),
        tokenizer=tokenizer,
    )
    layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    text = _gemma_text(
        tokenizer,
        hidden,
        layers,
        model_type="gemma2",
        sliding_window=sliding_window,
        layer_types=layer_types,
    )
    cfg = PaliGemmaConfig(
        vision_config=_siglip(hidden, layers, image_size, patch),
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vocab_size=len(tokenizer),
        projection_dim=hidden,
        hidden_size=hidden,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(cfg).eval()
    return save_checkpoint(directory, model, processor)
