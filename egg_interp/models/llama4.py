"""Adapter for ``llama4`` checkpoints (Llama 4 Scout and Maverick: tiles, global view last).

Layout: the image processor puts each image on the best canvas of ``rows x cols`` tiles of
S px (336, at most 16 tiles): resized keeping its aspect (at most until the canvas needs it:
an image between one tile and its canvas keeps its size, a smaller one grows until a side
fills a tile), pasted at the top-left corner, padded right and bottom, cut into tiles
row-major; with more than one tile a global tile follows, the whole image squashed to
S x S. Each tile gives ``g x g`` patches (g = S / 14 = 24) and a pixel shuffle of ratio 0.5
makes ``s x s`` tokens (s = 12), each covering 28 x 28 tile pixels, row-major. The prompt
holds ``<|image_start|>``, the tiles' ``s^2`` ``<|patch|>`` tokens each with
``<|tile_x_separator|>`` between tiles of a row and ``<|tile_y_separator|>`` after every row
of tiles, then ``<|image|>`` and the global tile's ``s^2`` ``<|patch|>`` tokens (or the only
tile's, for a one-tile image), ``<|image_end|>``: the global view comes **last**.

Views: ``"tiles"``, the tiles' grids stitched into one grid over the canvas (finer: the
map's :attr:`~egg_interp.maps.ImageMap.primary`), and ``"global"``, an ``s x s`` grid over
the whole image, when there is more than one tile. Tokens over the canvas' padding cover
nothing: the rows and columns of the stitched grid that lie wholly in the padding are left
out of the view (their feature rows stay, as LLaVA's newlines do: methods see and
differentiate them, maps and regions never use them), and the boxes of those partly in it
are clipped to the image. The separators and ``<|image|>`` are text tokens and cover nothing
either.

Driving the model: in transformers 5.24 ``Llama4ForConditionalGeneration.forward`` raises on
every call after running the language model (it reads ``image_outputs`` from an output that
has none), so neither it nor ``generate`` can run. The adapter runs the same pieces itself:
the vision model and projector (:meth:`compute_image_features`), the ``<|patch|>``
embeddings replaced by the features in order (the masked scatter of the model's forward),
then ``model.language_model`` (text model and ``lm_head``); greedy answers decode with its
key/value cache in :meth:`generate_ids`. The tests check the logits against those the
language model computes inside transformers' own forward and the tokens against the
language model's ``generate`` on the same embeddings.

Positions are 1-D. The language model attends within chunks of ``attention_chunk_size``
tokens (8192) in three of four layers and over everything, without rotary positions, in
every fourth; attention maps from a chunked layer see only the last position's chunk, so
on prompts longer than a chunk the full-attention layers are the ones to read. The MoE
router's choices follow the embeddings like any other layer (gradients flow through the
selected experts). Pixel-space maps pool each token's 28 x 28 block of its tile.

Processor: transformers' ``Llama4Processor`` (it builds the prompt) with, without
torchvision, :class:`~egg_interp.models.llama4_images.Llama4ImageProcessorPil` for the
pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.utils import is_torchvision_available

from egg_interp.models.base import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
    VLMAdapter,
    regular_cell_boxes,
)
from egg_interp.models.llama4_images import Llama4ImageProcessorPil, resized_size


def _field(size: Any, key: str) -> Any:
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


class Llama4Adapter(VLMAdapter):
    """Llama 4: stitched tiles and, for several tiles, a global view after them."""

    model_types = ("llama4",)
    image_token = "<|image|>"

    @classmethod
    def load_processor(cls, source: str, model_type: str) -> Any:
        """``AutoProcessor`` with torchvision; without it, ``Llama4Processor`` with
        :class:`Llama4ImageProcessorPil` for the pixels."""
        if is_torchvision_available():
            return super().load_processor(source, model_type)
        from transformers import AutoTokenizer, Llama4Processor

        args = [
            Llama4ImageProcessorPil.from_pretrained(source),
            AutoTokenizer.from_pretrained(source),
        ]
        return Llama4Processor.from_args_and_dict(
            args, Llama4Processor.get_processor_dict(source)[0]
        )

    @property
    def language_model(self) -> Any:
        return self.model.language_model.model

    @property
    def tokens_per_side(self) -> int:
        """``s``: tokens per tile side after the pixel shuffle (12 for 336 px, patch 14)."""
        vc = self.model.config.vision_config
        return int(vc.image_size // vc.patch_size * vc.pixel_shuffle_ratio)

    def image_layout(self, image: Image.Image) -> ImageLayout:
        """Token layout of one image: the stitched tiles, then the global tile if any."""
        ip = self.processor.image_processor
        tile = int(_field(ip.size, "height"))
        width, height = image.size
        canvas, (h, w) = resized_size(
            (height, width), tile, ip.max_patches, ip.resize_to_max_canvas
        )
        rows, cols = canvas[0] // tile, canvas[1] // tile
        s = self.tokens_per_side
        cell = tile / s
        # the stitched grid, less the rows and columns that lie wholly in the padding
        kept_rows, kept_cols = math.ceil(h / cell), math.ceil(w / cell)
        r, c = np.meshgrid(np.arange(kept_rows), np.arange(kept_cols), indexing="ij")
        index = ((r // s) * cols + c // s) * s * s + (r % s) * s + c % s
        boxes = regular_cell_boxes(
            kept_rows, kept_cols, 0.0, 0.0, cell * width / w, cell * height / h, (width, height)
        )
        views = [ViewLayout("tiles", index, boxes)]
        n_tiles = rows * cols
        if n_tiles > 1:
            index = n_tiles * s * s + np.arange(s * s).reshape(s, s)
            boxes = regular_cell_boxes(s, s, 0.0, 0.0, width / s, height / s)
            views.append(ViewLayout("global", index, boxes))
            n_tiles += 1
        return ImageLayout((width, height), n_tiles * s * s, views)

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        out = [self.image_layout(im) for im in images]
        n_tiles = sum(lay.n_tokens for lay in out) // self.tokens_per_side**2
        if n_tiles != batch["pixel_values"].shape[0]:
            raise RuntimeError(
                f"Llama4Adapter: the processor made {batch['pixel_values'].shape[0]} tiles but "
                f"the layout predicts {n_tiles}; its tiling settings are not understood"
            )
        return out

    # ------------------------------------------------------------------ the model's pieces
    def _projected(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Vision model and projector: ``(tiles, s * s, hidden)`` token embeddings."""
        vision = self.model.get_image_features(pixel_values=pixel_values, return_dict=True)
        return self.model.multi_modal_projector(vision.last_hidden_state)

    def _embeddings(self, input_ids: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with the ``<|patch|>`` rows replaced by ``features`` in order
        (``(n, hidden)``; ``None`` for text only)."""
        embeds = self.model.get_input_embeddings()(input_ids)
        if features is None:
            return embeds
        mask = input_ids == self.image_token_id
        if int(mask.sum()) != features.shape[0]:
            raise RuntimeError(
                f"Llama4Adapter: {int(mask.sum())} image placeholders for {features.shape[0]} "
                "visual token embeddings"
            )
        return embeds.masked_scatter(mask[..., None], features.to(embeds.dtype))

    def _language(self, batch: dict[str, Any], embeds: torch.Tensor, **kwargs: Any) -> Any:
        """The language model (text model and ``lm_head``) on these embeddings."""
        return self.model.language_model(
            inputs_embeds=embeds,
            attention_mask=batch.get("attention_mask"),
            **self.position_kwargs(batch, kwargs),
        )

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        feats = self._projected(inputs.batch["pixel_values"])
        flat = feats.reshape(-1, feats.shape[-1])
        return list(torch.split(flat, [lay.n_tokens for lay in inputs.layouts]))

    def forward_features(
        self,
        inputs: PromptInputs,
        features: Sequence[torch.Tensor],
        last_only: bool = True,
        **kwargs: Any,
    ) -> Any:
        embeds = self._embeddings(inputs.input_ids, torch.cat(list(features)))
        return self._language(inputs.batch, embeds, logits_to_keep=1 if last_only else 0, **kwargs)

    def forward(self, inputs: PromptInputs, **kwargs: Any) -> Any:
        """From pixels (the vision model included, differentiable when gradients are on)."""
        feats = self._projected(inputs.batch["pixel_values"])
        embeds = self._embeddings(inputs.input_ids, feats.reshape(-1, feats.shape[-1]))
        return self._language(inputs.batch, embeds, **kwargs)

    def generate_ids(
        self, batch: dict[str, Any], max_new_tokens: int, cache: Any = None
    ) -> torch.Tensor:
        """Greedy decoding with the language model's key/value cache (see the module doc).

        Positions count from each row's first real token; rows that reach an end-of-sequence
        token continue with padding, and decoding stops when every row has ended, as
        ``generate`` does.
        """
        ids = batch["input_ids"]
        mask = batch.get("attention_mask", torch.ones_like(ids))
        eos = self.model.generation_config.eos_token_id
        eos = torch.tensor([eos] if isinstance(eos, int) else list(eos or []), device=ids.device)
        pad = self.tokenizer.pad_token_id
        embed = self.model.get_input_embeddings()
        with torch.no_grad():
            if cache is None:
                pixels = batch.get("pixel_values")
                feats = None if pixels is None else self._projected(pixels)
                feats = None if feats is None else feats.reshape(-1, feats.shape[-1])
                embeds = self._embeddings(ids, feats)
            else:  # the cache holds all but the last tokens: text only
                embeds = embed(ids[:, cache.get_seq_length() :])
            done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
            for _ in range(max_new_tokens):
                positions = (mask.long().cumsum(-1) - 1).clamp(min=0)[:, -embeds.shape[1] :]
                out = self.model.language_model(
                    inputs_embeds=embeds,
                    attention_mask=mask,
                    position_ids=positions,
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                cache = out.cache
                nxt = out.logits[:, -1].argmax(-1)
                nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
                ids = torch.cat([ids, nxt[:, None]], dim=1)
                done |= torch.isin(nxt, eos)
                if bool(done.all()):
                    break
                mask = torch.cat([mask, torch.ones_like(nxt[:, None])], dim=1)
                embeds = embed(nxt[:, None])
        return ids

    def pixel_relevance_to_tokens(
        self, inputs: PromptInputs, pixel_map: torch.Tensor
    ) -> list[torch.Tensor]:
        """Mean-pool ``pixel_map`` (total_tiles, S, S) over each token's block of its tile."""
        s = self.tokens_per_side
        pooled = torch.nn.functional.avg_pool2d(
            pixel_map.float()[:, None], pixel_map.shape[-1] // s
        )
        return list(torch.split(pooled.flatten(), [lay.n_tokens for lay in inputs.layouts]))
