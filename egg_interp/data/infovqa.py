"""InfographicVQA loader, with OCR-proxy grounding from the official Textract OCR.

Accepted layouts under ``data_root`` (the first found wins)::

    {split}/infographic[s]VQA_{split}_v1.0[_withQT].json   the per-split archives
    {split}/images/<image_local_name>                       (a folder named after the
                                                            questions file + "_images" too)
    {split}/ocr_results/<ocr_output_file>                   Amazon Textract OCR (optional)

    infographicsvqa_qas/infographicsVQA_{split}_v1.0[_withQT].json   the challenge release
    infographicsvqa_images/<image_local_name>
    infographicsvqa_ocr/<ocr_output_file>                            (optional)

    InfographicVQA/{validation,test}-*.parquet   lmms-eval's export (lmms-lab/DocVQA, config
                                                 InfographicVQA): one row per question, the
                                                 image as encoded bytes; no boxes are built
                                                 from it: answer metrics only

The boxes are the OCR words matching the answers under the rule of
:mod:`egg_interp.data._common` (``box_source="ocr-proxy"``: the benchmark has no evidence
boxes). Textract gives each WORD block a ``Geometry.BoundingBox`` of ``Left``, ``Top``
(upper edge), ``Width`` and ``Height`` as fractions of the page; they are multiplied by the
image size, which is read from the image header when the samples are built (the pixels are
not decoded). Both the raw Textract output (``{"Blocks": [...]}``) and the release's
grouped form (``{"WORD": [...], "LINE": [...], ...}``) are read. The answers are variants,
so all of them count.

One bad sample never ends the load (the images were first distributed as URLs to fetch, so
missing ones are common): a missing image, a missing or empty OCR file, or one without
``WORD`` blocks gives a sample without boxes and ``meta["problem"]`` (counted at the end of
a run; a missing image also becomes an ``error`` line). A malformed OCR file still raises
:class:`~egg_interp.errors.DatasetFormatError` naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from egg_interp.data._common import (
    check_limit,
    check_split,
    get_answers,
    get_field,
    get_list,
    image_size_or_problem,
    read_json,
    warn_missing,
    xywh_to_box,
)
from egg_interp.data._ocr import OcrPage, OcrQuestion, ocr_proxy_samples, page_in_pixels
from egg_interp.data._parquet import HF_SPLIT_NAMES, parquet_shards, question_samples
from egg_interp.data.sample import Box, Sample
from egg_interp.errors import DatasetFormatError

SPLITS = ("train", "val", "test")


def _questions_file(folder: Path, split: str) -> Path | None:
    pattern = f"infographic*VQA_{split}_v1.0*.json"
    found = sorted(folder.glob(pattern), key=lambda p: ("withQT" not in p.name, p.name))
    return found[0] if found else None


def _image_dir(split_dir: Path, questions_path: Path) -> Path:
    stem = questions_path.stem
    candidates = [
        split_dir / "images",
        split_dir / f"{stem}_images",
        split_dir / f"{stem.removesuffix('_withQT')}_images",
    ]
    return next((d for d in candidates if d.is_dir()), candidates[0])


def _find_layout(root: Path, split: str) -> tuple[Path, Path, Path] | None:
    """``(questions file, image folder, OCR folder)`` of the first layout found."""
    split_dir = root / split
    questions = _questions_file(split_dir, split)
    if questions is not None:
        return questions, _image_dir(split_dir, questions), split_dir / "ocr_results"
    questions = _questions_file(root / "infographicsvqa_qas", split)
    if questions is not None:
        return questions, root / "infographicsvqa_images", root / "infographicsvqa_ocr"
    return None


def load(data_root: str | Path, split: str = "val", limit: int | None = None) -> list[Sample]:
    """Load InfographicVQA questions with OCR-proxy evidence boxes.

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
        ``id`` is the ``questionId``; ``meta`` holds ``answer_type``, ``evidence``,
        ``operation/reasoning`` (val), ``image_size`` and ``proxy_words``.

    Raises
    ------
    DatasetFormatError
        A file or field is missing or malformed.
    """
    check_split(split, SPLITS, "infovqa")
    check_limit(limit)
    root = Path(data_root)
    layout = _find_layout(root, split)
    if layout is None:
        shards = parquet_shards(root, ("InfographicVQA", ""), HF_SPLIT_NAMES[split])
        if shards:
            return _load_parquet(shards, split, limit)
        pattern = f"infographic*VQA_{split}_v1.0*.json"
        tried = [
            root / split / pattern,
            root / "infographicsvqa_qas" / pattern,
            root / "InfographicVQA" / f"{HF_SPLIT_NAMES[split][0]}-*.parquet",
        ]
        raise DatasetFormatError(
            f"InfographicVQA questions file not found; looked for: {', '.join(map(str, tried))}"
        )
    questions_path, image_dir, ocr_dir = layout
    data = get_list(read_json(questions_path), "data", questions_path, "top level")
    if limit is not None:
        data = data[:limit]
    has_ocr = ocr_dir.is_dir()
    if data and not has_ocr:
        warn_missing("InfographicVQA OCR folder", ocr_dir)
    questions = [
        _question(record, layout, f"data[{index}]", split, has_ocr)
        for index, record in enumerate(data)
    ]
    return ocr_proxy_samples(questions, _read_page, "infovqa", split, vote=False)


def _question(
    record: Any, layout: tuple[Path, Path, Path], where: str, split: str, has_ocr: bool
) -> OcrQuestion:
    """One question record; its page is ``(OCR file, image)`` when the OCR folder exists."""
    path, image_dir, ocr_dir = layout
    image = image_dir / get_field(record, "image_local_name", path, where, str)
    page = None
    if has_ocr:
        page = (ocr_dir / get_field(record, "ocr_output_file", path, where, str), image)
    return OcrQuestion(
        id=str(get_field(record, "questionId", path, where, (str, int))),
        question=get_field(record, "question", path, where, str),
        answers=get_answers(record, path, where, optional=split == "test"),
        image=image,
        page=page,
        meta={
            "answer_type": record.get("answer_type", []),
            "evidence": record.get("evidence", []),
            "operation/reasoning": record.get("operation/reasoning", []),
        },
    )


def _read_page(page: tuple[Path, Path]) -> OcrPage:
    """The Textract words of ``(OCR file, image)`` scaled to the image file's size; the
    image's problem (missing, unreadable) first, then the OCR file's."""
    ocr_path, image = page
    size, problem = image_size_or_problem(image)
    words, ocr_problem = _read_words(ocr_path)
    problem = problem or ocr_problem
    return page_in_pixels(size, [] if problem else words, problem)


def _load_parquet(shards: list[Path], split: str, limit: int | None) -> list[Sample]:
    """lmms-lab InfographicVQA rows: questionId, question, answers, answer_type, image, ..."""
    return question_samples(
        shards,
        "infovqa",
        split,
        limit,
        ("answers", "answer_type", "operation/reasoning", "image_url"),
        lambda r: {
            "answer_type": r.get("answer_type") or [],
            "operation/reasoning": r.get("operation/reasoning") or [],
            "image_url": r.get("image_url"),
            "source": "parquet export (no boxes)",
        },
    )


_GROUPED_KEYS = ("WORD", "LINE", "PAGE")
"""Keys of the release's grouped Textract form (one list per block type)."""


