"""RunConfig: one checked configuration for the runner, from the command line and from Python
alike; the batch-else-one-by-one helper; the hash-compatibility table."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest

import egg_interp.results
import egg_interp.run_config
from egg_interp.errors import InputError
from egg_interp.run_config import RunConfig
from egg_interp.settings import LoopSettings


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tolerance": 0}, "tolerance must be a number > 0"),
        ({"tolerance": -3.0}, "tolerance must be a number > 0"),
        ({"tolerance": math.nan}, "tolerance"),
        ({"tolerance": math.inf}, "tolerance"),
        ({"tolerance": True}, "tolerance"),
        ({"map_top_k": 0}, "map_top_k must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"methods": "egg"}, "sequences of names"),
        ({"methods": ["bogus"]}, "unknown method 'bogus'"),
        ({"pipelines": ["nope"]}, "unknown pipeline 'nope'"),
        ({"methods": [], "pipelines": []}, "nothing to evaluate"),
        ({"method_options": {"bogus": {}}}, "unknown method"),
        ({"metric": "bleu"}, "unknown answer metric"),
        ({"loop": {"stop": "ent"}}, "LoopSettings"),
    ],
)
def test_bad_configs_fail_when_built(kwargs, match):
    with pytest.raises(InputError, match=match):
        RunConfig(**kwargs)


def test_names_are_resolved_and_defaults_filled_for_the_run():
    run = RunConfig(methods=["Integrated-Gradients"], pipelines=["BASE"], tolerance=10)
    assert run.methods == ("integrated_gradients",) and run.pipelines == ("base",)
    assert run.tolerance == 10.0 and isinstance(run.tolerance, float)
    adapter = SimpleNamespace(region_sigma=0.75, name="/ckpt/tiny")
    samples = [SimpleNamespace(dataset="textvqa", split="validation")]
    resolved = run.resolved(adapter, samples)
    assert (resolved.dataset, resolved.split, resolved.metric) == ("textvqa", "validation", "vqa")
    assert resolved.model == "/ckpt/tiny" and resolved.loop.sigma == 0.75
    assert run.loop.sigma is None  # the config itself is unchanged
    mine = RunConfig(dataset="mine").resolved(adapter, [SimpleNamespace(dataset="x", split="")])
    assert (mine.dataset, mine.split, mine.metric) == ("mine", "default", "exact")


def test_the_command_line_builds_the_same_config():
    from egg_interp.cli import build_parser, check_args

    argv = ["evaluate", "--dataset", "Scenes", "--methods", "egg,Rel-Att", "--pipelines", "base"]
    argv += ["--top-k", "3", "--tolerance", "9", "--batch-size", "4", "--seed", "5"]
    args = check_args(build_parser().parse_args(argv))
    loop = LoopSettings(top_k=3)
    assert args.run == RunConfig(
        methods=["egg", "rel_att"],
        pipelines=["base"],
        loop=loop,
        seed=5,
        tolerance=9.0,
        map_top_k=3,  # the CLI scores as many regions as the loop keeps
        batch_size=4,
        dataset="scenes",
        model="organism",
    )


def test_keywords_and_config_write_the_same_lines(tiny_llava, tmp_path):
    from egg_interp.data import scenes
    from egg_interp.pipelines import PipelineOptions
    from egg_interp.runner import evaluate, evaluate_config

    samples = scenes.load(split="test", limit=2)
    options = PipelineOptions(stop="fixed:1", max_new_tokens=2, seed=3)
    by_keywords = evaluate(
        tiny_llava,
        samples,
        ["saliency"],
        ["base"],
        tmp_path / "a.jsonl",
        pipeline_options=options,
        tolerance=12.0,
        map_top_k=1,
        progress=False,
    )
    config = RunConfig(
        methods=["saliency"],
        pipelines=["base"],
        loop=options.loop,
        max_new_tokens=2,
        seed=3,
        tolerance=12.0,
        map_top_k=1,
    )
    by_config = evaluate_config(tiny_llava, samples, config, tmp_path / "b.jsonl", progress=False)
    assert by_keywords.config_hashes == by_config.config_hashes

    def comparable(name):
        lines = [json.loads(x) for x in (tmp_path / name).read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("timing", "run")} for r in lines]

    a, b = comparable("a.jsonl"), comparable("b.jsonl")
    assert a == b and len(a) == 4
    assert a[0]["config"]["top_k"] == 1 and a[0]["config"]["tolerance"] == 12.0


def test_reuse_forward_reaches_the_pipelines_and_changes_no_line(tiny_llava, tmp_path, monkeypatch):
    """``PipelineOptions.reuse_forward`` (the benchmark's before/after switch) travels through
    the run configuration to the pipelines, without entering the config hash."""
    from egg_interp import pipelines
    from egg_interp.data import scenes
    from egg_interp.pipelines import PipelineOptions
    from egg_interp.runner import evaluate

    seen = []
    original = pipelines.PIPELINES["base"]

    def spy(adapter, samples, options):
        seen.append(options.reuse_forward)
        return original.batch_fn(adapter, samples, options)

    monkeypatch.setitem(
        pipelines.PIPELINES, "base", pipelines.Pipeline(original.fn, original.uses, "", spy)
    )
    samples = scenes.load(split="test", limit=2)
    hashes = []
    for reuse in (False, True):
        options = PipelineOptions(max_new_tokens=2, reuse_forward=reuse)
        summary = evaluate(
            tiny_llava,
            samples,
            [],
            ["base"],
            tmp_path / f"{reuse}.jsonl",
            pipeline_options=options,
            batch_size=2,
            progress=False,
        )
        hashes.append(summary.config_hashes)
    assert seen == [False, True] and hashes[0] == hashes[1]


def test_a_failed_batch_falls_back_and_the_lines_say_why(tiny_llava, tmp_path, monkeypatch):
    from egg_interp.data import scenes
    from egg_interp.methods import METHODS
    from egg_interp.runner import evaluate

    samples = scenes.load(split="test", limit=2)
    kwargs = dict(methods=["egg"], pipelines=[], progress=False, batch_size=2)
    good = evaluate(tiny_llava, samples, out=tmp_path / "good.jsonl", **kwargs)
    assert good.written == 2
    assert not any("batch_error" in r for r in egg_interp.results.read_results(good.out))

    def boom(self, adapter, items, target):
        raise RuntimeError("padded batch failed\nsecond line")

    monkeypatch.setattr(METHODS["egg"], "_attribute_batch", boom)
    bad = evaluate(tiny_llava, samples, out=tmp_path / "bad.jsonl", **kwargs)
    lines = list(egg_interp.results.read_results(bad.out))
    assert bad.errors == 0 and len(lines) == 2
    assert [r["batch_error"] for r in lines] == ["RuntimeError: padded batch failed"] * 2
    for fell_back, batched in zip(lines, egg_interp.results.read_results(good.out)):
        assert fell_back["scores"]["pointing_game"] == batched["scores"]["pointing_game"]
        assert fell_back["map"]["max"] == pytest.approx(batched["map"]["max"], rel=1e-4)


def test_try_batch():
    from egg_interp.runner_lines import try_batch

    items = [object(), object()]
    ok = try_batch(items, lambda xs: ["a", "b"])
    assert ok.results == {id(items[0]): "a", id(items[1]): "b"} and ok.error == ""
    failed = try_batch(items, lambda xs: 1 / 0)
    assert failed.results == {} and failed.error == "ZeroDivisionError: division by zero"
    assert try_batch(items[:1], lambda xs: 1 / 0).error == ""  # one item: no batch at all
    assert try_batch(items, None).results == {}
    short = try_batch(items, lambda xs: ["a"])  # a batch that loses an item is a failure
    assert short.results == {} and short.error.startswith("ValueError")


def test_the_hash_compatibility_rules_live_in_one_table():
    from egg_interp.pipelines import PIPELINES, PipelineOptions
    from egg_interp.runner import _build_jobs

    table = egg_interp.results.HASH_NEUTRAL
    assert set(table) == {"pipeline", "map"}
    assert PipelineOptions(sigma=1.5).subset(PIPELINES["egg"].uses) == PipelineOptions().subset(
        PIPELINES["egg"].uses
    )
    base = {"model": "m", "code": "c"}
    for sigma, recorded in ((1.5, False), (0.75, True)):
        run = RunConfig(methods=["egg"], pipelines=[], loop=LoopSettings(sigma=sigma))
        options = PipelineOptions(run.loop)
        (job,) = _build_jobs(base, run, options)
        assert ("sigma" in job.config) is recorded
