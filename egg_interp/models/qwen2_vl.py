"""Adapter for ``qwen2_vl`` checkpoints (Qwen2-VL).

Layout: Qwen2.5-VL's (see :mod:`egg_interp.models.qwen2_5_vl`). The processor resizes each
image with ``smart_resize`` to ``rh x rw``, multiples of 28 (patch 14 times the 2x2 merge)
within its pixel budget, without crop or padding (slightly anisotropic, and small images are
scaled up to the minimum pixel count); placeholders ``<|vision_start|>`` + ``<|image_pad|>``
x ``t h w / 4`` + ``<|vision_end|>``; tokens row-major over the merged grid
``(rh/28) x (rw/28)``, token ``(r, c)`` covering ``x in [28 c W / rw, 28 (c+1) W / rw)``,
likewise y, read from the ``image_grid_thw`` the processor returned.

Hook: ``get_image_features(...).pooler_output``, one tensor per image (Qwen2-VL's vision tower
attends over the whole image, no windows; its ``PatchMerger`` joins each 2x2 block of patches
into one token). Positions: 3-D rotary (mRoPE) from ``input_ids``, ``image_grid_thw`` and
``mm_token_type_ids``, all passed on every forward; the ``rope_deltas`` the model caches are
reset before every unrelated forward and kept for continuing a map forward's answer through the
position hooks (``reset_positions``/``saved_positions``/``restore_positions``).

What maps cannot show: each token covers 28 x 28 resized pixels, a little less or more than
that in the original where ``smart_resize`` rounds; nothing finer. Pixel-space methods are
refused (``pixel_values`` holds flattened patches). A still image is one temporal patch (the
processor duplicates it in time); a video gives one grid per two frames, every token spanning
both (:mod:`egg_interp.models.qwen2_5_vl`'s video layout; temporal rotary positions advance by
1 per temporal patch in Qwen2-VL).
"""

from __future__ import annotations

from egg_interp.models.qwen2_5_vl import Qwen2_5_VLAdapter


class Qwen2VLAdapter(Qwen2_5_VLAdapter):
    """Qwen2-VL: Qwen2.5-VL's layout and hooks (module docstring)."""

    model_types = ("qwen2_vl",)
