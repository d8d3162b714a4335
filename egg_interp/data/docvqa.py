"""DocVQA (single-page, task 1) loader, with OCR-proxy grounding from the official OCR.

Expected layout (the official per-split archives, unpacked under one folder)::

    data_root/{split}/
        {split}_v1.0_withQT.json  (or {split}_v1.0.json)   questions (data[])
        documents/<name>.png                                 page images (the "image" field)
        ocr_results/<name>.json                              Microsoft Read OCR (optional)

The boxes are the OCR words matching the answers under the rule of
:mod:`egg_interp.data._common` (``box_source="ocr-proxy"``: DocVQA has no evidence boxes).
Each OCR word's ``boundingBox`` is a 4-point polygon of 8 pixel numbers; its axis-aligned
hull is used. The page size comes from the OCR's ``width``/``height`` (``unit`` must be
``"pixel"``), or from the image header when those are absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from egg_interp.data._common import (
    check_limit,
    check_split,
    find_file,
    get_answers,
    get_field,
    get_list,
    get_size,
    image_size,
    lazy_image,
    ocr_proxy,
    polygon_to_box,
    read_json,
    warn_missing,
)
from egg_interp.data.sample import Box, Sample
from egg_interp.errors import DatasetFormatError

SPLITS = ("train", "val", "test")

_Page = tuple[tuple[float, float], list[tuple[str, Box]]]


def load(data_root: str | Path, split: str = "val", limit: int | None = None) -> list[Sample]:
    """Load DocVQA questions with OCR-proxy evidence boxes.

    Parameters
    ----------
    data_root : str or Path
        Folder holding one sub-folder per split, laid out as in the module docstring.
    split : str
        ``"train"``, ``"val"`` (default) or ``"test"`` (no answers, so no boxes).
    limit : int, optional
        Keep the first ``limit`` questions of the file.

    Returns
    -------
    list of Sample
        ``id`` is the ``questionId``; ``meta`` holds ``docId``, ``question_types``,
        ``image_size`` and ``proxy_words``.

    Raises
    ------
    DatasetFormatError
        A file or field is missing or malformed.
    """
    check_split(split, SPLITS, "docvqa")
    check_limit(limit)
    split_dir = Path(data_root) / split
    questions_path = find_file(
        [split_dir / f"{split}_v1.0_withQT.json", split_dir / f"{split}_v1.0.json"],
        "DocVQA questions file",
    )
    data = get_list(read_json(questions_path), "data", questions_path, "top level")
    if limit is not None:
        data = data[:limit]
    ocr_dir = split_dir / "ocr_results"
    has_ocr = ocr_dir.is_dir()
    if data and not has_ocr:
        warn_missing("DocVQA OCR folder", ocr_dir)

    pages: dict[Path, _Page] = {}
    samples = []
    for index, record in enumerate(data):
        where = f"data[{index}]"
        question_id = get_field(record, "questionId", questions_path, where, (str, int))
        question = get_field(record, "question", questions_path, where, str)
        image_rel = get_field(record, "image", questions_path, where, str)
        answers = get_answers(record, questions_path, where, optional=split == "test")
        image_path = split_dir / image_rel

        boxes: list[Box] = []
        words: list[str] = []
        dropped = 0
        size = None
        if has_ocr:
            ocr_path = ocr_dir / f"{Path(image_rel).stem}.json"
            if ocr_path not in pages:
                pages[ocr_path] = _read_page(ocr_path, image_path)
            size, tokens = pages[ocr_path]
            boxes, words, dropped = ocr_proxy(tokens, answers, *size)
        samples.append(
            Sample(
                id=str(question_id),
                question=question,
                answers=answers,
                load_image=lazy_image(image_path),
                boxes=boxes,
                box_source="ocr-proxy" if has_ocr else "none",
                dataset="docvqa",
                family="",
                meta={
                    "docId": record.get("docId"),
                    "question_types": record.get("question_types", []),
                    "image_size": size,
                    "proxy_words": words,
                    "dropped_boxes": dropped,
                },
            )
        )
    return samples


def _read_page(path: Path, image_path: Path) -> _Page:
    """Page size and ``(word, pixel box)`` pairs from a Microsoft Read OCR file."""
    results = get_list(read_json(path), "recognitionResults", path, "top level")
    if not results:
        raise DatasetFormatError(f"{path}: field 'recognitionResults' is empty")
    page: Any = results[0]
    where = "recognitionResults[0]"
    if isinstance(page, dict) and "width" in page and "height" in page:
        unit = page.get("unit", "pixel")
        if unit != "pixel":
            raise DatasetFormatError(f"{path}: {where}: field 'unit' is {unit!r}, expected 'pixel'")
        size = get_size(page, path, where, ("width", "height"))
    else:
        size = image_size(image_path)
    tokens = []
    for i, line in enumerate(get_list(page, "lines", path, where)):
        line_where = f"{where}.lines[{i}]"
        for j, word in enumerate(get_list(line, "words", path, line_where)):
            word_where = f"{line_where}.words[{j}]"
            text = get_field(word, "text", path, word_where, str)
            polygon = get_field(word, "boundingBox", path, word_where, list)
            if len(polygon) != 8:
                raise DatasetFormatError(
                    f"{path}: {word_where}: field 'boundingBox' should have 8 numbers"
                )
            tokens.append((text, polygon_to_box(polygon, path, f"{word_where}.boundingBox")))
    return size, tokens
