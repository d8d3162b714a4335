"""The one sample type every dataset loader yields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from egg_interp.geometry import Box  # (x0, y0, x1, y1), original-image pixels


@dataclass
class Sample:
    """One question about one image, with its answers and evidence boxes.

    Attributes
    ----------
    id : str
        Unique within the dataset (used as the resume key of the runner).
    question : str
        The question text as the benchmark gives it (options folded in for multiple choice).
    answers : list of str
        Ground-truth answers (10 for VQA-style data, one for most others).
    load_image : callable returning PIL.Image.Image
        Loads the image lazily (RGB).
    boxes : list of Box
        Evidence boxes ``(x0, y0, x1, y1)`` in original-image pixels; empty when the
        benchmark has none.
    box_source : str
        ``"annotation"``, ``"ocr-proxy"`` (OCR words matching the answer: a proxy, not an
        official annotation), ``"scene"`` (synthetic, exact) or ``"none"``.
    dataset : str
        Name of the loader that produced it.
    family : str
        Question family or split bucket (e.g. ``"detail"``, ``"direct_attributes"``), or ``""``.
    options : list of str
        Multiple-choice options (V*), empty otherwise.
    meta : dict
        Anything else the loader wants to keep (image size, question type, ...).
    """

    id: str
    question: str
    answers: list[str]
    load_image: Callable[[], Image.Image]
    boxes: list[Box] = field(default_factory=list)
    box_source: str = "none"
    dataset: str = ""
    family: str = ""
    options: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def image(self) -> Image.Image:
        """The image, loaded now (RGB)."""
        return self.load_image()
