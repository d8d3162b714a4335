"""LLaVA-OneVision: the tiny random-weight checkpoint."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessorPil,
    LlavaOnevisionProcessor,
    Qwen2Config,
    SiglipVisionConfig,
)

from egg_interp.models.offline.common import MEAN_STD, build_word_tokenizer, save_checkpoint
from egg_interp.models.offline.llava import LLAVA_CHAT_TEMPLATE
from egg_interp.models.processors import image_only_processor_class


def build_tiny_llava_onevision(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    tile: int = 60,
    patch: int = 9,
    max_tiles: int = 6,
    pinpoints: Sequence[Sequence[int]] | None = None,
    vision_aspect_ratio: str = "anyres_max_9",
    hidden: int = 32,
    layers: int = 2,
) -> Path:
    """A LLaVA-OneVision checkpoint: SigLIP tower on ``tile`` px tiles, Qwen2 language model.

    Parameters
    ----------
    tile, patch : int
        Tile side and patch size. The defaults keep the real model's remainder: 60 px tiles
        give ``60 // 9 = 6`` patches per side, so the tower sees 54 of every 60 px and the
        last 6 never (the real 384 px tiles give 27 patches of 14: 378 px seen, 6 not), and a
        tile gives 36 tokens.
    max_tiles : int
        The anyres canvases are every ``rows x cols`` tiling with ``rows, cols <= max_tiles``
        (the real set is 1..6 x 1..6 tiles of 384 px).
    pinpoints : sequence of (height, width), optional
        Overrides the canvases.
    vision_aspect_ratio : str
        ``anyres_max_<n>``: grids above ``n`` tiles' worth of tokens (times 1.21) are shrunk
        bilinearly, as the real model does above 9.
    """
    tokenizer = build_word_tokenizer(words, special_tokens=("<video>",))
    grid = [list(p) for p in pinpoints] if pinpoints else None
    sides = range(1, max_tiles + 1)
    grid = grid or [[tile * h, tile * w] for h in sides for w in sides]
    vision = SiglipVisionConfig(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        image_size=tile,
        patch_size=patch,
        vision_use_head=False,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    cfg = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=grid,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_aspect_ratio=vision_aspect_ratio,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(cfg).eval()
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": tile, "width": tile}, image_grid_pinpoints=grid, **MEAN_STD
    )
    processor = image_only_processor_class(LlavaOnevisionProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        num_image_tokens=(tile // patch) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio=vision_aspect_ratio,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    return save_checkpoint(directory, model, processor)
