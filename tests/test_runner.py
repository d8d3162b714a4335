"""The evaluation runner: JSONL lines, resume after a crash, sharded runs, pipelines, scoring."""

from __future__ import annotations

import doctest
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import make_vstar

import egg_interp.distributed
import egg_interp.pipelines
import egg_interp.results
import egg_interp.scoring
from egg_interp.cli import main
from egg_interp.data.registry import load_dataset
from egg_interp.distributed import DistInfo
from egg_interp.geometry import random_boxes_like as random_crops
from egg_interp.geometry import square_crop
from egg_interp.maps import AttributionMap, GridView, ImageMap
from egg_interp.models.base import regular_cell_boxes
from egg_interp.pipelines import PIPELINES, Pipeline
from egg_interp.results import (
    ResultsWriter,
    encode_line,
    load_results,
    merge_results,
    read_results,
    repair_tail,
)
from egg_interp.runner import evaluate
from egg_interp.scoring import evidence_area_fraction, score_map

ROOT = Path(__file__).resolve().parents[1]
HAS_VICROP = importlib.util.find_spec("egg_interp.vicrop") is not None
PIPES = ("base", "egg", "oracle", "random", *(("vicrop",) if HAS_VICROP else ()))
FAST = egg_interp.pipelines.PipelineOptions(stop="fixed:2")
VOLATILE = ("timing", "run", "map_file")


def normalised(path: Path) -> list[str]:
    """The file's lines without the fields that legitimately differ between runs."""
    out = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for key in VOLATILE:
            record.pop(key, None)
        out.append(json.dumps(record, sort_keys=True))
    return out


