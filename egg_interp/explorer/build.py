"""What the explorer page shows, gathered from results files into one JSON-able dict.

Result lines (:mod:`egg_interp.runner`) hold, per sample, each method's scores and ranked
regions and each pipeline's answer, score, crops and loop steps, but neither the image nor
the maps. :func:`collect` therefore adds, for at most ``max_media`` samples, the image,
every crop of every pipeline and loop step (cut from the full-resolution image), and each
method's map as an overlay, all from :class:`egg_interp.map_source.MapSource` (as
``report --grids`` finds them): the map saved by the run (``evaluate --save-maps``),
otherwise recomputed with the model and the method options recorded in the line (or
``model``), otherwise left out. Each map says which of the three happened (``src``), and the
page counts them per method. A run with ``--faithfulness`` also gives each map its deletion
and insertion curves (:meth:`~egg_interp.map_source.MapSource.curves`: saved with the map,
else measured again for the first ``max_curves`` samples), drawn beside the map.

Labels are the report's (:func:`egg_interp.report.load_frames`): the method's label
(:func:`egg_interp.titles.method_label`: with its target when not the method's default) or
the pipeline's name, then ``@hash6`` when a file holds several configs of one label. The
page's score columns, their labels and direction arrows are the registry's map scores
(:mod:`egg_interp.metrics.registry`), listed in ``scores``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from egg_interp.explorer.media import crop_uri, fit_size, overlay_uri, thumbnail
from egg_interp.map_source import MapLine, MapSource, sample_key
from egg_interp.metrics.registry import scores
from egg_interp.report import load_frames
from egg_interp.results import load_results
from egg_interp.titles import method_order, pipeline_order


@dataclass(frozen=True)
class ExplorerOptions:
    """Settings of one explorer page (validated when built).

    Attributes
    ----------
    model : str, optional
        Model that recomputes maps the results file does not hold; default the model recorded
        in each line (``"organism"``, a Hugging Face id or a path).
    device, dtype : str, optional
        Where and in what precision to recompute (default: the loader's choice; dtype as
        recorded in the line's config).
    data_root : str, optional
        Folder of the benchmark's images (default: as recorded in the lines' ``run``).
    recompute : bool, default True
        Recompute missing maps (False: maps only from saved files).
    max_media : int, default 500
        Samples that get images, maps and crops (the first ones in file order); the table
        lists every sample. Bounds the page's size.
    image_px, map_px, crop_px : int
        Longer side of the embedded image, map overlay and crop pictures, in pixels.
    plots : bool, default True
        Embed the report's bar plots at the top.
    max_curves : int, default 20
        Samples (the first ones with media) whose deletion and insertion curves are measured
        again when a run with ``--faithfulness`` did not save them (each map costs about two
        batched forwards of 17 rows); saved curves are shown for every sample with media.
    """

    model: str | None = None
    device: str | None = None
    dtype: str | None = None
    data_root: str | None = None
    recompute: bool = True
    max_media: int = 500
    image_px: int = 320
    map_px: int = 96
    crop_px: int = 96
    plots: bool = True
    max_curves: int = 20

    def __post_init__(self) -> None:
        from egg_interp.errors import InputError

        for name in ("max_media", "max_curves", "image_px", "map_px", "crop_px"):
            value = getattr(self, name)
            least = 0 if name in ("max_media", "max_curves") else 8
            if not isinstance(value, int) or value < least:
                raise InputError(f"{name} must be an integer >= {least}, got {value!r}")


def compact(obj: Any, digits: int = 5) -> Any:
    """``obj`` with every float rounded to ``digits`` significant digits (smaller page).

    >>> compact({"a": [0.123456789, 2.0, "x"]})
    {'a': [0.12346, 2.0, 'x']}
    """
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}") if math.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: compact(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [compact(v, digits) for v in obj]
    return obj


def _label_table(paths: list[Path]) -> dict[tuple[str, str, str, str], str]:
    """``(kind, name, config_hash, model) -> label`` as the report labels the lines."""
    maps, answers = load_frames(paths)
    table: dict[tuple[str, str, str, str], str] = {}
    several_models = len(set(maps.get("model", [])) | set(answers.get("model", []))) > 1
    for frame, kind in ((maps, "map"), (answers, "answer")):
        if frame.empty:
            continue
        for name, cfg, model, label in zip(
            frame["name"], frame["config_hash"], frame["model"], frame["label"]
        ):
            table[kind, name, cfg, model] = f"{label} [{model}]" if several_models else label
    return table


def _sample_entry(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": r["sample_id"],
        "dataset": str(r.get("dataset", "")),
        "split": str(r.get("split", "")),
        "index": r.get("index"),
        "model": str(r.get("model", "")),
        "family": r.get("family") or "",
        "question": r.get("question") or "",
        "answers": list(r.get("answers") or []),
        "boxes": r.get("boxes") or [],
        "box_source": r.get("box_source") or "none",
        "size_bucket": r.get("size_bucket") or "none",
        "evidence_area": r.get("evidence_area"),
        "image_size": r.get("image_size"),
        "maps": {},
        "pipelines": {},
        "image": None,
        "crops": {},
        "_records": [],
    }


def _config_entry(r: Mapping[str, Any]) -> dict[str, Any]:
    cfg = r.get("config") or {}
    return {
        "kind": r["kind"],
        "name": r["name"],
        "config_hash": r["config_hash"],
        "model": str(r.get("model", "")),
        "weights": cfg.get("weights", ""),
        "options": cfg.get("options", {}),
    }


def _map_entry(r: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """A map line as the page shows it (scores, summary, regions), and the line itself
    (``_line``) for :func:`add_media`."""
    return {
        "error": r.get("error") or "",
        "scores": r.get("scores") or {},
        "summary": r.get("map") or {},
        "regions": r.get("regions") or [],
        "target": r.get("target", ""),
        "src": "none",
        "overlay": None,
        "curves": None,
        "_line": MapLine(r, folder),
    }


def _answer_entry(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "error": r.get("error") or "",
        "answer": r.get("answer") or "",
        "score": r.get("score"),
        "metric": r.get("metric") or "",
        "crops": r.get("crops") or [],
        "steps": r.get("steps") or [],
        "decision": (r.get("info") or {}).get("decision"),
    }


def _file_order(samples: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Samples by dataset, split, index (samples without one last) and id."""

    def key(s: dict[str, Any]) -> tuple:
        index = s["index"] if isinstance(s["index"], int) else math.inf
        return (s["dataset"], s["split"], index, s["id"])

    return sorted(samples, key=key)


