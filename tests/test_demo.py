"""The demo on the runner's path: sample rows, summary (old schema plus the added figures), the
reference pointers, the causal measures and the confidence-interval helper."""

from __future__ import annotations

import math

import pytest

from egg_interp.data import scenes
from egg_interp.demo import demo_rows, measure, summarise, table
from egg_interp.metrics.intervals import interval, wilson_interval
from egg_interp.pipelines import PipelineOptions


def test_demo_rows_and_summary(tiny_llava, tmp_path):
    samples = scenes.load(split="test", per_family=1)
    options = PipelineOptions(max_steps=2, max_new_tokens=2)
    rows = demo_rows(tiny_llava, samples, tmp_path / "r.jsonl", options)
    assert [r["id"] for r in rows] == [s.id for s in samples]
    multi = next(r for r in rows if r["family"] == "multi")
    assert set(multi["correct"]) == {"base", "oracle", "egg", "random", "oracle_one"}
    assert not math.isnan(multi["top2_cover_all"])
    detail = next(r for r in rows if r["family"] == "detail")
    assert set(detail["reference"]) == {"centre", "random", "random_object", "any_object"}
    assert math.isfinite(detail["entropy"]) and detail["n_objects"] in (1, 2, 3)
    summary = summarise(rows, measure(tiny_llava, samples, n=1))
    # the schema of earlier versions
    assert summary["n"] == {f: 1 for f in scenes.FAMILIES}
    assert set(summary["accuracy"]["detail"]) == {"base", "oracle", "egg", "random", "random_egg"}
    assert set(detail["correct"]) == {"base", "oracle", "egg", "random", "random_egg"}
    assert "oracle_one" in summary["accuracy"]["multi"]
    assert set(summary["pointing_game"]) == {
        "egg",
        "centre",
        "random",
        "random_object",
        "any_object",
    }
    assert set(summary["multi_evidence"]) == {
        "top2_cover_both",
        "accuracy_two_oracle_crops",
        "accuracy_one_oracle_crop",
    }
    # the added figures, each with its count and interval
    fig = summary["intervals"]["accuracy"]["detail"]["egg"]
    assert fig["n"] == 1 and len(fig["ci95"]) == 2
    k = str(detail["n_objects"])
    assert summary["by_n_objects"]["pointing_game"]["egg"][k]["n"] <= 1
    assert k in summary["by_n_objects"]["accuracy"]["detail"]["base"]
    bins = summary["pointing_game_by_entropy"]["egg"]
    assert len(bins) == 3 and sum(b["n"] for b in bins) <= 1
    assert summary["measures"]["n_samples"] == 1
    text = table(summary)
    assert "pointing game on detail questions" in text and "causal measures" in text
    # a second call reuses every line (nothing recomputed) and gives the same rows
    again = demo_rows(tiny_llava, samples, tmp_path / "r.jsonl", options)
    assert [r["correct"] for r in again] == [r["correct"] for r in rows]


def test_causal_measures_on_two_samples(tiny_llava):
    from egg_interp.organism.measures import answer_sensitivity

    samples = [
        scenes.make_sample(seed, "detail", "test")
        for seed in scenes.split_seeds("test", 40, "detail")
    ]
    two = [s for s in samples if s.meta["n_objects"] >= 2][:2]
    m = measure(tiny_llava, two)
    assert m["n_samples"] == 2 and m["n_sensitivity"] == 2
    sens = [answer_sensitivity(tiny_llava, s) for s in two]
    tgt = sum(s["target"] for s in sens) / 2
    dis = sum(max(s["distractors"]) for s in sens) / 2
    assert m["answer_sensitivity_ratio"] == pytest.approx(tgt / max(dis, 1e-12))
    assert 0.0 <= m["target_most_causal"] <= 1.0
    lo, hi = m["intervals"]["target_most_causal"]
    assert 0.0 <= lo <= m["target_most_causal"] <= hi <= 1.0


def test_wilson_interval_by_hand():
    # 8 hits of 10: p = 0.8, z = 1.96, centre (0.8 + 0.19207) / 1.38415, half-width 0.22658
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    fig = interval([1, 0, 1, 1, 1, 1, 1, 0, 1, 1, math.nan])
    assert fig["n"] == 10 and fig["mean"] == pytest.approx(0.8)
    assert fig["ci95"] == pytest.approx([0.4902, 0.9433], abs=1e-4)
    cont = interval([0.2, 0.4, 0.6])  # not 0/1: a seeded bootstrap of the mean
    assert cont["ci95"][0] <= 0.4 <= cont["ci95"][1]


def test_reference_pointers_hit_what_they_should():
    """The random-object pointer hits when the scene has one object (it must be the target)."""
    import numpy as np

    from egg_interp.maps import AttributionMap  # noqa: F401  (the type the runner passes)
    from egg_interp.scoring import POINTERS

    s = next(
        scenes.make_sample(seed, "detail", "test")
        for seed in scenes.split_seeds("test", 50, "detail")
        if scenes.make_sample(seed, "detail", "test").meta["n_objects"] == 1
    )
    width, height = s.meta["size"]
    heat = np.zeros((height, width))
    x0, y0, x1, y1 = (int(v) for v in s.boxes[0])
    heat[(y0 + y1) // 2, (x0 + x1) // 2] = 1.0
    rng = np.random.default_rng(0)
    assert POINTERS["random_object"](s, heat, 15.0, rng) == 1.0
    assert POINTERS["any_object"](s, heat, 15.0, rng) == 1.0
    centre_inside = x0 - 15 < width / 2 < x1 + 15 and y0 - 15 < height / 2 < y1 + 15
    assert POINTERS["centre"](s, heat, 15.0, rng) == 1.0 or not centre_inside
