"""TextVQA loader, with OCR-proxy grounding from the Rosetta OCR release.

Expected layout (the official files, unzipped side by side)::

    data_root/
        TextVQA_0.5.1_{split}.json               questions (data[])
        TextVQA_Rosetta_OCR_v0.2_{split}.json    OCR tokens (optional; no boxes without it)
        train_images/{image_id}.jpg              images of train and val (train_val_images.zip)
        test_images/{image_id}.jpg               images of test

There are no official evidence boxes. The boxes are the Rosetta OCR tokens matching the
most common answer(s) under the rule of :mod:`egg_interp.data._common`
(``box_source="ocr-proxy"``). Rosetta boxes are fractions of the image; they are multiplied
by the question's ``image_width`` / ``image_height``.
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
    get_size,
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


def load(data_root: str | Path, split: str = "val", limit: int | None = None) -> list[Sample]:
    """Load TextVQA questions with OCR-proxy evidence boxes.

    Parameters
    ----------
    data_root : str or Path
        Folder laid out as in the module docstring.
    split : str
        ``"train"``, ``"val"`` (default) or ``"test"`` (no answers, so no boxes).
    limit : int, optional
        Keep the first ``limit`` questions of the file.

    Returns
    -------
    list of Sample
        ``id`` is the ``question_id``; ``answers`` the ten annotator answers;
        ``meta["proxy_words"]`` the OCR words behind the boxes.

    Raises
    ------
    DatasetFormatError
        A file or field is missing or malformed.
    """
    check_split(split, SPLITS, "textvqa")
    check_limit(limit)
    root = Path(data_root)
    questions_path = root / f"TextVQA_0.5.1_{split}.json"
    data = get_list(read_json(questions_path), "data", questions_path, "top level")
    if limit is not None:
        data = data[:limit]

    image_dir = root / ("test_images" if split == "test" else "train_images")
    rows = [_question(record, questions_path, f"data[{i}]", split) for i, record in enumerate(data)]

    ocr_path = root / f"TextVQA_Rosetta_OCR_v0.2_{split}.json"
    ocr = None
    if rows and ocr_path.exists():
        ocr = _read_ocr(ocr_path, {row["image_id"] for row in rows})
    elif rows:
        warn_missing("TextVQA Rosetta OCR", ocr_path)

    samples = []
    for row in rows:
        image_id, width, height = row["image_id"], row["width"], row["height"]
        boxes: list[Box] = []
        words: list[str] = []
        dropped = 0
        if ocr is not None:
            if image_id not in ocr:
                raise DatasetFormatError(f"{ocr_path}: no entry with image_id '{image_id}'")
            tokens = [(word, scale_box(box, width, height)) for word, box in ocr[image_id]]
            boxes, words, dropped = ocr_proxy(tokens, row["answers"], width, height)
        samples.append(
            Sample(
                id=row["id"],
                question=row["question"],
                answers=row["answers"],
                load_image=lazy_image(image_dir / f"{image_id}.jpg"),
                boxes=boxes,
                box_source="ocr-proxy" if ocr is not None else "none",
                dataset="textvqa",
                family="",
                meta={
                    "image_id": image_id,
                    "image_size": (width, height),
                    "proxy_words": words,
                    "dropped_boxes": dropped,
                },
            )
        )
    return samples


def _question(record: Any, path: Path, where: str, split: str) -> dict[str, Any]:
    """Validate one question record and return the fields the loader uses."""
    image_id = str(get_field(record, "image_id", path, where, (str, int)))
    question_id = get_field(record, "question_id", path, where, (str, int))
    answers = get_answers(record, path, where, optional=split == "test")
    width, height = get_size(record, path, where, ("image_width", "image_height"))
    return {
        "id": str(question_id),
        "image_id": image_id,
        "question": get_field(record, "question", path, where, str),
        "answers": answers,
        "width": width,
        "height": height,
    }


def _read_ocr(path: Path, wanted: set[str]) -> dict[str, list[tuple[str, Box]]]:
    """Map image_id -> [(word, box in image fractions)] for the ``wanted`` images."""
    entries = get_list(read_json(path), "data", path, "top level")
    out: dict[str, list[tuple[str, Box]]] = {}
    for index, entry in enumerate(entries):
        where = f"data[{index}]"
        image_id = str(get_field(entry, "image_id", path, where, (str, int)))
        if image_id not in wanted:
            continue
        tokens = []
        for j, info in enumerate(get_list(entry, "ocr_info", path, where)):
            info_where = f"{where}.ocr_info[{j}]"
            word = get_field(info, "word", path, info_where, str)
            box: dict[str, Any] = get_field(info, "bounding_box", path, info_where, dict)
            box_where = f"{info_where}.bounding_box"
            xywh = [
                get_field(box, key, path, box_where, (int, float))
                for key in ("top_left_x", "top_left_y", "width", "height")
            ]
            tokens.append((word, xywh_to_box(xywh, path, box_where)))
        out[image_id] = tokens
    return out