def _read_words(path: Path) -> tuple[list[tuple[str, Box]], str]:
    """``(word, box in page fractions)`` for every WORD block of a Textract file, and a
    problem (``""`` when none: a missing or empty file, or no WORD block)."""
    if not path.exists():
        return [], f"ocr-missing: {path}"
    if path.is_file() and not path.read_bytes().strip():
        return [], f"ocr-empty: {path}"
    content = read_json(path)
    if isinstance(content, dict) and "Blocks" in content:
        blocks = get_list(content, "Blocks", path, "top level")
        field = "Blocks"
        blocks = [(i, b) for i, b in enumerate(blocks) if isinstance(b, dict)]
        blocks = [(i, b) for i, b in blocks if b.get("BlockType") == "WORD"]
    elif isinstance(content, dict) and any(key in content for key in _GROUPED_KEYS):
        field = "WORD"
        blocks = []
        if "WORD" in content:
            blocks = list(enumerate(get_list(content, "WORD", path, "top level")))
    else:
        raise DatasetFormatError(f"{path}: top level: missing field 'Blocks' (or 'WORD')")
    if not blocks:
        return [], f"ocr-empty: {path} (no WORD blocks)"
    tokens = []
    for i, block in blocks:
        where = f"{field}[{i}]"
        text = get_field(block, "Text", path, where, str)
        geometry: Any = get_field(block, "Geometry", path, where, dict)
        box = get_field(geometry, "BoundingBox", path, f"{where}.Geometry", dict)
        box_where = f"{where}.Geometry.BoundingBox"
        ltwh = [
            get_field(box, key, path, box_where, (int, float))
            for key in ("Left", "Top", "Width", "Height")
        ]
        tokens.append((text, xywh_to_box(ltwh, path, box_where)))
    return tokens, ""
