"""Adapter for ``llava_next`` checkpoints (LLaVA-1.6, "anyres").

Layout of one image's feature rows, in the order the placeholders are filled:

1. the **base** view: the whole image squashed to the tile size S (336 for LLaVA-1.6, aspect
   not kept), ``(S / patch)^2`` tokens row-major (576);
2. the **high-resolution** grid: the image is resized, keeping its aspect, into the best
   canvas of ``image_grid_pinpoints`` (``select_best_resolution``), padded to it centred, cut
   into S x S tiles, and the tiles' token grids are stitched into one grid of
   ``(best_h / patch) x (best_w / patch)`` tokens; the model then drops ("unpads") the rows
   (or columns) of that grid that fall in the padding and reads the rest row-major with one
   ``image_newline`` token after every row.

Newline tokens carry no region: their feature rows (the model's learned ``image_newline``
vector) stay in the image's features, so methods see and differentiate them like any
visual token, but no view's ``token_index`` points at them, so maps, regions and metrics
never use their relevance. Count per image: ``576 + rows * cols + rows``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import select_best_resolution

from egg_interp.models.base import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
    VLMAdapter,
    regular_cell_boxes,
)


def anyres_geometry(
    width: int, height: int, pinpoints: Sequence[Sequence[int]], patch: int
) -> dict[str, int]:
    """Where the unpadded high-resolution token grid of a ``width x height`` image lies.

    Mirrors the processor (aspect-preserving resize into the best canvas, centred padding)
    and the model's feature-level unpadding.

    Returns
    -------
    dict
        ``canvas_h, canvas_w`` (best resolution), ``new_h, new_w`` (resized image),
        ``paste_y, paste_x`` (padding before the image), ``r0, r1, c0, c1`` (the kept rows
        and columns of the padded token grid, ends exclusive).
    """
    canvas_h, canvas_w = select_best_resolution((height, width), [list(p) for p in pinpoints])
    scale_w, scale_h = canvas_w / width, canvas_h / height
    if scale_w < scale_h:
        new_w, new_h = canvas_w, min(math.ceil(height * scale_w), canvas_h)
    else:
        new_h, new_w = canvas_h, min(math.ceil(width * scale_h), canvas_w)
    rows, cols = canvas_h // patch, canvas_w // patch
    r0, r1, c0, c1 = 0, rows, 0, cols
    if width / height > cols / rows:
        pad = (rows - int(round(height * (cols / width), 7))) // 2
        r0, r1 = pad, rows - pad
    else:
        pad = (cols - int(round(width * (rows / height), 7))) // 2
        c0, c1 = pad, cols - pad
    return dict(
        canvas_h=canvas_h,
        canvas_w=canvas_w,
        new_h=new_h,
        new_w=new_w,
        paste_y=(canvas_h - new_h) // 2,
        paste_x=(canvas_w - new_w) // 2,
        r0=r0,
        r1=r1,
        c0=c0,
        c1=c1,
    )


class LlavaNextAdapter(VLMAdapter):
    """LLaVA-1.6: base view plus the stitched, unpadded high-resolution grid (see module doc).

    Views per image: ``"base"`` (coarse, the whole image) and ``"highres"`` (finer; the
    map's :attr:`~egg_interp.maps.ImageMap.primary` view, where regions are found).
    """

    model_types = ("llava_next",)

    @property
    def patch_size(self) -> int:
        return int(self.model.config.vision_config.patch_size)

    @property
    def tile_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    def image_layout(self, image: Image.Image) -> ImageLayout:
        """Token layout of one image: base view, then the high-resolution rows with newlines."""
        cfg = self.model.config
        if cfg.vision_feature_select_strategy != "default":
            raise RuntimeError("LlavaNextAdapter supports vision_feature_select_strategy='default'")
        width, height = image.size
        p, g = self.patch_size, self.tile_size // self.patch_size
        base = ViewLayout(
            "base",
            np.arange(g * g).reshape(g, g),
            regular_cell_boxes(g, g, 0.0, 0.0, width / g, height / g),
        )
        geo = anyres_geometry(width, height, cfg.image_grid_pinpoints, p)
        rows, cols = geo["r1"] - geo["r0"], geo["c1"] - geo["c0"]
        sx, sy = width / geo["new_w"], height / geo["new_h"]
        boxes = regular_cell_boxes(
            rows,
            cols,
            x0=(geo["c0"] * p - geo["paste_x"]) * sx,
            y0=(geo["r0"] * p - geo["paste_y"]) * sy,
            cell_w=p * sx,
            cell_h=p * sy,
            clip=(width, height),
        )
        # row r of the grid starts after the base tokens and r earlier rows of cols + newline
        index = g * g + np.arange(rows)[:, None] * (cols + 1) + np.arange(cols)[None, :]
        highres = ViewLayout("highres", index, boxes)
        return ImageLayout((width, height), g * g + rows * (cols + 1), [base, highres])

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        return [self.image_layout(im) for im in images]

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            pixel_values=inputs.batch["pixel_values"],
            image_sizes=inputs.batch["image_sizes"],
            return_dict=True,
        )
        return [f.reshape(-1, f.shape[-1]) for f in out.pooler_output]

    def pixel_relevance_to_tokens(
        self, inputs: PromptInputs, pixel_map: torch.Tensor
    ) -> list[torch.Tensor]:
        """Mean-pool ``pixel_map`` (n_images, tiles, H, W) over each token's patch.

        The base tile gives the base tokens; the other tiles are stitched, unpadded like the
        features, and a zero is appended for every newline token.
        """
        p, g = self.patch_size, self.tile_size // self.patch_size
        pooled = torch.nn.functional.avg_pool2d(pixel_map.float(), p)  # (n, tiles, g, g)
        out = []
        for i, lay in enumerate(inputs.layouts):
            width, height = lay.image_size
            geo = anyres_geometry(width, height, self.model.config.image_grid_pinpoints, p)
            nr, nc = geo["canvas_h"] // self.tile_size, geo["canvas_w"] // self.tile_size
            tiles = pooled[i, 1 : 1 + nr * nc].reshape(nr, nc, g, g)
            grid = tiles.permute(0, 2, 1, 3).reshape(nr * g, nc * g)
            grid = grid[geo["r0"] : geo["r1"], geo["c0"] : geo["c1"]]
            grid = torch.cat([grid, grid.new_zeros(grid.shape[0], 1)], dim=1)
            out.append(torch.cat([pooled[i, 0].flatten(), grid.flatten()]))
        return out
