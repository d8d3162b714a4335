"""V* Bench loader (multiple choice about small details in high-resolution images).

Expected layout (the official release, unchanged)::

    data_root/
        direct_attributes/   sa_XXXX.jpg + sa_XXXX.json  (115 questions)
        relative_position/   sa_XXXX.jpg + sa_XXXX.json  (76 questions)

Each JSON holds ``target_object`` (names), ``bbox`` (one ``[x, y, w, h]`` in pixels per
target), ``question`` and ``options`` (the first option is the correct one). The image is
the file next to the JSON with the same stem (``.jpg``, ``.jpeg`` or ``.png``).

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
option's text, and ``meta["answer_letter"]`` its letter.
"""

from __future__ import annotations

from pathlib import Path

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
from egg_interp.data.sample import Sample
from egg_interp.errors import DatasetFormatError

FAMILIES = ("direct_attributes", "relative_position")
SPLITS = ("test", *FAMILIES)
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


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
        Folder holding ``direct_attributes/`` and ``relative_position/``.
    split : str
        ``"test"`` (both families) or one family name.
    limit : int, optional
        Keep at most this many samples (families in the order above, files sorted by name).
    shuffle_options : bool
        Shuffle the options with a per-sample seed (default) or keep the file order.

    Returns
    -------
    list of Sample
        ``id`` is ``"<family>/<file stem>"``, ``family`` the folder name, ``boxes`` the target
        boxes ``(x0, y0, x1, y1)`` clipped to the image (image size read from its header),
        ``box_source="annotation"``. A missing or unreadable image gives a sample without
        boxes and ``meta["problem"]`` (an ``error`` line when the runner reaches it).

    Raises
    ------
    DatasetFormatError
        A folder, JSON file or field is missing or malformed.
    """
    check_split(split, SPLITS, "vstar")
    check_limit(limit)
    root = Path(data_root)
    families = FAMILIES if split == "test" else (split,)
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
