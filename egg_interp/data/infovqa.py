"""InfographicVQA loader, with OCR-proxy grounding from the official Textract OCR.

Expected layout (the official per-split archives, unpacked under one folder)::

    data_root/{split}/
        infographic[s]VQA_{split}_v1.0[_withQT].json   questions (data[])
        images/<image_local_name>                       images; a folder named after the
                                                        questions file with "_images" is
                                                        also accepted
        ocr_results/<ocr_output_file>                   Amazon Textract OCR (optional)

The boxes are the OCR words matching the answers under the rule of
:mod:`egg_interp.data._common` (``box_source="ocr-proxy"``: the benchmark has no evidence
boxes). Textract gives each WORD block a ``Geometry.BoundingBox`` of ``Left``, ``Top``
(upper edge), ``Width`` and ``Height`` as fractions of the page; they are multiplied by the
image size, which is read from the image header when the samples are built (the pixels are
not decoded). Both the raw Textract output (``{"Blocks": [...]}``) and the release's
grouped form (``{"WORD": [...], "LINE": [...], ...}``) are read.
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
    image_size,
    lazy_image,
    ocr_proxy,
    read_json,
    scale_box,
    warn_missing,
    xywh_to_box,
)
from egg_interp.data.sample import Box, Sample
from egg_interp.errors import DatasetFormatError

SPLITS = ("train", "val", "test")


def _questions_file(split_dir: Path, split: str) -> Path:
    pattern = f"infographic*VQA_{split}_v1.0*.json"
    found = sorted(split_dir.glob(pattern), key=lambda p: ("withQT" not in p.name, p.name))
    if not found:
        raise DatasetFormatError(f"InfographicVQA questions file not found: {split_dir / pattern}")
    return found[0]


def _image_dir(split_dir: Path, questions_path: Path) -> Path:
    stem = questions_path.stem
    candidates = [
        split_dir / "images",
        split_dir / f"{stem}_images",
        split_dir / f"{stem.removesuffix('_withQT')}_images",
    ]
    return next((d for d in candidates if d.is_dir()), candidates[0])


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
    InputError
        An image needed for its size is missing or unreadable.
    """
    check_split(split, SPLITS, "infovqa")
    check_limit(limit)
    split_dir = Path(data_root) / split
    questions_path = _questions_file(split_dir, split)
    data = get_list(read_json(questions_path), "data", questions_path, "top level")
    if limit is not None:
        data = data[:limit]
    image_dir = _image_dir(split_dir, questions_path)
    ocr_dir = split_dir / "ocr_results"
    has_ocr = ocr_dir.is_dir()
    if data and not has_ocr:
        warn_missing("InfographicVQA OCR folder", ocr_dir)

    sizes: dict[Path, tuple[int, int]] = {}
    words_by_file: dict[Path, list[tuple[str, Box]]] = {}
    samples = []
    for index, record in enumerate(data):
        where = f"data[{index}]"
        question_id = get_field(record, "questionId", questions_path, where, (str, int))
        question = get_field(record, "question", questions_path, where, str)
        image_name = get_field(record, "image_local_name", questions_path, where, str)
        answers = get_answers(record, questions_path, where, optional=split == "test")
        image_path = image_dir / image_name

        boxes: list[Box] = []
        words: list[str] = []
        dropped = 0
        size = None
        if has_ocr:
            ocr_name = get_field(record, "ocr_output_file", questions_path, where, str)
            ocr_path = ocr_dir / ocr_name
            if ocr_path not in words_by_file:
                words_by_file[ocr_path] = _read_words(ocr_path)
            if image_path not in sizes:
                sizes[image_path] = image_size(image_path)
            size = sizes[image_path]
            width, height = size
            tokens = [
                (word, scale_box(box, width, height)) for word, box in words_by_file[ocr_path]
            ]
            boxes, words, dropped = ocr_proxy(tokens, answers, width, height)
        samples.append(
            Sample(
                id=str(question_id),
                question=question,
                answers=answers,
                load_image=lazy_image(image_path),
                boxes=boxes,
                box_source="ocr-proxy" if has_ocr else "none",
                dataset="infovqa",
                family="",
                meta={
                    "answer_type": record.get("answer_type", []),
                    "evidence": record.get("evidence", []),
                    "operation/reasoning": record.get("operation/reasoning", []),
                    "image_size": size,
                    "proxy_words": words,
                    "dropped_boxes": dropped,
                },
            )
        )
    return samples


def _read_words(path: Path) -> list[tuple[str, Box]]:
    """``(word, box in page fractions)`` for every WORD block of a Textract file."""
    content = read_json(path)
    if isinstance(content, dict) and "Blocks" in content:
        blocks = get_list(content, "Blocks", path, "top level")
        field = "Blocks"
        blocks = [(i, b) for i, b in enumerate(blocks) if isinstance(b, dict)]
        blocks = [(i, b) for i, b in blocks if b.get("BlockType") == "WORD"]
    elif isinstance(content, dict) and "WORD" in content:
        field = "WORD"
        blocks = list(enumerate(get_list(content, "WORD", path, "top level")))
    else:
        raise DatasetFormatError(f"{path}: top level: missing field 'Blocks' (or 'WORD')")
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
    return tokens
