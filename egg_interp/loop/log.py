"""What the zoom-and-reground loop records: one :class:`LoopStep` per step, and the
:class:`GroundingResult` of a sample (written to ``steps.json`` by ``egg-interp ground``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from egg_interp.geometry import Box
from egg_interp.maps import AttributionMap
from egg_interp.models.answering import RecordedPrompt
from egg_interp.regions import Region
from egg_interp.stopping import Decision


@dataclass
class LoopStep:
    """One step of the loop: what was measured on its map and which crops it chose.

    ``crops_in`` are the crops in the sequence when the map was computed; ``crop_boxes``
    the crops chosen from it (both in original-image pixels). The entropies may be ``inf``
    (spatial entropy when no cell rises above twice the map's mean: no focus) or ``nan`` (a
    degenerate map, see ``degenerate``); :meth:`to_dict` keeps them as floats, and
    ``steps.json`` (:func:`egg_interp.io.write_json`) writes every non-finite number as
    ``null``.

    With several user images, ``sources_in``, ``crop_sources`` and ``region_sources`` give
    the index of the image each crop in, each new crop and each region comes from (boxes are
    in that image's pixels); with one they are ``None`` and the log leaves them out.
    """

    step: int
    crops_in: list[Box]
    regions: list[Region]
    crop_boxes: list[Box]
    spatial_entropy: float
    shannon_entropy: float
    next_token_entropy: float
    top1_prob: float
    top1_token: str
    seconds: float
    degenerate: str = ""
    sources_in: list[int] | None = None
    crop_sources: list[int] | None = None
    region_sources: list[int] | None = None

    @property
    def crop_areas(self) -> list[float]:
        return [(b[2] - b[0]) * (b[3] - b[1]) for b in self.crop_boxes]

    def to_dict(self) -> dict[str, Any]:
        regions = [{k: v for k, v in r.to_dict().items() if k != "cells"} for r in self.regions]
        sources = {}
        if self.region_sources is not None:
            for region, source in zip(regions, self.region_sources, strict=True):
                region["source"] = source
            sources = {"sources_in": self.sources_in, "crop_sources": self.crop_sources}
        return {
            "step": self.step,
            "crops_in": [list(b) for b in self.crops_in],
            "crop_boxes": [list(b) for b in self.crop_boxes],
            **sources,
            "regions": regions,
            "spatial_entropy": self.spatial_entropy,
            "shannon_entropy": self.shannon_entropy,
            "next_token_entropy": self.next_token_entropy,
            "top1_prob": self.top1_prob,
            "top1_token": self.top1_token,
            "seconds": self.seconds,
            "degenerate": self.degenerate,
        }


@dataclass
class GroundingResult:
    """What the loop found: ranked regions of step 0, the kept crops and the step log.

    ``maps`` holds every step's map when the loop kept them; ``forwards`` the recorded map
    forwards it was asked to keep (``keep_forwards``: the first step's, whose prompt is the
    base answer's, and the last step's when its prompt holds the kept crops), which
    :func:`answer_batch` continues instead of prefilling those prompts again.

    ``image_size`` is the first user image's; ``image_sizes`` every user image's and
    ``crop_sources`` the index of the image each kept crop is cut from (its box is in that
    image's pixels); :meth:`to_dict` writes both only for several images.
    """

    question: str
    image_size: tuple[int, int]
    steps: list[LoopStep]
    decision: Decision
    crops: list[Box]
    method: str
    stop_rule: str
    maps: list[AttributionMap] = field(default_factory=list, repr=False)
    base_answer: str | None = None
    answer: str | None = None
    forwards: list[RecordedPrompt] = field(default_factory=list, repr=False)
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    crop_sources: list[int] = field(default_factory=list)

    @property
    def regions(self) -> list[Region]:
        """The ranked regions of the first map (the user's images alone)."""
        return self.steps[0].regions if self.steps else []

    @property
    def region_sources(self) -> list[int]:
        """The index of the user image each of :attr:`regions` lies in."""
        step = self.steps[0] if self.steps else None
        if step is None or step.region_sources is None:
            return [0] * len(self.regions)
        return list(step.region_sources)

    @property
    def first_map(self) -> AttributionMap:
        return self.maps[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "image_size": list(self.image_size),
            "method": self.method,
            "stop_rule": self.stop_rule,
            "decision": self.decision.to_dict(),
            "crops": [list(b) for b in self.crops],
            **(
                {
                    "image_sizes": [list(s) for s in self.image_sizes],
                    "crop_sources": self.crop_sources,
                }
                if len(self.image_sizes) > 1
                else {}
            ),
            "base_answer": self.base_answer,
            "answer": self.answer,
            "steps": [s.to_dict() for s in self.steps],
        }
