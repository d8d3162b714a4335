"""Offline builders of tiny random-weight checkpoints for every supported architecture.

Each ``build_tiny_<arch>(directory, words, seed=0, ...)`` writes a complete checkpoint
(config, weights, word-level tokenizer, PIL image processor, chat template) that loads with
:func:`egg_interp.models.load_model`, like a real one, without a hub or torchvision. The
sizes are chosen for tests: a vision tower of two layers of width 32, a language model of
two layers of width 32, and tiles of a few dozen pixels, so that several tiles, merges and
padding cases occur on images of about 100 pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
)

from egg_interp.models.offline import LLAVA_CHAT_TEMPLATE, build_word_tokenizer

MEAN_STD = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}


def _save(directory: str | Path, model: Any, processor: Any) -> Path:
    directory = Path(directory)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def _llama_text(tokenizer: Any, hidden: int, layers: int, heads: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )


# ---------------------------------------------------------------------------- LLaVA-1.6
def build_tiny_llava_next(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    tile: int = 48,
    patch: int = 8,
    pinpoints: Sequence[Sequence[int]] | None = None,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """A LLaVA-1.6 checkpoint: CLIP tower on ``tile`` px tiles, Llama language model.

    Parameters
    ----------
    tile, patch : int
        Tile side and patch size: ``(tile / patch)^2`` tokens per tile (36 by default).
    pinpoints : sequence of (height, width), optional
        The anyres canvases; default the LLaVA-1.6 set scaled to ``tile``: 1x2, 2x1, 2x2,
        1x3 and 3x1 tiles.
    """
    tokenizer = build_word_tokenizer(words)
    grid = [list(p) for p in pinpoints] if pinpoints else None
    grid = grid or [[tile * h, tile * w] for h, w in ((1, 2), (2, 1), (2, 2), (1, 3), (3, 1))]
    vision = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=2,
        image_size=tile,
        patch_size=patch,
        projection_dim=hidden,
    )
    cfg = LlavaNextConfig(
        vision_config=vision,
        text_config=_llama_text(tokenizer, hidden, layers, 2),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=grid,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=(tile // patch) ** 2,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(cfg).eval()
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": tile},
        crop_size={"height": tile, "width": tile},
        image_grid_pinpoints=grid,
        **MEAN_STD,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return _save(directory, model, processor)


# ---------------------------------------------------------------------------- Qwen2.5-VL
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
    return _save(directory, model, processor)


# ---------------------------------------------------------------------------- InternVL
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
    return _save(directory, model, processor)


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
    text = _qwen_text(tokenizer, hidden, layers)
    head_dim = hidden // 2
    half = head_dim // 2
    text["head_dim"] = head_dim
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": [half - 2 * (half // 4), half // 4, half // 4],
        "mrope_interleaved": True,
    }
    cfg = Qwen3VLConfig(
        text_config=text,
        vision_config=dict(
            depth=layers,
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_heads=2,
            patch_size=patch,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=hidden,
            num_position_embeddings=64,
            deepstack_visual_indexes=list(range(max(layers - 1, 1))),
        ),
        **_qwen_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(cfg).eval()
    processor = _qwen_processor(Qwen3VLProcessor, tokenizer, patch, max_tokens)
    return _save(directory, model, processor)


# ---------------------------------------------------------------------------- Idefics3
IDEFICS3_SPECIAL = (
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
)

IDEFICS3_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>"
    "{% elif item['type'] == 'text' %} {{ item['text'] }}{% endif %}"
    "{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
"""Idefics3's format, ``User:<image> {question}<end_of_utterance>\\nAssistant:``."""


