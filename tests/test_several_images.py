"""Several user images in one prompt: maps, the loop's ranking and crops across images, the
step log, answers, the refusal of a model that takes fewer images, and ``egg-interp ground``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import noise_image
from PIL import Image

from egg_interp.entropy import spatial_entropy
from egg_interp.errors import InputError
from egg_interp.geometry import regular_cell_boxes
from egg_interp.loop import answer_images, ground
from egg_interp.loop.state import LoopState, _originals_entropies
from egg_interp.maps import AttributionMap, GridView, ImageMap
from egg_interp.methods import attribute
from egg_interp.settings import LoopSettings

QUESTION = "what colour is the square ?"
REGIONS = {"sigma": 0.0, "min_side": 8.0}


def _image_map(values: np.ndarray, size: tuple[int, int], origin=None) -> ImageMap:
    """One 8x8 grid tiling an image of ``size`` (w, h)."""
    rows, cols = values.shape
    boxes = regular_cell_boxes(rows, cols, 0, 0, size[0] / cols, size[1] / rows)
    return ImageMap([GridView(values, boxes)], size, origin or (0, 0, *size))


def _blob(row: int, col: int, value: float = 10.0) -> np.ndarray:
    grid = np.full((8, 8), 0.1, np.float32)
    grid[row : row + 2, col : col + 2] = value
    return grid


def test_regions_are_ranked_across_images_and_crops_cut_from_their_own():
    """Hand-made maps: image 1's blob is stronger, so the first crop comes from image 1, in
    image 1's pixels; at the next step a region inside that crop maps back into image 1."""
    a, b = noise_image(80, 80, seed=1), noise_image(160, 120, seed=2)
    state = LoopState([a, b], QUESTION, LoopSettings(stop="fixed:3").rule())
    first = AttributionMap([_image_map(_blob(0, 0, 5.0), a.size), _image_map(_blob(4, 6), b.size)])
    state.advance(first, 2, REGIONS, keep_maps=False, start=0.0)
    step = state.steps[0]
    assert step.crop_sources == [1, 0] and [r.view for r in step.regions] == ["image 1", "image 0"]
    x0, y0, x1, y1 = step.crop_boxes[0]  # the blob at rows 4-5, cols 6-7 of image 1 (20 x 15 px)
    assert (x0, y0, x1, y1) == (120.0, 60.0, 160.0, 90.0)
    assert step.crop_boxes[1] == (0.0, 0.0, 20.0, 20.0)  # image 0's blob, its 10 x 10 px cells
    images = state.images()
    assert len(images) == 4 and images[2].size == (40, 30) and images[3].size == (20, 20)
    assert images[2].tobytes() == b.crop((120, 60, 160, 90)).tobytes()

    crop_map = _image_map(_blob(0, 0, 50.0), (40, 30), origin=(120.0, 60.0, 160.0, 90.0))
    maps = [_image_map(_blob(0, 0, 1.0), a.size), _image_map(_blob(4, 6, 1.0), b.size), crop_map]
    maps.append(_image_map(_blob(6, 6, 1.0), (20, 20), origin=(0.0, 0.0, 20.0, 20.0)))
    state.advance(AttributionMap(maps), 1, REGIONS, keep_maps=False, start=0.0)
    step = state.steps[1]
    assert step.sources_in == [1, 0] and step.crop_sources == [1]
    assert step.regions[0].view == "crop 1 of image 1"
    # the crop's top-left 2x2 cells (5 x 3.75 px each) sit at (120, 60) in image 1, grown to 8 px
    assert step.crop_boxes == [(120.0, 60.0, 130.0, 68.0)]
    log = step.to_dict()
    assert log["sources_in"] == [1, 0] and log["crop_sources"] == [1]
    assert [r["source"] for r in log["regions"]] == [1]


def test_one_image_logs_no_sources():
    image = noise_image(80, 80, seed=1)
    state = LoopState([image], QUESTION, LoopSettings(stop="fixed:1").rule())
    state.advance(AttributionMap([_image_map(_blob(2, 2), image.size)]), 2, REGIONS, False, 0.0)
    log = state.steps[0].to_dict()
    assert "crop_sources" not in log and "source" not in log["regions"][0]
    assert log["regions"][0]["view"] == "original"
    result = state.result("egg")
    assert "crop_sources" not in result.to_dict() and result.crop_sources == [0]


def test_spatial_entropy_of_several_images_follows_the_chain_rule():
    one = _image_map(_blob(1, 1), (64, 64))
    two = _image_map(_blob(1, 1) + _blob(5, 5), (64, 64))
    h1 = spatial_entropy(one.primary.values, sigma=0.0)
    h2 = spatial_entropy(two.primary.values, sigma=0.0)
    assert h1 == pytest.approx(0.0, abs=1e-9) and h2 == pytest.approx(math.log(2), rel=1e-3)
    # two equal maps: a fair choice between the images, then each map's own entropy
    h, _ = _originals_entropies([one, one], 0.0)
    assert h == pytest.approx(math.log(2) + h1)
    w = np.array([one.primary.values.sum(), two.primary.values.sum()])
    w = w / w.sum()
    expected = -(w * np.log(w)).sum() + w[0] * h1 + w[1] * h2
    assert _originals_entropies([one, two], 0.0)[0] == pytest.approx(expected)
    assert _originals_entropies([one], 0.0)[0] == h1  # one image: its own, exactly


