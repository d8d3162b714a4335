"""The demo's per-sample evaluation and summary (the organism's figures are in test_organism)."""

from __future__ import annotations

import math

from egg_interp.data import scenes
from egg_interp.demo import evaluate_sample, pointing_scores, summarise, table
from egg_interp.pipelines import PipelineOptions


def test_demo_rows_and_summary(tiny_llava):
    samples = scenes.load(split="test", per_family=1)
    options = PipelineOptions(max_steps=2, max_new_tokens=2)
    rows = [evaluate_sample(tiny_llava, s, options) for s in samples]
    multi = next(r for r in rows if r["family"] == "multi")
    assert set(multi["answers"]) == {"full", "oracle", "egg", "random", "oracle_one"}
    assert not math.isnan(multi["top2_cover_all"])
    summary = summarise(rows)
    assert summary["n"] == {f: 1 for f in scenes.FAMILIES}
    assert set(summary["accuracy"]["detail"]) >= {"full", "oracle", "egg", "random"}
    assert set(summary["pointing_game"]) == {
        "egg",
        "centre",
        "random",
        "random_object",
        "any_object",
    }
    assert "pointing game on detail questions" in table(summary)


def test_reference_pointers_hit_what_they_should(tiny_llava):
    """The random-object pointer hits when the scene has one object (it must be the target)."""
    from egg_interp.data.scenes import make_sample

    s = make_sample(scenes.split_seeds("test", 50, "detail")[0], "detail", "test")
    from egg_interp.loop import zoom_and_reground

    res = zoom_and_reground(tiny_llava, s.image, s.question, stop="fixed:1")
    scores = pointing_scores(s, res)
    if s.meta["n_objects"] == 1:
        assert scores["random_object"] == 1.0
    width, height = s.meta["size"]
    x0, y0, x1, y1 = s.boxes[0]
    centre_inside = x0 - 15 < width / 2 < x1 + 15 and y0 - 15 < height / 2 < y1 + 15
    assert scores["centre"] == 1.0 or not centre_inside
