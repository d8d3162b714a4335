"""LFM2-VL: a tiny random-weight checkpoint (SigLIP2 NaFlex tiles with row/column markers,
a thumbnail, an LFM2 convolution/attention hybrid language model)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from egg_interp.models.offline.common import MEAN_STD, build_word_tokenizer, save_checkpoint

LFM2_VL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""LFM2's ChatML with one ``<image>`` per image, after the BOS token."""


def lfm2_vl_special_tokens(max_tiles: int) -> tuple[str, ...]:
    """Chat and image markers, with a ``<|img_row_R_col_C|>`` for every tile of a grid of at
    most ``max_tiles`` tiles."""
    markers = tuple(
        f"<|img_row_{r}_col_{c}|>"
        for r in range(1, max_tiles + 1)
        for c in range(1, max_tiles + 1)
        if r * c <= max_tiles
    )
    return (
        "<|im_start|>",
        "<|im_end|>",
        "<|image_start|>",
        "<|image_end|>",
        "<|img_thumbnail|>",
        *markers,
    )


def build_tiny_lfm2_vl(
    directory: str | Path,
    words: Iterable[str],
    *,
    seed: int = 0,
    tile: int = 32,
    patch: int = 4,
    max_tokens: int = 16,
    max_tiles: int = 10,
    hidden: int = 32,
    layer_types: tuple[str, ...] = ("conv", "full_attention"),
) -> Path:
    """An LFM2-VL checkpoint: SigLIP2 NaFlex tower, pixel-unshuffle projector, LFM2 LM.

    Parameters
    ----------
    tile, patch : int
        Tile side and patch size: a token covers ``2 * patch`` px, ``(tile / patch / 2)^2``
        tokens per tile (16 by default, equal to ``max_tokens`` as in LFM2-VL's 512 / 16).
    max_tokens : int
        Token budget of a single image or thumbnail (at least a quarter of it); an image more
        than twice this budget is split into tiles.
    max_tiles : int
        At most this many tiles (at least 2 when splitting).
    layer_types : tuple of str
        The decoder's layers, ``"conv"`` or ``"full_attention"`` (LFM2-VL-1.6B: 10 of 16
        convolutions).

    With the defaults, 30 x 30 -> one image of 4 x 4 tokens; 96 x 96 -> 3 x 3 tiles and a
    4 x 4 thumbnail; 150 x 100 -> 3 x 2 tiles and a 3 x 4 thumbnail; 80 x 200 -> 2 x 5 tiles
    and a 6 x 2 thumbnail.
    """
    from transformers import Lfm2VlConfig, Lfm2VlForConditionalGeneration, Lfm2VlProcessor

    from egg_interp.models.lfm2_vl_image_processing import Lfm2VlImageProcessor

    tokenizer = build_word_tokenizer(
        [*words, "user", "assistant"], special_tokens=lfm2_vl_special_tokens(max_tiles)
    )
    cfg = Lfm2VlConfig(
        vision_config=dict(
            model_type="siglip2_vision_model",
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=2,
            num_attention_heads=2,
            patch_size=patch,
            num_patches=(tile // patch) ** 2,
            vision_use_head=False,
        ),
        text_config=dict(
            model_type="lfm2",
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            block_auto_adjust_ff_dim=False,
            num_hidden_layers=len(layer_types),
            layer_types=list(layer_types),
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_size=hidden,
        downsample_factor=2,
    )
    torch.manual_seed(seed)
    model = Lfm2VlForConditionalGeneration(cfg).eval()
    image_processor = Lfm2VlImageProcessor(
        encoder_patch_size=patch,
        tile_size=tile,
        min_image_tokens=max_tokens // 4,
        max_image_tokens=max_tokens,
        max_tiles=max_tiles,
        **MEAN_STD,
    )
    processor = Lfm2VlProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=LFM2_VL_CHAT_TEMPLATE
    )
    return save_checkpoint(directory, model, processor)
