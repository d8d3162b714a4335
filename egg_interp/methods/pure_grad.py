"""ViCrop's pure gradient map (Zhang et al., ICLR 2025): pixel-gradient ratio with a high-pass mask."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from scipy import ndimage

from egg_interp.methods.attention import GENERIC_PROMPT
from egg_interp.methods.base import AttributionMethod, Needs, logits_summary, pixel_gradients
from egg_interp.methods.targets import Target
from egg_interp.models.base import PromptInputs, VLMAdapter


def high_pass_mask(image: np.ndarray, blur_sigma: float = 0.8, median_size: int = 7) -> np.ndarray:
    """ViCrop's high-frequency mask of one image.

    ``|I - GaussBlur3x3(I)|`` as the per-pixel L2 norm over channels, median-filtered, kept
    where above its median.

    Parameters
    ----------
    image : ndarray of shape (channels, rows, cols)
    blur_sigma : float, default 0.8
        The 3x3 Gaussian's sigma (torchvision's default for a 3-pixel kernel); the kernel is
        truncated to a radius of one pixel. Edges are mirrored.
    median_size : int, default 7

    Returns
    -------
    ndarray of shape (rows, cols), bool
    """
    img = np.asarray(image, dtype=np.float64)
    blurred = ndimage.gaussian_filter(
        img, sigma=(0, blur_sigma, blur_sigma), truncate=1.0 / blur_sigma, mode="mirror"
    )
    high = np.sqrt(((img - blurred) ** 2).sum(axis=0))
    high = ndimage.median_filter(high, size=median_size, mode="mirror")
    return high > np.median(high)


class PureGradient(AttributionMethod):
    """``pure-grad``: pixel-gradient norm for the question over that for a generic prompt, high-passed.

    For the question and for ViCrop's generic prompt ("Write a general description of the
    image."): the gradient of the target (default ``"logprob"``, log p of each prompt's top-1
    next token) at ``pixel_values``, per-pixel L2 norm over the channels. The ratio question /
    generic (no epsilon, as ViCrop) is multiplied by :func:`high_pass_mask` of the model input
    and mean-pooled to the token grid by the adapter. The mask is computed on ``pixel_values``
    (the normalised model input at the gradients' resolution; ViCrop computes it on the image
    resized to that resolution, before normalisation, which scales each channel differently).
    Cost: 2 forwards + 2 backwards through the vision tower.

    Parameters
    ----------
    generic_prompt : str
    median_size : int, default 7
    """

    name: ClassVar[str] = "pure_grad"
    needs: ClassVar[Needs] = Needs(forwards=2, backwards=2, gradients=True, space="pixels")
    default_target: ClassVar[str] = "logprob"

    def __init__(
        self,
        target: str | Target | None = None,
        answer_step: int = 1,
        generic_prompt: str = GENERIC_PROMPT,
        median_size: int = 7,
    ) -> None:
        super().__init__(target, answer_step)
        self.generic_prompt, self.median_size = generic_prompt, median_size
        self.space = "pixels"

    def relevance(
        self, adapter: VLMAdapter, inputs: PromptInputs, target: Target
    ) -> tuple[list[torch.Tensor], dict[str, Any]]:
        origins = [lay.origin_box for lay in inputs.layouts]
        generic = adapter.build_inputs(
            inputs.images, self.generic_prompt, origin_boxes=origins, warn_unknown=False
        )
        pixels, grad_q, objective, logits = pixel_gradients(adapter, inputs, target)
        _, grad_g, _, _ = pixel_gradients(adapter, generic, target)
        ratio = grad_q.norm(dim=-3) / grad_g.norm(dim=-3)
        images = pixels.float().cpu().numpy().reshape(-1, *pixels.shape[-3:])
        masks = np.stack([high_pass_mask(im, median_size=self.median_size) for im in images])
        mask = torch.as_tensor(masks.reshape(ratio.shape), device=ratio.device)
        rel = adapter.pixel_relevance_to_tokens(inputs, ratio * mask)
        return rel, {"objective": float(objective), **logits_summary(adapter, logits)}
