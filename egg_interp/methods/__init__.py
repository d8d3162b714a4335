"""Attribution methods behind one verb, and their registry.

>>> from egg_interp.methods import METHODS
>>> "egg" in METHODS
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from egg_interp.errors import InputError
from egg_interp.maps import AttributionMap
from egg_interp.methods.attention_rollout import AttentionRollout
from egg_interp.methods.base import AttributionMethod, Needs
from egg_interp.methods.egg import EntropyGradient
from egg_interp.methods.grad_att import GradientAttention
from egg_interp.methods.gradcam import GradCamMethod
from egg_interp.methods.gradient_shap import GradientShapMethod
from egg_interp.methods.input_x_gradient import InputXGradientMethod
from egg_interp.methods.integrated_gradients import IntegratedGradientsMethod
from egg_interp.methods.occlusion import OcclusionMethod
from egg_interp.methods.pure_grad import PureGradient
from egg_interp.methods.raw_attention import RawAttention
from egg_interp.methods.rel_att import RelativeAttention
from egg_interp.methods.saliency import SaliencyMethod
from egg_interp.methods.smoothgrad import SmoothGradMethod
from egg_interp.methods.targets import TARGETS, Target, make_target
from egg_interp.models.base import VLMAdapter
from egg_interp.settings import resolve_name

METHODS: dict[str, type[AttributionMethod]] = {
    cls.name: cls
    for cls in (
        EntropyGradient,
        # captum baselines
        SaliencyMethod,
        InputXGradientMethod,
        IntegratedGradientsMethod,
        GradientShapMethod,
        SmoothGradMethod,
        OcclusionMethod,
        GradCamMethod,
        # attention heuristics and ViCrop's maps
        RawAttention,
        AttentionRollout,
        RelativeAttention,
        GradientAttention,
        PureGradient,
    )
}
"""Registered method name -> class (``egg-interp methods`` lists them with their needs)."""


def get_method(name: str | AttributionMethod, **options: Any) -> AttributionMethod:
    """Instantiate a registered method (an unknown name lists the valid ones)."""
    if isinstance(name, AttributionMethod):
        return name
    cls = METHODS[resolve_name(name, METHODS, "method")]
    try:
        return cls(**options)
    except TypeError as exc:  # an option the constructor does not take
        raise InputError(f"method {cls.name!r}: {exc}") from None


def attribute(
    adapter: VLMAdapter,
    images: Sequence[Image.Image] | Image.Image,
    question: str,
    method: str | AttributionMethod = "egg",
    target: str | Target | None = None,
    **options: Any,
) -> AttributionMap:
    """One call for every method: ``attribute(adapter, image, question, method="egg")``."""
    if isinstance(images, Image.Image):
        images = [images]
    return get_method(method, **options).attribute(adapter, images, question, target=target)


__all__ = [
    "METHODS",
    "TARGETS",
    "AttributionMethod",
    "EntropyGradient",
    "Needs",
    "attribute",
    "get_method",
    "make_target",
]
