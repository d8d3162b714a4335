"""Adapter for ``ovis2`` checkpoints (Ovis2: probabilistic visual tokens, a thumbnail and tiles).

Layout: without tiling (``crop_to_patches`` off, the processor's default) the image is
squashed to S x S (``size``, 448 for Ovis2); with tiling, the grid of ``cols x rows`` tiles
that covers at least 90 % of the image with the fewest tiles is chosen
(``get_min_tile_covering_grid``), the image is squashed onto ``cols * S`` by ``rows * S`` and
cut into S x S tiles, row-major, and the whole image squashed to S x S (the **thumbnail**)
comes **first**. The vision tower merges ``hidden_stride x hidden_stride`` patches (2 x 2 of
14 px for Ovis2) into one token, row-major: ``(S / patch / stride)^2`` tokens per tile (256).
In the prompt each image is ``<IMG_START>`` + the first tile's ``<IMG_ATOM>`` run +
``<IMG_GRID>``, then, when tiled, every tile's run with ``<IMG_COL>`` between columns and
``<IMG_ROW>`` between rows, then ``<IMG_END>``; the tile grid is read from those markers, so
the layout is whatever the processor decided. (In transformers 5.24 the covering-grid search
scores each candidate as (rows, cols) and returns it as (cols, rows): a 150 x 100 image gets
4 rows x 2 columns of tiles, squashed accordingly; the cells follow.)

Views: ``"image"`` (the one S x S view, or the thumbnail when tiled) and, when tiled,
``"tiles"``: the tiles' grids stitched over the whole image (the finer view). Cells are
regular; when ``S / patch`` is odd the vision tower pads the patch grid at the right and
bottom, and the last row and column of tokens cover one patch (their cells say so).

Hook: ``get_image_features(...).pooler_output``: each token is a probability vector over the
visual vocabulary times the visual embedding table (a convex mix of visual words), scattered
into the ``<IMG_ATOM>`` placeholders. The marker tokens (``<IMG_START>``, ``<IMG_GRID>``,
``<IMG_COL>``, ``<IMG_ROW>``, ``<IMG_END>``) are overwritten by the table's last rows (visual
indicator features); they depend on no pixel and are in no view, and
:meth:`Ovis2Adapter.encoder_outputs` rebuilds them as ``get_image_features`` does. Positions
are 1-D (Qwen2 text model).

Pixel-space methods work: ``pixel_values`` is ``(tiles, 3, S, S)``; a per-pixel map is
mean-pooled over each token's ``patch * stride`` square.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from transformers.models.ovis2.modeling_ovis2 import BaseModelOutputWithVisualIndicatorFeatures

from egg_interp.models.base import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
    VLMAdapter,
)

MARKERS = ("<IMG_START>", "<IMG_GRID>", "<IMG_COL>", "<IMG_ROW>", "<IMG_END>")


class Ovis2Adapter(VLMAdapter):
    """Ovis2: one S x S view, or a thumbnail first and tiles."""

    model_types = ("ovis2",)
    image_token = "<image>"

    @property
    def input_side(self) -> int:
        """The tile side S (the vision tower's square input)."""
        return int(self.model.config.vision_config.image_size)

    @property
    def tokens_per_side(self) -> int:
        """Tokens per tile side: ``ceil(S / patch / hidden_stride)``."""
        vc = self.model.config.vision_config
        return -(-(int(vc.image_size) // int(vc.patch_size)) // int(vc.hidden_stride))

    def fallback_prompt(self, n_images: int, text: str) -> str:
        images = f"{self.image_token}\n" * n_images
        return f"<|im_start|>user\n{images}{text}<|im_end|>\n<|im_start|>assistant\n"

    def tile_grids(self, batch: dict[str, Any]) -> list[tuple[int, int]]:
        """``(rows, cols)`` of tiles of every image of the batch, from the prompt markers;
        ``(0, 0)`` for an image that was not tiled (one S x S view)."""
        start, grid, col, row, end = self.tokenizer.convert_tokens_to_ids(list(MARKERS))
        out = []
        for ids in batch["input_ids"].tolist():
            counts: dict[int, int] = {}
            for i in ids:
                if i == start:
                    counts = {}
                elif i == end:
                    rows = counts.get(row, 0) + 1
                    runs = counts.get(self.image_token_id, 0) // self.tokens_per_side**2
                    out.append((rows, (runs - 1) // rows) if runs > 1 else (0, 0))
                counts[i] = counts.get(i, 0) + 1
        return out

    def _cell_boxes(self, rows: int, cols: int, width: int, height: int) -> np.ndarray:
        """Cells of a ``rows x cols`` tiling of S x S tiles over the image, the last token of
        each tile side shortened when the vision tower padded its patch grid."""
        vc = self.model.config.vision_config
        side, step = int(vc.image_size), int(vc.patch_size) * int(vc.hidden_stride)
        within = np.minimum(np.arange(self.tokens_per_side + 1) * step, side)  # one tile

        def edges(n_tiles: int) -> tuple[np.ndarray, np.ndarray]:
            """Start and end of every token along an axis of ``n_tiles`` tiles (canvas px)."""
            offsets = np.arange(n_tiles)[:, None] * side
            return (offsets + within[None, :-1]).ravel(), (offsets + within[None, 1:]).ravel()

        (x0, x1), (y0, y1) = edges(cols), edges(rows)
        sx, sy = width / (cols * side), height / (rows * side)
        bx0, by0 = np.meshgrid(x0 * sx, y0 * sy)
        bx1, by1 = np.meshgrid(x1 * sx, y1 * sy)
        return np.stack([bx0, by0, bx1, by1], axis=-1)

    def image_layout(self, image: Image.Image, rows: int, cols: int) -> ImageLayout:
        """Views of one image: the S x S view first, then the stitched tiles if tiled."""
        width, height = image.size
        t = self.tokens_per_side
        per_tile = t * t
        views = [
            ViewLayout(
                "image", np.arange(per_tile).reshape(t, t), self._cell_boxes(1, 1, width, height)
            )
        ]
        if rows * cols:
            # token (r, c) of the stitched grid: tile (r // t, c // t), cell (r % t, c % t),
            # after the thumbnail's tokens
            r, c = np.meshgrid(np.arange(rows * t), np.arange(cols * t), indexing="ij")
            index = per_tile + ((r // t) * cols + c // t) * per_tile + (r % t) * t + c % t
            views.append(ViewLayout("tiles", index, self._cell_boxes(rows, cols, width, height)))
        return ImageLayout((width, height), per_tile * (1 + rows * cols), views)

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        grids = self.tile_grids(batch)
        if len(grids) != len(images):
            raise RuntimeError(
                f"Ovis2Adapter: the prompt holds {len(grids)} images, {len(images)} were given"
            )
        out = [self.image_layout(im, rows, cols) for im, (rows, cols) in zip(images, grids)]
        tiles = sum(lay.n_tokens for lay in out) // self.tokens_per_side**2
        if tiles != batch["pixel_values"].shape[0]:
            raise RuntimeError(
                f"Ovis2Adapter: the processor made {batch['pixel_values'].shape[0]} tiles, the "
                f"prompt's markers {tiles}"
            )
        return out

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            pixel_values=inputs.batch["pixel_values"], return_dict=True
        )
        flat = out.pooler_output.reshape(-1, out.pooler_output.shape[-1])
        return list(torch.split(flat, [lay.n_tokens for lay in inputs.layouts]))

    def encoder_outputs(
        self, features: Sequence[torch.Tensor]
    ) -> BaseModelOutputWithVisualIndicatorFeatures:
        """The features as one ``(1, sum T_i, D)`` tensor, and the marker tokens' features:
        the visual embedding table's last ``num_visual_indicator_tokens`` rows (what
        ``get_image_features`` returns, independent of the image)."""
        model = self.model.model
        n = int(model.vision_tower.num_visual_indicator_tokens)
        ids = torch.arange(model.visual_vocab_size - n, model.visual_vocab_size, device=self.device)
        return BaseModelOutputWithVisualIndicatorFeatures(
            pooler_output=torch.cat(list(features), dim=0)[None],
            visual_indicator_features=model.visual_embeddings_table(ids),
        )

    def pixel_relevance_to_tokens(
        self, inputs: PromptInputs, pixel_map: torch.Tensor
    ) -> list[torch.Tensor]:
        """Mean-pool ``pixel_map`` (tiles, S, S) over each token's square of its tile."""
        vc = self.model.config.vision_config
        k = int(vc.patch_size) * int(vc.hidden_stride)
        pooled = torch.nn.functional.avg_pool2d(pixel_map.float()[:, None], k, ceil_mode=True)
        flat = pooled.flatten()
        return list(torch.split(flat, [lay.n_tokens for lay in inputs.layouts]))

    pixel_keys: ClassVar[tuple[str, ...]] = ("pixel_values",)
