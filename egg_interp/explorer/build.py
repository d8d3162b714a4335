"""What the explorer page shows, gathered from results files into one JSON-able dict.

Result lines (:mod:`egg_interp.runner`) hold, per sample, each method's scores and ranked
regions and each pipeline's answer, score, crops and loop steps, but neither the image nor
the maps. :func:`collect` therefore adds, for at most ``max_media`` samples, the image
(loaded with the dataset's loader, as ``report --grids`` does), every crop of every pipeline
and loop step (cut from the full-resolution image), and each method's map as an overlay:
read from the line's ``map_file`` when the run saved maps (``evaluate --save-maps``),
otherwise recomputed with the model and the method options recorded in the line (or
``model``), otherwise left out. Each map says which of the three happened (``src``), and the
page counts them per method.

Labels are the report's (:func:`egg_interp.report.load_frames`): the method or pipeline
name, or ``name@hash6`` when a file holds several configs of one name.
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
from egg_interp.explorer.sources import MapSource, load_images
from egg_interp.report import load_frames, pipeline_order
from egg_interp.results import load_results

SampleKey = tuple[str, str, str]
"""``(dataset, split, sample_id)``."""


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

    def __post_init__(self) -> None:
        from egg_interp.errors import InputError

        for name in ("max_media", "image_px", "map_px", "crop_px"):
            value = getattr(self, name)
            least = 0 if name == "max_media" else 8
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


def _first_method(labels: Iterable[str]) -> list[str]:
    """Method labels with EGG's first, the others in name order."""
    labels = sorted(set(labels))
    return [x for x in labels if x.split("@")[0] == "egg"] + [
        x for x in labels if x.split("@")[0] != "egg"
    ]


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
    }


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

    Map lines become ``maps[label]`` (scores, map summary, regions, error, and the line's
    ``map_file`` and config for :func:`add_media`); answer lines ``pipelines[label]``
    (answer, score, crops, loop steps, decision, error).
    """
    labels = _label_table(paths)
    samples: dict[SampleKey, dict[str, Any]] = {}
    configs: dict[str, dict[str, Any]] = {}
    times: list[str] = []
    for path in paths:
        for r in load_results(path):
            key = (str(r.get("dataset", "")), str(r.get("split", "")), str(r["sample_id"]))
            entry = samples.setdefault(key, _sample_entry(r))
            label = labels.get(
                (r["kind"], r["name"], r["config_hash"], str(r.get("model", ""))), r["name"]
            )
            cfg = r.get("config") or {}
            configs.setdefault(
                f"{r['kind']} {label}",
                {
                    "kind": r["kind"],
                    "name": r["name"],
                    "config_hash": r["config_hash"],
                    "model": str(r.get("model", "")),
                    "weights": cfg.get("weights", ""),
                    "options": cfg.get("options", {}),
                },
            )
            run = r.get("run") or {}
            if run.get("time"):
                times.append(str(run["time"]))
            common = {"error": r.get("error") or ""}
            if r["kind"] == "map":
                entry["maps"][label] = {
                    **common,
                    "scores": r.get("scores") or {},
                    "summary": r.get("map") or {},
                    "regions": r.get("regions") or [],
                    "target": r.get("target", ""),
                    "src": "none",
                    "overlay": None,
                    "_file": (Path(path).parent / r["map_file"]) if r.get("map_file") else None,
                    "_name": r["name"],
                    "_options": cfg.get("options") or {},
                    "_dtype": cfg.get("dtype"),
                    "_suffix": cfg.get("prompt_suffix", ""),
                    "_weights": cfg.get("weights", ""),
                    "_data_root": run.get("data_root"),
                }
            elif r["kind"] == "answer":
                info = r.get("info") or {}
                entry["pipelines"][label] = {
                    **common,
                    "answer": r.get("answer") or "",
                    "score": r.get("score"),
                    "metric": r.get("metric") or "",
                    "crops": r.get("crops") or [],
                    "steps": r.get("steps") or [],
                    "decision": info.get("decision"),
                    "_data_root": run.get("data_root"),
                }
    ordered = sorted(
        samples.values(),
        key=lambda s: (
            s["dataset"],
            s["split"],
            s["index"] if isinstance(s["index"], int) else math.inf,
            s["id"],
        ),
    )
    facts = {
        "configs": configs,
        "methods": _first_method(lab for s in ordered for lab in s["maps"]),
        "pipelines": pipeline_order(lab for s in ordered for lab in s["pipelines"]),
        "run_times": [min(times), max(times)] if times else [],
    }
    return ordered, facts


def add_media(samples: list[dict[str, Any]], options: ExplorerOptions) -> dict[str, Any]:
    """Add images, map overlays and crops to the first ``options.max_media`` samples.

    Returns the facts the page states: per method how many maps were ``saved``,
    ``recomputed`` or missing (``none``), the samples with media, and notes on what failed.
    """
    notes: list[str] = []
    wanted = samples[: options.max_media]
    loaded = load_images(wanted, options.data_root, notes)
    maps = MapSource(options)
    sources: dict[str, Counter] = {}
    with_media = 0
    absent = []
    for s in wanted:
        sample = loaded.get((s["dataset"], s["split"], s["id"]))
        if sample is None:
            absent.append(s["id"])
            continue
        try:
            image = sample.image
        except Exception as exc:
            notes.append(f"{s['id']}: cannot read the image ({exc})")
            continue
        with_media += 1
        s["image"] = thumbnail(image, options.image_px)
        size = fit_size(image.size, options.map_px)
        for label, entry in s["maps"].items():
            amap, src = (None, "none")
            if not entry["error"]:
                try:
                    amap, src = maps.get(entry, s["model"], image, s["question"])
                except Exception as exc:
                    notes.append(f"{s['id']}/{label}: map not recomputed ({exc})")
            if amap is not None:
                entry["overlay"] = overlay_uri(amap.heatmap(size=size))
            entry["src"] = src
            sources.setdefault(label, Counter())[src] += 1
        for p in s["pipelines"].values():
            p["crop_keys"] = _add_crops(s["crops"], image, p["crops"], options.crop_px)
            for step in p["steps"]:
                for field in ("crops_in", "crop_boxes"):
                    boxes = step.get(field) or []
                    step[f"{field}_keys"] = _add_crops(s["crops"], image, boxes, options.crop_px)
    if absent:
        notes.append(
            f"{len(absent)} sample(s) not found by the dataset loader (e.g. {absent[0]}; "
            "another data root or dataset version?): no image, maps or crops for them"
        )
    for s in samples:
        for entry in s["maps"].values():
            for k in [k for k in entry if k.startswith("_")]:
                del entry[k]
        for entry in s["pipelines"].values():
            entry.pop("_data_root", None)
    return {
        "map_sources": {k: dict(v) for k, v in sources.items()},
        "with_media": with_media,
        "notes": notes + maps.notes,
    }


def collect(
    results: str | Path | Iterable[str | Path], options: ExplorerOptions | None = None
) -> dict[str, Any]:
    """Everything the page shows: ``meta``, ``methods``, ``pipelines`` and ``samples``.

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
        "samples": compact(samples),
    }
