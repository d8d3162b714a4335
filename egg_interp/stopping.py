"""Stopping rules for the zoom-and-reground loop: small pluggable objects, no model code.

**Records.** Step ``k`` of the loop appends one record: the values measured on step ``k``'s map
(``spatial_entropy`` of the original image's map, ``top1_prob`` of the next token) and the crops
chosen from that map (``crop_areas``, pixel areas in original-image pixels). A record is any
object with the attributes ``step``, ``spatial_entropy``, ``top1_prob`` and ``crop_areas``
(e.g. the loop's own step log, or :class:`StepRecord`), or a mapping with those keys (a log read
back from JSON).

**Decisions.** After appending a record the loop calls ``rule.decide(records)`` and gets a
:class:`Decision`: ``stop``, ``keep`` (the ``step`` value of the record whose crops feed the
final answer; ``None`` = answer from the original image alone) and a ``reason``. While
``stop`` is false, ``keep`` is what the rule would keep if the loop ended now. Every rule also
obeys ``max_steps`` (default 15): once that many records exist it stops and keeps its best step.
Rules may be consulted with no records yet; only :class:`NoRefinement` and ``FixedSteps(0)``
stop then. Call ``rule.prepare(image_size)`` once per image before the loop (only
:class:`MaxPixelSteps` needs it).

Registry: :data:`STOPPING_RULES` (names for the CLI) and :func:`make_rule` (``"ent"``,
``"fixed:2"``, ``"area:4000"``, ``"pixels:1000"``, ``"prob"``, ``"none"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from egg_interp.errors import InputError

DEFAULT_MAX_STEPS = 15


@dataclass(frozen=True)
class Decision:
    """What a rule says after a step: stop or go on, and which step's crops to keep."""

    stop: bool
    keep: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


@dataclass
class StepRecord:
    """Minimal step record (the loop may use its own type with these attributes)."""

    step: int
    spatial_entropy: float
    top1_prob: float
    crop_areas: list[float] = field(default_factory=list)


def _get(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record[name]
    return getattr(record, name)


def _step(records: Sequence[Any], i: int) -> int:
    return int(_get(records[i], "step"))


class StoppingRule:
    """Base of all rules: enforces ``max_steps``; subclasses implement :meth:`_decide`.

    Parameters
    ----------
    max_steps : int, default 15
        Hard limit on the number of records (steps, step 0 included); at least 1.
    """

    name: ClassVar[str] = ""

    def __init__(self, max_steps: int = DEFAULT_MAX_STEPS) -> None:
        if int(max_steps) < 1:
            raise InputError(f"max_steps must be >= 1, got {max_steps!r}")
        self.max_steps = int(max_steps)

    @classmethod
    def from_arg(cls, arg: str | None, max_steps: int = DEFAULT_MAX_STEPS) -> StoppingRule:
        """Build the rule from the text after ``:`` in a spec (``None`` when absent)."""
        if arg is not None:
            raise InputError(f"stopping rule {cls.name!r} takes no argument, got {arg!r}")
        return cls(max_steps=max_steps)

    def prepare(self, image_size: tuple[int, int]) -> None:
        """Hook called once per image, ``image_size = (width, height)``; default: nothing."""

    def decide(self, records: Sequence[Any]) -> Decision:
        """Decide after the latest record (see the module docstring for the protocol)."""
        decision = self._decide(records)
        if decision.stop or len(records) < self.max_steps:
            return decision
        return Decision(True, decision.keep, f"reached max_steps={self.max_steps}")

    def _decide(self, records: Sequence[Any]) -> Decision:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_steps={self.max_steps})"


