"""The skeleton the OCR-proxy loaders share (TextVQA, DocVQA, InfographicVQA).

None of these benchmarks has evidence boxes; their grounding is the OCR words matching the
answers (:func:`egg_interp.data._common.ocr_proxy`, ``box_source="ocr-proxy"``). A loader
only knows its own layout and field names: it turns each question record into an
:class:`OcrQuestion` and each page into an :class:`OcrPage` (the page's size in pixels and its
words with pixel boxes); :func:`ocr_proxy_samples` does the rest, the same way for all three:
pages read once, boxes matched to the answers, the ``meta`` fields (``image_size``,
``proxy_words``, ``dropped_boxes``, ``problem``) and the :class:`~egg_interp.data.sample.Sample`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from egg_interp.data._common import lazy_image, ocr_proxy, scale_box
from egg_interp.data.sample import Box, Sample


@dataclass(frozen=True)
class OcrPage:
    """One page's OCR as the proxy needs it.

    Attributes
    ----------
    size : (width, height) or None
        The page (image) size in pixels; ``None`` when unknown (then no boxes).
    tokens : list of (word, Box)
        Every OCR word with its box in page pixels, ``(x0, y0, x1, y1)``.
    problem : str
        Why this page gives no boxes (``"ocr-missing: ..."``, a missing image, ...); ``""``
        when none. Recorded in the sample's ``meta["problem"]``.
    """

    size: tuple[float, float] | None
    tokens: list[tuple[str, Box]] = field(default_factory=list)
    problem: str = ""


@dataclass(frozen=True)
class OcrQuestion:
    """One question record, read by a loader from its own layout.

    Attributes
    ----------
    id, question : str
    answers : list of str
    image : Path
        The page image (opened lazily).
    page : hashable or None
        What identifies its OCR page for the loader's ``read_page`` (pages are read once);
        ``None`` when the benchmark's OCR is absent.
    meta : dict
        The loader's own fields (ids, answer types, ...).
    fallback_size : (width, height) or None
        ``meta["image_size"]`` when there is no OCR page (e.g. TextVQA's JSON size).
    """

    id: str
    question: str
    answers: list[str]
    image: Path
    page: Hashable | None
    meta: dict[str, Any] = field(default_factory=dict)
    fallback_size: tuple[float, float] | None = None


def page_in_pixels(
    size: tuple[float, float] | None, fractions: Sequence[tuple[str, Box]], problem: str = ""
) -> OcrPage:
    """A page whose OCR boxes are fractions of the page (Rosetta, Textract), scaled to ``size``
    (the image file's own, in pixels); no tokens when the size is unknown."""
    if size is None:
        return OcrPage(None, [], problem)
    width, height = size
    return OcrPage(size, [(w, scale_box(b, width, height)) for w, b in fractions], problem)


def ocr_proxy_samples(
    questions: Sequence[OcrQuestion],
    read_page: Callable[[Any], OcrPage],
    dataset: str,
    split: str,
    *,
    vote: bool,
) -> list[Sample]:
    """Samples with OCR-proxy boxes: each question's page words matching its answers.

    Parameters
    ----------
    questions : sequence of OcrQuestion
    read_page : callable
        ``read_page(question.page) -> OcrPage``; called once per distinct page.
    dataset, split : str
        Recorded on every sample.
    vote : bool
        Match only the most common answer(s) (TextVQA's ten annotators) rather than every
        answer (DocVQA and InfographicVQA list variants).

    Returns
    -------
    list of Sample
        ``box_source`` is ``"ocr-proxy"`` where the question has an OCR page without a
        problem, else ``"none"``.
    """
    pages: dict[Hashable, OcrPage] = {}
    samples = []
    for q in questions:
        page = OcrPage(q.fallback_size)
        if q.page is not None:
            if q.page not in pages:
                pages[q.page] = read_page(q.page)
            page = pages[q.page]
        boxes: list[Box] = []
        words: list[str] = []
        dropped = 0
        if q.page is not None and page.size is not None:
            boxes, words, dropped = ocr_proxy(page.tokens, q.answers, *page.size, vote=vote)
        meta = {**q.meta, "image_size": page.size, "proxy_words": words, "dropped_boxes": dropped}
        if page.problem:
            meta["problem"] = page.problem
        samples.append(
            Sample(
                id=q.id,
                question=q.question,
                answers=q.answers,
                load_image=lazy_image(q.image),
                boxes=boxes,
                box_source="ocr-proxy" if q.page is not None and not page.problem else "none",
                dataset=dataset,
                family="",
                split=split,
                meta=meta,
            )
        )
    return samples
