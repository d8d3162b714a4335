"""Settings of the zoom-and-reground loop: one type, checked once when it is built.

:class:`LoopSettings` groups what the loop (and ViCrop's single crop) needs to know: the map
method and its options, the target, the stopping rule, regions per step, the step limit and
the crop policy. It is built once -- from the command line by :func:`LoopSettings.from_args`,
or in Python -- and travels inside :class:`egg_interp.pipelines.PipelineOptions`. An unknown
method, target or stopping rule, or a bad value, raises :class:`~egg_interp.errors.InputError`
at construction, so a command fails in its first second instead of once per sample.

This module imports no model code and no torch: the CLI checks options before it loads
anything heavy. The method and target names below mirror the registries in
:mod:`egg_interp.methods` (a test keeps them equal).

Names: :func:`canonical_name` is the one rule for user-typed names (``"Rel-Att"`` ->
``"rel_att"``); :func:`resolve_name` applies it against any registry.

>>> s = LoopSettings(method="rel-att", stop="fixed:2")
>>> s.method, s.top_k
('rel_att', 2)
>>> LoopSettings().method_for("vicrop")
'rel_att'
"""

from __future__ import annotations

import argparse
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from egg_interp.errors import InputError
from egg_interp.stopping import DEFAULT_MAX_STEPS, StoppingRule, make_rule

METHOD_NAMES: tuple[str, ...] = (
    "attention_rollout",
    "egg",
    "grad_att",
    "gradcam",
    "gradient_shap",
    "input_x_gradient",
    "integrated_gradients",
    "occlusion",
    "pure_grad",
    "raw_attention",
    "rel_att",
    "saliency",
    "smoothgrad",
)
"""Registered map methods (the keys of :data:`egg_interp.methods.METHODS`)."""

TARGET_NAMES: tuple[str, ...] = (
    "answer_logprob",
    "answer_logprob_first",
    "entropy",
    "kl_uniform",
    "logprob",
    "neg_log_pmax",
    "top_p_entropy",
)
"""Registered targets (the keys of :data:`egg_interp.methods.targets.TARGETS`)."""

PIPELINE_NAMES: tuple[str, ...] = (
    "base",
    "egg",
    "oracle",
    "oracle_one",
    "random",
    "random_egg",
    "vicrop",
)
"""Registered answer pipelines (the keys of :data:`egg_interp.pipelines.PIPELINES`)."""

DEFAULT_METHOD = {"egg": "egg", "vicrop": "rel_att"}
"""The map each crop-choosing pipeline uses when no method is named."""


def canonical_name(name: str) -> str:
    """The registry spelling of a user-typed name: stripped, lower case, ``-`` -> ``_``.

    >>> canonical_name(" Rel-Att ")
    'rel_att'
    """
    return str(name).strip().lower().replace("-", "_")


def resolve_name(name: str, registry: Collection[str], what: str) -> str:
    """The key of ``registry`` that ``name`` names (:func:`canonical_name`), or an InputError.

    Raises
    ------
    InputError
        The name is unknown; the message lists the valid ones.
    """
    if name in registry:
        return name
    key = canonical_name(name)
    if key in registry:
        return key
    raise InputError(f"unknown {what} {name!r}; valid: {', '.join(sorted(registry))}")