class SpatialEntropyRise(StoppingRule):
    """Default rule: stop when the spatial entropy rises or reaches 0.

    At step ``k >= 1``, when ``H_k > H_{k-1}``: stop and keep step ``k - 1`` (the crops from
    before the rise). When ``H_k == 0`` (at any step, step 0 included): stop and keep step ``k``
    (one component holds all the evidence; nothing lower is possible). Otherwise go on; since
    the values never rose, the latest step is then also the lowest and is what ``keep`` names.

    ``+inf`` (a flat map, nothing stands out) compares as larger than every finite value: a
    finite value after ``+inf`` is a fall (go on), ``+inf`` after a finite value is a rise
    (stop), ``+inf`` after ``+inf`` is no change (go on). A NaN value stops at once and keeps the
    previous step (``None`` at step 0).

    Parameters
    ----------
    key : str, default "spatial_entropy"
        The record field compared (e.g. a Shannon entropy the loop also logs).
    max_steps : int, default 15
    """

    name = "ent"

    def __init__(self, key: str = "spatial_entropy", max_steps: int = DEFAULT_MAX_STEPS) -> None:
        super().__init__(max_steps)
        self.key = key

    @classmethod
    def from_arg(cls, arg: str | None, max_steps: int = DEFAULT_MAX_STEPS) -> StoppingRule:
        return cls(key=arg or "spatial_entropy", max_steps=max_steps)

    def _decide(self, records: Sequence[Any]) -> Decision:
        if not records:
            return Decision(False, None, "no step yet")
        k = len(records) - 1
        value = float(_get(records[k], self.key))
        prev = _step(records, k - 1) if k >= 1 else None
        if math.isnan(value):
            return Decision(True, prev, f"{self.key} is NaN at step {_step(records, k)}")
        if value == 0.0:
            return Decision(True, _step(records, k), f"{self.key} reached 0")
        if k >= 1 and value > float(_get(records[k - 1], self.key)):
            return Decision(True, prev, f"{self.key} rose at step {_step(records, k)}")
        return Decision(False, _step(records, k), f"{self.key} did not rise")


class FixedSteps(StoppingRule):
    """Stop after ``n`` steps and keep the last one; ``n = 0`` means no crops at all."""

    name = "fixed"

    def __init__(self, n: int = 1, max_steps: int = DEFAULT_MAX_STEPS) -> None:
        super().__init__(max_steps)
        if int(n) < 0:
            raise InputError(f"the number of steps must be >= 0, got {n!r}")
        self.n = int(n)

    @classmethod
    def from_arg(cls, arg: str | None, max_steps: int = DEFAULT_MAX_STEPS) -> StoppingRule:
        return cls(_parse(cls.name, arg, int, 1), max_steps=max_steps)

    def _target(self) -> int:
        return self.n

    def _decide(self, records: Sequence[Any]) -> Decision:
        n = self._target()
        last = _step(records, -1) if records else None
        if n == 0:
            return Decision(True, None, "zero steps requested")
        if len(records) >= n:
            return Decision(True, last, f"completed {n} step(s)")
        return Decision(False, last, f"{len(records)} of {n} step(s) done")


class MaxPixelSteps(FixedSteps):
    """``max(width, height) // pixels_per_step`` steps (reference: 1000 px per step).

    Needs :meth:`prepare` with the original image size before the first decision; an image
    smaller than ``pixels_per_step`` on both sides gets zero steps (no crops).
    """

    name = "pixels"

    def __init__(self, pixels_per_step: int = 1000, max_steps: int = DEFAULT_MAX_STEPS) -> None:
        super().__init__(0, max_steps)
        if int(pixels_per_step) < 1:
            raise InputError(f"pixels per step must be >= 1, got {pixels_per_step!r}")
        self.pixels_per_step = int(pixels_per_step)
        self._image_size: tuple[int, int] | None = None

    @classmethod
    def from_arg(cls, arg: str | None, max_steps: int = DEFAULT_MAX_STEPS) -> StoppingRule:
        return cls(_parse(cls.name, arg, int, 1000), max_steps=max_steps)

    def prepare(self, image_size: tuple[int, int]) -> None:
        """Set the original image's ``(width, height)``."""
        if len(image_size) != 2 or min(image_size) <= 0:
            raise InputError(f"image_size is (width, height) > 0, got {image_size!r}")
        self._image_size = (int(image_size[0]), int(image_size[1]))

    def _target(self) -> int:
        if self._image_size is None:
            raise InputError("MaxPixelSteps needs prepare(image_size) before decide()")
        return max(self._image_size) // self.pixels_per_step


