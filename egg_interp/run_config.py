"""What one evaluation runs and how it scores: one type, checked once when it is built.

:class:`RunConfig` is what :func:`egg_interp.runner.evaluate_config` runs: the map methods
and answer pipelines, their options, the pointing-game tolerance and the regions scored per
map, the batch size, and the dataset, split, metric and model names the lines record. The
command line builds it from its arguments (:meth:`RunConfig.from_args`) before anything heavy
is imported; :func:`egg_interp.runner.evaluate` builds it from its keywords. A bad name or
value raises :class:`~egg_interp.errors.InputError` at construction, in one line.

Like :mod:`egg_interp.settings`, this module imports no torch and no model code.

>>> run = RunConfig(methods=["Rel-Att"], pipelines=[], map_top_k=3)
>>> run.methods, run.map_top_k, run.loop.top_k
(('rel_att',), 3, 2)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from egg_interp.errors import InputError
from egg_interp.settings import (
    METHOD_NAMES,
    PIPELINE_NAMES,
    LoopSettings,
    resolve_name,
    split_names,
)

if TYPE_CHECKING:
    from egg_interp.metrics.deletion import FaithfulnessSettings


def _check_int(name: str, value: Any, low: int | None = 1) -> None:
    """An integer (not a bool), at least ``low`` unless ``low`` is None."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class RunConfig:
    """One evaluation's settings, validated when built.

    Attributes
    ----------
    methods : tuple of str
        Map methods (names of :data:`egg_interp.settings.METHOD_NAMES`; ``-`` and case are
        forgiven); each gets a ``"map"`` line per sample.
    pipelines : tuple of str
        Answer pipelines (:data:`egg_interp.settings.PIPELINE_NAMES`); an ``"answer"`` line each.
        At least one method or pipeline.
    method_options : mapping
        ``{method: {option: value}}`` for the map methods' constructors (hashed).
    loop : LoopSettings
        The crop-choosing pipelines' settings (``loop.top_k``: crops per loop step).
    max_new_tokens : int
        Greedy decoding length of every answer; at least 1.
    seed : int
        Seed of the random crops and the random reference pointer.
    tolerance : float
        Pointing-game radius in original-image pixels; finite and > 0.
    map_top_k : int
        Regions kept per map for the map lines' region scores; at least 1.
    faithfulness : FaithfulnessSettings or None
        Deletion and insertion curves of every map (:mod:`egg_interp.faithfulness`): the map
        lines get their AUCs and MoRF-LeRF gaps, saved maps their curves; recorded in each map
        line's config (hashed). ``None`` (default): off, and the lines are those of a run
        without the option.
    batch_size : int
        Samples per map batch and per answer batch (see :func:`egg_interp.runner.evaluate`).
    batch_pipelines : bool
        Run pipelines in their batched form when ``batch_size > 1``.
    reuse_forward : bool
        Answers continue the maps' own forwards where a map ran on the same prompt (the same
        answers, one prefill less); ``False`` prefills every answer afresh (the old path, kept
        for the benchmark). Like the batching, not hashed.
    dataset, split, metric, model : str or None
        Recorded (and hashed) names; ``None``: resolved by :meth:`resolved` from the samples,
        the dataset registry and the adapter.

    Raises
    ------
    InputError
        At construction, on an unknown name, an empty selection or a value out of range.
    """

    methods: Sequence[str] = ("egg",)
    pipelines: Sequence[str] = ("base", "egg")
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    loop: LoopSettings = field(default_factory=LoopSettings)
    max_new_tokens: int = 20
    seed: int = 0
    tolerance: float = 15.0
    map_top_k: int = 2
    faithfulness: FaithfulnessSettings | None = None
    batch_size: int = 1
    batch_pipelines: bool = True
    reuse_forward: bool = True
    dataset: str | None = None
    split: str | None = None
    metric: str | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if isinstance(self.methods, str) or isinstance(self.pipelines, str):
            raise InputError("methods and pipelines are sequences of names, not one string")
        put("methods", tuple(resolve_name(m, METHOD_NAMES, "method") for m in self.methods))
        put("pipelines", tuple(resolve_name(p, PIPELINE_NAMES, "pipeline") for p in self.pipelines))
        if not self.methods and not self.pipelines:
            raise InputError("nothing to evaluate: give at least one method or pipeline")
        if not isinstance(self.method_options, Mapping):
            raise InputError(f"method options are a mapping, got {self.method_options!r}")
        put(
            "method_options",
            {
                resolve_name(k, METHOD_NAMES, "method"): dict(v)
                for k, v in self.method_options.items()
            },
        )
        if not isinstance(self.loop, LoopSettings):
            raise InputError(f"loop must be a LoopSettings, got {type(self.loop).__name__}")
        for name in ("max_new_tokens", "map_top_k", "batch_size"):
            _check_int(name, getattr(self, name))
        _check_int("seed", self.seed, low=None)
        ok = not isinstance(self.tolerance, bool) and isinstance(self.tolerance, (int, float))
        if not ok or not 0 < self.tolerance < math.inf:
            raise InputError(f"tolerance must be a number > 0 (pixels), got {self.tolerance!r}")
        put("tolerance", float(self.tolerance))
        if self.faithfulness is not None:
            from egg_interp.metrics.deletion import FaithfulnessSettings

            if not isinstance(self.faithfulness, FaithfulnessSettings):
                kind = type(self.faithfulness).__name__
                raise InputError(f"faithfulness must be a FaithfulnessSettings or None, got {kind}")
        put("batch_pipelines", bool(self.batch_pipelines))
        put("reuse_forward", bool(self.reuse_forward))
        if self.metric is not None:
            from egg_interp.data.registry import METRICS

            put("metric", resolve_name(self.metric, METRICS, "answer metric"))

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed (checked again)."""
        return replace(self, **changes)

    def resolved(self, adapter: Any, samples: Sequence[Any]) -> RunConfig:
        """Every default made concrete for a run of ``adapter`` on ``samples``.

        The loop's smoothing becomes the model's own when unset
        (:meth:`LoopSettings.for_model`: what the maps get, recorded in the configs);
        ``dataset`` and ``split`` default to the samples' own (``Sample.split``; ``"default"``
        when they carry none), ``metric`` to the registered dataset's (``"exact"`` for an
        unregistered one), ``model`` to ``adapter.name``.
        """
        from egg_interp.data.registry import DATASETS

        dataset = self.dataset or (samples[0].dataset if samples else "")
        split = self.split or next((s.split for s in samples if s.split), "") or "default"
        metric = self.metric or (DATASETS[dataset].metric if dataset in DATASETS else "exact")
        return self.replace(
            loop=self.loop.for_model(adapter),
            dataset=dataset,
            split=split,
            metric=metric,
            model=self.model or adapter.name,
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunConfig:
        """Build from ``egg-interp evaluate``'s parsed arguments (``args.loop`` already built).

        The map lines score as many regions as the loop keeps per step (``--top-k``).
        """
        from egg_interp.data.registry import DATASETS

        loop = getattr(args, "loop", None) or LoopSettings.from_args(args)
        return cls(
            methods=split_names(args.methods),
            pipelines=split_names(args.pipelines),
            loop=loop,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            tolerance=args.tolerance,
            map_top_k=loop.top_k,
            faithfulness=faithfulness_from_args(args),
            batch_size=args.batch_size,
            dataset=resolve_name(args.dataset, DATASETS, "dataset"),
            split=args.split,
            model=args.model,
        )


FAITHFULNESS_OPTIONS = {
    "faithfulness_space": "space",
    "faithfulness_substrate": "substrate",
    "faithfulness_steps": "steps",
    "faithfulness_orders": "orders",
}
"""``evaluate``'s faithfulness options (argparse names) and the settings they set."""


def faithfulness_from_args(args: argparse.Namespace) -> FaithfulnessSettings | None:
    """The :class:`~egg_interp.metrics.deletion.FaithfulnessSettings` of ``evaluate``'s
    ``--faithfulness CURVES`` and its ``--faithfulness-*`` options (unset: the settings'
    defaults), or ``None`` without ``--faithfulness``.

    Raises
    ------
    InputError
        A ``--faithfulness-*`` option without ``--faithfulness``, or a bad value.
    """
    given = {
        field: getattr(args, option)
        for option, field in FAITHFULNESS_OPTIONS.items()
        if getattr(args, option, None) is not None
    }
    curves = getattr(args, "faithfulness", None)
    if not curves:
        if given:
            option = next(o for o, f in FAITHFULNESS_OPTIONS.items() if f in given)
            raise InputError(
                f"--{option.replace('_', '-')} needs --faithfulness (e.g. deletion,insertion)"
            )
        return None
    from egg_interp.metrics.deletion import FaithfulnessSettings

    if "orders" in given:
        given["orders"] = tuple(split_names(given["orders"]))
    return FaithfulnessSettings(curves=tuple(split_names(curves)), **given)
