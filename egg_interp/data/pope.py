"""POPE loader (yes/no object-hallucination probes).

``split`` names the source and the sampling variant: ``"random"``, ``"popular"`` and
``"adversarial"`` are the COCO probes (3000 questions each); ``"aokvqa_<variant>"`` and
``"gqa_<variant>"`` the A-OKVQA and GQA ones (the POPE repository's SEEM-annotated files).

Accepted layouts under ``data_root`` (the first found wins)::

    coco_pope_{variant}.json            COCO: JSON lines despite the extension (.jsonl too),
    coco/coco_pope_{variant}.json       at the root, in coco/ or in the repository's
    output/coco/coco_pope_{variant}.json   output/coco/
    val2014/COCO_val2014_*.jpg          the COCO images (also images/val2014/)

    aokvqa_pope_seem_{variant}.json     A-OKVQA: a pretty-printed JSON array, at the root, in
                                        aokvqa/, seem/aokvqa/ or output/seem/aokvqa/; images
                                        are COCO val2014 files as above
    gqa_pope_seem_{variant}.json        GQA: the same, in gqa/, seem/gqa/ or
                                        output/seem/gqa/; images are GQA's {imageId}.jpg in
                                        images/ (also images/gqa/ or gqa/images/)

    data/test-*.parquet                 lmms-eval's export of the COCO probes (lmms-lab/POPE):
                                        one row per question (question_id, question, answer,
                                        image as encoded bytes, category = the variant),
                                        filtered by ``category``; also Full/{variant}-*.parquet

Every record is ``{question_id, image, text, label}`` with label ``yes``/``no``. POPE has no
boxes of its own (``box_source="none"``).
"""

from __future__ import annotations

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

VARIANTS = ("random", "popular", "adversarial")
SOURCES = ("coco", "aokvqa", "gqa")
SPLITS = (*VARIANTS, *(f"{s}_{v}" for s in SOURCES[1:] for v in VARIANTS))
LABELS = ("yes", "no")


def _source_variant(split: str) -> tuple[str, str]:
    source, _, variant = split.rpartition("_")
    return source or "coco", variant


def _question_files(root: Path, source: str, variant: str) -> list[Path]:
    if source == "coco":
        name = f"coco_pope_{variant}"
        folders = [root, root / "coco", root / "output" / "coco"]
        return [f / f"{name}{ext}" for f in folders for ext in (".json", ".jsonl")]
    name = f"{source}_pope_seem_{variant}.json"
    folders = [root, root / source, root / "seem" / source, root / "output" / "seem" / source]
    return [f / name for f in folders]


def _image_dir(root: Path, source: str) -> Path:
    if source == "gqa":
        candidates = [root / "images" / "gqa", root / "gqa" / "images", root / "images"]
    else:
        candidates = [root / "val2014", root / "images" / "val2014"]
    return next((d for d in candidates if d.is_dir()), candidates[0])


def _records(path: Path) -> list[tuple[str, Any]]:
    """JSON lines (COCO files) or one JSON array (A-OKVQA and GQA files)."""
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip()
    if head.startswith(b"["):
        content = read_json(path)
        return [(f"[{i}]", record) for i, record in enumerate(content)]
    return read_jsonl(path)


def load(data_root: str | Path, split: str = "random", limit: int | None = None) -> list[Sample]:
    """Load one POPE variant.

    Parameters
    ----------
    data_root : str or Path
        Folder laid out as in the module docstring.
    split : str
        ``"random"`` (default), ``"popular"``, ``"adversarial"`` (COCO), or one of those
        prefixed with ``"aokvqa_"`` or ``"gqa_"``.
    limit : int, optional
        Keep the first ``limit`` questions.

    Returns
    -------
    list of Sample
        ``id`` is the ``question_id``; ``answers`` is ``["yes"]`` or ``["no"]``; ``family``
        the variant and ``split`` the split as given.

    Raises
    ------
    DatasetFormatError
        No file found, or a field or a label other than yes/no is missing or malformed.
    """
    check_split(split, SPLITS, "pope")
    check_limit(limit)
    root = Path(data_root)
    source, variant = _source_variant(split)
    candidates = _question_files(root, source, variant)
    path = next((p for p in candidates if p.exists()), None)
    if path is None and source == "coco":
        full = parquet_shards(root, ("Full",), (variant,))
        if full:
            return _load_parquet(full, split, variant, limit, filter_category=False)
        shards = parquet_shards(root, ("data", ""), ("test",))
        if shards:
            return _load_parquet(shards, split, variant, limit, filter_category=True)
    if path is None:
        tried = ", ".join(str(p) for p in candidates)
        raise DatasetFormatError(f"POPE file not found; looked for: {tried}")
    records = _records(path)
    if limit is not None:
        records = records[:limit]
    image_dir = _image_dir(root, source)
    samples = []
    for where, record in records:
        question_id = get_field(record, "question_id", path, where, (str, int))
        image = get_field(record, "image", path, where, str)
        text = get_field(record, "text", path, where, str)
        label = _label(get_field(record, "label", path, where, str), path, where, "label")
        samples.append(
            Sample(
                id=str(question_id),
                question=text,
                answers=[label],
                load_image=lazy_image(image_dir / image),
                boxes=[],
                box_source="none",
                dataset="pope",
                family=variant,
                split=split,
                meta={"image": image, "source": source},
            )
        )
    return samples


def _label(value: str, path: Path, where: str, name: str) -> str:
    label = value.strip().lower()
    if label not in LABELS:
        raise DatasetFormatError(f"{path}: {where}: field '{name}' should be yes or no")
    return label


def _load_parquet(
    shards: list[Path], split: str, variant: str, limit: int | None, filter_category: bool
) -> list[Sample]:
    """lmms-lab/POPE rows: question_id, question, answer, image_source, image, category."""
    columns = ("question_id", "question", "answer", *(("category",) if filter_category else ()))
    rows = read_parquet_rows(shards, columns, None, optional=("image_source", "id"))
    samples = []
    for where, record in rows:
        if filter_category and str(record["category"]).strip().lower() != variant:
            continue
        if limit is not None and len(samples) >= limit:
            break
        path = record["_path"]
        answer = get_field(record, "answer", path, where, str)
        samples.append(
            Sample(
                id=str(get_field(record, "question_id", path, where, (str, int))),
                question=get_field(record, "question", path, where, str),
                answers=[_label(answer, path, where, "answer")],
                load_image=record["_image"],
                box_source="none",
                dataset="pope",
                family=variant,
                split=split,
                meta={"image": record.get("image_source"), "source": "coco"},
            )
        )
    return samples
