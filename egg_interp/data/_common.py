"""Helpers shared by the benchmark loaders: file reading, lazy images, boxes, OCR matching.

Every loader reads the official files through these functions, so a broken file always
raises :class:`~egg_interp.errors.DatasetFormatError` with the same kind of message,
``"<file>: <where>: <what is wrong with which field>"``, and a broken image always raises
:class:`~egg_interp.errors.InputError` naming the image file.

OCR proxy rule
--------------
Benchmarks about text in images (TextVQA, DocVQA, InfographicVQA) have no evidence boxes.
Our proxy grounding is the set of OCR words that match the answer:

1. Take the most common answer(s): answers are grouped by their normalised text and every
   group with the highest count is kept (:func:`most_common_answers`). DocVQA and
   InfographicVQA answers are variants, not votes, so all of them are kept (``vote=False``),
   even when two of them normalise to the same text.
2. Split each kept answer at whitespace and normalise each piece with
   :func:`normalize_word` (Unicode NFKC, case-folded, every character that is not a letter
   or a digit removed: ``"$1,000"`` -> ``"1000"``, ``"Coca-Cola"`` -> ``"cocacola"``).
3. Drop the pieces in :data:`STOP_WORDS` (articles and short function words, which would
   otherwise light up every "the" on a page) unless nothing else is left.
4. An OCR word is evidence when its normalised form is one of those answer words.

The result is labelled ``box_source="ocr-proxy"``: it is not an official annotation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from egg_interp import geometry
from egg_interp.data.sample import Box
from egg_interp.errors import DatasetFormatError, InputError

STOP_WORDS = frozenset(
    {"a", "an", "the", "of", "and", "or", "in", "on", "at", "to", "for", "is", "by", "with"}
)
"""Answer words ignored by the OCR proxy unless the answer has no other word."""


# --------------------------------------------------------------------------- files


def check_limit(limit: int | None) -> None:
    """Raise :class:`InputError` unless ``limit`` is ``None`` or a non-negative int."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InputError(f"limit must be None or a non-negative integer, got {limit!r}")


def check_split(split: str, valid: Sequence[str], dataset: str) -> None:
    """Raise :class:`InputError` when ``split`` is not one of ``valid``."""
    if split not in valid:
        raise InputError(f"{dataset}: unknown split {split!r}; valid splits: {', '.join(valid)}")


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetFormatError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{path}: cannot read file: {exc}") from None


