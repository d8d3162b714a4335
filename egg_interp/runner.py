"""The evaluation runner: maps and answers for every sample, appended to a JSONL file.

:func:`evaluate` writes one line per (sample, map method) and one per (sample, answer
pipeline) through :class:`egg_interp.results.ResultsWriter`: appended whole, fsynced, keyed
by ``(sample_id, kind, name, config_hash)``; a re-run skips every key already present, so a
crash or Ctrl-C loses only the lines being computed (one sample's, or one batch's maps with
``batch_size > 1``) and duplicates nothing. Under ``torchrun`` or ``accelerate
launch`` each rank takes every ``world_size``-th sample, writes ``out.rank{r}.jsonl``, and
rank 0 merges the parts into ``out`` after a barrier (:mod:`egg_interp.distributed`).

Line layout (``kind`` = ``"map"`` or ``"answer"``); fields common to both kinds:

``sample_id, kind, name, config_hash``
    The key. ``name`` is the method (maps) or pipeline (answers).
``config``
    What the hash covers: model, a fingerprint of its weights' values, dtype, prompt suffix,
    dataset, split (and, for synthetic scenes, their recipe's fingerprint), code version, and
    the method's or pipeline's options (for maps also the pointing-game tolerance, top-k and
    a smoothing other than the paper's).
``index, dataset, split, family, model, question, answers, image_size, boxes, box_source,
evidence_area, size_bucket``
    The sample: position in the dataset, its evidence boxes (original-image pixels) and the
    share of the image they cover (:func:`egg_interp.scoring.evidence_area_fraction`).
``error``
    ``""``, or ``"Type: message"`` when the work failed (the line then has no scores;
    ``retry_errors=True`` runs it again).
``timing``
    Seconds (``total``, and ``method`` / per-step ``steps``): the only fields that differ
    between two runs of the same config, with ``run`` (rank, world size, host, time, commit).

Map lines add ``scores``, ``map``, ``regions``, ``meta`` and optionally ``map_file`` (see
:func:`egg_interp.scoring.score_map`), and ``reference``: the pointing game of the reference
pointers (centre, uniform-random map, random object, the map's peak on any object; see
:func:`egg_interp.scoring.reference_scores`); answer lines add ``answer``, ``score``, ``metric``,
``crops``, ``steps`` and ``info`` (other outputs of the pipeline, e.g. the loop's decision).
"""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from egg_interp import __version__
from egg_interp.data.sample import Sample, count_problems, describe_problems
from egg_interp.distributed import DistInfo, barrier, dist_info, init_process_group, shard
from egg_interp.distributed import shutdown as shutdown_process_group
from egg_interp.errors import InputError
from egg_interp.methods import METHODS, get_method
from egg_interp.models.base import VLMAdapter
from egg_interp.pipelines import PIPELINES, PipelineOptions
from egg_interp.regions import DEFAULT_SIGMA
from egg_interp.results import (
    SCHEMA_VERSION,
    Key,
    ResultsWriter,
    config_hash,
    is_error,
    key_of,
    merge_results,
    part_paths,
    rank_path,
    read_results,
    weights_fingerprint,
)
from egg_interp.runner_lines import Job, LinePlan
from egg_interp.settings import resolve_name

CODE_VERSION = f"egg_interp {__version__}, results schema {SCHEMA_VERSION}"
"""The code version every config hash includes. Bump the package version (or the schema) when
a change alters results; the git commit is recorded in ``run.commit`` but not hashed, so an
unrelated commit does not throw away finished work."""