@contextmanager
def one_thread():
    """Run torch on one thread, like the subprocesses (identical float summation order)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def test_docstring_examples():
    for module in (egg_interp.results, egg_interp.pipelines, egg_interp.scoring):
        assert doctest.testmod(module).failed == 0
    assert doctest.testmod(egg_interp.distributed).failed == 0


# --------------------------------------------------------------------------- results file


def rec(sample_id: str, name: str = "base", error: str = "", **extra) -> dict:
    return {
        "sample_id": sample_id,
        "kind": "answer",
        "name": name,
        "config_hash": "h",
        "error": error,
        **extra,
    }


def test_lines_are_strict_json_and_a_partial_tail_is_repaired(tmp_path):
    path = tmp_path / "r.jsonl"
    assert json.loads(encode_line(rec("a", score=math.nan, h=math.inf))) == {
        **rec("a"),
        "score": None,
        "h": "inf",
    }
    with pytest.raises(ValueError, match="key fields"):
        encode_line({"sample_id": "a"})
    with ResultsWriter(path) as w:
        w.write(rec("a"))
        w.write(rec("b"))
    whole = path.read_bytes()
    path.write_bytes(whole + encode_line(rec("c"))[:15])  # crash in the middle of a line
    assert [r["sample_id"] for r in read_results(path)] == ["a", "b"]
    assert repair_tail(path) == "truncated" and path.read_bytes() == whole
    path.write_bytes(whole + encode_line(rec("c"))[:-1])  # crash between text and newline
    assert [r["sample_id"] for r in read_results(path)] == ["a", "b", "c"]
    with ResultsWriter(path) as w:  # opening repairs, then appends after a newline
        assert w.repaired == "newline"
        w.write(rec("d"))
    assert [r["sample_id"] for r in read_results(path)] == ["a", "b", "c", "d"]
    with open(path, "ab") as fh:  # garbage in the middle: warned about and skipped
        fh.write(b"{not json\n")
    with ResultsWriter(path) as w:
        w.write(rec("e"))
    with pytest.warns(RuntimeWarning, match=r"r.jsonl:5"):
        assert [r["sample_id"] for r in read_results(path)] == ["a", "b", "c", "d", "e"]


def test_merge_deduplicates_prefers_success_and_sorts(tmp_path):
    p0, p1, out = tmp_path / "o.rank0.jsonl", tmp_path / "o.rank1.jsonl", tmp_path / "o.jsonl"
    with ResultsWriter(p0) as w:
        w.write(rec("b", index=1, error="OutOfMemoryError: x"))
        w.write(rec("a", index=0))
    with ResultsWriter(p1) as w:
        w.write(rec("b", index=1, answer="ok"))
        w.write(rec("a", index=0, answer="duplicate"))
    assert egg_interp.results.part_paths(out) == [p0, p1]
    assert merge_results(out, [p0, p1]) == 2
    merged = list(read_results(out))
    assert [r["sample_id"] for r in merged] == ["a", "b"]
    assert merged[0].get("answer") is None  # first seen wins among successes
    assert merged[1]["answer"] == "ok" and not merged[1]["error"]
    assert merge_results(out, [p0, p1]) == 2  # idempotent
    assert main(["merge", str(out), str(tmp_path / "o.rank*.jsonl")]) == 0
    assert main(["merge", str(out)]) == 0  # default: the parts next to it
    assert main(["merge", str(out), str(tmp_path / "none*.jsonl")]) == 2


# --------------------------------------------------------------------------- pipelines, scoring


def test_oracle_and_random_crops():
    assert square_crop((10, 10, 30, 20), 1.5, (100, 80)) == (5.0, 0.0, 35.0, 30.0)
    assert square_crop((90, 70, 100, 80), 2.0, (100, 80)) == (80.0, 60.0, 100.0, 80.0)
    assert square_crop((0, 0, 100, 80), 2.0, (100, 80)) == (10.0, 0.0, 90.0, 80.0)  # centred
    boxes = [(0.0, 0.0, 30.0, 30.0), (10.0, 10.0, 20.0, 20.0)]
    a = random_crops(boxes, (100, 80), seed=0, key="s1")
    assert a == random_crops(boxes, (100, 80), seed=0, key="s1")
    assert a != random_crops(boxes, (100, 80), seed=0, key="s2")
    for (x0, y0, x1, y1), b in zip(a, boxes):
        assert (x1 - x0, y1 - y0) == (b[2] - b[0], b[3] - b[1])
        assert 0 <= x0 and x1 <= 100 and 0 <= y0 and y1 <= 80


def test_score_map_by_hand():
    # 2x2 grid over a 20x20 image, the top-left cell hottest
    cells = regular_cell_boxes(2, 2, 0, 0, 10, 10)
    grid = np.array([[4.0, 1.0], [1.0, 0.0]], np.float32)
    amap = AttributionMap([ImageMap([GridView(grid, cells)], (20, 20), (0, 0, 20, 20))], "t")
    near = score_map(amap, [(0, 0, 5, 5)])
    assert near["scores"]["pointing_game"] == 1.0 and near["map"]["grid_shape"] == [2, 2]
    far = score_map(amap, [(18, 18, 20, 20)], tolerance=1.0)
    assert far["scores"]["pointing_game"] == 0.0 and far["scores"]["any_box_hit"] == 0.0
    empty = score_map(amap, [])
    assert all(math.isnan(v) for v in empty["scores"].values()) and empty["regions"]
    flat = AttributionMap([ImageMap([GridView(np.zeros((2, 2)), cells)], (20, 20), (0, 0, 20, 20))])
    dead = score_map(flat, [(0, 0, 5, 5)])
    assert "all zeros" in dead["map"]["degenerate"] and math.isnan(dead["scores"]["auc"])
    # union of two boxes: 10x10 + 5x5 overlapping by 5x5 -> 100 of 400 pixels
    assert evidence_area_fraction([(0, 0, 10, 10), (5, 5, 10, 10)], (20, 20)) == 0.25
    assert math.isnan(evidence_area_fraction([], (20, 20)))


# --------------------------------------------------------------------------- resume


@pytest.fixture()
def vstar_root(tmp_path):
    return make_vstar(tmp_path / "vstar", n=5)


def test_resume_after_interrupt_matches_an_uninterrupted_run(
    tiny_llava, vstar_root, tmp_path, monkeypatch
):
    samples = load_dataset("vstar", vstar_root)
    kwargs = dict(
        methods=["egg"], pipelines=PIPES, pipeline_options=FAST, progress=False, model="tiny"
    )
    ref = tmp_path / "ref.jsonl"
    first = evaluate(tiny_llava, samples, out=ref, **kwargs)
    total = 5 * (1 + len(PIPES))  # one map line and one answer line per pipeline
    assert first.written == total and first.errors == 0

    out = tmp_path / "out.jsonl"
    original, calls = PIPELINES["egg"], []

    def flaky(adapter, sample, options):
        calls.append(sample.id)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third sample's EGG answer
        return original.fn(adapter, sample, options)

    monkeypatch.setitem(PIPELINES, "egg", Pipeline(flaky, original.uses))
    with pytest.raises(KeyboardInterrupt):
        evaluate(tiny_llava, samples, out=out, **kwargs)
    monkeypatch.setitem(PIPELINES, "egg", original)
    n_before = len(out.read_text().splitlines())
    assert 0 < n_before < total
    with open(out, "ab") as fh:  # and a crash half-way through writing a line
        fh.write(ref.read_bytes().splitlines()[-1][:40])

    again = evaluate(tiny_llava, samples, out=out, **kwargs)
    assert again.skipped == n_before and again.written == total - n_before
    lines = normalised(out)
    assert len(lines) == len(set(lines)) == total  # no duplicates, no partial line
    assert set(lines) == set(normalised(ref))
    assert evaluate(tiny_llava, samples, out=out, **kwargs).written == 0
    # another config (a different stopping rule) is new work; the others are reused
    other = evaluate(
        tiny_llava, samples, out=out, **{**kwargs, "pipeline_options": FAST.__class__()}
    )
    assert other.written == 5 and other.skipped == total - 5


def test_retrained_weights_under_the_same_name_are_new_work(tiny_llava, vstar_root, tmp_path):
    samples = load_dataset("vstar", vstar_root)[:2]
    kwargs = dict(methods=["egg"], pipelines=[], progress=False, model="tiny")
    out = tmp_path / "out.jsonl"
    assert evaluate(tiny_llava, samples, out=out, **kwargs).written == 2
    assert evaluate(tiny_llava, samples, out=out, **kwargs).written == 0
    before = egg_interp.results.weights_fingerprint(tiny_llava.model)
    with torch.no_grad():  # "retrain": one weight moves
        next(tiny_llava.model.parameters()).view(-1)[0] += 1.0
    assert egg_interp.results.weights_fingerprint(tiny_llava.model) != before
    again = evaluate(tiny_llava, samples, out=out, **kwargs)
    assert again.written == 2 and again.skipped == 0


def test_scenes_rendered_by_another_recipe_are_new_work(tiny_llava, tmp_path, monkeypatch):
    """Same version name, same sample ids, other pixels: the recipe's fingerprint is hashed."""
    import dataclasses

    from egg_interp.data import scenes

    kwargs = dict(methods=["egg"], pipelines=[], progress=False, model="tiny")
    out = tmp_path / "out.jsonl"
    samples = scenes.load(split="test", limit=2)
    assert evaluate(tiny_llava, samples, out=out, **kwargs).written == 2
    assert evaluate(tiny_llava, scenes.load(split="test", limit=2), out=out, **kwargs).written == 0
    bolder = dataclasses.replace(scenes.RECIPES[scenes.VERSION], contrast=40)
    monkeypatch.setitem(scenes.RECIPES, scenes.VERSION, bolder)
    again = scenes.load(split="test", limit=2)
    assert [s.id for s in again] == [s.id for s in samples]
    assert evaluate(tiny_llava, again, out=out, **kwargs).written == 2


