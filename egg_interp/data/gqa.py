"""GQA loader, with evidence boxes from the scene graphs.

Expected layout (``questions1.2.zip``, ``sceneGraphs.zip`` and ``images.zip`` unpacked in
one folder; the question and scene-graph files may also sit in ``questions/`` and
``sceneGraphs/`` sub-folders)::

    data_root/
        {split}_balanced_questions.json   balanced questions
        {split}_all_questions.json        all questions, one file (val, testdev, test, ...)
        {split}_all_questions/{split}_all_questions_{0..9}.json
                                          all questions as the release shards them (train)
        {split}_sceneGraphs.json          train and val only
        images/{imageId}.jpg

The boxes are the scene-graph objects referenced by the question's ``annotations``
(``question``, ``answer`` and ``fullAnswer``, in that order, without repeats), converted
from ``x, y, w, h`` (pixels, top-left corner) to ``(x0, y0, x1, y1)`` and clipped to the
scene graph's ``width`` x ``height`` (``box_source="annotation"``). ``testdev`` and
``test`` ship without scene graphs, so their samples have no boxes (``"none"``).
A reference to an object missing from the scene graph is not fatal: it is listed in
``meta["missing_objects"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from egg_interp.data._common import (
    check_limit,
    check_split,
    clip_boxes,
    find_file,
    get_field,
    get_size,
    lazy_image,
    read_json,
    warn_missing,
    xywh_to_box,
)
from egg_interp.data.sample import Box, Sample
from egg_interp.errors import DatasetFormatError

SPLITS = ("train", "val", "testdev", "test", "challenge")
_NO_SCENE_GRAPHS = ("testdev", "test", "challenge")
_NO_ANSWERS = ("test", "challenge")
_ANNOTATION_KEYS = ("question", "answer", "fullAnswer")


def _locate(root: Path, name: str) -> list[Path]:
    return [root / name, root / "questions" / name, root / "sceneGraphs" / name]


def load(
    data_root: str | Path,
    split: str = "val",
    limit: int | None = None,
    balanced_only: bool = True,
) -> list[Sample]:
    """Load GQA questions with scene-graph evidence boxes.

    Parameters
    ----------
    data_root : str or Path
        Folder laid out as in the module docstring.
    split : str
        ``"val"`` (default: it has scene graphs), ``"train"``, ``"testdev"``, ``"test"`` or
        ``"challenge"``.
    limit : int, optional
        Keep the first ``limit`` questions (after the balanced filter), in file order.
    balanced_only : bool
        Keep only questions with ``isBalanced`` true (default). Reads
        ``{split}_balanced_questions.json`` when present, else the all-questions file or
        shards (filtered). With ``False`` only the all-questions file or shards are read
        (shards in numeric order); their absence is an error, never a silent fallback to
        the balanced file.

    Returns
    -------
    list of Sample
        ``id`` is the question id; ``answers`` the short ``answer``; ``family`` the
        question's ``types.structural`` when present; ``meta`` holds ``imageId``,
        ``fullAnswer``, ``object_ids`` and ``missing_objects``.

    Raises
    ------
    DatasetFormatError
        A file or field is missing or malformed.
    """
    check_split(split, SPLITS, "gqa")
    check_limit(limit)
    root = Path(data_root)
    selected: list[tuple[str, dict[str, Any], Path]] = []
    for questions_path in _question_files(root, split, balanced_only):
        questions = read_json(questions_path)
        if not isinstance(questions, dict):
            raise DatasetFormatError(
                f"{questions_path}: top level: expected an object keyed by qid"
            )
        for qid, record in questions.items():
            if limit is not None and len(selected) >= limit:
                break
            if not balanced_only or get_field(
                record, "isBalanced", questions_path, f"question {qid}", bool
            ):
                selected.append((qid, record, questions_path))
        if limit is not None and len(selected) >= limit:
            break

    graphs = None
    if split not in _NO_SCENE_GRAPHS and selected:
        candidates = _locate(root, f"{split}_sceneGraphs.json")
        graphs_path = next((p for p in candidates if p.exists()), None)
        if graphs_path is None:
            warn_missing("GQA scene graphs", candidates[0])
        else:
            graphs = (graphs_path, read_json(graphs_path))

    with_answers = split not in _NO_ANSWERS
    return [
        _sample(qid, record, path, graphs, root, with_answers, split)
        for qid, record, path in selected
    ]


def _shard_number(path: Path) -> tuple[int, str]:
    tail = path.stem.rpartition("_")[2]
    return (int(tail) if tail.isdigit() else -1, path.name)


def _question_files(root: Path, split: str, balanced_only: bool) -> list[Path]:
    """The question file(s) to read, in order (shards sorted by their number)."""
    balanced = f"{split}_balanced_questions.json"
    all_name = f"{split}_all_questions"
    candidates = _locate(root, f"{all_name}.json")
    single = next((p for p in candidates if p.exists()), None)
    if single is not None:
        all_files = [single]
    else:
        folders = [p.with_suffix("") for p in candidates]
        all_files = next(
            (
                sorted(folder.glob(f"{all_name}_*.json"), key=_shard_number)
                for folder in folders
                if folder.is_dir() and any(folder.glob(f"{all_name}_*.json"))
            ),
            [],
        )
    if not balanced_only:
        if all_files:
            return all_files
        tried = [*candidates, *(p.with_suffix("") / f"{all_name}_0.json" for p in candidates)]
        raise DatasetFormatError(
            "GQA all questions not found (balanced_only=False reads no balanced file); "
            f"looked for: {', '.join(map(str, tried))}"
        )
    found = next((p for p in _locate(root, balanced) if p.exists()), None)
    if found is not None:
        return [found]
    if all_files:
        return all_files
    return [find_file(_locate(root, balanced) + candidates, "GQA questions")]


def _sample(
    qid: str,
    record: dict[str, Any],
    questions_path: Path,
    graphs: tuple[Path, Any] | None,
    root: Path,
    with_answers: bool,
    split: str,
) -> Sample:
    where = f"question {qid}"
    image_id = str(get_field(record, "imageId", questions_path, where, (str, int)))
    question = get_field(record, "question", questions_path, where, str)
    answers = []
    if with_answers or "answer" in record:
        answers = [get_field(record, "answer", questions_path, where, str)]
    object_ids = _referenced_objects(record, questions_path, where)

    boxes: list[Box] = []
    missing: list[str] = []
    dropped = 0
    size = None
    if graphs is not None:
        graphs_path, content = graphs
        graph = content.get(image_id) if isinstance(content, dict) else None
        if graph is None:
            raise DatasetFormatError(f"{graphs_path}: no scene graph for imageId '{image_id}'")
        size = get_size(graph, graphs_path, f"scene graph {image_id}", ("width", "height"))
        objects = get_field(graph, "objects", graphs_path, f"scene graph {image_id}", dict)
        raw = []
        for obj_id in object_ids:
            if obj_id not in objects:
                missing.append(obj_id)
                continue
            obj_where = f"scene graph {image_id}.objects.{obj_id}"
            xywh = [get_field(objects[obj_id], k, graphs_path, obj_where) for k in "xywh"]
            raw.append(xywh_to_box(xywh, graphs_path, obj_where))
        boxes, dropped = clip_boxes(raw, *size)
    types = record.get("types")
    return Sample(
        id=str(qid),
        question=question,
        answers=answers,
        load_image=lazy_image(root / "images" / f"{image_id}.jpg"),
        boxes=boxes,
        box_source="annotation" if graphs is not None else "none",
        dataset="gqa",
        family=str(types.get("structural", "")) if isinstance(types, dict) else "",
        split=split,
        meta={
            "imageId": image_id,
            "fullAnswer": record.get("fullAnswer"),
            "object_ids": object_ids,
            "missing_objects": missing,
            "image_size": size,
            "dropped_boxes": dropped,
        },
    )


def _referenced_objects(record: dict[str, Any], path: Path, where: str) -> list[str]:
    """Object ids named in ``annotations.question``, ``.answer`` and ``.fullAnswer``."""
    annotations = record.get("annotations")
    if annotations is None:
        return []
    if not isinstance(annotations, dict):
        raise DatasetFormatError(f"{path}: {where}: field 'annotations' should be an object")
    ids: list[str] = []
    for key in _ANNOTATION_KEYS:
        spans = annotations.get(key, {})
        if not isinstance(spans, dict):
            raise DatasetFormatError(
                f"{path}: {where}.annotations: field '{key}' should be an object"
            )
        for obj_id in spans.values():
            if str(obj_id) not in ids:
                ids.append(str(obj_id))
    return ids
