"""RealWorldQA loader (765 real-world photos; the options are inside the question text).

The official release is a parquet file with the images embedded. ``pyarrow`` is not a
dependency of egg_interp, so this loader reads a JSON-lines (or JSON list) export with the
images written to files::

    data_root/
        realworldqa.jsonl   one {"image": "images/0.png", "question": ..., "answer": ...}
                            per line (realworldqa.json holding a list of the same is also read)
        images/0.png ...    image paths are relative to data_root

An optional ``"id"`` field is used as the sample id; otherwise the 0-based row index is.
One way to make the export, on a machine with the ``datasets`` package::

    rows = datasets.load_dataset("xai-org/RealWorldQA", split="test")
    for i, row in enumerate(rows):
        row["image"].save(f"images/{i}.png")
        # write {"id": str(i), "image": f"images/{i}.png", "question": row["question"],
        #        "answer": row["answer"]} as one JSON line of realworldqa.jsonl

RealWorldQA has no boxes (``box_source="none"``).
"""

from __future__ import annotations

from pathlib import Path

from egg_interp.data._common import (
    check_limit,
    check_split,
    find_file,
    get_field,
    lazy_image,
    read_json,
    read_jsonl,
)
from egg_interp.data.sample import Sample
from egg_interp.errors import DatasetFormatError

SPLITS = ("test",)


def load(data_root: str | Path, split: str = "test", limit: int | None = None) -> list[Sample]:
    """Load RealWorldQA from a JSON-lines export.

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
        The file or a field is missing or malformed (including a parquet file with no
        export next to it).
    """
    check_split(split, SPLITS, "realworldqa")
    check_limit(limit)
    root = Path(data_root)
    candidates = [root / "realworldqa.jsonl", root / "realworldqa.json"]
    if not any(p.exists() for p in candidates) and any(root.glob("*.parquet")):
        raise DatasetFormatError(
            f"{root}: found a parquet release but no realworldqa.jsonl; export it to JSON lines "
            "as described in egg_interp.data.realworldqa (pyarrow is not required)"
        )
    path = find_file(candidates, "RealWorldQA file")
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
        sample_id = record.get("id", index)
        samples.append(
            Sample(
                id=str(sample_id),
                question=get_field(record, "question", path, where, str),
                answers=[str(get_field(record, "answer", path, where, (str, int)))],
                load_image=lazy_image(root / image),
                boxes=[],
                box_source="none",
                dataset="realworldqa",
                family="",
                meta={"image": image},
            )
        )
    return samples
