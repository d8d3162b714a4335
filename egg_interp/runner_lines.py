"""The lines of one chunk of samples: what :func:`egg_interp.runner.evaluate` writes.

:class:`LinePlan` holds everything fixed for a run (the model, its resolved
:class:`~egg_interp.run_config.RunConfig`, the pipeline options, the jobs and their configs,
the method objects, where maps are saved) and turns a chunk of samples into result lines:
maps method by method, then answers pipeline by pipeline, each batched across the chunk where
it can be (:func:`try_batch`: a failed batch falls back to one sample at a time, and those
lines record the batch's error in ``batch_error``). Every failure is caught and recorded in
the line's ``error`` field, so one bad sample never ends a run. The line layout is documented in
:mod:`egg_interp.runner`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from egg_interp.data.sample import Sample
from egg_interp.errors import DegenerateMapError
from egg_interp.faithfulness import faithfulness_scores
from egg_interp.metrics.deletion import area_input
from egg_interp.models.base import VLMAdapter
from egg_interp.pipelines import PipelineOptions, run_pipeline, run_pipeline_batch
from egg_interp.results import clean, config_hash
from egg_interp.run_config import RunConfig
from egg_interp.scoring import (
    evidence_area_fraction,
    reference_scores,
    score_answer,
    score_map,
    size_bucket,
)


@dataclass(frozen=True)
class Job:
    """One line per sample: its kind (``"map"`` or ``"answer"``), the method or pipeline name,
    and the config the line records (its hash is the line's ``config_hash``)."""

    kind: str
    name: str
    config: dict[str, Any]
    hash: str = field(init=False)
    """:func:`egg_interp.results.config_hash` of :attr:`config`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", config_hash(self.config))

    @property
    def key(self) -> tuple[str, str, str]:
        """``(kind, name, config_hash)``: a line's key less its sample id."""
        return self.kind, self.name, self.hash


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


@dataclass(frozen=True)
class Batched:
    """What :func:`try_batch` got: results by ``id(item)``, each item's share of the batch's
    seconds, and the batch's exception (``"Type: message"``, or ``""``)."""

    results: dict[int, Any]
    seconds_each: float = 0.0
    error: str = ""


def try_batch(
    items: Sequence[Any], run_batch: Callable[[Sequence[Any]], Sequence[Any]] | None
) -> Batched:
    """Run ``run_batch`` over ``items`` (two or more, when there is a batch form).

    On any exception nothing is kept: the caller computes the items one by one, which pins
    the failure on the sample that causes it, and records :attr:`Batched.error` on the lines
    it computed alone.
    """
    if run_batch is None or len(items) < 2:
        return Batched({})
    t0 = time.perf_counter()
    try:
        out = run_batch(items)
        results = {id(it): r for it, r in zip(items, out, strict=True)}
    except Exception as exc:  # the items go one by one; the lines record why
        return Batched({}, error=_error_text(exc))
    return Batched(results, (time.perf_counter() - t0) / len(items))


@dataclass(frozen=True)
class MapFolder:
    """Where a run saves its maps: ``root/<method>/<config_hash>/<sample>.npz``; the lines
    name each file relative to ``lines_dir`` (the results file's folder) when it is inside.
    Every saved map's ``meta["settings"]`` holds ``settings`` (the model, its weights'
    fingerprint and :func:`egg_interp.models.record.model_record`)."""

    root: Path
    lines_dir: Path
    settings: Mapping[str, Any] = field(default_factory=dict)

    def save(
        self, amap: Any, job: Job, sample_id: str, curves: Mapping[str, Any] | None = None
    ) -> str:
        """Save ``amap`` for ``job`` and ``sample_id``, with its faithfulness ``curves`` (if
        measured) in ``meta["faithfulness"]``; return the line's ``map_file``."""
        folder = self.root / job.name / job.hash
        meta = {**amap.meta, "settings": dict(self.settings)}
        if curves is not None:
            meta["faithfulness"] = dict(curves)
        recorded = replace(amap, meta=meta)
        path = recorded.save(folder / f"{_safe_name(sample_id)}.npz").resolve()
        try:
            return str(path.relative_to(self.lines_dir.resolve()))
        except ValueError:
            return str(path)


@dataclass
class LinePlan:
    """Everything fixed for a run; :meth:`lines` yields the lines of a chunk of samples.

    Attributes
    ----------
    adapter : VLMAdapter
    run : RunConfig
        The run's settings, resolved (:meth:`RunConfig.resolved`): scoring (``tolerance``,
        ``map_top_k``, ``metric``, ``seed``), batching, and the names every line records.
    options : PipelineOptions
        What the pipelines run with (built from ``run``).
    jobs : tuple of Job
        A map job per method, then an answer job per pipeline.
    methods : mapping of str to AttributionMethod
        The map methods' objects, by name.
    maps : MapFolder or None
        Where maps are saved, if they are.
    """

    adapter: VLMAdapter
    run: RunConfig
    options: PipelineOptions
    jobs: tuple[Job, ...]
    methods: Mapping[str, Any]
    maps: MapFolder | None = None

    @property
    def hashes(self) -> dict[tuple[str, str], str]:
        """The config hash of every job, keyed by ``(kind, name)``."""
        return {(j.kind, j.name): j.hash for j in self.jobs}

    def lines(self, work: Sequence[tuple[int, Sample, list[tuple[str, str]]]]) -> Iterator[dict]:
        """Maps method by method (batched across the chunk where the method can), then answers;
        a batched map the chunk already computed (the loop's step 0) is not computed again."""
        items = [self._load(index, sample, todo) for index, sample, todo in work]
        # one scope per chunk: the chunk's egg map lines and its egg loop's step 0 ask for the
        # same batched maps, which are then computed once (VLMAdapter.remember_maps)
        with self.adapter.remember_maps():
            for job in self.jobs:
                todo = [it for it in items if (job.kind, job.name) in it.todo]
                yield from self._job_lines(job, todo)

    @staticmethod
    def _load(index: int, sample: Sample, todo: list[tuple[str, str]]) -> Loaded:
        """The sample with its image loaded once (an unreadable one fails all its jobs)."""
        item = Loaded(index, sample, todo)
        try:
            image = sample.image
            item.image = image
            item.sample = replace(sample, load_image=lambda image=image: image)
        except Exception as exc:  # an unreadable image fails every job of the sample
            item.error = _error_text(exc)
        return item

    def _job_lines(self, job: Job, todo: list[Loaded]) -> Iterator[dict]:
        """The lines of one job over a chunk: its batched form where it has one (maps of a
        batching method; pipelines when ``run.batch_pipelines``), else, or after the batch
        failed (to pin the failure down), one by one."""
        ready = [it for it in todo if not it.error]
        batch = try_batch(ready, self._batch_fn(job))
        fields = self._map_fields if job.kind == "map" else self._answer_fields
        for it in todo:
            result = batch.results.get(id(it))
            record = self._line(it, job, fields, result)
            if result is not None:
                record["timing"]["total"] += batch.seconds_each
            elif batch.error and not it.error:
                record["batch_error"] = batch.error
            yield record

    def _batch_fn(self, job: Job) -> Callable[[Sequence[Loaded]], Sequence[Any]] | None:
        """The job's batched form over loaded items, or ``None`` when it has none."""
        if job.kind == "map":
            method = self.methods[job.name]
            if not method.batched:
                return None
            return lambda items: method.attribute_batch(
                self.adapter, [([it.image], it.sample.question) for it in items]
            )
        if not self.run.batch_pipelines:
            return None
        return lambda items: run_pipeline_batch(
            job.name, self.adapter, [it.sample for it in items], self.options
        )

    def _line(self, it: Loaded, job: Job, compute: Any, result: Any) -> dict:
        """One line: the sample's fields, then what ``compute`` adds (or the error it raised)."""
        record = self._head(it, job)
        timing: dict[str, Any] = {}
        t0 = time.perf_counter()
        if not it.error:
            try:
                record.update(compute(it, job, timing, result))
            except Exception as exc:  # recorded, not raised: one bad sample must not end a run
                record["error"] = _error_text(exc)
        timing["total"] = timing.get("total", 0.0) + time.perf_counter() - t0
        record["timing"] = timing
        return record

    def _head(self, it: Loaded, job: Job) -> dict[str, Any]:
        size = it.image.size if it.image is not None else None
        frac = evidence_area_fraction(it.sample.boxes, size) if size else math.nan
        return {
            "sample_id": it.sample.id,
            "kind": job.kind,
            "name": job.name,
            "config_hash": job.hash,
            "config": job.config,
            "dataset": self.run.dataset,
            "split": self.run.split,
            "model": self.run.model,
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

    def _map_fields(
        self, it: Loaded, job: Job, timing: dict[str, Any], amap: Any = None
    ) -> dict[str, Any]:
        if amap is None:
            amap = self.methods[job.name].attribute(self.adapter, [it.image], it.sample.question)
        meta = dict(amap.meta)
        timing["method"] = float(meta.pop("seconds", math.nan))
        meta.pop("batch_size", None)
        run = self.run
        areas, curves = self._faithfulness(it, amap, timing)
        fields = score_map(
            amap,
            it.sample.boxes,
            tolerance=run.tolerance,
            top_k=run.map_top_k,
            region_kwargs={"sigma": run.loop.sigma},
            inputs=areas,
        )
        fields["reference"] = reference_scores(it.sample, amap, run.tolerance, run.seed)
        fields["meta"] = _jsonable_items(meta)
        fields["target"] = amap.target
        if self.maps is not None:
            fields["map_file"] = self.maps.save(amap, job, it.sample.id, curves)
        return fields

    def _faithfulness(
        self, it: Loaded, amap: Any, timing: dict[str, Any]
    ) -> tuple[dict[str, float], dict[str, Any] | None]:
        """The map's deletion/insertion areas (map-score inputs: ``deletion_morf``, ...) and
        the curves a saved map keeps, when the run measures them (``run.faithfulness``).

        A degenerate map ranks no cell: its areas are NaN (the scores are written, as NaN)
        and it has no curves. The cost goes to ``timing["faithfulness"]``: seconds, masked
        inputs scored and batched forwards (the random order's are paid by a prompt's first
        map only).
        """
        settings = self.run.faithfulness
        if settings is None:
            return {}, None
        try:
            amap.check()
        except DegenerateMapError:
            return {
                area_input(c, o): math.nan for c in settings.curves for o in settings.orders
            }, None
        _, record = faithfulness_scores(self.adapter, it.sample, amap, settings)
        cost = {k: record.pop(k) for k in ("seconds", "rows", "forwards")}
        timing["faithfulness"] = cost
        return record["areas"], {"settings": settings.to_dict(), **record}

    def _answer_fields(
        self, it: Loaded, job: Job, timing: dict[str, Any], result: Any = None
    ) -> dict[str, Any]:
        if result is None:
            result = run_pipeline(job.name, self.adapter, it.sample, self.options)
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
            "score": score_answer(self.run.metric, answer, it.sample),
            "metric": self.run.metric,
            "crops": crops,
            "steps": clean(steps),
            "info": _jsonable_items(result),
        }
