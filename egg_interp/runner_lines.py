"""The lines of one chunk of samples: what :func:`egg_interp.runner.evaluate` writes.

:class:`LinePlan` holds everything fixed for a run (the model, the jobs and their config
hashes, the method objects, the pipeline options, the scoring settings) and turns a chunk of
samples into result lines: maps method by method (batched across the chunk when the method
can), then answers pipeline by pipeline. Every failure is caught and recorded in the line's
``error`` field, so one bad sample never ends a run. The line layout is documented in
:mod:`egg_interp.runner`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from egg_interp.data.sample import Sample
from egg_interp.models.base import VLMAdapter
from egg_interp.pipelines import PipelineOptions, run_pipeline, run_pipeline_batch
from egg_interp.results import clean, config_hash
from egg_interp.scoring import (
    evidence_area_fraction,
    reference_scores,
    score_answer,
    score_map,
    size_bucket,
)

Job = tuple[str, str, dict[str, Any]]
"""``(kind, name, config)`` of one line per sample."""


def _safe_name(sample_id: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id)[:80]
    return f"{stem}-{config_hash({'id': sample_id})[:6]}"


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _pop_seconds(steps: list[Any]) -> tuple[list[Any], list[float]]:
    """Move each step's ``seconds`` out of the step log (timings live under ``timing``)."""
    clean_steps, seconds = [], []
    for step in steps:
        if isinstance(step, Mapping):
            step = dict(step)
            seconds.append(float(step.pop("seconds", math.nan)))
        clean_steps.append(step)
    return clean_steps, seconds


