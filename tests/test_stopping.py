"""Each stopping rule's decision on scripted sequences."""

import json
import math

import pytest

from egg_interp.errors import InputError
from egg_interp.stopping import (
    STOPPING_RULES,
    Decision,
    FixedSteps,
    MaxPixelSteps,
    MinCropArea,
    NoRefinement,
    SpatialEntropyRise,
    StepRecord,
    Top1ProbPlateau,
    make_rule,
)


def records(entropies=None, probs=None, areas=None):
    n = len(entropies or probs or areas)
    entropies = entropies or [1.0] * n
    probs = probs or [0.5] * n
    areas = areas or [[10000.0]] * n
    return [StepRecord(i, e, p, a) for i, (e, p, a) in enumerate(zip(entropies, probs, areas))]


def run(rule, recs):
    """Feed records one at a time, as the loop does; return (steps seen, final decision)."""
    for k in range(1, len(recs) + 1):
        d = rule.decide(recs[:k])
        if d.stop:
            return k, d
    return len(recs), d


def test_entropy_stops_on_rise_and_keeps_step_before():
    seen, d = run(SpatialEntropyRise(), records([2.0, 1.5, 1.5, 1.0, 1.2, 0.9]))
    assert seen == 5 and d.stop and d.keep == 3 and "rose" in d.reason


def test_entropy_continues_while_not_rising():
    d = SpatialEntropyRise().decide(records([2.0, 1.5, 1.5]))
    assert d == Decision(False, 2, d.reason)


def test_entropy_zero_stops_and_keeps_that_step():
    seen, d = run(SpatialEntropyRise(), records([2.0, 0.0, 3.0]))
    assert seen == 2 and d.keep == 1 and "0" in d.reason
    assert SpatialEntropyRise().decide(records([0.0])).keep == 0


def test_entropy_infinity_handling():
    rule = SpatialEntropyRise()
    assert rule.decide(records([math.inf])).stop is False
    assert rule.decide(records([math.inf, 1.0])).stop is False  # a fall
    assert rule.decide(records([math.inf, math.inf])).stop is False  # no change
    d = rule.decide(records([1.0, math.inf]))
    assert d.stop and d.keep == 0
    d = rule.decide(records([1.0, math.nan]))
    assert d.stop and d.keep == 0
    assert rule.decide(records([math.nan])).keep is None


def test_entropy_reads_another_field_and_mappings():
    recs = [
        {"step": 0, "spatial_entropy": 9.0, "top1_prob": 0.1, "crop_areas": [], "shannon": 2.0},
        {"step": 1, "spatial_entropy": 1.0, "top1_prob": 0.1, "crop_areas": [], "shannon": 2.5},
    ]
    assert SpatialEntropyRise().decide(recs).stop is False
    d = make_rule("ent:shannon").decide(recs)
    assert d.stop and d.keep == 0


def test_max_steps_applies_to_every_rule():
    recs = records([3.0 - 0.1 * i for i in range(20)])
    seen, d = run(SpatialEntropyRise(), recs)
    assert seen == 15 and d.keep == 14 and "max_steps" in d.reason
    seen, d = run(SpatialEntropyRise(max_steps=3), recs)
    assert seen == 3 and d.keep == 2
    seen, d = run(FixedSteps(10, max_steps=4), recs)
    assert seen == 4 and d.keep == 3
    probs = [0.1 + 0.01 * i for i in range(20)]
    seen, d = run(Top1ProbPlateau(max_steps=5), records(probs=probs))
    assert seen == 5 and d.keep == 4
    with pytest.raises(InputError):
        SpatialEntropyRise(max_steps=0)


def test_fixed_steps():
    seen, d = run(FixedSteps(2), records([1.0, 2.0, 0.5, 0.1]))
    assert seen == 2 and d.keep == 1
    d = FixedSteps(0).decide([])
    assert d.stop and d.keep is None
    assert FixedSteps(1).decide([]).stop is False
    with pytest.raises(InputError):
        FixedSteps(-1)


def test_max_pixel_steps_needs_image_size():
    rule = MaxPixelSteps()
    with pytest.raises(InputError, match="prepare"):
        rule.decide(records([1.0]))
    rule.prepare((2500, 1200))  # 2500 // 1000 = 2 steps
    seen, d = run(rule, records([1.0] * 5))
    assert seen == 2 and d.keep == 1
    rule.prepare((800, 600))  # 0 steps: no crops
    d = rule.decide([])
    assert d.stop and d.keep is None
    with pytest.raises(InputError):
        rule.prepare((0, 10))


def test_min_crop_area():
    areas = [[90000.0], [20000.0, 9000.0], [], [3000.0, 50000.0], [100.0]]
    seen, d = run(MinCropArea(), records(areas=areas))
    assert seen == 4 and d.keep == 3 and d.stop
    seen, d = run(MinCropArea(10000), records(areas=areas))
    assert seen == 2 and d.keep == 1


def test_top1_prob_plateau_keeps_best():
    seen, d = run(Top1ProbPlateau(), records(probs=[0.2, 0.4, 0.7, 0.6, 0.9]))
    assert seen == 4 and d.keep == 2
    seen, d = run(Top1ProbPlateau(), records(probs=[0.3, 0.3]))
    assert seen == 2 and d.keep == 0
    d = Top1ProbPlateau().decide(records(probs=[0.3, math.nan]))
    assert d.stop and d.keep == 0
    assert Top1ProbPlateau().decide(records(probs=[0.3])).stop is False


def test_no_refinement():
    assert NoRefinement().decide([]) == Decision(True, None, "no refinement requested")
    assert NoRefinement().decide(records([1.0, 0.5])).keep is None


def test_registry_and_make_rule():
    assert set(STOPPING_RULES) == {"ent", "fixed", "area", "prob", "none", "pixels"}
    assert isinstance(make_rule("ent"), SpatialEntropyRise)
    assert make_rule("fixed:2").n == 2
    assert make_rule(" AREA:4000 ").area == 4000.0
    assert make_rule("area").area == 4000.0
    assert make_rule("pixels:500").pixels_per_step == 500
    assert make_rule("prob", max_steps=7).max_steps == 7
    rule = NoRefinement()
    assert make_rule(rule) is rule
    for name, cls in STOPPING_RULES.items():
        assert cls.name == name


@pytest.mark.parametrize(
    "spec, match",
    [
        ("entropy", "valid: area, ent, fixed, none, pixels, prob"),
        ("", "non-empty"),
        ("fixed:two", "int"),
        ("fixed:", "empty argument"),
        ("area:big", "float"),
        ("prob:3", "no argument"),
        ("none:1", "no argument"),
        ("fixed:-1", ">= 0"),
    ],
)
def test_parse_errors(spec, match):
    with pytest.raises(InputError, match=match):
        make_rule(spec)


def test_decision_serialises():
    d = SpatialEntropyRise().decide(records([1.0, 2.0]))
    assert json.loads(json.dumps(d.to_dict())) == {"stop": True, "keep": 0, "reason": d.reason}