def test_errors_are_recorded_and_retried(tiny_llava, vstar_root, tmp_path, monkeypatch):
    samples = load_dataset("vstar", vstar_root, limit=2)
    out = tmp_path / "out.jsonl"
    original = PIPELINES["base"]

    def broken(adapter, sample, options):
        raise RuntimeError("CUDA out of memory\nsecond line")

    monkeypatch.setitem(PIPELINES, "base", Pipeline(broken, original.uses))
    kwargs = dict(methods=[], pipelines=["base"], progress=False)
    assert evaluate(tiny_llava, samples, out=out, **kwargs).errors == 2
    assert [r["error"] for r in read_results(out)] == ["RuntimeError: CUDA out of memory"] * 2
    monkeypatch.setitem(PIPELINES, "base", original)
    assert evaluate(tiny_llava, samples, out=out, **kwargs).written == 0
    retried = evaluate(tiny_llava, samples, out=out, retry_errors=True, **kwargs)
    assert retried.written == 2 and retried.errors == 0
    assert [r["error"] for r in load_results(out)] == ["", ""]


def test_killed_process_resumes_without_loss_or_duplicates(tiny_llava_dir, vstar_root, tmp_path):
    out, ref = tmp_path / "out.jsonl", tmp_path / "ref.jsonl"
    args = [
        "evaluate",
        "--model",
        str(tiny_llava_dir),
        "--dataset",
        "vstar",
        "--data-root",
        str(vstar_root),
        "--methods",
        "egg",
        "--pipelines",
        "base,egg",
        "--stop",
        "fixed:2",
        "--no-progress",
    ]
    slow = (  # each base answer takes 0.4 s more, so the kill lands mid-run
        "import sys, time; from egg_interp import pipelines as p; f = p.PIPELINES['base'];"
        "p.PIPELINES['base'] = p.Pipeline(lambda *a: (time.sleep(0.4), f.fn(*a))[1], f.uses);"
        "from egg_interp.cli import main; main(sys.argv[1:])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", slow, *args, "--out", str(out)],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 45
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 4:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    n_killed = out.read_bytes().count(b"\n")
    assert 4 <= n_killed < 15
    with one_thread():
        assert main([*args, "--out", str(out)]) == 0
        assert main([*args, "--out", str(ref)]) == 0
    lines = normalised(out)
    assert len(lines) == len(set(lines)) == 15
    assert set(lines) == set(normalised(ref))


