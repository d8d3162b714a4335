"""Saliency (Simonyan et al., 2014) through captum: the gradient of the target, reduced per token."""

from __future__ import annotations

from typing import Any, ClassVar

from captum.attr import Saliency

from egg_interp.methods.captum_base import CaptumMethod, CaptumProblem


class SaliencyMethod(CaptumMethod):
    """``||d target / d x_i||`` per visual token (or pixel, pooled): captum's ``Saliency``.

    By default it explains the log-probability of the model's own answer, teacher-forced
    (``"answer_logprob"``, the target of gradient saliency in its own literature); with
    ``target="entropy"``, space tokens and the L2-norm reduction it is EGG's map computed
    through captum, so the pair isolates the target. captum is asked for the signed gradient
    (``abs=False``): the norm is the same, and ``smoothgrad`` can then average signed
    gradients, as SmoothGrad does. Cost: 1 forward + 1 backward, plus 1 forward for the map's
    metadata (top-1 token, entropy) and the greedy answer's forwards (one per answer token).
    Options: those of :class:`~egg_interp.methods.captum_base.CaptumMethod` (``baseline`` is
    unused).
    """

    name: ClassVar[str] = "saliency"
    captum_class: ClassVar[type] = Saliency

    def captum_kwargs(self, problem: CaptumProblem) -> dict[str, Any]:
        return {"abs": False}