def test_answer_images_cut_each_crop_from_its_image():
    a, b = noise_image(40, 30, seed=1), noise_image(50, 60, seed=2)
    out = answer_images([a, b], [(10, 10, 30, 40), (0, 0, 20, 10)], [1, 0])
    assert out[:2] == [a, b]
    assert out[2].tobytes() == b.crop((10, 10, 30, 40)).tobytes()
    assert out[3].tobytes() == a.crop((0, 0, 20, 10)).tobytes()
    with pytest.raises(ValueError):
        answer_images([a], [(0, 0, 5, 5)], [0, 0])


def test_ground_on_two_images(tiny_llava):
    """The map has one grid per image; each crop lies in its own image; the answers equal
    ``generate`` on the images then the crops; the log says where each crop comes from."""
    a, b = noise_image(96, 64, seed=5), noise_image(64, 96, seed=6)
    amap = attribute(tiny_llava, [a, b], QUESTION)
    assert [im.image_size for im in amap.images] == [a.size, b.size]
    assert [im.origin_box for im in amap.images] == [(0, 0, 96, 64), (0, 0, 64, 96)]
    settings = LoopSettings(stop="fixed:2")
    result = ground(tiny_llava, [a, b], QUESTION, settings=settings, max_new_tokens=3)
    assert result.image_sizes == [a.size, b.size] and len(result.maps[0].images) == 2
    step0, step1 = result.steps
    assert step1.sources_in == step0.crop_sources and step1.crops_in == step0.crop_boxes
    assert len(result.maps[1].images) == 2 + len(step0.crop_boxes)
    for box, source in zip(result.crops, result.crop_sources):
        w, h = (a, b)[source].size
        assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
    scores = [r.score for r in step0.regions]
    assert scores == sorted(scores, reverse=True)  # one ranking across both images
    fresh = tiny_llava.generate(
        tiny_llava.build_inputs(answer_images([a, b], result.crops, result.crop_sources), QUESTION),
        3,
    )
    assert result.answer == fresh
    assert result.base_answer == tiny_llava.generate(tiny_llava.build_inputs([a, b], QUESTION), 3)
    log = json.loads(json.dumps(result.to_dict()))
    assert log["image_sizes"] == [[96, 64], [64, 96]] and log["crop_sources"] == result.crop_sources


def test_a_model_taking_fewer_images_refuses_in_one_line(tiny_llava, monkeypatch):
    monkeypatch.setattr(type(tiny_llava), "max_images_per_prompt", 3)
    a, b = noise_image(64, 64, seed=1), noise_image(64, 64, seed=2)
    with pytest.raises(InputError, match=r"at most 3 image\(s\) per prompt") as info:
        ground(tiny_llava, [a, b], QUESTION)
    assert "\n" not in str(info.value) and "2 image(s) plus up to 2 crop(s)" in str(info.value)
    result = ground(tiny_llava, [a, b], QUESTION, settings=LoopSettings(top_k=1, stop="none"))
    assert len(result.crops) <= 1


def test_cli_grounds_two_images(tiny_llava_dir, tmp_path, capsys):
    from egg_interp.cli import main

    paths = []
    for name, (w, h, seed) in {"a.png": (120, 80, 1), "b.png": (64, 96, 2)}.items():
        noise_image(w, h, seed=seed).save(tmp_path / name)
        paths += ["--image", str(tmp_path / name)]
    out = tmp_path / "out"
    args = ["ground", "--model", str(tiny_llava_dir), *paths, "--question", QUESTION]
    rc = main([*args, "--stop", "fixed:2", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "grounded answer:" in text and "from image" in text and "b.png" in text
    log = json.loads((out / "steps.json").read_text())
    assert log["image_sizes"] == [[120, 80], [64, 96]] and len(log["steps"]) == 2
    assert log["crop_sources"] == log["steps"][1]["crop_sources"]
    assert all(len(s["crop_sources"]) == len(s["crop_boxes"]) for s in log["steps"])
    saved = AttributionMap.load(out / "map.npz")
    assert [im.image_size for im in saved.images] == [(120, 80), (64, 96)]
    with Image.open(out / "grounding.png") as fig:
        width, height = fig.size
    assert width > 1.4 * height  # two map panels and the steps' crops, side by side
    assert main([*args, "--pipeline", "vicrop"]) == 2
    assert "takes one --image" in capsys.readouterr().err
