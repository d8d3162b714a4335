"""Adapter for ``deepseek_vl`` checkpoints (DeepSeek-VL: SigLIP, an aspect resize and a
centred pad to a square).

Layout: the image processor resizes the image so its longest side is S (``size``, 384 for
DeepSeek-VL; the short side ``round(side * S / longest)``, at least ``min_size``), then pads
it to S x S, **centred**, with the mean colour. SigLIP (patch 16) gives ``(S / patch)^2``
tokens (576), row-major over the padded square, all of them image placeholders
(``<image_placeholder>`` x 576 per image). Token ``(r, c)`` covers
``x in [(c p - pad_x) W / rw, ((c + 1) p - pad_x) W / rw)``, likewise y, where ``(rh, rw)``
is the resized size and ``(pad_y, pad_x)`` the padding before the image, clipped to the
image. Rows and columns of tokens wholly inside the padding cover no pixel: they are left out
of the view (in no view, like LLaVA-1.6's newline tokens), so a map never points there;
tokens half in the padding cover the image part of their patch.

Hook: ``get_image_features(...).pooler_output`` (the aligner's output, ``(N, 576, D)``),
scattered into the placeholders. Positions are 1-D (a Llama text model).

Pixel-space methods work: ``pixel_values`` is image-shaped ``(N, 3, S, S)``, and a per-pixel
map is mean-pooled over each token's patch (as for LLaVA-1.5, whose adapter this one
extends).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling

from egg_interp.models.base import ImageLayout, ViewLayout
from egg_interp.models.llava import LlavaAdapter, _size_field


class DeepseekVLAdapter(LlavaAdapter):
    """DeepSeek-VL: LLaVA-1.5's single grid, after an aspect resize and a centred pad."""

    model_types = ("deepseek_vl",)
    image_token = "<image_placeholder>"

    def fallback_prompt(self, n_images: int, text: str) -> str:
        return "User: " + self.image_token * n_images + f"{text}\n\nAssistant:"

    def processed_geometry(self, width: int, height: int) -> dict[str, float]:
        """How the processor maps a ``width x height`` image onto its S x S input.

        In the terms of :meth:`LlavaAdapter.processed_geometry`: nothing is padded before the
        resize, the image is resized to ``(rh, rw)`` and the S x S input starts ``pad`` pixels
        before it (a negative crop offset), so processed column ``u`` comes from original
        ``x = (u + left) * W / rw`` with ``left = -pad_x``.
        """
        ip = self.processor.image_processor
        side = int(_size_field(ip.size, "height"))
        rw, rh = width, height
        if getattr(ip, "do_resize", True):
            delta = side / max(width, height)
            rh = max(round(height * delta), int(ip.min_size))
            rw = max(round(width * delta), int(ip.min_size))
        square = max(rh, rw) if getattr(ip, "do_pad", True) else None
        top = -((square - rh) // 2) if square and rw > rh else 0
        left = -((square - rw) // 2) if square and rh > rw else 0
        ch = square or rh
        cw = square or rw
        return dict(
            pad_x=0, pad_y=0, wp=width, hp=height, rw=rw, rh=rh, top=top, left=left, ch=ch, cw=cw
        )

    def encoder_outputs(self, features: Sequence[torch.Tensor]) -> BaseModelOutputWithPooling:
        """All images' tokens in one ``(sum T_i, D)`` tensor (the model reshapes, not joins)."""
        return BaseModelOutputWithPooling(pooler_output=torch.cat(list(features), dim=0))

    def image_layout(self, image: Image.Image) -> ImageLayout:
        """LLaVA's grid over the padded square, without the rows and columns of tokens that
        lie wholly in the padding: those tokens cover no pixel of the image, so they are in no
        view (their relevance is not drawn, and no region can form on them)."""
        lay = super().image_layout(image)
        (view,) = lay.views
        b = view.cell_boxes
        rows = np.flatnonzero(b[:, 0, 3] > b[:, 0, 1])
        cols = np.flatnonzero(b[0, :, 2] > b[0, :, 0])
        inner = np.ix_(rows, cols)
        lay.views = [ViewLayout("base", view.token_index[inner], b[inner])]
        return lay

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        side = int(batch["pixel_values"].shape[-1])
        if (side // self.patch_size) ** 2 * len(images) != int(
            (batch["input_ids"] == self.image_token_id).sum()
        ):
            raise RuntimeError(
                f"DeepseekVLAdapter: {side} px inputs of {self.patch_size} px patches do not "
                "match the prompt's image placeholders"
            )
        return [self.image_layout(im) for im in images]
