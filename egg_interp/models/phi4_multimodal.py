"""Adapter for ``phi4_multimodal`` checkpoints (Phi-4-multimodal: crops with row separators,
a global view; a causal LM with its own image embedding, no ``mm_encoder_outputs``).

Loading: the model class is ``Phi4MultimodalForCausalLM`` (``auto_class`` is
``AutoModelForCausalLM``, not ``AutoModelForImageTextToText``).

Layout. The image processor fits the image, aspect kept, into a canvas of ``cols x rows``
crops of S px (448; ``ceil(W / S) x ceil(H / S)``, or the grid of closest aspect above
``dynamic_hd`` crops), pads it with white at the right and bottom, and also resizes the whole
padded canvas to S x S (the **global view**). SigLIP (patch 14) and a 2x2 average pool give
16 x 16 tokens per crop (``s = 2 * patch`` = 28 canvas px each). The image's tokens, all
``<|image|>`` placeholders, are: the crops' tokens stitched into one grid and cut to the
**useful** rows and columns (those whose first patch is not padding, from the processor's
patch mask), each row followed by a learned separator; one global separator; the global view's
16 x 16 tokens, each row followed by a separator. Views: ``"highres"`` (the useful grid; cells
of ``s`` canvas px scaled by the image's size over its fitted size, the last row or column
clipped where it reaches into the padding) and ``"global"`` (16 x 16 cells of the canvas over
16, scaled likewise; rows or columns wholly in the padding are left out of the view, though
the first of them can read the image's last canvas pixel through the bicubic kernel of the
global resize, which runs after the padding). Separators cover nothing and are in no view.

Hook: the model has no ``get_image_features``/``mm_encoder_outputs``: its image embedding
module (``embed_tokens_extend.image_embed``) writes the projected features into the token
embeddings with ``index_put``. :meth:`Phi4MultimodalAdapter.compute_image_features` runs that
module and reads the rows it wrote at the ``<|image|>`` positions (one per token, separators
included, in prompt order); :meth:`Phi4MultimodalAdapter.forward_features` writes given rows
back into ``embed_tokens(input_ids)`` and runs the model on ``inputs_embeds``. So gradients
are taken at exactly the vectors the model reads. Positions are 1-D (a Phi-3 decoder).

Pixel-space methods are refused (the global view resamples the padded canvas; no per-token
pooling of ``image_pixel_values`` is written). Audio inputs are not used.

Without torchvision: transformers' ``Phi4MultimodalProcessor`` is built with the torch
re-implementation of its image processor in
:mod:`egg_interp.models.phi4_multimodal_image_processing` and transformers' own audio feature
extractor; with torchvision installed, ``load_model`` uses ``AutoProcessor`` as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from transformers.utils import is_torchvision_available
from transformers.utils.output_capturing import maybe_install_capturing_hooks

from egg_interp.models.base import ImageLayout, PromptInputs, ViewLayout, VLMAdapter
from egg_interp.models.phi4_multimodal_image_processing import (
    Phi4MultimodalImageProcessor,
    fitted_size,
)


def load_processor_without_torchvision(source: str) -> Any:
    """The checkpoint's ``Phi4MultimodalProcessor`` with the torch image processor."""
    from transformers import AutoTokenizer, Phi4MultimodalFeatureExtractor, Phi4MultimodalProcessor

    processor_dict, kwargs = Phi4MultimodalProcessor.get_processor_dict(source)
    args = [
        Phi4MultimodalImageProcessor.from_pretrained(source),
        Phi4MultimodalFeatureExtractor.from_pretrained(source),
        AutoTokenizer.from_pretrained(source),
    ]
    return Phi4MultimodalProcessor.from_args_and_dict(args, processor_dict, **kwargs)


def _clip_boxes(xs: np.ndarray, ys: np.ndarray, width: int, height: int) -> np.ndarray:
    """Cells between consecutive ``xs`` (columns) and ``ys`` (rows) edges, clipped to the
    image: ``(len(ys) - 1, len(xs) - 1, 4)``."""
    x0, y0 = np.meshgrid(xs[:-1], ys[:-1])
    x1, y1 = np.meshgrid(xs[1:], ys[1:])
    boxes = np.stack([x0, y0, x1, y1], axis=-1).astype(np.float64)
    boxes[..., 0::2] = boxes[..., 0::2].clip(0, width)
    boxes[..., 1::2] = boxes[..., 1::2].clip(0, height)
    return boxes


