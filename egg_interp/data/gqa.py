"""GQA loader, with evidence boxes from the scene graphs.

Accepted layouts under ``data_root`` (the first found wins)::

    {split}_balanced_questions.json   the official release: questions1.2.zip, sceneGraphs.zip
    {split}_all_questions.json        and images.zip unpacked in one folder (the question and
    {split}_all_questions/{split}_all_questions_{0..9}.json
                                      scene-graph files may also sit in questions/ and
    {split}_sceneGraphs.json          sceneGraphs/); all questions in one file (val, testdev,
    images/{imageId}.jpg              test, ...) or as the release shards them (train); scene
                                      graphs for train and val only

    {split}_balanced_instructions/{split}-*.parquet
    {split}_all_instructions/{split}-*.parquet
    {split}_balanced_images/{split}-*.parquet
    {split}_all_images/{split}-*.parquet
                                      lmms-eval's export (lmms-lab/GQA): questions (columns
                                      id, imageId, question, answer, fullAnswer, isBalanced,
                                      types, annotations, ...; test and challenge: id,
                                      imageId, question, isBalanced) and images (id, image as
                                      encoded bytes) in separate configs, joined by imageId;
                                      also the hub's parquet-branch folders
                                      ({config}/{split}/*.parquet). No scene graphs, so no
                                      boxes: answer metrics only

A question whose ``imageId`` is not in the export's images gives a sample with
``meta["problem"]`` (``image-missing``) and an ``error`` line when the runner reaches it.

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
    get_field,
    get_size,
    lazy_image,
    read_json,
    warn_missing,
    xywh_to_box,
)
from egg_interp.data._parquet import (
    missing_image,
    parquet_images_by_id,
    parquet_shards,
    read_parquet_rows,
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
        the balanced file. The parquet export is read the same way
        (``{split}_balanced_instructions``, else ``{split}_all_instructions`` filtered;
        only the latter with ``False``).

    Returns
    -------
    list of Sample
        ``id`` is the question id; ``answers`` the short ``answer``; ``family`` the
        question's ``types.structural`` when present; ``meta`` holds ``imageId``,
        ``fullAnswer``, ``object_ids`` and ``missing_objects`` (from the parquet export:
        ``imageId``, ``fullAnswer`` and ``source``).

    Raises
    ------
    DatasetFormatError
        A file or field is missing or malformed.
    """
    check_split(split, SPLITS, "gqa")
    check_limit(limit)
    root = Path(data_root)
    question_files = _question_files(root, split, balanced_only)
    if isinstance(question_files, str):
        export = _parquet_questions(root, split, balanced_only)
        if export is None:
            raise DatasetFormatError(question_files)
        return _load_parquet(root, export, split, limit, balanced_only)
    selected: list[tuple[str, dict[str, Any], Path]] = []
    for questions_path in question_files:
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


def _question_files(root: Path, split: str, balanced_only: bool) -> list[Path] | str:
    """The question file(s) to read, in order (shards sorted by their number), or, when there
    are none, the message saying what was looked for (the parquet export is tried next)."""
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
        tried = [
            *candidates,
            *(p.with_suffix("") / f"{all_name}_0.json" for p in candidates),
            root / f"{split}_all_instructions" / f"{split}-*.parquet",
        ]
        return (
            "GQA all questions not found (balanced_only=False reads no balanced file); "
            f"looked for: {', '.join(map(str, tried))}"
        )
    found = next((p for p in _locate(root, balanced) if p.exists()), None)
    if found is not None:
        return [found]
    if all_files:
        return all_files
    tried = [
        *_locate(root, balanced),
        *candidates,
        root / f"{split}_balanced_instructions" / f"{split}-*.parquet",
    ]
    return f"GQA questions not found; looked for: {', '.join(map(str, tried))}"


def _parquet_questions(
    root: Path, split: str, balanced_only: bool
) -> tuple[list[Path], bool] | None:
    """The export's question shards and whether they need the ``isBalanced`` filter."""
    if balanced_only:
        shards = parquet_shards(root, (f"{split}_balanced_instructions",), (split,))
        if shards:
            return shards, False
    shards = parquet_shards(root, (f"{split}_all_instructions",), (split,))
    return (shards, balanced_only) if shards else None


def _load_parquet(
    root: Path,
    export: tuple[list[Path], bool],
    split: str,
    limit: int | None,
    balanced_only: bool,
) -> list[Sample]:
    """lmms-lab/GQA question rows joined by ``imageId`` with the ``*_images`` config's rows."""
    shards, filter_balanced = export
    with_answers = split not in _NO_ANSWERS
    columns = ("id", "imageId", "question", *(("answer",) if with_answers else ()))
    columns += ("isBalanced",) if filter_balanced else ()
    optional = ("fullAnswer", "types", *(() if with_answers else ("answer",)))
    rows = read_parquet_rows(
        shards, columns, None if filter_balanced else limit, optional, image_column=None
    )
    if filter_balanced:
        rows = [(w, r) for w, r in rows if get_field(r, "isBalanced", r["_path"], w, bool)]
        rows = rows[:limit] if limit is not None else rows
    kinds = ("balanced", "all") if balanced_only else ("all", "balanced")
    folders = [f"{split}_{kind}_images" for kind in kinds]
    image_shards = parquet_shards(root, folders, (split,))
    if rows and not image_shards:
        tried = ", ".join(str(root / f / f"{split}-*.parquet") for f in folders)
        raise DatasetFormatError(f"GQA images of the parquet export not found; looked for: {tried}")
    images = parquet_images_by_id(image_shards) if rows else {}
    samples = []
    for where, record in rows:
        path = record["_path"]
        image_id = str(get_field(record, "imageId", path, where, (str, int)))
        meta: dict[str, Any] = {
            "imageId": image_id,
            "fullAnswer": record.get("fullAnswer"),
            "source": "parquet export (no scene graphs: no boxes)",
        }
        image = images.get(image_id)
        if image is None:
            absent = f"imageId '{image_id}' not in {image_shards[0].parent}"
            meta["problem"] = f"image-missing: {absent}"
            image = missing_image(f"image not found: {absent}")
        answer = record.get("answer")
        types = record.get("types")
        samples.append(
            Sample(
                id=str(get_field(record, "id", path, where, (str, int))),
                question=get_field(record, "question", path, where, str),
                answers=[get_field(record, "answer", path, where, str)]
                if answer or with_answers
                else [],
                load_image=image,
                box_source="none",
                dataset="gqa",
                family=str(types.get("structural") or "") if isinstance(types, dict) else "",
                split=split,
                meta=meta,
            )
        )
    return samples


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
