"""The evaluation runner: maps and answers for every sample, appended to a JSONL file.

:func:`evaluate` (keywords) and :func:`evaluate_config` (a
:class:`~egg_interp.run_config.RunConfig`, what the command line builds) write one line per
(sample, map method) and one per (sample, answer pipeline) through :class:`egg_interp.results.ResultsWriter`: appended whole, fsynced, keyed
by ``(sample_id, kind, name, config_hash)``; a re-run skips every key already present, so a
crash or Ctrl-C loses only the lines being computed (one sample's, or one batch's maps with
``batch_size > 1``) and duplicates nothing. Under ``torchrun`` or ``accelerate
launch`` each rank takes every ``world_size``-th sample, writes ``out.rank{r}.jsonl``, and
rank 0 merges the parts into ``out`` after a barrier (:mod:`egg_interp.distributed`).

Line layout (``kind`` = ``"map"`` or ``"answer"``); fields common to both kinds:

``sample_id, kind, name, config_hash``
    The key. ``name`` is the method (maps) or pipeline (answers).
``config``
    What the hash covers: model, a fingerprint of its weights' values, the settings behind
    its numbers (``revision``: the hub snapshot's commit when known; ``dtype``;
    ``attn_implementation``; ``resolution``: the processor's sizes, pixel budgets, tiling and
    token counts; ``versions`` of torch, transformers and egg_interp), prompt suffix,
    dataset, split (and, for synthetic scenes, their recipe's fingerprint), the results code
    (``code``: :func:`egg_interp.code_key.code_key`), and the method's or pipeline's options
    (for maps also the pointing-game tolerance, the regions scored and a smoothing other than
    the paper's). Lines of other results code are never reused: a run over a file holding
    some warns once and writes fresh lines beside them.
``index, dataset, split, family, model, question, answers, image_size, boxes, box_source,
evidence_area, size_bucket``
    The sample: position in the dataset, its evidence boxes (original-image pixels) and the
    share of the image they cover (:func:`egg_interp.scoring.evidence_area_fraction`).
``error``
    ``""``, or ``"Type: message"`` when the work failed (the line then has no scores;
    ``retry_errors=True`` runs it again).
``batch_error``
    Only on a line computed alone because its batch failed: the batch's ``"Type: message"``.
``timing``
    Seconds (``total``, and ``method`` / per-step ``steps``): the only fields that differ
    between two runs of the same config, with ``run`` (rank, world size, host, time, commit).

Map lines add ``scores``, ``map``, ``regions``, ``meta`` and optionally ``map_file`` (see
:func:`egg_interp.scoring.score_map`), and ``reference``: the pointing game of the reference
pointers (centre, uniform-random map, random object, the map's peak on any object; see
:func:`egg_interp.scoring.reference_scores`); answer lines add ``answer``, ``score``, ``metric``,
``crops``, ``steps`` and ``info`` (other outputs of the pipeline, e.g. the loop's decision).
With ``faithfulness`` settings (``evaluate --faithfulness``) a map line's ``scores`` also hold
its deletion and insertion AUCs (MoRF, LeRF, random order) and MoRF-LeRF gaps (the metric
registry's group ``"faithfulness"``), its ``timing`` the curves' ``faithfulness`` cost
(seconds, masked inputs, batched forwards), and its saved map the curves
(``meta["faithfulness"]``).
"""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from egg_interp.code_key import code_key
from egg_interp.data.sample import Sample, count_problems, describe_problems
from egg_interp.distributed import DistInfo, barrier, dist_info, init_process_group, shard
from egg_interp.distributed import shutdown as shutdown_process_group
from egg_interp.methods import METHODS, get_method
from egg_interp.metrics.deletion import FaithfulnessSettings
from egg_interp.models.base import VLMAdapter
from egg_interp.models.record import model_record
from egg_interp.pipelines import PIPELINES, PipelineOptions
from egg_interp.results import (
    Key,
    ResultsWriter,
    is_error,
    key_of,
    merge_results,
    part_paths,
    rank_path,
    read_results,
    weights_fingerprint,
    without_neutral,
)
from egg_interp.run_config import RunConfig
from egg_interp.runner_lines import Job, LinePlan, MapFolder


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


