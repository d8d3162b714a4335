"""RealWorldQA loader (765 real-world photos; the options are inside the question text).

Accepted layouts under ``data_root`` (the first found wins)::

    data/test-0000{0,1}-of-00002.parquet   the release as downloaded (xai-org/RealWorldQA,
                                           also lmms-lab/RealWorldQA): columns image
                                           (encoded bytes), question, answer
    test-*.parquet                         the same shards without the data/ folder
    realworldqa.jsonl                      an export: one {"image": "images/0.png",
                                           "question": ..., "answer": ...} per line
                                           (realworldqa.json holding a list is also read);
                                           image paths are relative to data_root

Parquet rows are read with pyarrow; each image is decoded only when its sample needs it.
The sample id is the 0-based row index over the shards in order (an export's optional
``"id"`` field wins). RealWorldQA has no boxes (``box_source="none"``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from egg_interp.data._common import (
    check_limit,
    check_split,
    get_field,
    lazy_image,
    read_json,
    read_jsonl,
)
from egg_interp.data._parquet import parquet_shards, read_parquet_rows
from egg_interp.data.sample import Sample
from egg_interp.errors import DatasetFormatError

SPLITS = ("test",)


def load(data_root: str | Path, split: str = "test", limit: int | None = None) -> list[Sample]:
    """Load RealWorldQA from the parquet release or a JSON-lines export.

    Parameters
    ----------
    data_root : str or Path
        Folder laid out as in the module docstring.
    split : str
        Only ``"test"``.
    limit : int, optional
        Keep the first ``limit`` rows.

    Returns
    -------
    list of Sample
        ``answers`` is the single ``answer``.

    Raises
    ------
    DatasetFormatError
        No accepted layout, or a file, column or field is missing or malformed.
    """
    check_split(split, SPLITS, "realworldqa")
    check_limit(limit)
    root = Path(data_root)
    shards = parquet_shards(root, ("data", ""), (split,))
    if shards:
        rows = read_parquet_rows(shards, ("question", "answer"), limit)
        return [
            _sample(str(i), record, record["_path"], where, record["_image"], split)
            for i, (where, record) in enumerate(rows)
        ]
    candidates = [root / "realworldqa.jsonl", root / "realworldqa.json"]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        tried = ", ".join(str(p) for p in [root / "data" / f"{split}-*.parquet", *candidates])
        raise DatasetFormatError(f"RealWorldQA files not found; looked for: {tried}")
    if path.suffix == ".jsonl":
        records = read_jsonl(path)
    else:
        content = read_json(path)
        if not isinstance(content, list):
            raise DatasetFormatError(f"{path}: top level: expected a list of rows")
        records = [(f"[{i}]", row) for i, row in enumerate(content)]
    if limit is not None:
        records = records[:limit]
    samples = []
    for index, (where, record) in enumerate(records):
        image = get_field(record, "image", path, where, str)
        sample_id = str(record.get("id", index))
        sample = _sample(sample_id, record, path, where, lazy_image(root / image), split)
        sample.meta["image"] = image
        samples.append(sample)
    return samples


def _sample(
    sample_id: str,
    record: dict[str, Any],
    path: Path,
    where: str,
    image: Callable[[], Any],
    split: str,
) -> Sample:
    return Sample(
        id=sample_id,
        question=get_field(record, "question", path, where, str),
        answers=[str(get_field(record, "answer", path, where, (str, int)))],
        load_image=image,
        boxes=[],
        box_source="none",
        dataset="realworldqa",
        family="",
        split=split,
        meta={},
    )
