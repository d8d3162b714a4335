"""V* Bench loader (multiple choice about small details in high-resolution images).

Accepted layouts under ``data_root`` (the first found wins)::

    direct_attributes/     sa_XXXX.jpg + sa_XXXX.json  the official release, unchanged
    relative_position/     sa_XXXX.jpg + sa_XXXX.json  (115 + 76 questions)

    data/test-*.parquet    lmms-eval's export (lmms-lab/vstar-bench; also test-*.parquet at
                           the root): one row per question, columns question_id, text (the
                           question, then one "(A) option" per line), label (the correct
                           letter), category (the family), image (encoded bytes). No boxes:
                           answer metrics only

Each official JSON holds ``target_object`` (names), ``bbox`` (one ``[x, y, w, h]`` in pixels
per target), ``question`` and ``options`` (the first option is the correct one). The image is
the file next to the JSON with the same stem (``.jpg``, ``.jpeg`` or ``.png``). The export
carries neither the boxes nor the file names, so its rows cannot be joined with the JSONs;
where the official folders are present they are read instead.

How the question is shown
-------------------------
Because the correct option always comes first in the files, the options are shuffled with a
seed derived from the sample id (stable across runs and machines; pass
``shuffle_options=False`` to keep the file order) and folded into the question as lettered
lines followed by :data:`MC_INSTRUCTION`::

    What is the color of the cup?
    (A) white
    (B) red
    Answer with the option's letter from the given choices directly.

``Sample.options`` holds the options in the order shown, ``Sample.answers`` the correct
option's text, and ``meta["answer_letter"]`` its letter. The export's options are already
in a shuffled order that its ``label`` refers to: they are shown in that order.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from egg_interp.data._common import (
    check_limit,
    check_split,
    clip_boxes,
    get_field,
    get_list,
    image_size_or_problem,
    lazy_image,
    read_json,
    stable_shuffle,
    xywh_to_box,
)
from egg_interp.data._parquet import parquet_shards, read_parquet_rows
from egg_interp.data.sample import Sample
from egg_interp.errors import DatasetFormatError

FAMILIES = ("direct_attributes", "relative_position")
SPLITS = ("test", *FAMILIES)
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_OPTION_MARK = re.compile(r"\(([A-Z])\)[ \t]*")


def format_question(question: str, options: list[str]) -> str:
    """Fold lettered options and :data:`MC_INSTRUCTION` into the question.

    >>> print(format_question("Which?", ["left", "right"]))
    Which?
    (A) left
    (B) right
    Answer with the option's letter from the given choices directly.
    """
    lines = [question.strip()]
    lines += [f"({chr(ord('A') + i)}) {option}" for i, option in enumerate(options)]
    lines.append(MC_INSTRUCTION)
    return "\n".join(lines)


def split_options(text: str) -> tuple[str, list[str]] | None:
    """Split an export's question text into the question and its lettered options.

    The options follow the question as ``(A) ...``, ``(B) ...`` (one a line, or inline);
    anything after the last option's line (an instruction) is dropped. ``None`` when there
    are not at least two options lettered from A in order.

    >>> split_options("What is the color of the cup?\\n(A) white\\n(B) red\\nAnswer directly.")
    ('What is the color of the cup?', ['white', 'red'])
    >>> split_options("Where is it? (A) left (B) right")
    ('Where is it?', ['left', 'right'])
    """
    marks = []
    for mark in _OPTION_MARK.finditer(text):
        if mark.group(1) == chr(ord("A") + len(marks)):
            marks.append(mark)
    if len(marks) < 2:
        return None
    options = [
        text[mark.end() : following.start()].strip() for mark, following in zip(marks, marks[1:])
    ]
    options.append(text[marks[-1].end() :].split("\n", 1)[0].strip())
    return text[: marks[0].start()].strip(), options


def _image_for(json_path: Path) -> Path:
    """The image next to the JSON (the ``.jpg`` path when none exists: loading it then fails)."""
    for suffix in _IMAGE_SUFFIXES:
        candidate = json_path.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return json_path.with_suffix(_IMAGE_SUFFIXES[0])


def load(
    data_root: str | Path,
    split: str = "test",
    limit: int | None = None,
    shuffle_options: bool = True,
) -> list[Sample]:
    """Load V* Bench.

    Parameters
    ----------
    data_root : str or Path
        Folder holding ``direct_attributes/`` and ``relative_position/``, or the export.
    split : str
        ``"test"`` (both families) or one family name (the export's rows are filtered by
        ``category``).
    limit : int, optional
        Keep at most this many samples (families in the order above, files sorted by name;
        the export's rows in file order).
    shuffle_options : bool
        Shuffle the options with a per-sample seed (default) or keep the file order. The
        export's order is always kept (its label refers to it).

    Returns
    -------
    list of Sample
        ``id`` is ``"<family>/<file stem>"``, ``family`` the folder name, ``boxes`` the target
        boxes ``(x0, y0, x1, y1)`` clipped to the image (image size read from its header),
        ``box_source="annotation"``. A missing or unreadable image gives a sample without
        boxes and ``meta["problem"]`` (an ``error`` line when the runner reaches it). From the
        export: ``id`` is the ``question_id``, ``family`` the ``category``, no boxes.

    Raises
    ------
    DatasetFormatError
        A folder, JSON file or field is missing or malformed.
    """
    check_split(split, SPLITS, "vstar")
    check_limit(limit)
    root = Path(data_root)
    families = FAMILIES if split == "test" else (split,)
    if not any((root / family).is_dir() for family in FAMILIES):
        shards = parquet_shards(root, ("data", ""), ("test",))
        if shards:
            return _load_parquet(shards, split, limit)
        tried = ", ".join(
            str(p) for p in [*(root / f for f in families), root / "data" / "test-*.parquet"]
        )
        raise DatasetFormatError(f"V* folder not found; looked for: {tried}")
    samples: list[Sample] = []
    for family in families:
        folder = root / family
        if not folder.is_dir():
            raise DatasetFormatError(f"{folder}: V* folder not found")
        for json_path in sorted(folder.glob("*.json")):
            if limit is not None and len(samples) >= limit:
                return samples
            samples.append(_sample(json_path, family, shuffle_options, split))
    return samples


def _sample(json_path: Path, family: str, shuffle_options: bool, split: str) -> Sample:
    record = read_json(json_path)
    where = "top level"
    question = get_field(record, "question", json_path, where, str)
    options = [str(o) for o in get_list(record, "options", json_path, where)]
    if len(options) < 2:
        raise DatasetFormatError(f"{json_path}: field 'options' needs at least two options")
    raw_boxes = get_list(record, "bbox", json_path, where)
    targets = get_field(record, "target_object", json_path, where, (list, str))
    boxes = [xywh_to_box(b, json_path, f"bbox[{i}]") for i, b in enumerate(raw_boxes)]
    if not boxes:
        raise DatasetFormatError(f"{json_path}: field 'bbox' is empty")

    image_path = _image_for(json_path)
    size, problem = image_size_or_problem(image_path)
    dropped = 0
    if size is None:
        boxes = []
    else:
        boxes, dropped = clip_boxes(boxes, *size)

    sample_id = f"{family}/{json_path.stem}"
    correct = options[0]
    shown = stable_shuffle(options, sample_id) if shuffle_options else options
    letter = chr(ord("A") + shown.index(correct))
    meta = {
        "raw_question": question,
        "answer_letter": letter,
        "target_object": targets if isinstance(targets, list) else [targets],
        "image_size": size,
        "image_path": str(image_path),
        "dropped_boxes": dropped,
    }
    if problem:
        meta["problem"] = problem
    return Sample(
        id=sample_id,
        question=format_question(question, shown),
        answers=[correct],
        load_image=lazy_image(image_path),
        boxes=boxes,
        box_source="none" if problem else "annotation",
        dataset="vstar",
        family=family,
        split=split,
        options=shown,
        meta=meta,
    )


def _load_parquet(shards: list[Path], split: str, limit: int | None) -> list[Sample]:
    """lmms-lab/vstar-bench rows: question_id, text, label, category, image."""
    by_family = split != "test"
    columns = ("question_id", "text", "label", *(("category",) if by_family else ()))
    optional = () if by_family else ("category",)
    rows = read_parquet_rows(shards, columns, None if by_family else limit, optional)
    samples: list[Sample] = []
    for where, record in rows:
        path = record["_path"]
        category = str(record.get("category") or "")
        if by_family and category != split:
            continue
        if limit is not None and len(samples) >= limit:
            break
        samples.append(_parquet_sample(record, path, where, category, split))
    return samples


def _parquet_sample(
    record: dict[str, Any], path: Path, where: str, category: str, split: str
) -> Sample:
    text = get_field(record, "text", path, where, str)
    parsed = split_options(text)
    if parsed is None:
        raise DatasetFormatError(
            f"{path}: {where}: field 'text' has no lettered options (A), (B), ..."
        )
    question, options = parsed
    label = get_field(record, "label", path, where, str).strip().upper()
    letters = [chr(ord("A") + i) for i in range(len(options))]
    if label not in letters:
        raise DatasetFormatError(
            f"{path}: {where}: field 'label' should be one of {', '.join(letters)}, got {label!r}"
        )
    return Sample(
        id=str(get_field(record, "question_id", path, where, (str, int))),
        question=format_question(question, options),
        answers=[options[letters.index(label)]],
        load_image=record["_image"],
        box_source="none",
        dataset="vstar",
        family=category,
        split=split,
        options=options,
        meta={
            "raw_question": question,
            "answer_letter": label,
            "source": "parquet export (no boxes)",
        },
    )
