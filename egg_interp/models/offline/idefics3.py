"""Idefics3 and SmolVLM: tiny random-weight checkpoints (tiles with row/column markers and
a global image)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from egg_interp.models.offline.common import (
    MEAN_STD,
    build_word_tokenizer,
    default_video_processor,
    llama_text_config,
    save_checkpoint,
)

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
        text_config=llama_text_config(tokenizer, hidden, layers, 2),
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
            video = default_video_processor(processor_cls)
        except ImportError:  # no torchvision: images only (SmolVLM's argument has no default)
            processor_cls = image_only_processor_class(processor_cls)
            kwargs["video_processor"] = None
        else:
            kwargs["video_processor"] = video
    processor = processor_cls(**kwargs)
    return save_checkpoint(directory, model, processor)
