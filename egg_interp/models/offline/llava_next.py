"""LLaVA-1.6 (anyres): the tiny random-weight checkpoint."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from transformers import (
    CLIPVisionConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
)

from egg_interp.models.offline.common import (
    MEAN_STD,
    build_word_tokenizer,
    llama_text_config,
    save_checkpoint,
)
from egg_interp.models.offline.llava import LLAVA_CHAT_TEMPLATE


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
        text_config=llama_text_config(tokenizer, hidden, layers, 2),
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
    return save_checkpoint(directory, model, processor)