def _add_crops(crops: dict[str, str], image: Any, boxes: Iterable[Any], px: int) -> list[str]:
    """Crop pictures of ``boxes`` added to ``crops`` (one per distinct box); their keys."""
    keys = []
    for box in boxes:
        key = ",".join(f"{float(v):.1f}" for v in box)
        if key not in crops:
            crops[key] = crop_uri(image, box, px)
        keys.append(key)
    return keys


def group_samples(paths: list[Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One entry per sample (file order by dataset, split, index), and the run's facts.

    Map lines become ``maps[label]`` (scores, map summary, regions, error, target); answer
    lines ``pipelines[label]`` (answer, score, crops, loop steps, decision, error). The
    lines themselves stay in private ``_`` fields for :func:`add_media`, which removes them.
    Facts: ``configs`` (one per kind and label), ``methods`` (:func:`method_order`),
    ``pipelines`` (:func:`pipeline_order`) and ``run_times`` (first and last).
    """
    labels = _label_table(paths)
    samples: dict[tuple[str, str, str], dict[str, Any]] = {}
    configs: dict[str, dict[str, Any]] = {}
    times: list[str] = []
    for path in paths:
        for r in load_results(path):
            entry = samples.setdefault(sample_key(r), _sample_entry(r))
            entry["_records"].append(r)
            model = str(r.get("model", ""))
            label = labels.get((r["kind"], r["name"], r["config_hash"], model), r["name"])
            configs.setdefault(f"{r['kind']} {label}", _config_entry(r))
            if (r.get("run") or {}).get("time"):
                times.append(str(r["run"]["time"]))
            if r["kind"] == "map":
                entry["maps"][label] = _map_entry(r, Path(path).parent)
            elif r["kind"] == "answer":
                entry["pipelines"][label] = _answer_entry(r)
    ordered = _file_order(samples.values())
    facts = {
        "configs": configs,
        "methods": method_order(lab for s in ordered for lab in s["maps"]),
        "pipelines": pipeline_order(lab for s in ordered for lab in s["pipelines"]),
        "run_times": [min(times), max(times)] if times else [],
    }
    return ordered, facts


def _add_overlays(
    s: dict[str, Any], source: MapSource, image: Any, size: tuple[int, int], curves: bool
) -> dict[str, str]:
    """Each map of the sample as an overlay of ``size``, and its faithfulness curves (saved,
    else measured again when ``curves``); where each map came from, by label."""
    sources = {}
    for label, entry in s["maps"].items():
        amap, src = (None, "none")
        if not entry["error"]:
            amap, src = source.map(entry["_line"], image, s["question"])
        if amap is not None:
            entry["overlay"] = overlay_uri(amap.heatmap(size=size))
            entry["curves"] = _page_curves(source, entry["_line"], amap, image, s, curves)
        entry["src"] = sources[label] = src
    return sources


def _page_curves(
    source: MapSource, line: MapLine, amap: Any, image: Any, s: dict[str, Any], measure: bool
) -> dict[str, Any] | None:
    """What the page draws of a map's deletion and insertion curves: the changed
    ``fractions``, ``deletion``/``insertion`` -> order -> the original answer's probability,
    the ``answer`` tracked and ``src`` (``"saved"`` or ``"recomputed"``); None without."""
    has_saved = bool((amap.meta or {}).get("faithfulness"))
    if not (has_saved or measure):
        return None
    record, src = source.curves(line, amap, image, s["question"])
    if record is None:
        return None
    out: dict[str, Any] = {"fractions": record["fractions"], "answer": record.get("answer", "")}
    for curve, orders in record["curves"].items():
        out[curve] = {order: values["prob"] for order, values in orders.items()}
    return {**out, "src": src}


def _add_pipeline_crops(s: dict[str, Any], image: Any, px: int) -> None:
    """Pictures of every pipeline's crops and of every loop step's input and chosen crops."""
    for p in s["pipelines"].values():
        p["crop_keys"] = _add_crops(s["crops"], image, p["crops"], px)
        for step in p["steps"]:
            for field in ("crops_in", "crop_boxes"):
                boxes = step.get(field) or []
                step[f"{field}_keys"] = _add_crops(s["crops"], image, boxes, px)


def _drop_private(samples: list[dict[str, Any]]) -> None:
    for s in samples:
        s.pop("_records", None)
        for entry in s["maps"].values():
            entry.pop("_line", None)


def add_media(samples: list[dict[str, Any]], options: ExplorerOptions) -> dict[str, Any]:
    """Add images, map overlays and crops to the first ``options.max_media`` samples.

    Returns the facts the page states: per method how many maps were ``saved``,
    ``recomputed`` or missing (``none``), the samples with media, and notes on what failed
    (:class:`~egg_interp.map_source.MapSource`'s error policy: noted, never raised).
    """
    source = MapSource(
        options.model, options.device, options.dtype, None, options.data_root, options.recompute
    )
    wanted = samples[: options.max_media]
    loaded = source.samples(r for s in wanted for r in s["_records"])
    counts: dict[str, Counter] = {}
    with_media, absent = 0, []
    for s in wanted:
        sample = loaded.get((s["dataset"], s["split"], s["id"]))
        image = None if sample is None else source.image(sample)
        if sample is None:
            absent.append(s["id"])
        if image is None:
            continue
        with_media += 1
        s["image"] = thumbnail(image, options.image_px)
        size = fit_size(image.size, options.map_px)
        curves = with_media <= options.max_curves
        for label, src in _add_overlays(s, source, image, size, curves).items():
            counts.setdefault(label, Counter())[src] += 1
        _add_pipeline_crops(s, image, options.crop_px)
    if absent:
        source.note(
            f"{len(absent)} sample(s) not found by the dataset loader (e.g. {absent[0]}; "
            "another data root or dataset version?): no image, maps or crops for them"
        )
    _drop_private(samples)
    return {
        "map_sources": {k: dict(v) for k, v in counts.items()},
        "with_media": with_media,
        "notes": source.notes,
    }


def _held(samples: list[dict[str, Any]], name: str) -> bool:
    """Whether some map line of ``samples`` holds the score ``name``."""
    return any(name in m["scores"] for s in samples for m in s["maps"].values())


def collect(
    results: str | Path | Iterable[str | Path], options: ExplorerOptions | None = None
) -> dict[str, Any]:
    """Everything the page shows: ``meta``, ``methods``, ``pipelines``, ``scores`` (the
    registry's map scores some line holds: name, label, header, direction, arrow, group,
    percent) and ``samples`` (each map with its ``curves`` when the run measured them).

    Parameters
    ----------
    results : path or iterable of paths
        Results JSONL file(s); lines are de-duplicated by key.
    options : ExplorerOptions, optional
    """
    options = options or ExplorerOptions()
    paths = [Path(results)] if isinstance(results, (str, Path)) else [Path(p) for p in results]
    samples, facts = group_samples(paths)
    media = add_media(samples, options)
    models = sorted({c["model"] for c in facts["configs"].values()})
    meta = {
        "results": [p.name for p in paths],
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "run_times": facts["run_times"],
        "models": models,
        "recompute_model": options.model,
        "configs": facts["configs"],
        "n_samples": len(samples),
        "max_media": options.max_media,
        **media,
    }
    return {
        "meta": meta,
        "methods": facts["methods"],
        "pipelines": facts["pipelines"],
        "scores": [s.to_dict() for s in scores("map") if _held(samples, s.name)],
        "samples": compact(samples),
    }