def _base_config(
    adapter: VLMAdapter, samples: Sequence[Sample], run: RunConfig, record: Mapping[str, Any]
) -> dict[str, Any]:
    """The part of every job's config that the run shares (``run`` resolved).

    Model identity, a fingerprint of its weights' values and the settings behind its
    numbers (``record``, :func:`egg_interp.models.record.model_record`: revision, dtype,
    attention implementation, resolution settings, library versions), prompt suffix,
    dataset, split and the results code (:func:`egg_interp.code_key.code_key`), plus
    ``data_recipe`` (the sorted, comma-joined recipe fingerprints) when samples carry a
    ``recipe`` in their meta (synthetic scenes).
    """
    base_cfg = {
        "model": run.model,
        "weights": weights_fingerprint(adapter.model),
        "revision": record["revision"],
        "dtype": record["dtype"],
        "attn_implementation": record["attn_implementation"],
        "resolution": record["resolution"],
        "prompt_suffix": adapter.prompt_suffix,
        "dataset": run.dataset,
        "split": run.split,
        "code": code_key(),
        "versions": record["versions"],
    }
    recipes = sorted({str(s.meta["recipe"]) for s in samples if s.meta.get("recipe")})
    if recipes:  # synthetic data: how its samples were rendered (scenes' Recipe.fingerprint)
        base_cfg["data_recipe"] = ",".join(recipes)
    return base_cfg


def _build_jobs(
    base_cfg: Mapping[str, Any], run: RunConfig, options: PipelineOptions
) -> tuple[Job, ...]:
    """The jobs of the run: a map job per method, then an answer job per pipeline.

    A map job's config adds the method's options, the pointing-game ``tolerance``, the regions
    scored (``top_k``: ``run.map_top_k``), the loop's ``sigma`` (left out at the paper's,
    :data:`egg_interp.results.HASH_NEUTRAL`) and the ``faithfulness`` settings (left out when
    off); an answer job's adds the pipeline options it reads and the metric.
    """
    jobs: list[Job] = []
    for m in run.methods:
        cfg = {
            **base_cfg,
            "kind": "map",
            "method": m,
            "options": run.method_options.get(m, {}),
            "tolerance": run.tolerance,
            "top_k": run.map_top_k,
            "sigma": run.loop.sigma,
            "faithfulness": run.faithfulness.hashed() if run.faithfulness else None,
        }
        jobs.append(Job("map", m, without_neutral("map", cfg)))
    for p in run.pipelines:
        cfg = {
            **base_cfg,
            "kind": "answer",
            "pipeline": p,
            "options": options.subset(PIPELINES[p].uses),
            "metric": run.metric,
        }
        jobs.append(Job("answer", p, cfg))
    return tuple(jobs)


def _build_methods(run: RunConfig) -> dict[str, Any]:
    """The method object of every map method, by name, built with its options.

    A method that declares an inner batch (``internal_batch_option``) gets ``run.batch_size``
    for it when that is above 1, unless its options set it already.
    """
    method_objs = {}
    for m in run.methods:
        kwargs = dict(run.method_options.get(m, {}))
        option = METHODS[m].internal_batch_option
        if run.batch_size > 1 and option is not None:
            kwargs.setdefault(option, run.batch_size)
        method_objs[m] = get_method(m, **kwargs)
    return method_objs


def _plan(
    adapter: VLMAdapter,
    samples: Sequence[Sample],
    run: RunConfig,
    maps_dir: str | Path | None,
    out: Path,
) -> LinePlan:
    """What stays fixed for the run: its pipeline options, jobs, method objects, map folder
    (whose maps record the model, its weights' fingerprint and the settings behind them)."""
    options = PipelineOptions(
        run.loop,
        max_new_tokens=run.max_new_tokens,
        seed=run.seed,
        reuse_forward=run.reuse_forward,
    )
    record = model_record(adapter)
    base_cfg = _base_config(adapter, samples, run, record)
    settings = {"model": run.model, "weights": base_cfg["weights"], **record}
    return LinePlan(
        adapter=adapter,
        run=run,
        options=options,
        jobs=_build_jobs(base_cfg, run, options),
        methods=_build_methods(run),
        maps=MapFolder(Path(maps_dir), out.parent, settings) if maps_dir is not None else None,
    )


