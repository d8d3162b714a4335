"""``idefics2`` checkpoints: refused in one line, before any weight is loaded.

Idefics2 encodes each image (and each of its 4 crops when it splits images) with a SigLIP
tower and then a **Perceiver resampler**: ``resampler_n_latents`` (64) learned latent queries
cross-attend to all the patches, through ``resampler_depth`` (3) layers. The 64 visual
tokens that reach the language model are therefore mixtures of the whole image: no token has
a place in it (tested on a tiny checkpoint: with a token-local vision tower, perturbing a
2x2 pixel patch moves every latent). EGG and every token-space method give one number per
latent, which no rectangle of the image carries, so a map cannot be drawn, regions cannot be
found and the zoom loop has nothing to crop.

Pixel-space methods would still give per-pixel relevance (the gradient at ``pixel_values``
is spatial), but the toolkit's maps, regions, loop and metrics are built on token grids with
a rectangle per token; a map over a pixel grid that is not the model's tokens is not built.
Idefics3 and SmolVLM, which replaced the resampler by a pixel shuffle with a grid per tile,
are supported (:mod:`egg_interp.models.idefics3`).
"""

from __future__ import annotations

REFUSED: dict[str, str] = {
    "idefics2": (
        "Idefics2 pools every image into 64 latent tokens with a Perceiver resampler, so no "
        "visual token has a place in the image and token maps have no geometry; egg_interp "
        "does not support it (Idefics3 and SmolVLM, which keep a token grid, are supported)"
    )
}
"""``model_type`` -> why :func:`egg_interp.models.load_model` refuses it (one line)."""