def build_tiny_idefics3(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    tile: int = 32,
    patch: int = 4,
    longest_edge: int = 96,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """An Idefics3 checkpoint: SigLIP-style tower, pixel-shuffle connector, Llama LM.

    Parameters
    ----------
    tile, patch : int
        Tile side and patch size: ``(tile / patch / 2)^2`` tokens per tile (16 by default).
    longest_edge : int
        Images are resized so their longest side is this (then split into tiles): at most
        ``(longest_edge / tile)^2`` tiles plus the global image.

    The image processor resamples bilinearly (Idefics3 uses Lanczos) so that a pixel
    perturbation stays local through its two or three successive resizes; the token layout
    does not depend on the filter.
    """
    import transformers

    classes = (
        transformers.Idefics3Config,
        transformers.Idefics3VisionConfig,
        transformers.Idefics3ForConditionalGeneration,
        transformers.Idefics3ImageProcessorPil,
        transformers.Idefics3Processor,
    )
    return _build_tiny_idefics_family(
        directory, words, classes, seed, tile, patch, longest_edge, hidden, layers
    )


def build_tiny_smolvlm(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    tile: int = 32,
    patch: int = 4,
    longest_edge: int = 96,
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """A SmolVLM checkpoint (``model_type`` ``smolvlm``): Idefics3's layout, own classes.

    Same shapes and arguments as :func:`build_tiny_idefics3`. ``SmolVLMProcessor`` needs the
    ``num2words`` package (a dependency of egg_interp) and takes a video processor, which
    needs torchvision; without torchvision the processor is built and saved without it
    (:func:`egg_interp.models.processors.image_only_processor_class`), as ``load_model``
    loads it.
    """
    import transformers

    classes = (
        transformers.SmolVLMConfig,
        transformers.SmolVLMVisionConfig,
        transformers.SmolVLMForConditionalGeneration,
        transformers.SmolVLMImageProcessorPil,
        transformers.SmolVLMProcessor,
    )
    return _build_tiny_idefics_family(
        directory, words, classes, seed, tile, patch, longest_edge, hidden, layers
    )


def _build_tiny_idefics_family(
    directory: str | Path,
    words: Iterable[str],
    classes: tuple[type, type, type, type, type],
    seed: int,
    tile: int,
    patch: int,
    longest_edge: int,
    hidden: int,
    layers: int,
) -> Path:
    """Idefics3 and SmolVLM: (config, vision config, model, image processor, processor)."""
    config_cls, vision_cls, model_cls, image_processor_cls, processor_cls = classes
    tokenizer = build_word_tokenizer(
        [*words, "User", "Assistant", ":"], special_tokens=IDEFICS3_SPECIAL
    )
    vision = vision_cls(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        image_size=tile,
        patch_size=patch,
    )
    cfg = config_cls(
        vision_config=vision,
        text_config=_llama_text(tokenizer, hidden, layers, 2),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = model_cls(cfg).eval()
    image_processor = image_processor_cls(
        size={"longest_edge": longest_edge},
        max_image_size={"longest_edge": tile},
        do_image_splitting=True,
        resample=2,  # bilinear (real checkpoints: Lanczos): tighter perturbation tests
        **MEAN_STD,
    )
    kwargs = {
        "image_processor": image_processor,
        "tokenizer": tokenizer,
        "image_seq_len": (tile // patch // 2) ** 2,
        "chat_template": IDEFICS3_CHAT_TEMPLATE,
    }
    if "video_processor" in processor_cls.get_attributes():
        from egg_interp.models.processors import image_only_processor_class

        try:
            video = _video_processor_for(processor_cls)
        except ImportError:  # no torchvision: images only (SmolVLM's argument has no default)
            processor_cls = image_only_processor_class(processor_cls)
            kwargs["video_processor"] = None
        else:
            kwargs["video_processor"] = video
    processor = processor_cls(**kwargs)
    return _save(directory, model, processor)


def _video_processor_for(processor_cls: type) -> Any:
    """The default video processor of ``processor_cls`` (ImportError without torchvision)."""
    import transformers

    name = processor_cls.__name__.replace("Processor", "VideoProcessor")
    return getattr(transformers, name)()