def _jsonable_items(d: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``d`` that can be written as JSON (others are dropped)."""
    out = {}
    for k, v in d.items():
        try:
            out[k] = clean(v)
        except TypeError:
            continue
    return out


@dataclass
class Loaded:
    """One sample of a chunk, its image (loaded once) and the jobs still to do."""

    index: int
    sample: Sample
    todo: list[tuple[str, str]]
    image: Any = None
    error: str = ""


@dataclass
class LinePlan:
    """Everything fixed for a run; :meth:`run` yields the lines of a chunk of samples."""

    adapter: VLMAdapter
    jobs: list[Job]
    hashes: Mapping[tuple[str, str], str]
    method_objs: Mapping[str, Any]
    options: PipelineOptions
    metric: str
    tolerance: float
    top_k: int
    maps_dir: str | Path | None
    out_dir: Path
    common: Mapping[str, Any]
    batch_pipelines: bool = True

    def run(self, work: Sequence[tuple[int, Sample, list[tuple[str, str]]]]) -> Iterator[dict]:
        """Maps method by method (batched across the chunk where the method can), then answers;
        a batched map the chunk already computed (the loop's step 0) is not computed again."""
        items = []
        for index, sample, todo in work:
            item = Loaded(index, sample, todo)
            try:
                image = sample.image
                item.image = image
                item.sample = replace(sample, load_image=lambda image=image: image)
            except Exception as exc:  # an unreadable image fails every job of the sample
                item.error = _error_text(exc)
            items.append(item)
        # one scope per chunk: the chunk's egg map lines and its egg loop's step 0 ask for the
        # same batched maps, which are then computed once (VLMAdapter.remember_maps)
        with self.adapter.remember_maps():
            for kind, name, _ in self.jobs:
                todo = [it for it in items if (kind, name) in it.todo]
                if kind == "map":
                    yield from self._map_lines(name, todo)
                else:
                    yield from self._answer_lines(name, todo)

    def _line(self, it: Loaded, kind: str, name: str, compute: Any, *args: Any) -> dict:
        """One line: the sample's fields, then what ``compute`` adds (or the error it raised)."""
        record = self._head(it, kind, name)
        timing: dict[str, Any] = {}
        t0 = time.perf_counter()
        if not it.error:
            try:
                record.update(compute(it, name, timing, *args))
            except Exception as exc:  # recorded, not raised: one bad sample must not end a run
                record["error"] = _error_text(exc)
        timing["total"] = timing.get("total", 0.0) + time.perf_counter() - t0
        record["timing"] = timing
        return record

    def _head(self, it: Loaded, kind: str, name: str) -> dict[str, Any]:
        size = it.image.size if it.image is not None else None
        frac = evidence_area_fraction(it.sample.boxes, size) if size else math.nan
        return {
            "sample_id": it.sample.id,
            "kind": kind,
            "name": name,
            "config_hash": self.hashes[kind, name],
            "config": next(c for k, n, c in self.jobs if (k, n) == (kind, name)),
            **self.common,
            "index": it.index,
            "family": it.sample.family,
            "question": it.sample.question,
            "answers": list(it.sample.answers),
            "image_size": list(size) if size else None,
            "boxes": [[float(v) for v in b] for b in it.sample.boxes],
            "box_source": it.sample.box_source,
            "evidence_area": frac,
            "size_bucket": size_bucket(frac),
            "error": it.error,
        }

    def _map_lines(self, name: str, todo: list[Loaded]) -> Iterator[dict]:
        method = self.method_objs[name]
        ready = [it for it in todo if not it.error]
        maps: dict[int, Any] = {}
        batch_seconds = 0.0
        if len(ready) > 1 and method.batched:
            t0 = time.perf_counter()
            try:
                batch = method.attribute_batch(
                    self.adapter, [([it.image], it.sample.question) for it in ready]
                )
                maps = {id(it): m for it, m in zip(ready, batch, strict=True)}
                batch_seconds = (time.perf_counter() - t0) / len(ready)
            except Exception:  # fall back to one sample at a time, to pin the error down
                maps = {}
        for it in todo:
            amap = maps.get(id(it))
            record = self._line(it, "map", name, self._map_fields, amap)
            if amap is not None:
                record["timing"]["total"] += batch_seconds
            yield record

    def _map_fields(
        self, it: Loaded, name: str, timing: dict[str, Any], amap: Any = None
    ) -> dict[str, Any]:
        method = self.method_objs[name]
        if amap is None:
            amap = method.attribute(self.adapter, [it.image], it.sample.question)
        meta = dict(amap.meta)
        timing["method"] = float(meta.pop("seconds", math.nan))
        meta.pop("batch_size", None)
        fields = score_map(
            amap,
            it.sample.boxes,
            tolerance=self.tolerance,
            top_k=self.top_k,
            region_kwargs={"sigma": self.options.loop.sigma},
        )
        fields["reference"] = reference_scores(it.sample, amap, self.tolerance, self.options.seed)
        fields["meta"] = _jsonable_items(meta)
        fields["target"] = amap.target
        if self.maps_dir is not None:
            path = Path(self.maps_dir) / name / self.hashes["map", name]
            path = amap.save(path / f"{_safe_name(it.sample.id)}.npz").resolve()
            try:
                fields["map_file"] = str(path.relative_to(self.out_dir.resolve()))
            except ValueError:
                fields["map_file"] = str(path)
        return fields

    def _answer_lines(self, name: str, todo: list[Loaded]) -> Iterator[dict]:
        """Answer lines of a chunk: the pipeline's batched form over the chunk where it has
        one (``batch_pipelines``), else (or after a failure, to pin it down) one by one."""
        ready = [it for it in todo if not it.error]
        results: dict[int, Any] = {}
        share = 0.0
        if self.batch_pipelines and len(ready) > 1:
            t0 = time.perf_counter()
            try:
                batch = run_pipeline_batch(
                    name, self.adapter, [it.sample for it in ready], self.options
                )
                results = {id(it): r for it, r in zip(ready, batch, strict=True)}
                share = (time.perf_counter() - t0) / len(ready)
            except Exception:  # fall back to one sample at a time
                results = {}
        for it in todo:
            result = results.get(id(it))
            record = self._line(it, "answer", name, self._answer_fields, result)
            if result is not None:
                record["timing"]["total"] += share
            yield record

    def _answer_fields(
        self, it: Loaded, name: str, timing: dict[str, Any], result: Any = None
    ) -> dict[str, Any]:
        if result is None:
            result = run_pipeline(name, self.adapter, it.sample, self.options)
        result = dict(result)
        answer = result.pop("answer")
        crops = result.pop("crops")
        if "seconds" in result:  # timings stay out of the comparable part of the line
            timing["pipeline"] = result.pop("seconds")
        steps, step_seconds = _pop_seconds(list(result.pop("steps", []) or []))
        if step_seconds:
            timing["steps"] = step_seconds
        return {
            "answer": answer,
            "score": score_answer(self.metric, answer, it.sample),
            "metric": self.metric,
            "crops": crops,
            "steps": clean(steps),
            "info": _jsonable_items(result),
        }
