"""Input x Gradient through captum: the gradient times the input, reduced per token."""

from __future__ import annotations

from typing import ClassVar

from captum.attr import InputXGradient

from egg_interp.methods.captum_base import CaptumMethod


class InputXGradientMethod(CaptumMethod):
    """``x_i * d target / d x_i`` per visual token (or pixel, pooled): captum's ``InputXGradient``.

    In token space, with ``target="entropy"``, the default reduction (L2 norm over the hidden
    axis) equals EGG's ``reduce="grad_x_input"`` variant; ``reduce="sum"`` gives the signed first-order Taylor
    term of each token. Cost: 1 forward + 1 backward, plus 1 forward for the metadata.
    Options: those of :class:`~egg_interp.methods.captum_base.CaptumMethod` (``baseline`` is
    unused).
    """

    name: ClassVar[str] = "input_x_gradient"
    captum_class: ClassVar[type] = InputXGradient
