"""Adapter for ``qwen3_5`` checkpoints (Qwen3.5: a hybrid linear-attention language model).

Layout: Qwen3-VL's processor and tokens (``<|vision_start|>`` + ``<|image_pad|>`` x
``t h w / 4`` + ``<|vision_end|>``), patch 16 and a 2x2 merge: ``smart_resize`` to multiples of
32, without crop or padding, token ``(r, c)`` covering ``x in [32 c W / rw, 32 (c+1) W / rw)``,
likewise y (:func:`~egg_interp.models.qwen2_5_vl.merged_grid_view`, from the processor's
``image_grid_thw``). Hook: ``get_image_features(...).pooler_output``, one tensor per image;
unlike Qwen3-VL there is **no deepstack**, so the input embeddings are the only way a visual
token enters the language model and a gradient there sees everything. Positions: 3-D rotary
(mRoPE, interleaved) with cached ``rope_deltas``, as for Qwen2.5-VL
(:mod:`egg_interp.models.qwen2_5_vl`).

**Gated DeltaNet.** In three of every four decoder layers (``text_config.layer_types``) tokens
are mixed by Gated DeltaNet linear attention: a causal depthwise convolution and a gated
delta-rule recurrent state, no attention weights. Consequences here:

* Attention maps read the full-attention layers only (:attr:`attention_layers`; the default
  layer is the middle one of those, and the map's metadata lists them and says that the other
  layers are not seen); a layer index without weights is refused in one line, and attention
  rollout (a product over every layer's mixing) is refused. Gradient maps (EGG) need no
  attention weights and see every layer.
* Left-padded batches: before each linear-attention layer the model zeroes the hidden states
  at padded positions (``attention_mask``), so a padded row's convolution and recurrent state
  start from zero exactly as the row alone would; batched maps equal one-by-one maps
  (tested), and no row-by-row fallback is needed.
* The cache is stateful: besides keys and values, a map forward's cache holds each
  linear-attention layer's convolution window and recurrent state after the prompt. Answers
  continued from that forward (:mod:`egg_interp.models.answering`) decode from those states;
  they are detached when recorded (else they would keep the forward's whole autograd graph).
  The states cannot be cropped or rewound, so a recorded forward serves one continuation.

What maps cannot show: detail finer than a 32 x 32 processed-pixel token; pixel-space methods
are refused (flattened patches).

Video: Qwen3-VL's processor (the pixel budget counts all frames:
:func:`~egg_interp.models.video_inputs.qwen3_frame_size`); each temporal patch of two frames is
its own vision block after a ``<t seconds>`` text timestamp (the mean time of its two frames),
a grid over the whole frame whose every token spans both frames (as for Qwen2.5-VL,
:mod:`egg_interp.models.qwen2_5_vl`).
"""

from __future__ import annotations

from typing import Any

from egg_interp.models.qwen2_5_vl import Qwen2_5_VLAdapter
from egg_interp.models.video_inputs import qwen3_frame_size


class Qwen3_5Adapter(Qwen2_5_VLAdapter):
    """Qwen3.5: Qwen2.5-VL's hooks with Qwen3-VL's geometry, hybrid LM (module docstring)."""

    model_types = ("qwen3_5",)

    @property
    def attention_layers(self) -> list[int]:
        """The full-attention layers (``layer_types``); the others are Gated DeltaNet layers."""
        types = self.model.config.get_text_config().layer_types
        return [i for i, kind in enumerate(types) if kind == "full_attention"]

    def video_frame_size(
        self, n_frames: int, height: int, width: int, settings: dict[str, Any]
    ) -> tuple[int, int]:
        """Qwen3-VL's video rule (its processor): the pixel budget counts all frames."""
        return qwen3_frame_size(n_frames, height, width, settings)
