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
from egg_interp.video import Video

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
    *,
    videos: Sequence[Video] | Video = (),
    **options: Any,
) -> AttributionMap:
    """Attribute a model's next answer token to the visual tokens, with any registered method.

    One call for every method, returning the same map type, so maps compare on equal terms.

    Parameters
    ----------
    adapter : VLMAdapter
        A loaded model (:func:`egg_interp.models.load_model`).
    images : PIL.Image.Image or sequence of PIL.Image.Image
        The image, or several images asked about together, optionally followed by crops (one
        prompt, in this order); the map has one grid per image, each on its own image's
        pixels. A model that takes fewer images per prompt refuses in one line
        (:attr:`VLMAdapter.max_images_per_prompt
        <egg_interp.models.base.VLMAdapter.max_images_per_prompt>`).
    question : str
        The question; must not be empty. The adapter's ``prompt_suffix`` is appended.
    method : str or AttributionMethod, default "egg"
        A name of :data:`METHODS` (``egg``, ``saliency``, ``input_x_gradient``,
        ``integrated_gradients``, ``gradient_shap``, ``smoothgrad``, ``occlusion``,
        ``gradcam``, ``raw_attention``, ``attention_rollout``, ``rel_att``, ``grad_att``,
        ``pure_grad``; ``egg-interp methods`` lists them with their cost) or an instance.
        Spellings such as ``"Rel-Att"`` are accepted.
    target : str or Target, optional
        What the map explains, for methods that take a target (attention maps ignore it):
        ``"entropy"`` (next-token entropy, EGG's objective), ``"answer_logprob"`` (the
        log-probability of the model's own greedy answer, teacher-forced, summed over its
        tokens), ``"answer_logprob_first"`` (its first token only), ``"top_p_entropy"``
        (entropy of the top-p nucleus, p = 0.9), ``"neg_log_pmax"`` (-log of the top-1
        probability), ``"kl_uniform"`` (KL divergence to the uniform distribution),
        ``"logprob"`` (log-probability of each input's own top-1 token, or of
        ``LogProb(token_id=...)``). ``None``: the method's default (``entropy`` for ``egg``,
        ``answer_logprob`` for the captum baselines, as in their literature, ``logprob`` for
        ``grad_att`` and ``pure_grad``).
    videos : Video or sequence of Video, optional
        Videos placed before the images (``images`` may then be empty), for models that take
        video (:attr:`VLMAdapter.supports_video <egg_interp.models.base.VLMAdapter.supports_video>`);
        the map holds one entry per temporal slice first (:meth:`AttributionMap.frame_maps
        <egg_interp.maps.AttributionMap.frame_maps>`).
    **options
        Constructor options of the method, e.g. ``space="pixels"`` (gradient methods:
        attribute to ``pixel_values`` instead of the visual token embeddings),
        ``answer_step=k`` (explain the k-th answer token), ``n_steps`` and
        ``internal_batch_size`` (integrated gradients), ``layers`` (attention methods). An
        unknown option raises :class:`~egg_interp.errors.InputError`.

    Returns
    -------
    AttributionMap
        One token grid per image (float32, ``(rows, cols)``) with the geometry to draw it on
        the original image; ``meta`` holds the objective, top-1 token and probability, time.

    Examples
    --------
    >>> amap = attribute(adapter, image, "what colour is the square ?")  # doctest: +SKIP
    >>> amap.grid.shape, amap.method, amap.target  # doctest: +SKIP
    ((8, 8), 'egg', 'entropy')
    """
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(videos, Video):
        videos = [videos]
    method = get_method(method, **options)
    return method.attribute(adapter, images, question, target=target, videos=videos)


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
