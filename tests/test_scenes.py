"""The synthetic scenes benchmark: determinism, exact boxes, questions and splits."""

from __future__ import annotations

import numpy as np
import pytest

from egg_interp.data import scenes
from egg_interp.errors import InputError


def test_make_scene_is_deterministic():
    a = scenes.make_scene(123, n_objects=4)
    b = scenes.make_scene(123, n_objects=4)
    assert a.objects == b.objects
    assert a.image.tobytes() == b.image.tobytes()
    c = scenes.make_scene(124, n_objects=4)
    assert c.image.tobytes() != a.image.tobytes()


@pytest.mark.parametrize("size", [256, (320, 256), (256, 320)])
@pytest.mark.parametrize("seed", range(6))
def test_boxes_match_rendered_pixels(seed, size):
    scene = scenes.make_scene(seed, n_objects=4, size=size)
    img = np.asarray(scene.image).astype(int)
    w, h = scene.image.size
    assert img.shape == (h, w, 3)
    inside_any = np.zeros((h, w), bool)
    for i, o in enumerate(scene.objects):
        x0, y0, x1, y1 = o.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        inside_any[y0:y1, x0:x1] = True
        mine = scene.labels == i
        ys, xs = np.nonzero(mine)
        # the box is the tight box of the object's pixels
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == o.box
        # the object's pixels differ from the background beyond the noise
        diff = np.abs(img[mine] - np.array(scenes.BACKGROUND)).max(axis=1)
        assert (diff > scenes.NOISE).mean() > 0.95
    # no object pixel outside the boxes; outside the boxes only background (+ noise)
    assert (scene.labels[~inside_any] == -1).all()
    bg = np.abs(img[~inside_any] - np.array(scenes.BACKGROUND))
    assert bg.max() <= scenes.NOISE
    # boxes never overlap
    for a in range(len(scene.objects)):
        for b in range(a + 1, len(scene.objects)):
            p, q = scene.objects[a].box, scene.objects[b].box
            assert p[2] <= q[0] or q[2] <= p[0] or p[3] <= q[1] or q[3] <= p[1]


def test_non_square_canvas_keeps_objects_in_the_central_square():
    for seed in range(5):
        scene = scenes.make_scene(seed, n_objects=4, size=(320, 256))
        for o in scene.objects:
            assert o.box[0] >= 32 and o.box[2] <= 288


def test_v1_objects_are_distinct_and_share_attributes():
    shared = 0
    for seed in range(40):
        scene = scenes.make_scene(seed, n_objects=4, version="scenes-v1")
        names = [o.name for o in scene.objects]
        assert len(set(names)) == len(names)
        cols = [o.colour for o in scene.objects]
        shps = [o.shape for o in scene.objects]
        shared += len(set(cols)) < 4 or len(set(shps)) < 4
    assert shared >= 35  # distractors share colour or shape in nearly every scene


def test_v2_colours_are_unique_and_shapes_repeat():
    repeated = 0
    for seed in range(60):
        scene = scenes.make_scene(seed, n_objects=3)
        cols = [o.colour for o in scene.objects]
        assert len(set(cols)) == 3
        repeated += len({o.shape for o in scene.objects}) < 3
    assert repeated >= 20  # shapes are drawn freely, so they give no cue to the reference


def test_v2_detail_is_rendered_at_lower_contrast_than_v1():
    def stripe_spread(version):
        scene = scenes.make_scene(3, n_objects=1, version=version)
        o = scene.objects[0]
        pix = np.asarray(scene.image).astype(float)[scene.labels == 0]
        return pix.std(axis=0).mean(), o.colour

    (v1, _), (v2, _) = stripe_spread("scenes-v1"), stripe_spread("scenes-v2")
    ratio = scenes.RECIPES["scenes-v2"].contrast / scenes.RECIPES["scenes-v1"].contrast
    assert v2 < v1 and v2 == pytest.approx(v1 * ratio, rel=0.2)