# --------------------------------------------------------------------------- two processes


def test_two_process_run_merges_to_the_single_process_result(tiny_llava_dir, vstar_root, tmp_path):
    args = [
        "evaluate",
        "--model",
        str(tiny_llava_dir),
        "--dataset",
        "vstar",
        "--data-root",
        str(vstar_root),
        "--methods",
        "egg,saliency",
        "--pipelines",
        ",".join(PIPES),
        "--stop",
        "fixed:2",
        "--no-progress",
        "--device",
        "cpu",
    ]
    sharded, single = tmp_path / "sharded.jsonl", tmp_path / "single.jsonl"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",  # rendezvous on a free local port
            "--nproc_per_node",
            "2",
            "-m",
            "egg_interp.cli",
            *args,
            "--out",
            str(sharded),
        ],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "merged into" in run.stdout
    parts = [tmp_path / "sharded.rank0.jsonl", tmp_path / "sharded.rank1.jsonl"]
    per_sample = 2 + len(PIPES)  # two map lines, one per pipeline
    assert [len(p.read_text().splitlines()) for p in parts] == [3 * per_sample, 2 * per_sample]
    ranks = {json.loads(line)["run"]["rank"] for line in sharded.read_text().splitlines()}
    assert ranks == {0, 1}
    with one_thread():
        assert main([*args, "--out", str(single)]) == 0
    a, b = set(normalised(sharded)), set(normalised(single))
    assert a == b, f"only sharded: {sorted(a - b)[:1]}\nonly single: {sorted(b - a)[:1]}"
    assert len(a) == len(normalised(sharded))
    # a by-hand merge of the parts gives the same file
    again = tmp_path / "again.jsonl"
    assert main(["merge", str(again), *map(str, parts)]) == 0
    assert again.read_text() == sharded.read_text()


def test_rank_detection_and_sharding(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = egg_interp.distributed.dist_info()
    assert info == DistInfo(3, 4, 1) and info.distributed and not info.is_main
    assert egg_interp.distributed.rank_device("cpu", info) == "cpu"
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="inconsistent"):
        egg_interp.distributed.dist_info()


def test_weights_fingerprint_recipe_is_frozen():
    """The fingerprint is part of every config hash: these values were computed by the old
    ``VLMAdapter.weights_fingerprint``; a change here would re-run every saved result."""
    model = torch.nn.Sequential(torch.nn.Linear(7, 300), torch.nn.LayerNorm(300))
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.copy_(torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape) / (10 + i))
    assert egg_interp.results.weights_fingerprint(model) == "33d65195841f69b8"
    assert egg_interp.results.weights_fingerprint(model.to(torch.bfloat16)) == "9cc51061fe3536f0"