def _read_done(
    paths: Sequence[Path],
    hashes: Mapping[tuple[str, str], str],
    my_share: Sequence[tuple[int, Sample]],
    retry_errors: bool,
) -> tuple[set[Key], _Running, Counter[str]]:
    """The keys already written, for resume; running means seeded from them; and the count of
    lines written by other results code, by their ``code``.

    Reads ``paths`` (the results file, this rank's file and the rank parts next to it); with
    ``retry_errors`` a line that records an error does not count as done. The running means
    take the lines of this rank's samples (``my_share``) under this run's config hashes.
    """
    wanted = set(hashes.values())
    my_ids = {s.id for _, s in my_share}
    done: set[Key] = set()
    running = _Running()
    other_code: Counter[str] = Counter()
    for path in paths:
        for r in read_results(path):
            config = r.get("config")
            code = config.get("code") if isinstance(config, dict) else None
            if code is not None and code != code_key():
                other_code[str(code)] += 1
            if retry_errors and is_error(r):
                continue
            done.add(key_of(r))
            if r["sample_id"] in my_ids and r["config_hash"] in wanted:
                running.add(r)
    return done, running, other_code


def _warn_other_code(out: Path, other_code: Counter[str]) -> None:
    """One line when ``out`` holds lines of other results code (they are kept, not reused)."""
    if not other_code:
        return
    codes = ", ".join(sorted(other_code))
    warnings.warn(
        f"{out}: {sum(other_code.values())} line(s) come from other results code ({codes}); "
        f"this run ({code_key()}) reuses none of them and writes fresh lines beside them",
        RuntimeWarning,
        stacklevel=3,
    )


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


@dataclass
class _Progress:
    """Where a run's lines go and what is counted: the summary, running means and bar."""

    summary: RunSummary
    running: _Running
    bar: Any
    run_info: Mapping[str, Any]


def _chunk_work(
    plan: LinePlan, chunk: Sequence[tuple[int, Sample]], done: set[Key], summary: RunSummary
) -> list[tuple[int, Sample, list[tuple[str, str]]]]:
    """The chunk's samples with the ``(kind, name)`` of their jobs not yet ``done``; the
    jobs already done are counted as skipped in ``summary``."""
    work = []
    for index, sample in chunk:
        todo = [(j.kind, j.name) for j in plan.jobs if (sample.id, *j.key) not in done]
        summary.skipped += len(plan.jobs) - len(todo)
        if todo:
            work.append((index, sample, todo))
    return work


