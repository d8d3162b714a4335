"""Parquet exports of the benchmarks: shard discovery, rows without images, lazy images.

Evaluation harnesses (lmms-eval's ``lmms-lab/*`` datasets, xAI's RealWorldQA release) ship a
benchmark as Hugging Face parquet shards, one row per question with the image embedded as
encoded bytes (or, as ``lmms-lab/GQA`` does, the images in a separate config joined by id).
These helpers read them with pyarrow: the text columns when the dataset is loaded, each image
only when its sample asks for it (or, where boxes must be scaled to it, only its header when
the samples are built). A missing column raises
:class:`~egg_interp.errors.DatasetFormatError` naming the shard and the column; a missing or
corrupt image raises :class:`~egg_interp.errors.InputError` when it is loaded (the runner
turns that into an ``error`` line).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from egg_interp.data._common import get_field
from egg_interp.data.sample import Sample
from egg_interp.errors import DatasetFormatError, InputError

HF_SPLIT_NAMES = {"val": ("validation", "val"), "train": ("train",), "test": ("test",)}
"""Our split name -> the names Hugging Face parquet exports give the same split."""


def parquet_shards(root: Path, folders: Sequence[str], names: Sequence[str]) -> list[Path]:
    """The parquet shards of one split of a Hugging Face export, in shard order.

    Looks in each of ``root/<folder>`` for ``<name>-NNNNN-of-NNNNN.parquet`` (the hub's own
    files) and then ``<name>/*.parquet`` (the hub's ``refs/convert/parquet`` branch); the first
    folder and name with any file wins. ``""`` as a folder means ``root`` itself.
    """
    for folder in folders:
        base = root / folder if folder else root
        for name in names:
            found = sorted(base.glob(f"{name}-*.parquet")) or sorted(base.glob(f"{name}/*.parquet"))
            if found:
                return found
    return []


def _pyarrow_parquet() -> Any:
    import pyarrow.parquet as pq

    return pq


def read_parquet_rows(
    paths: Sequence[Path],
    columns: Sequence[str],
    limit: int | None = None,
    optional: Sequence[str] = (),
    image_column: str | None = "image",
) -> list[tuple[str, dict[str, Any]]]:
    """Rows of parquet shards as ``(location, record)`` pairs, without the image bytes.

    Parameters
    ----------
    paths : sequence of Path
        The shards, read in order.
    columns : sequence of str
        Required columns (besides ``image_column``); a shard without one raises
        :class:`DatasetFormatError` naming the shard and the column.
    limit : int, optional
        Stop after this many rows.
    optional : sequence of str
        Columns read when present.
    image_column : str or None
        Required too; not read here. Each record gets ``record["_image"]``, a picklable
        callable that reads that row's image from the shard when called
        (:func:`parquet_image`), and ``record["_image_at"]``, where that image sits (for
        :func:`parquet_image_size_or_problem`).

    ``location`` is ``"row N"`` (0-based within the shard); ``record["_path"]`` is the shard.
    """
    pq = _pyarrow_parquet()
    rows: list[tuple[str, dict[str, Any]]] = []
    for path in paths:
        try:
            handle = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
            raise DatasetFormatError(f"{path}: cannot read parquet file: {exc}") from None
        names = set(handle.schema_arrow.names)
        needed = [*columns, *([image_column] if image_column else [])]
        for column in needed:
            if column not in names:
                raise DatasetFormatError(f"{path}: missing column '{column}'")
        wanted = [*columns, *(c for c in optional if c in names)]
        row = 0
        for group in range(handle.num_row_groups):
            table = handle.read_row_group(group, columns=wanted).to_pylist()
            for offset, record in enumerate(table):
                if limit is not None and len(rows) >= limit:
                    return rows
                record["_path"] = path
                if image_column:
                    record["_image_at"] = (path, group, offset, image_column)
                    record["_image"] = parquet_image(path, group, offset, image_column)
                rows.append((f"row {row}", record))
                row += 1
    return rows


@functools.lru_cache(maxsize=2)
def _row_group_images(path: Path, group: int, column: str) -> list[Any]:
    pq = _pyarrow_parquet()
    return pq.ParquetFile(path).read_row_group(group, columns=[column]).column(0).to_pylist()


def _image_bytes(path: Path, group: int, offset: int, column: str) -> tuple[bytes, str]:
    """One row's encoded image and where it is (for messages); :class:`InputError` when the
    cell cannot be read (``"cannot read image at ..."``) or holds no bytes
    (``"no image bytes at ..."``)."""
    where = f"{path}: row group {group}, row {offset}: column '{column}'"
    try:
        value = _row_group_images(path, group, column)[offset]
    except Exception as exc:
        raise InputError(f"cannot read image at {where}: {exc}") from None
    data = value.get("bytes") if isinstance(value, dict) else value
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise InputError(f"no image bytes at {where}")
    return bytes(data), where


def _open_parquet_image(path: Path, group: int, offset: int, column: str) -> Image.Image:
    data, where = _image_bytes(path, group, offset, column)
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image at {where}: {exc}") from None


def parquet_image(path: Path, group: int, offset: int, column: str = "image") -> Callable:
    """A picklable callable that decodes one row's image (encoded bytes, or the
    ``{"bytes", "path"}`` struct of the ``datasets`` Image feature) as RGB when called.

    The row group's images are read then, and the last two row groups are cached, so a
    sequential run reads each shard once. A missing or corrupt image raises
    :class:`InputError` naming the shard and the row.
    """
    return functools.partial(_open_parquet_image, Path(path), group, offset, column)


def parquet_image_size_or_problem(
    at: tuple[Path, int, int, str],
) -> tuple[tuple[int, int] | None, str]:
    """``(width, height)`` of one row's image, read from its header (``at`` is the record's
    ``"_image_at"``), or ``(None, problem)`` instead of raising.

    ``problem`` is ``"image-missing: <shard> row ..."`` for an empty cell and
    ``"image-unreadable: <shard> row ..."`` for bytes that are no image (the kinds of
    :data:`~egg_interp.data.sample.PROBLEM_KINDS`), ``""`` when the size was read: the parquet
    counterpart of :func:`~egg_interp.data._common.image_size_or_problem`.
    """
    path, group, offset, column = at
    where = f"{path}: row group {group}, row {offset}: column '{column}'"
    try:
        data, where = _image_bytes(path, group, offset, column)
        with Image.open(io.BytesIO(data)) as image:
            return image.size, ""
    except InputError as exc:
        kind = "image-missing" if str(exc).startswith("no image bytes") else "image-unreadable"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        kind = "image-unreadable"
    return None, f"{kind}: {where}"


def _raise_missing(message: str) -> Image.Image:
    raise InputError(message)


def parquet_images_by_id(
    paths: Sequence[Path], id_column: str = "id", image_column: str = "image"
) -> dict[str, Callable]:
    """Lazy images of an images-only export (``lmms-lab/GQA``'s ``*_images`` configs: one row
    per image, columns ``id`` and ``image``), keyed by ``str(id)``; the first row wins when an
    id repeats. Only the id column is read here."""
    images: dict[str, Callable] = {}
    for _, record in read_parquet_rows(paths, (id_column,), image_column=image_column):
        images.setdefault(str(record[id_column]), record["_image"])
    return images


def missing_image(message: str) -> Callable:
    """A picklable stand-in for an image that a join did not find: raises
    :class:`InputError` with ``message`` when called (the runner's ``error`` line)."""
    return functools.partial(_raise_missing, message)


def as_str_list(value: Any, path: Path, where: str, name: str) -> list[str]:
    """A parquet list-of-strings cell (``None`` -> ``[]``) as a list of str."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise DatasetFormatError(f"{path}: {where}: column '{name}' should be a list of strings")
    return [str(v) for v in value]


def question_samples(
    shards: list[Path],
    dataset: str,
    split: str,
    limit: int | None,
    optional: Sequence[str],
    meta: Callable[[dict[str, Any]], dict[str, Any]],
) -> list[Sample]:
    """Samples of a document-QA export without boxes (lmms-lab's DocVQA / InfographicVQA):
    ``questionId``, ``question``, ``answers`` and the image of each row, plus ``meta(row)``.

    ``optional`` names the columns read when present (``answers`` among them).
    """
    rows = read_parquet_rows(shards, ("questionId", "question"), limit, optional=optional)
    samples = []
    for where, record in rows:
        path = record["_path"]
        samples.append(
            Sample(
                id=str(get_field(record, "questionId", path, where, (str, int))),
                question=get_field(record, "question", path, where, str),
                answers=as_str_list(record.get("answers"), path, where, "answers"),
                load_image=record["_image"],
                box_source="none",
                dataset=dataset,
                split=split,
                meta=meta(record),
            )
        )
    return samples
