"""The one sample type every dataset loader yields."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
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
    split : str
        The split (or variant) actually loaded, e.g. ``"val"``, ``"random"``,
        ``"aokvqa_popular"``; what the runner records in every result line.
    options : list of str
        Multiple-choice options (V*), empty otherwise.
    meta : dict
        Anything else the loader wants to keep (image size, question type, ...).
        ``meta["problem"]``, when present, says why a sample has no boxes although its
        benchmark has them (``"<kind>: <detail>"``, kinds in :data:`PROBLEM_KINDS`); the
        runner counts these at the end of a run (:func:`count_problems`).
    """

    id: str
    question: str
    answers: list[str]
    load_image: Callable[[], Image.Image]
    boxes: list[Box] = field(default_factory=list)
    box_source: str = "none"
    dataset: str = ""
    family: str = ""
    split: str = ""
    options: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def image(self) -> Image.Image:
        """The image, loaded now (RGB)."""
        return self.load_image()


PROBLEM_KINDS = {
    "image-missing": "the image file is missing (the sample becomes an error line)",
    "image-unreadable": "the image file is not a readable image (an error line)",
    "ocr-missing": "no OCR file for the page: no boxes",
    "ocr-empty": "the OCR file holds no words (empty file, or no WORD blocks): no boxes",
    "ocr-failed": "the OCR run failed for the page (empty recognitionResults): no boxes",
}
"""What can go wrong with one sample without ending the load, and what it costs."""


def count_problems(samples: Iterable[Sample]) -> dict[str, int]:
    """How many samples carry each kind of ``meta["problem"]`` (kinds sorted by name).

    >>> s = Sample("1", "q", [], lambda: None, meta={"problem": "ocr-empty: a.json"})
    >>> count_problems([s, s])
    {'ocr-empty': 2}
    """
    counts = Counter(
        str(s.meta["problem"]).split(":", 1)[0] for s in samples if s.meta.get("problem")
    )
    return dict(sorted(counts.items()))


def describe_problems(counts: dict[str, int]) -> str:
    """One line for the end of a run, e.g. ``"2 samples loaded with a problem: 2 ocr-empty"``."""
    if not counts:
        return ""
    total = sum(counts.values())
    parts = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    return f"{total} sample{'s' if total != 1 else ''} loaded with a problem: {parts}"