class MinCropArea(StoppingRule):
    """Stop once the smallest crop of a step has area ``<= area`` pixels; keep that step.

    A step with no crops is not measured (go on). Areas are in original-image pixels.
    """

    name = "area"

    def __init__(self, area: float = 4000.0, max_steps: int = DEFAULT_MAX_STEPS) -> None:
        super().__init__(max_steps)
        if not float(area) >= 0:
            raise InputError(f"area must be >= 0, got {area!r}")
        self.area = float(area)

    @classmethod
    def from_arg(cls, arg: str | None, max_steps: int = DEFAULT_MAX_STEPS) -> StoppingRule:
        return cls(_parse(cls.name, arg, float, 4000.0), max_steps=max_steps)

    def _decide(self, records: Sequence[Any]) -> Decision:
        if not records:
            return Decision(False, None, "no step yet")
        areas = [float(a) for a in _get(records[-1], "crop_areas")]
        last = _step(records, -1)
        if areas and min(areas) <= self.area:
            return Decision(True, last, f"crop area {min(areas):g} <= {self.area:g} px")
        return Decision(False, last, f"crops larger than {self.area:g} px")


class Top1ProbPlateau(StoppingRule):
    """Stop when the top-1 probability stops increasing; keep the step where it was highest.

    At step ``k >= 1``, ``p_k <= p_{k-1}`` stops. ``keep`` is the step of the highest
    probability so far (earliest on ties), which on a stop is step ``k - 1``. NaN values are
    never the best and a NaN at the latest step stops.
    """

    name = "prob"

    def _decide(self, records: Sequence[Any]) -> Decision:
        if not records:
            return Decision(False, None, "no step yet")
        probs = [float(_get(r, "top1_prob")) for r in records]
        finite = [i for i, p in enumerate(probs) if not math.isnan(p)]
        best = _step(records, max(finite, key=lambda i: probs[i])) if finite else None
        if math.isnan(probs[-1]):
            return Decision(True, best, "top-1 probability is NaN")
        if len(probs) >= 2 and not probs[-1] > probs[-2]:
            return Decision(True, best, "top-1 probability stopped increasing")
        return Decision(False, best, "top-1 probability increased")


class NoRefinement(StoppingRule):
    """Never zoom: stop at once and keep no crops (answer from the original image alone)."""

    name = "none"

    def _decide(self, records: Sequence[Any]) -> Decision:
        return Decision(True, None, "no refinement requested")


STOPPING_RULES: dict[str, type[StoppingRule]] = {
    cls.name: cls
    for cls in (
        SpatialEntropyRise,
        FixedSteps,
        MinCropArea,
        Top1ProbPlateau,
        NoRefinement,
        MaxPixelSteps,
    )
}
"""Rule classes by name; :func:`make_rule` parses ``"name"`` or ``"name:arg"`` specs."""


def _parse(name: str, arg: str | None, kind: type, default: Any) -> Any:
    if arg is None:
        return default
    try:
        return kind(arg)
    except ValueError:
        raise InputError(
            f"stopping rule {name!r} expects a {kind.__name__} argument, got {arg!r}"
        ) from None


def make_rule(spec: str | StoppingRule, max_steps: int = DEFAULT_MAX_STEPS) -> StoppingRule:
    """Build a rule from a spec such as ``"ent"``, ``"fixed:2"``, ``"area:4000"``.

    Arguments: ``fixed:N`` steps (default 1), ``area:A`` pixels (default 4000),
    ``pixels:P`` pixels per step (default 1000), ``ent:FIELD`` record field (default
    ``spatial_entropy``); ``prob`` and ``none`` take none. A rule object is returned as is.

    Raises
    ------
    InputError
        Unknown name (the message lists the valid ones) or a bad argument.
    """
    if isinstance(spec, StoppingRule):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"a stopping rule spec is a non-empty string, got {spec!r}")
    name, sep, arg = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in STOPPING_RULES:
        valid = ", ".join(sorted(STOPPING_RULES))
        raise InputError(f"unknown stopping rule {name!r}; valid: {valid} (e.g. 'fixed:2')")
    if sep and not arg.strip():
        raise InputError(f"stopping rule spec {spec!r} has an empty argument after ':'")
    return STOPPING_RULES[name].from_arg(arg.strip() if sep else None, max_steps=max_steps)