class Phi4MultimodalAdapter(VLMAdapter):
    """Phi-4-multimodal: useful high-resolution tokens, then the global view."""

    model_types = ("phi4_multimodal",)
    auto_class = "AutoModelForCausalLM"
    image_token = "<|image|>"
    pixel_keys: ClassVar[tuple[str, ...]] = (
        "image_pixel_values",
        "image_sizes",
        "image_attention_mask",
    )

    def __init__(self, model: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(model, processor, **kwargs)
        # transformers 5.24 installs its output-capturing hooks lazily, per submodel, and the
        # language model's installation re-installs those of the vision tower it contains
        # without checking: when the vision tower was hooked first (any image features before
        # the first forward with attention weights), its layers record each hidden state twice
        # and the image embedding reads the wrong one. Installing them top-down once, now,
        # leaves nothing to re-install.
        maybe_install_capturing_hooks(self.model.model)

    @classmethod
    def load_processor(cls, source: str, model_type: str) -> Any:
        if is_torchvision_available():
            return super().load_processor(source, model_type)
        return load_processor_without_torchvision(source)

    @property
    def image_token_id(self) -> int:
        return int(self.model.config.vision_config.image_token_id)

    @property
    def language_model(self) -> Any:
        return self.model.model

    @property
    def input_side(self) -> int:
        """The crop side S (448)."""
        return int(self.model.config.vision_config.crop_size)

    @property
    def tokens_per_side(self) -> int:
        """Tokens per crop side after the 2x2 pool (16: Phi-4 pads an odd patch grid)."""
        vc = self.model.config.vision_config
        n = int(vc.image_size) // int(vc.patch_size)
        return (n + n % 2) // 2

    def fallback_prompt(self, n_images: int, text: str) -> str:
        return "<|user|>" + self.image_token * n_images + f"{text}<|end|><|assistant|>"

    def useful_grid(self, mask: torch.Tensor, rows: int, cols: int) -> tuple[int, int]:
        """Useful token rows and columns of the stitched crops, as the model counts them from
        the crops' patch masks ``(crops, S / patch, S / patch)``."""
        t = self.tokens_per_side
        grid = mask[: rows * cols, 0::2, 0::2].reshape(rows, cols, t, t).transpose(1, 2)
        grid = grid.reshape(rows * t, cols * t)
        return int(grid[:, 0].sum()), int(grid[0, :].sum())

    def image_layout(
        self, image: Image.Image, canvas: Sequence[int], mask: torch.Tensor
    ) -> ImageLayout:
        """Views of one image from its canvas size ``(height, width)`` and crop masks."""
        width, height = image.size
        side, t = self.input_side, self.tokens_per_side
        rows, cols = int(canvas[0]) // side, int(canvas[1]) // side
        new_h, new_w = fitted_size(height, width, cols, rows, side)
        sx, sy = width / new_w, height / new_h  # original pixels per canvas pixel
        use_h, use_w = self.useful_grid(mask, rows, cols)
        step = side / t
        edges_x, edges_y = np.arange(use_w + 1) * step * sx, np.arange(use_h + 1) * step * sy
        high = _clip_boxes(edges_x, edges_y, width, height)
        index = np.arange(use_h)[:, None] * (use_w + 1) + np.arange(use_w)[None, :]
        views = [ViewLayout("highres", index, high)]
        start = use_h * (use_w + 1) + 1  # then the global separator
        gx = np.arange(t + 1) * (cols * side / t) * sx
        gy = np.arange(t + 1) * (rows * side / t) * sy
        glob = _clip_boxes(gx, gy, width, height)
        gindex = start + np.arange(t)[:, None] * (t + 1) + np.arange(t)[None, :]
        keep_r = np.flatnonzero(glob[:, 0, 3] > glob[:, 0, 1])
        keep_c = np.flatnonzero(glob[0, :, 2] > glob[0, :, 0])
        inner = np.ix_(keep_r, keep_c)
        views.append(ViewLayout("global", gindex[inner], glob[inner]))
        return ImageLayout((width, height), start + t * (t + 1), views)

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        sizes = batch["image_sizes"].tolist()
        masks = batch["image_attention_mask"]
        if len(sizes) != len(images):
            raise RuntimeError(
                f"Phi4MultimodalAdapter: {len(sizes)} processed images for {len(images)} given"
            )
        return [
            self.image_layout(im, size, masks[i, 1:])
            for i, (im, size) in enumerate(zip(images, sizes))
        ]

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        """The rows the model's image embedding writes at the ``<|image|>`` positions."""
        lm = self.model.model
        ids = inputs.input_ids
        written = lm.embed_tokens_extend.image_embed(
            ids,
            lm.embed_tokens(ids),
            image_pixel_values=inputs.batch["image_pixel_values"],
            image_sizes=inputs.batch["image_sizes"],
            image_attention_mask=inputs.batch["image_attention_mask"],
        )
        flat = written[ids == self.image_token_id]
        return list(torch.split(flat, [lay.n_tokens for lay in inputs.layouts]))

    def forward_features(
        self,
        inputs: PromptInputs,
        features: Sequence[torch.Tensor],
        last_only: bool = True,
        **kwargs: Any,
    ) -> Any:
        """The language model on ``embed_tokens(input_ids)`` with these rows at the image
        positions (what the model's image embedding writes there from pixels)."""
        batch = {k: v for k, v in inputs.batch.items() if k not in self.pixel_keys}
        ids = batch.pop("input_ids")
        embeds = self.model.model.embed_tokens(ids)
        rows = torch.cat(list(features), dim=0).to(embeds.dtype)
        embeds = embeds.masked_scatter((ids == self.image_token_id)[..., None], rows)
        return self.model(
            inputs_embeds=embeds,
            logits_to_keep=1 if last_only else 0,
            **batch,
            **self.position_kwargs(inputs.batch, kwargs),
        )