def split_names(text: str | None) -> list[str]:
    """``"egg, saliency,"`` -> ``["egg", "saliency"]``."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _literal(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_options(text: str | None) -> dict[str, Any]:
    """``"space=pixels,n_steps=16"`` -> ``{"space": "pixels", "n_steps": 16}``.

    Values are read as bool, None, int or float where they parse as one, else kept as text.
    """
    out: dict[str, Any] = {}
    for item in split_names(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"a method option is KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = _literal(value)
    return out


@dataclass(frozen=True)
class LoopSettings:
    """What the zoom-and-reground loop and ViCrop's crop search run with.

    Attributes
    ----------
    method : str or None
        Map method (a name of :data:`METHOD_NAMES`; ``-`` and case are forgiven). ``None``: each
        pipeline's own default (:data:`DEFAULT_METHOD`: ``egg`` for the loop, ``rel_att`` for
        ViCrop); see :meth:`method_for`.
    method_options : mapping
        Keyword arguments of the method's constructor (e.g. ``{"space": "pixels"}``); their
        names are checked when the method is built.
    target : str or None
        What the map explains (a name of :data:`TARGET_NAMES`); ``None``: the method's default.
    stop : str
        Stopping rule spec (``"ent"``, ``"fixed:N"``, ``"area:PX"``, ``"prob"``, ``"pixels"``,
        ``"none"``; see :mod:`egg_interp.stopping`).
    top_k : int
        Regions (crops) chosen per step; at least 1.
    max_steps : int
        Upper bound on the loop's steps, step 0 included; at least 1.
    min_crop_side : float
        Crop policy of the loop: a region's box is grown to at least this side (original pixels).
    crop_scale : float
        Crop policy of the oracle and random pipelines: square side = this times the evidence
        box's longer side.
    sigma : float or None
        Gaussian smoothing of the maps, in grid cells, before regions are found and spatial
        entropy is measured (the loop, its stopping rule and the map scores). ``None``: the
        model's own (:attr:`egg_interp.models.VLMAdapter.region_sigma`: the paper's 1.5
        unless the checkpoint's config says otherwise); :meth:`for_model` fills it in.

    Raises
    ------
    InputError
        At construction, on an unknown name or a value out of range.
    """

    method: str | None = None
    method_options: Mapping[str, Any] = field(default_factory=dict)
    target: str | None = None
    stop: str = "ent"
    top_k: int = 2
    max_steps: int = DEFAULT_MAX_STEPS
    min_crop_side: float = 8.0
    crop_scale: float = 1.5
    sigma: float | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.method is not None:
            put("method", resolve_name(self.method, METHOD_NAMES, "method"))
        if self.target is not None:
            put("target", resolve_name(self.target, TARGET_NAMES, "target"))
        if not isinstance(self.method_options, Mapping):
            raise InputError(f"method options are a mapping, got {self.method_options!r}")
        put("method_options", dict(self.method_options))
        if self.method_options and self.method is None:
            raise InputError("method options need a named method (e.g. --method egg)")
        for name in ("top_k", "max_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("min_crop_side", "crop_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InputError(f"{name} must be a number > 0, got {value!r}")
            put(name, float(value))
        if self.sigma is not None:
            ok = not isinstance(self.sigma, bool) and isinstance(self.sigma, (int, float))
            if not ok or not 0 <= self.sigma < float("inf"):
                raise InputError(f"sigma must be a number >= 0, got {self.sigma!r}")
            put("sigma", float(self.sigma))
        if not isinstance(self.stop, str):
            raise InputError(f"a stopping rule is named by a string, got {self.stop!r}")
        put("stop", self.stop.strip())
        self.rule()  # an unknown rule or a bad argument fails here

    def method_for(self, pipeline: str = "egg") -> str:
        """The method name ``pipeline`` runs: :attr:`method`, else the pipeline's default."""
        return self.method or DEFAULT_METHOD.get(pipeline, "egg")

    def rule(self) -> StoppingRule:
        """A fresh stopping rule object (rules keep per-image state)."""
        return make_rule(self.stop, max_steps=self.max_steps)

    def method_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the method: its options, plus ``target`` when set."""
        kwargs = dict(self.method_options)
        if self.target is not None:
            kwargs["target"] = self.target
        return kwargs

    def for_model(self, adapter: Any) -> LoopSettings:
        """These settings with :attr:`sigma` filled in from ``adapter.region_sigma`` when unset
        (what the loop runs with and what a result's config records)."""
        if self.sigma is not None:
            return self
        return self.replace(sigma=float(adapter.region_sigma))

    def replace(self, **changes: Any) -> LoopSettings:
        """A copy with some fields changed (checked again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LoopSettings:
        """Build from parsed command-line arguments (absent options keep their defaults)."""
        defaults = cls()
        get = lambda name: getattr(args, name, None)  # noqa: E731
        values = {
            "method": get("method"),
            "method_options": parse_options(get("method_options")),
            "target": get("target"),
            "stop": get("stop") if get("stop") is not None else defaults.stop,
            "top_k": get("top_k") if get("top_k") is not None else defaults.top_k,
            "max_steps": get("max_steps") if get("max_steps") is not None else defaults.max_steps,
            "crop_scale": get("crop_scale")
            if get("crop_scale") is not None
            else defaults.crop_scale,
        }
        for name in ("min_crop_side", "sigma"):
            if get(name) is not None:
                values[name] = get(name)
        return cls(**values)