def test_object_sides_follow_the_versions_recipe_unless_given():
    def sides(version, **kw):
        out = []
        for seed in range(20):
            scene = scenes.make_scene(seed, n_objects=2, version=version, **kw)
            out += [o.box[2] - o.box[0] for o in scene.objects]
        return min(out), max(out)

    assert scenes.RECIPES["scenes-v1"].object_size == (56, 80)
    lo, hi = sides("scenes-v1")
    assert 56 <= lo and hi <= 80 and hi - lo >= 12
    lo, hi = sides("scenes-v2")
    assert scenes.RECIPES["scenes-v2"].object_size == (40, 56)
    assert 40 <= lo < 48 and hi <= 56
    lo, hi = sides("scenes-v2", object_size=(56, 80))  # the organism's training scenes
    assert 56 <= lo and hi <= 80


def test_v1_stays_loadable_with_its_own_ids_and_wording():
    v1 = scenes.load(split="test", per_family=2, version="scenes-v1")
    assert all(s.id.startswith("scenes-v1-") for s in v1)
    detail = [s for s in v1 if s.family == "detail"]
    for s in detail:
        o = s.meta["objects"][s.meta["evidence"][0]]
        assert f"{o['colour']} {o['shape']}" in s.question
        assert s.meta["n_objects"] in (3, 4)
    with pytest.raises(InputError):
        scenes.load(version="scenes-v9")


def test_v2_benchmark_spans_one_to_three_objects():
    counts = {s.meta["n_objects"] for s in scenes.load(split="test", per_family=30)}
    assert counts == {1, 2, 3}


@pytest.mark.parametrize("family", scenes.FAMILIES)
def test_samples_answer_their_question(family):
    for s in scenes.load(split="val", per_family=15, families=[family]):
        objs = s.meta["objects"]
        ev = [objs[i] for i in s.meta["evidence"]]
        assert s.box_source == "scene" and s.dataset == "scenes" and s.family == family
        assert [tuple(o["box"]) for o in ev] == [tuple(int(v) for v in b) for b in s.boxes]
        assert s.image.size == tuple(s.meta["size"])
        a = s.answers[0]
        if family == "detail":
            assert len(s.boxes) == 1 and a == ev[0]["pattern"]
            assert s.question == f"what pattern is on the {ev[0]['colour']} object?"
        elif family == "multi":
            assert len(s.boxes) == 2
            assert f"the {ev[0]['colour']} object and the {ev[1]['colour']} object" in s.question
            assert a == ("yes" if ev[0]["pattern"] == ev[1]["pattern"] else "no")
        elif family == "coarse":
            assert len(s.boxes) == 1 and a in (ev[0]["colour"], ev[0]["shape"])
        else:
            assert a in ("yes", "no") and len(s.boxes) == (1 if a == "yes" else 0)


def test_answers_are_balanced_enough():
    samples = scenes.load(split="test", per_family=80)
    for fam in ("multi", "existence"):
        yes = np.mean([s.answers[0] == "yes" for s in samples if s.family == fam])
        assert 0.3 < yes < 0.7
    detail = [s.answers[0] for s in samples if s.family == "detail"]
    assert set(detail) == set(scenes.PATTERNS)


def test_load_is_deterministic_and_interleaved():
    a = scenes.load(split="test", per_family=3)
    b = scenes.load(split="test", per_family=3)
    assert len(a) == 12 and len(scenes.load(split="test", limit=6)) == 6
    assert [s.id for s in a] == [s.id for s in b]
    assert [s.question for s in a] == [s.question for s in b]
    assert [s.family for s in a[:4]] == list(scenes.FAMILIES)
    assert a[0].image.tobytes() == b[0].image.tobytes()


def test_splits_are_disjoint():
    ranges = sorted(scenes.SPLITS.values())
    for (_, stop), (start, _) in zip(ranges, ranges[1:]):
        assert stop <= start
    ids = {
        split: {s.id for s in scenes.load(split=split, per_family=20)} for split in scenes.SPLITS
    }
    assert not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    # test scenes are rendered from seeds outside the range training draws from
    for s in scenes.load(split="test", limit=5):
        assert s.meta["scene"]["seed"] >= scenes.SPLITS["train"][1]


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError):
        scenes.load(split="nope")
    with pytest.raises(InputError):
        scenes.load(families=["colour"])
    with pytest.raises(InputError):
        scenes.make_scene(0, n_objects=0)
