"""DocVQA (single-page, task 1) loader, with OCR-proxy grounding from the official OCR.

Accepted layouts under ``data_root`` (the first found wins)::

    {split}/{split}_v1.0_withQT.json       the per-split archives (or {split}_v1.0.json)
    {split}/documents/<name>.png
    {split}/ocr_results/<name>.json        Microsoft Read OCR (optional)

    spdocvqa_qas/{split}_v1.0_withQT.json  the current challenge release (or _v1.0.json)
    spdocvqa_images/<name>.png             the "image" field's file name
    spdocvqa_ocr/<name>.json               (optional)

    DocVQA/{validation,test}-*.parquet     lmms-eval's export (lmms-lab/DocVQA): one row per
                                           question, the page as encoded bytes; no OCR, so
                                           no boxes: answer metrics only

The boxes are the OCR words matching any of the answers under the rule of
:mod:`egg_interp.data._common` (``box_source="ocr-proxy"``: DocVQA has no evidence boxes;
the answers are variants, so all of them count). Each OCR word's ``boundingBox`` is a
4-point polygon of 8 pixel numbers; its axis-aligned hull is used. The page size comes from
the OCR's ``width``/``height`` (``unit`` must be ``"pixel"``), or from the image header when
those are absent.

One bad page never ends the load: a missing OCR file, an empty one, a failed OCR run
(empty ``recognitionResults``) or a missing image where its size is needed gives a sample
without boxes and ``meta["problem"]`` (counted at the end of a run). A malformed OCR file
still raises :class:`~egg_interp.errors.DatasetFormatError` naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egg_interp.data._common import (
    check_limit,
    check_split,
    get_answers,
    get_field,
    get_list,
    get_size,
    image_size_or_problem,
    polygon_to_box,
    read_json,
    warn_missing,
)
from egg_interp.data._ocr import OcrPage, OcrQuestion, ocr_proxy_samples
from egg_interp.data._parquet import HF_SPLIT_NAMES, parquet_shards, question_samples
from egg_interp.data.sample import Sample
from egg_interp.errors import DatasetFormatError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class _Layout:
    """Where one split's files are: questions, images (from the "image" field), OCR."""

    questions: Path
    image_dir: Path
    ocr_dir: Path
    flat: bool = False
    """Images sit in ``image_dir`` by file name (the "image" field's folder dropped)."""

    def image_for(self, rel: str) -> Path:
        return self.image_dir / (Path(rel).name if self.flat else rel)


def _find_layout(root: Path, split: str) -> _Layout | None:
    names = (f"{split}_v1.0_withQT.json", f"{split}_v1.0.json")
    split_dir = root / split
    for name in names:
        if (split_dir / name).exists():
            return _Layout(split_dir / name, split_dir, split_dir / "ocr_results")
    for name in names:
        if (root / "spdocvqa_qas" / name).exists():
            qas = root / "spdocvqa_qas" / name
            return _Layout(qas, root / "spdocvqa_images", root / "spdocvqa_ocr", flat=True)
    return None


def load(data_root: str | Path, split: str = "val", limit: int | None = None) -> list[Sample]:
    """Load DocVQA questions with OCR-proxy evidence boxes.

    Parameters
    ----------
    data_root : str or Path
        Folder laid out as in one of the module docstring's layouts.
    split : str
        ``"train"``, ``"val"`` (default) or ``"test"`` (no answers, so no boxes).
    limit : int, optional
        Keep the first ``limit`` questions of the file.

    Returns
    -------
    list of Sample
        ``id`` is the ``questionId``; ``meta`` holds ``docId``, ``question_types``,
        ``image_size`` and ``proxy_words`` (and ``problem`` for a page without boxes).

    Raises
    ------
    DatasetFormatError
        No layout found, or a file or field is missing or malformed.
    """
    check_split(split, SPLITS, "docvqa")
    check_limit(limit)
    root = Path(data_root)
    layout = _find_layout(root, split)
    if layout is None:
        shards = parquet_shards(root, ("DocVQA", ""), HF_SPLIT_NAMES[split])
        if shards:
            return _load_parquet(shards, split, limit)
        tried = [
            root / split / f"{split}_v1.0_withQT.json",
            root / "spdocvqa_qas" / f"{split}_v1.0_withQT.json",
            root / "DocVQA" / f"{HF_SPLIT_NAMES[split][0]}-*.parquet",
        ]
        raise DatasetFormatError(
            f"DocVQA questions file not found; looked for: {', '.join(map(str, tried))}"
        )
    questions_path = layout.questions
    data = get_list(read_json(questions_path), "data", questions_path, "top level")
    if limit is not None:
        data = data[:limit]
    has_ocr = layout.ocr_dir.is_dir()
    if data and not has_ocr:
        warn_missing("DocVQA OCR folder", layout.ocr_dir)
    questions = [
        _question(record, layout, f"data[{index}]", split, has_ocr)
        for index, record in enumerate(data)
    ]
    return ocr_proxy_samples(questions, _read_page, "docvqa", split, vote=False)


def _question(record: Any, layout: _Layout, where: str, split: str, has_ocr: bool) -> OcrQuestion:
    """One question record; its page is ``(OCR file, image)`` when the OCR folder exists."""
    path = layout.questions
    image_rel = get_field(record, "image", path, where, str)
    image = layout.image_for(image_rel)
    return OcrQuestion(
        id=str(get_field(record, "questionId", path, where, (str, int))),
        question=get_field(record, "question", path, where, str),
        answers=get_answers(record, path, where, optional=split == "test"),
        image=image,
        page=(layout.ocr_dir / f"{Path(image_rel).stem}.json", image) if has_ocr else None,
        meta={"docId": record.get("docId"), "question_types": record.get("question_types", [])},
    )


def _load_parquet(shards: list[Path], split: str, limit: int | None) -> list[Sample]:
    """lmms-lab/DocVQA rows: questionId, question, question_types, image, docId, answers."""
    return question_samples(
        shards,
        "docvqa",
        split,
        limit,
        ("answers", "question_types", "docId"),
        lambda r: {
            "docId": r.get("docId"),
            "question_types": r.get("question_types") or [],
            "source": "parquet export (no OCR: no boxes)",
        },
    )


def _read_page(page: tuple[Path, Path]) -> OcrPage:
    """Page size, ``(word, pixel box)`` pairs and a problem of one ``(OCR file, image)``."""
    path, image_path = page
    if not path.exists():
        return OcrPage(None, [], f"ocr-missing: {path}")
    if path.is_file() and not path.read_bytes().strip():
        return OcrPage(None, [], f"ocr-empty: {path}")
    content = read_json(path)
    results = get_list(content, "recognitionResults", path, "top level")
    if not results:
        status = content.get("status", "") if isinstance(content, dict) else ""
        return OcrPage(None, [], f"ocr-failed: {path} (status {status!r}, no recognitionResults)")
    page: Any = results[0]
    where = "recognitionResults[0]"
    if isinstance(page, dict) and "width" in page and "height" in page:
        unit = page.get("unit", "pixel")
        if unit != "pixel":
            raise DatasetFormatError(f"{path}: {where}: field 'unit' is {unit!r}, expected 'pixel'")
        size: tuple[float, float] | None = get_size(page, path, where, ("width", "height"))
        problem = ""
    else:
        size, problem = image_size_or_problem(image_path)
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
    if not tokens and not problem:
        problem = f"ocr-empty: {path} (no words)"
    return OcrPage(size, tokens, problem)
