"""POPE loader (yes/no object-hallucination probes on COCO val2014).

Expected layout (the POPE repository's ``output/coco/`` files and the COCO images)::

    data_root/
        coco_pope_{split}.json     JSON lines, despite the extension (.jsonl also accepted)
        val2014/COCO_val2014_*.jpg  the images the "image" field names

``split`` is the sampling variant: ``"random"``, ``"popular"`` or ``"adversarial"``
(3000 questions each). POPE has no boxes of its own (``box_source="none"``).
"""

from __future__ import annotations

from pathlib import Path

from egg_interp.data._common import (
    check_limit,
    check_split,
    find_file,
    get_field,
    lazy_image,
    read_jsonl,
)
from egg_interp.data.sample import Sample
from egg_interp.errors import DatasetFormatError

SPLITS = ("random", "popular", "adversarial")
LABELS = ("yes", "no")


def load(data_root: str | Path, split: str = "random", limit: int | None = None) -> list[Sample]:
    """Load one POPE variant.

    Parameters
    ----------
    data_root : str or Path
        Folder laid out as in the module docstring.
    split : str
        ``"random"`` (default), ``"popular"`` or ``"adversarial"``.
    limit : int, optional
        Keep the first ``limit`` lines.

    Returns
    -------
    list of Sample
        ``id`` is the ``question_id``; ``answers`` is ``["yes"]`` or ``["no"]``;
        ``family`` the variant.

    Raises
    ------
    DatasetFormatError
        The file, a field, or a label other than yes/no is missing or malformed.
    """
    check_split(split, SPLITS, "pope")
    check_limit(limit)
    root = Path(data_root)
    path = find_file(
        [root / f"coco_pope_{split}.json", root / f"coco_pope_{split}.jsonl"], "POPE file"
    )
    records = read_jsonl(path)
    if limit is not None:
        records = records[:limit]
    samples = []
    for where, record in records:
        question_id = get_field(record, "question_id", path, where, (str, int))
        image = get_field(record, "image", path, where, str)
        text = get_field(record, "text", path, where, str)
        label = get_field(record, "label", path, where, str).strip().lower()
        if label not in LABELS:
            raise DatasetFormatError(f"{path}: {where}: field 'label' should be yes or no")
        samples.append(
            Sample(
                id=str(question_id),
                question=text,
                answers=[label],
                load_image=lazy_image(root / "val2014" / image),
                boxes=[],
                box_source="none",
                dataset="pope",
                family=split,
                meta={"image": image},
            )
        )
    return samples