def read_json(path: Path) -> Any:
    """Parse a JSON file, raising :class:`DatasetFormatError` naming it on any failure."""
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def read_jsonl(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Parse a JSON-lines file into ``(location, record)`` pairs, skipping blank lines.

    ``location`` is ``"line N"`` (1-based), ready for :func:`get_field`'s ``where``.
    """
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"{path}: line {number}: invalid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise DatasetFormatError(f"{path}: line {number}: expected a JSON object")
        records.append((f"line {number}", record))
    return records


def get_field(
    record: Any,
    name: str,
    path: Path,
    where: str,
    kind: type | tuple[type, ...] | None = None,
) -> Any:
    """Return ``record[name]``, or raise :class:`DatasetFormatError` naming file and field.

    Parameters
    ----------
    record : dict
        One parsed JSON object.
    name : str
        The field to read.
    path : Path
        The file the record came from (for the message).
    where : str
        Where the record sits in the file, e.g. ``"data[3]"`` or ``"line 7"``.
    kind : type or tuple of types, optional
        When given, the value must be an instance of it (``bool`` only counts when listed).
    """
    if not isinstance(record, dict):
        raise DatasetFormatError(f"{path}: {where}: expected a JSON object with field '{name}'")
    if name not in record:
        raise DatasetFormatError(f"{path}: {where}: missing field '{name}'")
    value = record[name]
    kinds = (kind,) if isinstance(kind, type) else kind
    if kinds is not None and (
        not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
    ):
        names = " or ".join(k.__name__ for k in kinds)
        raise DatasetFormatError(
            f"{path}: {where}: field '{name}' should be {names}, got {type(value).__name__}"
        )
    return value


def get_list(record: Any, name: str, path: Path, where: str) -> list[Any]:
    """:func:`get_field` for a list-valued field."""
    return get_field(record, name, path, where, list)


def get_size(record: Any, path: Path, where: str, keys: tuple[str, str]) -> tuple[float, float]:
    """Read a positive ``(width, height)`` pair from the fields named by ``keys``."""
    size = []
    for key in keys:
        value = get_field(record, key, path, where, (int, float))
        if not math.isfinite(value) or value <= 0:
            raise DatasetFormatError(
                f"{path}: {where}: field '{key}' should be positive, got {value}"
            )
        size.append(value)
    return size[0], size[1]


def get_answers(
    record: Any, path: Path, where: str, name: str = "answers", optional: bool = False
) -> list[str]:
    """Read a list of answer strings (numbers are turned into strings).

    With ``optional=True`` (test splits, which ship without answers) an absent field gives
    an empty list instead of an error.
    """
    if optional and isinstance(record, dict) and name not in record:
        return []
    answers = get_list(record, name, path, where)
    out = []
    for i, answer in enumerate(answers):
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
            raise DatasetFormatError(f"{path}: {where}: field '{name}[{i}]' should be a string")
        out.append(str(answer))
    return out


def warn_missing(what: str, path: Path) -> None:
    """Warn once per call that an optional file is absent (grounding falls back to none)."""
    warnings.warn(f"{what} not found at {path}; samples get no boxes", stacklevel=3)


# --------------------------------------------------------------------------- images


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise InputError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


def lazy_image(path: Path) -> Callable[[], Image.Image]:
    """A picklable callable that opens ``path`` as RGB when called.

    Raises
    ------
    InputError
        On the call, when the file is missing or is not a readable image.
    """
    return functools.partial(_open_image, Path(path))


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image, read from its header without decoding the pixels.

    Raises
    ------
    InputError
        When the file is missing or not an image.
    """
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise InputError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


def image_size_or_problem(path: Path) -> tuple[tuple[int, int] | None, str]:
    """:func:`image_size`, or ``(None, problem)`` instead of raising for a bad image.

    ``problem`` is ``"image-missing: <path>"`` or ``"image-unreadable: <path>"`` (the kinds of
    :data:`~egg_interp.data.sample.PROBLEM_KINDS`), ``""`` when the size was read. Loaders use
    it where one missing image must not end the load: the sample keeps no boxes, and the
    runner turns it into an ``error`` line when it cannot load the image.
    """
    try:
        return image_size(path), ""
    except InputError as exc:
        kind = "image-missing" if str(exc).startswith("image not found") else "image-unreadable"
        return None, f"{kind}: {path}"


# --------------------------------------------------------------------------- boxes


def _number(value: Any, path: Path, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetFormatError(f"{path}: {where}: expected a finite number, got {value!r}")
    return float(value)


def numbers(values: Any, count: int, path: Path, where: str) -> list[float]:
    """Check that ``values`` is a list of ``count`` finite numbers and return them as floats."""
    if not isinstance(values, (list, tuple)) or len(values) != count:
        raise DatasetFormatError(f"{path}: {where}: expected a list of {count} numbers")
    return [_number(v, path, f"{where}[{i}]") for i, v in enumerate(values)]


def xywh_to_box(values: Sequence[float], path: Path, where: str) -> Box:
    """Turn ``[x, y, w, h]`` (top-left corner, size) into ``(x0, y0, x1, y1)``.

    Raises
    ------
    DatasetFormatError
        When ``values`` is not four finite numbers or the width or height is negative.
    """
    x, y, w, h = numbers(values, 4, path, where)
    if w < 0 or h < 0:
        raise DatasetFormatError(f"{path}: {where}: negative width or height in {list(values)}")
    return (x, y, x + w, y + h)


def polygon_to_box(values: Sequence[float], path: Path, where: str) -> Box:
    """Axis-aligned bounding box ``(x0, y0, x1, y1)`` of a polygon ``[x1, y1, x2, y2, ...]``."""
    if not isinstance(values, (list, tuple)) or len(values) < 4 or len(values) % 2:
        raise DatasetFormatError(f"{path}: {where}: expected an even list of polygon coordinates")
    flat = numbers(values, len(values), path, where)
    xs, ys = flat[0::2], flat[1::2]
    return (min(xs), min(ys), max(xs), max(ys))


def scale_box(box: Box, width: float, height: float) -> Box:
    """Scale a box given in fractions of the image to pixels.

    >>> scale_box((0.5, 0.25, 0.6, 0.45), 200, 100)
    (100.0, 25.0, 120.0, 45.0)
    """
    x0, y0, x1, y1 = box
    return (x0 * width, y0 * height, x1 * width, y1 * height)


def clip_boxes(boxes: Iterable[Box], width: float, height: float) -> tuple[list[Box], int]:
    """Clip every box to the image (:func:`egg_interp.geometry.clip_boxes`); return the kept
    boxes and how many were dropped as empty (counted in ``Sample.meta["dropped_boxes"]``)."""
    return geometry.clip_boxes(boxes, (width, height))


# --------------------------------------------------------------------------- OCR proxy


def normalize_word(text: str) -> str:
    """Normalise one word for OCR matching: NFKC, case-folded, letters and digits only.

    >>> normalize_word("$1,000")
    '1000'
    >>> normalize_word("Coca-Cola!")
    'cocacola'
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def _normalize_phrase(text: str) -> str:
    return " ".join(w for w in (normalize_word(t) for t in text.split()) if w)


def most_common_answers(answers: Sequence[str]) -> list[str]:
    """The answers whose normalised text is the most frequent (all of them on a tie).

    One representative per normalised text, in order of first appearance.

    >>> most_common_answers(["Stop", "stop", "go", "STOP!", "go"])
    ['Stop']
    >>> most_common_answers(["a", "b"])
    ['a', 'b']
    """
    keyed = [(_normalize_phrase(a), a) for a in answers]
    counts = Counter(key for key, _ in keyed if key)
    if not counts:
        return []
    best = max(counts.values())
    chosen: dict[str, str] = {}
    for key, answer in keyed:
        if counts.get(key) == best and key not in chosen:
            chosen[key] = answer
    return list(chosen.values())


def answer_words(answers: Sequence[str], vote: bool = True) -> set[str]:
    """Normalised words of the answers, stop words removed when possible.

    With ``vote=True`` (annotator answers, TextVQA) only the most common answer(s) count;
    with ``vote=False`` (answer variants, DocVQA and InfographicVQA) every answer counts, so
    two variants that normalise alike never push a third one out.

    >>> sorted(answer_words(["univ of X", "Univ of X", "univ of X, Y"], vote=False))
    ['univ', 'x', 'y']
    """
    kept = most_common_answers(answers) if vote else answers
    words = {w for a in kept for w in _normalize_phrase(a).split()}
    content = words - STOP_WORDS
    return content or words


def ocr_proxy(
    tokens: Iterable[tuple[str, Box]],
    answers: Sequence[str],
    width: float,
    height: float,
    vote: bool = True,
) -> tuple[list[Box], list[str], int]:
    """Boxes of the OCR words that match an answer word (the module's proxy rule).

    Parameters
    ----------
    tokens : iterable of (str, Box)
        OCR words and their boxes ``(x0, y0, x1, y1)`` in original-image pixels.
    answers : sequence of str
        All ground-truth answers of the question.
    width, height : float
        Image size in pixels, for clipping.
    vote : bool
        Keep only the most common answer(s) (default), or every answer variant
        (:func:`answer_words`).

    Returns
    -------
    boxes : list of Box
        Clipped boxes of the matching words, in OCR order.
    words : list of str
        The matching OCR words as written, aligned with ``boxes``.
    dropped : int
        Matching words whose box was empty after clipping.
    """
    wanted = answer_words(answers, vote=vote)
    boxes, words, dropped = [], [], 0
    if not wanted:
        return boxes, words, dropped
    for word, box in tokens:
        if normalize_word(word) not in wanted:
            continue
        clipped = geometry.clip_box(box, (width, height), strict=False)
        if clipped is None:
            dropped += 1
            continue
        boxes.append(clipped)
        words.append(word)
    return boxes, words, dropped


# --------------------------------------------------------------------------- options


def stable_shuffle(items: Sequence[str], key: str) -> list[str]:
    """Shuffle ``items`` with a seed derived from ``key`` (same order on every run)."""
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    out = list(items)
    random.Random(seed).shuffle(out)
    return out
