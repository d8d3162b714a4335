"""Adapter for ``mistral3`` checkpoints (Mistral Small 3.x: Pixtral vision, Mistral LM).

Layout: the image processor scales an image down (never up) so that its longer side fits
``size["longest_edge"]``, then rounds both sides **up** to multiples of ``patch * merge``
(28 for patch 14 and a 2x2 merge): the image is stretched unevenly onto ``rh x rw``
(128x64 -> 140x84), nothing is cropped or padded. The Pixtral tower turns it into
``(rh / patch) x (rw / patch)`` patches (2-D RoPE inside the tower; each image of a prompt
attends only to itself) and the projector merges every 2 x 2 block into one token. The
prompt holds, per row of tokens, ``cols`` x ``[IMG]`` then ``[IMG_BREAK]``, the last
``[IMG_BREAK]`` replaced by ``[IMG_END]``. Only the ``[IMG]`` tokens carry image features;
the break and end tokens are ordinary text embeddings and cover nothing. Token ``(r, c)``
covers ``x in [pm c W / rw, pm (c+1) W / rw)`` (``pm = patch * merge``), likewise y: the
boxes tile the image exactly, each stretched by the rounding up (the ``image_sizes`` the
processor returned give ``rh, rw``).

Hook: ``get_image_features(...).pooler_output`` (one tensor per image). Positions are 1-D.
Pixel-space maps pool each token's ``pm x pm`` block of ``pixel_values`` (padded to the
largest image of the prompt; each image's own block is read).

Processor: ``PixtralProcessor`` needs torchvision (its module imports it), so without it
:class:`PixtralImageOnlyProcessor` builds the same prompt from the checkpoint's
``PixtralImageProcessorPil`` and tokenizer, expanding each ``[IMG]`` by the rule of
``PixtralProcessor.replace_image_token`` (the tests rebuild the expansion as that method
does); with torchvision installed the real processor is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, PixtralImageProcessorPil
from transformers.processing_utils import ProcessorMixin
from transformers.utils import is_torchvision_available

from egg_interp.models.base import (
    ImageLayout,
    PromptInputs,
    ViewLayout,
    VLMAdapter,
    regular_cell_boxes,
)


def pixtral_image_tokens(
    rows: int, cols: int, image: str = "[IMG]", brk: str = "[IMG_BREAK]", end: str = "[IMG_END]"
) -> str:
    """The placeholder text of one image of ``rows x cols`` merged tokens: each row's
    ``cols`` image tokens and a break, the last break replaced by the end token."""
    return ((image * cols + brk) * rows)[: -len(brk)] + end


class PixtralImageOnlyProcessor(ProcessorMixin):
    """``PixtralProcessor`` without torchvision: its PIL image processor and tokenizer, and
    its rule for expanding ``[IMG]`` (:func:`pixtral_image_tokens`).

    Saved, it names ``PixtralProcessor`` (with the same settings), so the checkpoint loads
    the real processor where torchvision is installed.
    """

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        patch_size: int = 16,
        spatial_merge_size: int = 1,
        chat_template: str | None = None,
        image_token: str = "[IMG]",
        image_break_token: str = "[IMG_BREAK]",
        image_end_token: str = "[IMG_END]",
        **kwargs: Any,
    ) -> None:
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        self.patch_size = patch_size
        self.spatial_merge_size = spatial_merge_size
        self.image_token = image_token
        self.image_break_token = image_break_token
        self.image_end_token = image_end_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)

    @classmethod
    def from_checkpoint(cls, source: str) -> PixtralImageOnlyProcessor:
        """Build it from a checkpoint written for ``PixtralProcessor``."""
        return cls.from_args_and_dict(
            [
                PixtralImageProcessorPil.from_pretrained(source),
                AutoTokenizer.from_pretrained(source),
            ],
            cls.get_processor_dict(source)[0],
        )

    def _process_images(self, images: Any, **images_kwargs: Any) -> Any:
        images_kwargs["patch_size"] = self.patch_size * self.spatial_merge_size
        return super()._process_images(images, **images_kwargs)

    def replace_image_token(self, image_inputs: dict, image_idx: int, **kwargs: Any) -> str:
        cell = self.patch_size * self.spatial_merge_size
        height, width = (int(v) for v in image_inputs["image_sizes"][image_idx])
        return pixtral_image_tokens(
            height // cell,
            width // cell,
            self.image_token,
            self.image_break_token,
            self.image_end_token,
        )

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["processor_class"] = "PixtralProcessor"
        return out


class Mistral3Adapter(VLMAdapter):
    """Mistral 3: one view per image, the merged token grid over the whole (stretched) image."""

    model_types = ("mistral3",)
    image_token = "[IMG]"

    @classmethod
    def load_processor(cls, source: str, model_type: str) -> Any:
        """``AutoProcessor`` with torchvision; without it (``PixtralProcessor`` imports it),
        :class:`PixtralImageOnlyProcessor`, the same prompt expansion on the PIL processor."""
        if is_torchvision_available():
            return super().load_processor(source, model_type)
        return PixtralImageOnlyProcessor.from_checkpoint(source)

    @property
    def cell(self) -> int:
        """Side of one token in processed pixels: ``patch * spatial_merge_size``."""
        return int(self.model.config.vision_config.patch_size) * int(
            self.model.config.spatial_merge_size
        )

    def fallback_prompt(self, n_images: int, text: str) -> str:
        return f"[INST]{self.image_token * n_images}{text}[/INST]"

    def layouts(self, images: Sequence[Image.Image], batch: dict[str, Any]) -> list[ImageLayout]:
        out, cell = [], self.cell
        for im, (rh, rw) in zip(images, batch["image_sizes"].tolist(), strict=True):
            rows, cols = int(rh) // cell, int(rw) // cell
            width, height = im.size
            boxes = regular_cell_boxes(
                rows, cols, 0.0, 0.0, cell * width / int(rw), cell * height / int(rh)
            )
            index = np.arange(rows * cols).reshape(rows, cols)
            out.append(
                ImageLayout((width, height), rows * cols, [ViewLayout("base", index, boxes)])
            )
        return out

    def compute_image_features(self, inputs: PromptInputs) -> list[torch.Tensor]:
        out = self.model.model.get_image_features(
            pixel_values=inputs.batch["pixel_values"],
            image_sizes=inputs.batch["image_sizes"],
            return_dict=True,
        )
        return list(out.pooler_output)

    def pixel_relevance_to_tokens(
        self, inputs: PromptInputs, pixel_map: torch.Tensor
    ) -> list[torch.Tensor]:
        """Mean-pool ``pixel_map`` (n_images, H, W) over each token's block of its image."""
        out = []
        for i, (rh, rw) in enumerate(inputs.batch["image_sizes"].tolist()):
            own = pixel_map[i, : int(rh), : int(rw)].float()
            out.append(torch.nn.functional.avg_pool2d(own[None], self.cell).flatten())
        return out