def _run_chunks(
    plan: LinePlan,
    my_share: Sequence[tuple[int, Sample]],
    done: set[Key],
    own: Path,
    progress: _Progress,
) -> None:
    """Run this rank's samples chunk by chunk (``plan.run.batch_size`` each), appending
    their lines to ``own``.

    Each chunk runs the jobs whose key is not in ``done`` (:meth:`LinePlan.lines`); every line
    gets its ``run`` field, stamped with the time, and is counted in the summary (written,
    skipped, errors) and the running means. The bar, if any, moves a chunk at a time and is
    closed at the end, even on an error.
    """
    summary, bar, step = progress.summary, progress.bar, plan.run.batch_size
    try:
        with ResultsWriter(own) as writer:
            for first in range(0, len(my_share), step):
                chunk = my_share[first : first + step]
                for record in plan.lines(_chunk_work(plan, chunk, done, summary)):
                    stamp = datetime.now(timezone.utc).isoformat()
                    record["run"] = {**progress.run_info, "time": stamp}
                    writer.write(record)
                    summary.written += 1
                    summary.errors += bool(record["error"])
                    progress.running.add(record)
                if bar is not None:
                    bar.set_postfix(progress.running.postfix(), refresh=False)
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
    map_top_k: int = 2,
    faithfulness: FaithfulnessSettings | None = None,
    batch_size: int = 1,
    batch_pipelines: bool = True,
    maps_dir: str | Path | None = None,
    retry_errors: bool = False,
    progress: bool = True,
    dist: DistInfo | None = None,
    data_root: str | Path | None = None,
) -> RunSummary:
    """Evaluate map methods and answer pipelines on samples, appending to a JSONL file.

    The settings are checked as one :class:`~egg_interp.run_config.RunConfig` (its
    attributes document them), then :func:`evaluate_config` runs it.

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
        Options of the pipelines (its loop settings, ``max_new_tokens`` and ``seed``); each
        pipeline's hash covers only the fields it reads.
    tolerance : float, default 15.0
        Pointing-game radius in original-image pixels; must be > 0.
    map_top_k : int, default 2
        Regions kept per map for the map lines' region scores (the loop's crops per step are
        ``pipeline_options.loop.top_k``).
    faithfulness : FaithfulnessSettings, optional
        Also measure every map's deletion and insertion curves (see
        :class:`~egg_interp.run_config.RunConfig`); default off.
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
    maps_dir, retry_errors, progress, dist, data_root
        As in :func:`evaluate_config`.

    Returns
    -------
    RunSummary

    Raises
    ------
    InputError
        A bad name or value (see :class:`~egg_interp.run_config.RunConfig`), before any work.
    """
    options = pipeline_options or PipelineOptions()
    config = RunConfig(
        methods=methods,
        pipelines=pipelines,
        method_options=method_options or {},
        loop=options.loop,
        max_new_tokens=options.max_new_tokens,
        seed=options.seed,
        tolerance=tolerance,
        map_top_k=map_top_k,
        faithfulness=faithfulness,
        batch_size=batch_size,
        batch_pipelines=batch_pipelines,
        reuse_forward=options.reuse_forward,
        dataset=dataset,
        split=split,
        metric=metric,
        model=model,
    )
    return evaluate_config(
        adapter,
        samples,
        config,
        out,
        maps_dir=maps_dir,
        retry_errors=retry_errors,
        progress=progress,
        dist=dist,
        data_root=data_root,
    )


def evaluate_config(
    adapter: VLMAdapter,
    samples: Sequence[Sample],
    config: RunConfig,
    out: str | Path = "results.jsonl",
    *,
    maps_dir: str | Path | None = None,
    retry_errors: bool = False,
    progress: bool = True,
    dist: DistInfo | None = None,
    data_root: str | Path | None = None,
) -> RunSummary:
    """Run an evaluation described by a :class:`~egg_interp.run_config.RunConfig`.

    Parameters
    ----------
    adapter : VLMAdapter
        The loaded model.
    samples : sequence of Sample
        The whole dataset (a distributed run takes this rank's share itself).
    config : RunConfig
        What to run and how to score it; its unset names are resolved here
        (:meth:`RunConfig.resolved`).
    out : str or Path
        The results file (appended to; parts go next to it as ``out.rank{r}.jsonl``).
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
    info = dist or dist_info()
    run = config.resolved(adapter, samples)
    out = Path(out)
    plan = _plan(adapter, samples, run, maps_dir, out)
    own = rank_path(out, info.rank) if info.distributed else out
    created_group = init_process_group(info, str(adapter.device))
    my_share = shard(samples, info.rank, info.world_size)
    paths = list(dict.fromkeys([out, own, *part_paths(out)]))
    done, running, other_code = _read_done(paths, plan.hashes, my_share, retry_errors)
    if info.is_main:
        _warn_other_code(out, other_code)
    summary = RunSummary(out=out, config_hashes=dict(plan.hashes))
    bar = _progress_bar(progress and info.is_main, len(my_share), run.dataset)
    run_info = _run_info(info, data_root, run.batch_size)
    _run_chunks(plan, my_share, done, own, _Progress(summary, running, bar, run_info))
    summary.merged = _finish(out, info, str(adapter.device), created_group)
    summary.seconds = time.perf_counter() - start
    summary.problems = count_problems(samples)
    if summary.problems and info.is_main:
        print(describe_problems(summary.problems), file=sys.stderr)
    return summary
