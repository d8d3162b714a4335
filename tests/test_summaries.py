"""Summaries of the runner's lines: per-pipeline figures (accuracy, crop pointing game, steps,
seconds) and step logs, by hand and on a real run comparing two stopping rules."""

from __future__ import annotations

import doctest
import math

import pytest
from eval_helpers import make_vstar

import egg_interp.summaries
from egg_interp.data.registry import load_dataset
from egg_interp.metrics.intervals import interval
from egg_interp.pipelines import PipelineOptions
from egg_interp.results import read_results
from egg_interp.runner import evaluate
from egg_interp.scoring import crop_pointing_game
from egg_interp.settings import LoopSettings
from egg_interp.summaries import current_records, pipeline_figures, sample_rows, step_values


def test_docstring_examples():
    assert doctest.testmod(egg_interp.summaries).failed == 0


def test_interval_kind_can_be_forced():
    counts = interval([1, 1, 1, 1], proportion=False)  # steps under fixed:1: a mean, not a share
    assert counts["mean"] == 1.0 and counts["ci95"] == [1.0, 1.0]
    assert interval([1, 1, 1, 1])["ci95"][0] < 1.0  # left to itself: Wilson
    with pytest.raises(ValueError):
        interval([0.5, 1.0], proportion=True)


def test_crop_pointing_game_scores_the_top_crop():
    box = (100, 100, 120, 120)
    assert crop_pointing_game([[95, 95, 125, 125], [0, 0, 10, 10]], [box]) == 1.0
    assert crop_pointing_game([[0, 0, 10, 10], [95, 95, 125, 125]], [box]) == 0.0
    assert math.isnan(crop_pointing_game([], [box]))
    assert math.isnan(crop_pointing_game([[0, 0, 10, 10]], []))


def _line(sample_id, score, crops, seconds, steps):
    return {
        "sample_id": sample_id,
        "kind": "answer",
        "name": "egg",
        "config_hash": "h",
        "error": "",
        "family": "detail",
        "boxes": [[100.0, 100.0, 120.0, 120.0]],
        "score": score,
        "crops": crops,
        "timing": {"total": seconds},
        "steps": [{"spatial_entropy": h, "next_token_entropy": 0.5} for h in steps],
        "info": {"n_steps": len(steps)},
    }


def test_pipeline_figures_by_hand():
    records = [
        _line("a", 1.0, [[95, 95, 125, 125]], 0.5, [2.0, 1.5]),
        _line("b", 0.0, [[0, 0, 10, 10]], 1.5, [2.0, None, "inf"]),
        _line("c", 1.0, [], 1.0, []),
    ]
    rows = sample_rows(records)
    assert [r["seconds"]["egg"] for r in rows] == [0.5, 1.5, 1.0]
    assert rows[0]["crop_pointing"]["egg"] == 1.0 and math.isnan(rows[2]["crop_pointing"]["egg"])
    figs = pipeline_figures(rows, "egg")
    assert figs["accuracy"]["mean"] == pytest.approx(2 / 3) and figs["accuracy"]["n"] == 3
    assert figs["crop_pointing_game"]["mean"] == 0.5 and figs["crop_pointing_game"]["n"] == 2
    assert figs["steps"]["mean"] == pytest.approx(5 / 3)
    assert figs["seconds"]["mean"] == pytest.approx(1.0)
    values = step_values(records[1])
    assert values[0] == 2.0 and math.isnan(values[1]) and values[2] == math.inf
    assert step_values(records[2]) == [] and pipeline_figures(rows, "base")["accuracy"]["n"] == 0


@pytest.mark.filterwarnings("ignore:.*unknown to the model")
def test_two_stopping_rules_in_one_file_are_told_apart(tiny_llava, tmp_path):
    """The stopping-rule notebook's use: one runner evaluation per rule, one results file,
    each rule's lines selected by its run's config hashes."""
    samples = load_dataset("vstar", make_vstar(tmp_path / "vstar", n=3))
    out = tmp_path / "results.jsonl"
    figures = {}
    for stop in ("none", "fixed:2"):
        options = PipelineOptions(LoopSettings(stop=stop, max_steps=4), max_new_tokens=2)
        run = evaluate(
            tiny_llava,
            samples,
            methods=(),
            pipelines=("egg",),
            out=out,
            pipeline_options=options,
            batch_size=2,
            progress=False,
        )
        records = current_records(read_results(out), run.config_hashes)
        assert len(records) == len(samples)
        figures[stop] = pipeline_figures(sample_rows(records, samples), "egg")
        for r in records:
            assert len(step_values(r)) == r["info"]["n_steps"]
    assert figures["none"]["steps"]["mean"] == 0.0 and figures["none"]["steps"]["ci95"] == [0, 0]
    assert figures["fixed:2"]["steps"]["mean"] <= 2.0
    assert figures["none"]["crop_pointing_game"]["n"] == 0  # no crops: nothing to score
    for figs in figures.values():
        assert figs["accuracy"]["n"] == len(samples) and figs["seconds"]["mean"] > 0
