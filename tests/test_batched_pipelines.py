"""Batched answer pipelines equal one-by-one runs (padding, per-sample crops and stopping)."""

from __future__ import annotations

import math

import pytest

from egg_interp.data import scenes
from egg_interp.models import load_model
from egg_interp.pipelines import PIPELINES, PipelineOptions, run_pipeline, run_pipeline_batch
from egg_interp.settings import LoopSettings


@pytest.fixture(scope="module")
def organism():
    return load_model("organism", device="cpu")


@pytest.fixture(scope="module")
def samples():
    # one of each family: 0, 1 or 2 evidence boxes, so rows hold different numbers of crops
    return scenes.load(split="test", per_family=1)


def _same(a: dict, b: dict) -> None:
    assert a["answer"] == b["answer"] and a["crops"] == b["crops"]
    assert a.get("n_steps") == b.get("n_steps") and a.get("decision") == b.get("decision")
    for sa, sb in zip(a.get("steps", []), b.get("steps", [])):
        assert sa["crops_in"] == sb["crops_in"] and sa["crop_boxes"] == sb["crop_boxes"]
        for key in ("spatial_entropy", "next_token_entropy", "top1_prob"):
            x, y = sa[key], sb[key]
            if isinstance(x, float) and math.isfinite(x):
                assert y == pytest.approx(x, rel=1e-3, abs=1e-6), key
            else:
                assert x == y, key


@pytest.mark.parametrize("name", ["base", "egg", "oracle", "random", "random_egg", "vicrop"])
def test_batched_pipeline_equals_one_by_one(organism, samples, name):
    options = PipelineOptions(loop=LoopSettings(max_steps=4), max_new_tokens=4)
    assert PIPELINES[name].batch_fn is not None
    batched = run_pipeline_batch(name, organism, samples, options)
    single = [run_pipeline(name, organism, s, options) for s in samples]
    assert len(batched) == len(samples)
    for b, s in zip(batched, single):
        _same(b, s)
    if name == "oracle":
        assert len({len(b["crops"]) for b in batched}) > 1  # per-sample crop counts
    if name == "random_egg":
        egg = run_pipeline_batch("egg", organism, samples, options)
        moved = 0
        for b, e, s in zip(batched, egg, samples):
            assert b["egg_crops"] == e["crops"]  # the same loop, then the crops move
            sides = lambda boxes: [(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes]  # noqa: E731
            assert sides(b["crops"]) == sides(e["crops"])
            w, h = s.image.size
            assert all(0 <= x0 and 0 <= y0 and x1 <= w and y1 <= h for x0, y0, x1, y1 in b["crops"])
            moved += b["crops"] != e["crops"]
        assert moved >= 1


def test_runner_batches_answers_with_the_same_lines(organism, tmp_path):
    # the trained organism, not a random-weight model: random logits hold near-ties that the
    # summation order of a padded batch can flip (measured: '' vs 'there no' on one sample)
    from egg_interp.results import read_results
    from egg_interp.runner import evaluate

    samples = scenes.load(split="test", per_family=1)
    options = PipelineOptions(loop=LoopSettings(max_steps=3), max_new_tokens=3)
    lines = {}
    for batch, flag in ((1, False), (4, True)):
        out = tmp_path / f"b{batch}.jsonl"
        evaluate(
            organism,
            samples,
            methods=[],
            pipelines=["base", "egg", "oracle"],
            out=out,
            batch_size=batch,
            batch_pipelines=flag,
            pipeline_options=options,
            progress=False,
        )
        lines[batch] = {(r["sample_id"], r["name"]): r for r in read_results(out)}
    assert lines[1].keys() == lines[4].keys() and len(lines[1]) == 3 * len(samples)
    for key, one in lines[1].items():
        four = lines[4][key]
        assert not one["error"] and not four["error"]
        assert (one["answer"], one["crops"]) == (four["answer"], four["crops"]), key
        assert [s["crop_boxes"] for s in one["steps"]] == [s["crop_boxes"] for s in four["steps"]]


def test_runner_reuses_its_egg_map_lines_as_the_loops_step_0(organism, tmp_path, monkeypatch):
    """One chunk asks for the same batched maps twice (the egg map lines, then the egg loop's
    step 0): with the map lines added, the run costs no extra batched map, and the egg
    pipeline's lines stay what they are without them."""
    from egg_interp.methods.egg import EntropyGradient as EGG
    from egg_interp.results import read_results
    from egg_interp.runner import evaluate

    samples = scenes.load(split="test", per_family=1)
    options = PipelineOptions(loop=LoopSettings(max_steps=3), max_new_tokens=3)
    calls = []
    original = EGG.relevance_batch
    monkeypatch.setattr(
        EGG, "relevance_batch", lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    )
    runs = {}
    for methods in ((), ("egg",)):
        calls.clear()
        out = tmp_path / f"{len(methods)}.jsonl"
        kw = dict(pipelines=["egg"], out=out, batch_size=4, progress=False)
        evaluate(organism, samples, methods=methods, pipeline_options=options, **kw)
        lines = {r["sample_id"]: r for r in read_results(out) if r["kind"] == "answer"}
        runs[methods] = (len(calls), lines)
    (alone, lines_alone), (with_maps, lines_with) = runs[()], runs[("egg",)]
    assert alone >= 2 and with_maps == alone  # the map lines' batch is the loop's step 0
    for sid, line in lines_alone.items():
        other = lines_with[sid]
        assert (line["answer"], line["crops"]) == (other["answer"], other["crops"])
        assert [s["crop_boxes"] for s in line["steps"]] == [s["crop_boxes"] for s in other["steps"]]


def test_batched_egg_answers_continue_the_maps_forward(organism, samples, monkeypatch):
    """In a batch, every egg answer whose prompt the loop's last map ran on (the rule kept the
    step before the last) continues that map's forward; the others are prefilled; the answers
    equal the old path's (every answer prefilled afresh)."""
    from egg_interp.models import answering

    continued, prefilled = [], []
    original_continue, original_batch = answering.continue_greedy, answering.generate_batch

    def counting_continue(adapter, forward, n):
        continued.append(forward.rows)
        return original_continue(adapter, forward, n)

    def counting_batch(adapter, inputs, n):
        prefilled.append(inputs.batch_size)
        return original_batch(adapter, inputs, n)

    monkeypatch.setattr(answering, "continue_greedy", counting_continue)
    monkeypatch.setattr(answering, "generate_batch", counting_batch)
    generate = organism.generate
    monkeypatch.setattr(organism, "generate", lambda *a: prefilled.append(1) or generate(*a))
    options = PipelineOptions(loop=LoopSettings(max_steps=4), max_new_tokens=4)
    new = run_pipeline_batch("egg", organism, samples, options)
    expected = sum(r["crops"] == r["steps"][-1]["crops_in"] for r in new)
    assert expected >= 2 and sum(continued) == expected
    assert sum(prefilled) == len(samples) - expected
    continued.clear()
    fresh = PipelineOptions(loop=options.loop, max_new_tokens=4, reuse_forward=False)
    old = run_pipeline_batch("egg", organism, samples, fresh)
    assert not continued
    assert [(r["answer"], r["crops"]) for r in old] == [(r["answer"], r["crops"]) for r in new]