@dataclass
class RunSummary:
    """What one call of :func:`evaluate` did (on this rank).

    Attributes
    ----------
    out : Path
        The merged results file (the rank's part until rank 0 has merged).
    written, skipped, errors : int
        Lines written now, keys skipped as already done, and written lines that record a failure.
    seconds : float
    merged : int or None
        Lines in ``out`` after the merge, when this process merged.
    problems : dict of str to int
        Samples (all of them, not only this rank's share) that the loader flagged
        (``meta["problem"]``: no boxes because of a missing image or OCR file, ...), by
        kind; rank 0 prints them at the end of the run.
    config_hashes : dict of (kind, name) to str
        The config hash of every job of the run (select its lines with
        :func:`egg_interp.summaries.current_records`).
    """

    out: Path
    written: int = 0
    skipped: int = 0
    errors: int = 0
    seconds: float = 0.0
    merged: int | None = None
    problems: dict[str, int] = field(default_factory=dict)
    config_hashes: dict[tuple[str, str], str] = field(default_factory=dict)


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


class _Running:
    """Running means for the progress bar: answer score per pipeline, pointing game per method."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])

    def add(self, record: Mapping[str, Any]) -> None:
        if is_error(record):
            return
        if record["kind"] == "answer":
            label, value = record["name"], record.get("score")
        else:
            label, value = f"pg:{record['name']}", (record.get("scores") or {}).get("pointing_game")
        if isinstance(value, (int, float)) and math.isfinite(value):
            self.sums[label][0] += value
            self.sums[label][1] += 1

    def postfix(self, limit: int = 8) -> dict[str, str]:
        return {k: f"{s / n:.3f}" for k, (s, n) in list(self.sums.items())[:limit] if n}


@dataclass
class _Resolved:
    """The names and options of one :func:`evaluate` call, resolved to what the run uses.

    Registered method and pipeline names (aliases resolved), the method options keyed by
    resolved name, the pipeline options with the loop settings made concrete for the model
    (``options.loop.for_model(adapter)``: the smoothing the maps get is recorded in the
    configs), and the dataset, split, metric and model identity that the lines record and the
    config hashes cover.
    """

    methods: list[str]
    pipelines: list[str]
    method_options: dict[str, dict[str, Any]]
    options: PipelineOptions
    dataset: str
    split: str
    metric: str
    model: str


def _resolve(
    adapter: VLMAdapter,
    samples: Sequence[Sample],
    methods: Sequence[str],
    pipelines: Sequence[str],
    *,
    dataset: str | None,
    split: str | None,
    metric: str | None,
    model: str | None,
    method_options: Mapping[str, Mapping[str, Any]] | None,
    pipeline_options: PipelineOptions | None,
) -> _Resolved:
    """Resolve the names and fill in the defaults of :func:`evaluate`'s arguments.

    Method and pipeline names (and the keys of ``method_options``) go through
    :func:`egg_interp.settings.resolve_name`, which raises :class:`InputError` for an unknown
    one; so does an empty selection. The loop settings are resolved for the model; dataset,
    split, metric and model default as :func:`evaluate` documents.
    """
    methods = [resolve_name(m, METHODS, "method") for m in methods]
    pipelines = [resolve_name(p, PIPELINES, "pipeline") for p in pipelines]
    if not methods and not pipelines:
        raise InputError("nothing to evaluate: give at least one method or pipeline")
    options = pipeline_options or PipelineOptions()
    loop = options.loop.for_model(adapter)  # the smoothing the maps get, recorded in configs
    options = PipelineOptions(loop=loop, max_new_tokens=options.max_new_tokens, seed=options.seed)
    method_options = {
        resolve_name(k, METHODS, "method"): dict(v) for k, v in (method_options or {}).items()
    }
    dataset = dataset or (samples[0].dataset if samples else "")
    split = split or next((s.split for s in samples if s.split), "") or "default"
    if metric is None:
        from egg_interp.data.registry import DATASETS

        metric = DATASETS[dataset].metric if dataset in DATASETS else "exact"
    model = model or adapter.name
    return _Resolved(methods, pipelines, method_options, options, dataset, split, metric, model)


def _base_config(adapter: VLMAdapter, samples: Sequence[Sample], run: _Resolved) -> dict[str, Any]:
    """The part of every job's config that the run shares.

    Model identity, a fingerprint of its weights' values, dtype, prompt suffix, dataset,
    split and :data:`CODE_VERSION`, plus ``data_recipe`` (the sorted, comma-joined recipe
    fingerprints) when samples carry a ``recipe`` in their meta (synthetic scenes).
    """
    base_cfg = {
        "model": run.model,
        "weights": weights_fingerprint(adapter.model),
        "dtype": str(adapter.dtype).replace("torch.", ""),
        "prompt_suffix": adapter.prompt_suffix,
        "dataset": run.dataset,
        "split": run.split,
        "code": CODE_VERSION,
    }
    recipes = sorted({str(s.meta["recipe"]) for s in samples if s.meta.get("recipe")})
    if recipes:  # synthetic data: how its samples were rendered (scenes' Recipe.fingerprint)
        base_cfg["data_recipe"] = ",".join(recipes)
    return base_cfg


def _build_jobs(
    base_cfg: Mapping[str, Any], run: _Resolved, tolerance: float, top_k: int
) -> tuple[list[Job], dict[tuple[str, str], str]]:
    """The jobs of the run (a map job per method, then an answer job per pipeline) and the
    config hash of each, keyed by ``(kind, name)``.

    A map job's config adds the method's options, the pointing-game ``tolerance``, ``top_k``
    and, only when it differs from :data:`egg_interp.regions.DEFAULT_SIGMA`, the loop's
    ``sigma``; an answer job's adds the pipeline options it reads and the metric.
    """
    sigma = run.options.loop.sigma
    jobs: list[Job] = []
    for m in run.methods:
        cfg = {
            **base_cfg,
            "kind": "map",
            "method": m,
            "options": run.method_options.get(m, {}),
            "tolerance": tolerance,
            "top_k": top_k,
        }
        if sigma != DEFAULT_SIGMA:  # the scores' regions and spatial entropy
            cfg["sigma"] = sigma
        jobs.append(("map", m, cfg))
    for p in run.pipelines:
        cfg = {
            **base_cfg,
            "kind": "answer",
            "pipeline": p,
            "options": run.options.subset(PIPELINES[p].uses),
            "metric": run.metric,
        }
        jobs.append(("answer", p, cfg))
    hashes = {(kind, name): config_hash(cfg) for kind, name, cfg in jobs}
    return jobs, hashes


def _build_methods(run: _Resolved, batch_size: int) -> dict[str, Any]:
    """The method object of every map method, by name, built with its options.

    A method that declares an inner batch (``internal_batch_option``) gets ``batch_size`` for
    it when ``batch_size > 1``, unless its options set it already.
    """
    method_objs = {}
    for m in run.methods:
        kwargs = dict(run.method_options.get(m, {}))
        option = METHODS[m].internal_batch_option
        if batch_size > 1 and option is not None:
            kwargs.setdefault(option, batch_size)
        method_objs[m] = get_method(m, **kwargs)
    return method_objs


def _read_done(
    out: Path,
    own: Path,
    hashes: Mapping[tuple[str, str], str],
    my_share: Sequence[tuple[int, Sample]],
    retry_errors: bool,
) -> tuple[set[Key], _Running]:
    """The keys already written, for resume, and running means seeded from them.

    Reads ``out``, this rank's file ``own`` and every rank part next to ``out``; with
    ``retry_errors`` a line that records an error does not count as done. The running means
    take the lines of this rank's samples (``my_share``) under this run's config hashes.
    """
    wanted = set(hashes.values())
    my_ids = {s.id for _, s in my_share}
    done: set[Key] = set()
    running = _Running()
    for path in dict.fromkeys([out, own, *part_paths(out)]):
        for r in read_results(path):
            if retry_errors and is_error(r):
                continue
            done.add(key_of(r))
            if r["sample_id"] in my_ids and r["config_hash"] in wanted:
                running.add(r)
    return done, running


def _run_info(info: DistInfo, data_root: str | Path | None, batch_size: int) -> dict[str, Any]:
    """The ``run`` field of every line, less its ``time``: rank, world size, host, git commit,
    data root and batch size (recorded, not hashed)."""
    return {
        "rank": info.rank,
        "world_size": info.world_size,
        "host": socket.gethostname(),
        "commit": _git_commit(),
        "data_root": str(data_root) if data_root is not None else None,
        "batch_size": batch_size,
    }


def _progress_bar(show: bool, total: int, dataset: str) -> Any:
    """A tqdm bar over ``total`` samples when ``show``, else ``None``; it refreshes at least
    every 0.1 s on a terminal and every 10 s when stderr is a log file."""
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=f"evaluate {dataset}",
        unit="sample",
        dynamic_ncols=True,
        mininterval=0.1 if sys.stderr.isatty() else 10.0,  # a log file: every 10 s
    )


def _run_chunks(
    plan: LinePlan,
    my_share: Sequence[tuple[int, Sample]],
    done: set[Key],
    own: Path,
    *,
    batch_size: int,
    run_info: Mapping[str, Any],
    summary: RunSummary,
    running: _Running,
    bar: Any,
) -> None:
    """Run this rank's samples chunk by chunk, appending their lines to ``own``.

    Each chunk of ``batch_size`` samples runs the jobs whose key is not in ``done``
    (:meth:`LinePlan.run`); every line gets its ``run`` field, stamped with the time, and is
    counted in ``summary`` (written, skipped, errors) and ``running``. The bar, if any, moves
    a chunk at a time and is closed at the end, even on an error.
    """
    try:
        with ResultsWriter(own) as writer:
            for first in range(0, len(my_share), batch_size):
                chunk = my_share[first : first + batch_size]
                work = []
                for index, sample in chunk:
                    todo = [
                        (kind, name)
                        for kind, name, _ in plan.jobs
                        if (sample.id, kind, name, plan.hashes[kind, name]) not in done
                    ]
                    summary.skipped += len(plan.jobs) - len(todo)
                    if todo:
                        work.append((index, sample, todo))
                for record in plan.run(work):
                    record["run"] = {**run_info, "time": datetime.now(timezone.utc).isoformat()}
                    writer.write(record)
                    summary.written += 1
                    summary.errors += bool(record["error"])
                    running.add(record)
                if bar is not None:
                    bar.set_postfix(running.postfix(), refresh=False)
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()


def _finish(out: Path, info: DistInfo, device: str, created_group: bool) -> int | None:
    """Merge the rank parts into ``out`` and end the process group if this run started it.

    Ranks meet at a barrier before and after the merge (distributed runs only); the main
    process merges when the run is distributed or parts from an earlier run lie next to
    ``out``. Returns the number of merged lines, or ``None`` when this process did not merge.
    """
    merged = None
    if info.distributed:
        barrier(device)
    if info.is_main and (info.distributed or part_paths(out)):
        merged = merge_results(out, part_paths(out))
    if info.distributed:
        barrier(device)
    if created_group:
        shutdown_process_group()
    return merged


def evaluate(
    adapter: VLMAdapter,
    samples: Sequence[Sample],
    methods: Sequence[str] = ("egg",),
    pipelines: Sequence[str] = ("base", "egg"),
    out: str | Path = "results.jsonl",
    *,
    dataset: str | None = None,
    split: str | None = None,
    metric: str | None = None,
    model: str | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    pipeline_options: PipelineOptions | None = None,
    tolerance: float = 15.0,
    top_k: int = 2,
    batch_size: int = 1,
    batch_pipelines: bool = True,
    maps_dir: str | Path | None = None,
    retry_errors: bool = False,
    progress: bool = True,
    dist: DistInfo | None = None,
    data_root: str | Path | None = None,
) -> RunSummary:
    """Evaluate map methods and answer pipelines on samples, appending to a JSONL file.

    Parameters
    ----------
    adapter : VLMAdapter
        The loaded model.
    samples : sequence of Sample
        The whole dataset (a distributed run takes this rank's share itself).
    methods : sequence of str
        Map methods (:data:`egg_interp.methods.METHODS`); each gets a ``"map"`` line per sample.
    pipelines : sequence of str
        Answer pipelines (:data:`egg_interp.pipelines.PIPELINES`); an ``"answer"`` line each.
    out : str or Path
        The results file (appended to; parts go next to it as ``out.rank{r}.jsonl``).
    dataset, split : str, optional
        Recorded and hashed; both default to the samples' own (``Sample.split``, the split
        the loader actually read; ``"default"`` only when the samples carry none).
    metric : str, optional
        Answer metric; default the registered dataset's (``"exact"`` for an unregistered one).
    model : str, optional
        Model identity for the config hash; default ``adapter.name``. Pass what the user typed
        (a Hugging Face id, or ``"organism"``) so that a moved checkpoint keeps its results.
    method_options : mapping, optional
        ``{method: {option: value}}`` passed to the method's constructor (and hashed).
    pipeline_options : PipelineOptions, optional
        Options of the pipelines; each pipeline's hash covers only the fields it reads.
    tolerance : float, default 15.0
        Pointing-game radius in original-image pixels.
    top_k : int, default 2
        Regions kept per map for the region scores.
    batch_size : int, default 1
        Samples per map batch for methods that batch across prompts (``batch_spaces``, e.g.
        ``egg``: one padded forward/backward for the chunk), and the inner batch of methods
        that declare one (``internal_batch_option``: integrated gradients, SmoothGrad), and
        samples per answer batch of the pipelines (every registered one has a batched form:
        the loop's steps batched across the samples still running, one left-padded generate
        for the answers). Not hashed: it changes speed and memory, and results only in the
        last digits of a padded batch.
    batch_pipelines : bool, default True
        Run pipelines in their batched form when ``batch_size > 1``; ``False`` runs them one
        sample at a time (the old path, kept for the benchmark).
    maps_dir : str or Path, optional
        Also save every map as ``maps_dir/<method>/<config_hash>/<sample>.npz``.
    retry_errors : bool, default False
        Run again the keys whose line records an error (the new line wins in a merge).
    progress : bool, default True
        Show a tqdm bar (on rank 0) with running means in its postfix.
    dist : DistInfo, optional
        Rank and world size; default from the environment (:func:`egg_interp.distributed.dist_info`).
    data_root : str or Path, optional
        Recorded in ``run`` (not hashed) so that ``report --grids`` can find the images.

    Returns
    -------
    RunSummary
    """
    start = time.perf_counter()
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    info = dist or dist_info()
    run = _resolve(
        adapter,
        samples,
        methods,
        pipelines,
        dataset=dataset,
        split=split,
        metric=metric,
        model=model,
        method_options=method_options,
        pipeline_options=pipeline_options,
    )
    jobs, hashes = _build_jobs(_base_config(adapter, samples, run), run, tolerance, top_k)
    method_objs = _build_methods(run, batch_size)

    out = Path(out)
    own = rank_path(out, info.rank) if info.distributed else out
    created_group = init_process_group(info, str(adapter.device))
    my_share = shard(samples, info.rank, info.world_size)
    done, running = _read_done(out, own, hashes, my_share, retry_errors)

    run_info = _run_info(info, data_root, batch_size)
    plan = LinePlan(
        adapter=adapter,
        jobs=jobs,
        hashes=hashes,
        method_objs=method_objs,
        options=run.options,
        metric=run.metric,
        tolerance=tolerance,
        top_k=top_k,
        maps_dir=maps_dir,
        out_dir=out.parent,
        common={"dataset": run.dataset, "split": run.split, "model": run.model},
        batch_pipelines=batch_pipelines,
    )
    summary = RunSummary(out=out, config_hashes=dict(hashes))
    bar = _progress_bar(progress and info.is_main, len(my_share), run.dataset)
    _run_chunks(
        plan,
        my_share,
        done,
        own,
        batch_size=batch_size,
        run_info=run_info,
        summary=summary,
        running=running,
        bar=bar,
    )
    summary.merged = _finish(out, info, str(adapter.device), created_group)
    summary.seconds = time.perf_counter() - start
    summary.problems = count_problems(samples)
    if summary.problems and info.is_main:
        print(describe_problems(summary.problems), file=sys.stderr)
    return summary
