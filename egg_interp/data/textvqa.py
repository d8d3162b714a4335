"""TextVQA loader, with OCR-proxy grounding from the Rosetta OCR release.

Accepted layouts under ``data_root`` (the first found wins)::

    TextVQA_0.5.1_{split}.json               the official files, unzipped side by side:
    TextVQA_Rosetta_OCR_v0.2_{split}.json    questions (data[]), OCR tokens (optional; no
    train_images/{image_id}.jpg              boxes without it), images of train and val
    test_images/{image_id}.jpg               (train_val_images.zip) and of test

    data/{train,validation,test}-*.parquet   lmms-eval's export (lmms-lab/textvqa): one row
    TextVQA_Rosetta_OCR_v0.2_{split}.json    per question, the image as encoded bytes; its
                                             own ocr_tokens carry no boxes. With the Rosetta
                                             OCR file in data_root or beside the shards, its
                                             tokens are joined by image_id and give boxes as
                                             above (sized by the row's own image); without
                                             it: answer metrics only

There are no official evidence boxes. The boxes are the Rosetta OCR tokens matching the
most common answer(s) under the rule of :mod:`egg_interp.data._common`
(``box_source="ocr-proxy"``). Rosetta boxes are fractions of the image; they are multiplied
by the size of the image file itself (read from its header when the samples are built), not
by the question's ``image_width`` / ``image_height``, which can differ from the file. A
missing or unreadable image gives a sample without boxes and ``meta["problem"]`` (and an
``error`` line when the runner reaches it) instead of ending the load.
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
    image_size_or_problem,
    ocr_proxy,
    read_json,
    warn_missing,
    xywh_to_box,
)
from egg_interp.data._ocr import OcrPage, OcrQuestion, ocr_proxy_samples, page_in_pixels
from egg_interp.data._parquet import (
    HF_SPLIT_NAMES,
    as_str_list,
    parquet_image_size_or_problem,
    parquet_shards,
    read_parquet_rows,
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
    if not questions_path.exists():
        shards = parquet_shards(root, ("data", ""), HF_SPLIT_NAMES[split])
        if shards:
            return _load_parquet(shards, split, limit, root)
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
    questions = [
        OcrQuestion(
            id=row["id"],
            question=row["question"],
            answers=row["answers"],
            image=image_dir / f"{row['image_id']}.jpg",
            page=row["image_id"] if ocr is not None else None,
            meta={"image_id": row["image_id"], "json_image_size": (row["width"], row["height"])},
            fallback_size=(row["width"], row["height"]),
        )
        for row in rows
    ]

    def read_page(image_id: str) -> OcrPage:
        assert ocr is not None
        if image_id not in ocr:
            raise DatasetFormatError(f"{ocr_path}: no entry with image_id '{image_id}'")
        size, problem = image_size_or_problem(image_dir / f"{image_id}.jpg")
        return page_in_pixels(size, ocr[image_id], problem)

    return ocr_proxy_samples(questions, read_page, "textvqa", split, vote=True)


def _load_parquet(shards: list[Path], split: str, limit: int | None, root: Path) -> list[Sample]:
    """lmms-lab/textvqa rows: image_id, question_id, question, image, answers, ocr_tokens, ...

    Joined with the Rosetta OCR file when it sits in ``root`` or beside the shards."""
    rows = read_parquet_rows(
        shards,
        ("image_id", "question_id", "question"),
        limit,
        optional=("answers", "image_width", "image_height"),
    )
    name = f"TextVQA_Rosetta_OCR_v0.2_{split}.json"
    candidates = list(dict.fromkeys([root / name, shards[0].parent / name]))
    ocr_path = next((p for p in candidates if p.exists()), None)
    ocr = None
    if rows and ocr_path is not None:
        ocr = _read_ocr(ocr_path, {str(record["image_id"]) for _, record in rows})
    samples = []
    for where, record in rows:
        path = record["_path"]
        image_id = str(get_field(record, "image_id", path, where, (str, int)))
        answers = as_str_list(record.get("answers"), path, where, "answers")
        meta: dict[str, Any] = {"image_id": image_id}
        boxes: list[Box] = []
        problem = ""
        if ocr is None:
            meta["source"] = "parquet export (OCR tokens without boxes: no boxes)"
        else:
            if image_id not in ocr:
                raise DatasetFormatError(f"{ocr_path}: no entry with image_id '{image_id}'")
            size, problem = parquet_image_size_or_problem(record["_image_at"])
            words, dropped = [], 0
            if size is not None:
                tokens = page_in_pixels(size, ocr[image_id]).tokens
                boxes, words, dropped = ocr_proxy(tokens, answers, *size)
            meta.update(
                source="parquet export + Rosetta OCR",
                image_size=size,
                json_image_size=(record.get("image_width"), record.get("image_height")),
                proxy_words=words,
                dropped_boxes=dropped,
            )
            if problem:
                meta["problem"] = problem
        samples.append(
            Sample(
                id=str(get_field(record, "question_id", path, where, (str, int))),
                question=get_field(record, "question", path, where, str),
                answers=answers,
                load_image=record["_image"],
                boxes=boxes,
                box_source="ocr-proxy" if ocr is not None and not problem else "none",
                dataset="textvqa",
                split=split,
                meta=meta,
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
