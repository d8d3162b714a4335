"""ViCrop's crop choice on hand-made maps, its tiling, the pipeline, compare and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import noise_image

from egg_interp.cli import main
from egg_interp.compare import compare_methods
from egg_interp.errors import InputError
from egg_interp.geometry import parse_boxes
from egg_interp.maps import GridView
from egg_interp.models.base import regular_cell_boxes
from egg_interp.vicrop import (
    best_window,
    choose_crop,
    square_around,
    stitch,
    tile_boxes,
    vicrop,
    vicrop_answer,
    window_sums,
)

QUESTION = "what colour is the square ?"


def _cells(rows: int, cols: int, side: float = 10.0) -> np.ndarray:
    return regular_cell_boxes(rows, cols, 0.0, 0.0, side, side)


def test_window_sums_match_a_brute_force_loop():
    grid = np.random.default_rng(0).random((6, 7))
    sums = window_sums(grid, 3, 2)
    brute = np.array([[grid[r : r + 3, c : c + 2].sum() for c in range(6)] for r in range(4)])
    np.testing.assert_allclose(sums, brute)
    with pytest.raises(InputError):
        window_sums(grid, 7, 1)


def test_best_window_lands_on_the_blob():
    rows, cols = np.mgrid[:24, :24]
    grid = np.exp(-((rows - 17) ** 2 + (cols - 6) ** 2) / 8.0) + 0.01
    s = best_window(grid, 5, 5)
    r0, c0, r1, c1 = s.window
    assert (r0, c0, r1, c1) == (15, 4, 20, 9)  # centred on the peak (17, 6)
    assert s.sharpness > 0


def test_the_sharpest_scale_wins_on_a_hand_computed_case():
    """10x10 cells of 10 px, s = 20 px; a 3x3 blob of ones at rows/cols 3-5.

    Window sides int(20 r / 10): 2, 2, 2, 3, 3, 4 cells for r = 1 ... 2.
    2x2: best 4, neighbours 2, 4, 2, 4 -> (4 - 3) / 4 = 0.25.
    3x3: best 9, neighbours 6, 6, 6, 6 -> (9 - 6) / 9 = 0.333 (r = 1.6 and 1.8 tie: 1.6).
    4x4: best 9 at (2, 2), neighbours 6, 9, 6, 9 -> 1.5 / 16 = 0.094.
    """
    grid = np.zeros((10, 10))
    grid[3:6, 3:6] = 1.0
    choice = choose_crop(grid, _cells(10, 10), (100, 100), base_side=20)
    sharp = {s.scale: s.sharpness for s in choice.scales}
    assert sharp[1.0] == pytest.approx(0.25) and sharp[1.4] == pytest.approx(0.25)
    assert sharp[1.6] == pytest.approx(1 / 3) and sharp[1.8] == pytest.approx(1 / 3)
    assert sharp[2.0] == pytest.approx(1.5 / 16)
    assert choice.scale == 1.6 and choice.window == (3, 3, 6, 6)
    # a square of 20 * 1.6 = 32 px centred on the window's centre (45, 45)
    assert choice.box == pytest.approx((29.0, 29.0, 61.0, 61.0))


def test_crop_is_shifted_inside_the_image_and_small_images_are_kept_whole():
    assert square_around((5.0, 95.0), 32, (100, 100)) == (0.0, 68.0, 32.0, 100.0)
    assert square_around((50.0, 10.0), 300, (100, 60)) == (0.0, 0.0, 100.0, 60.0)
    grid = np.random.default_rng(1).random((4, 4))
    choice = choose_crop(grid, _cells(4, 4), (40, 40), base_side=40)  # every window = grid
    assert choice.scale is None and choice.box == (0.0, 0.0, 40.0, 40.0)


def test_tiles_and_stitching():
    assert tile_boxes((1024, 700)) == [(0.0, 0.0, 1024.0, 700.0)]
    tiles = tile_boxes((2100, 1100))
    assert len(tiles) == 6 and tiles[0] == (0.0, 0.0, 700.0, 550.0)
    assert tiles[-1] == (1400.0, 550.0, 2100.0, 1100.0)
    views = [GridView(np.full((2, 2), i, np.float32), _cells(2, 2, 5)) for i in range(6)]
    view = stitch(views, tiles)
    assert view.shape == (4, 6)
    np.testing.assert_array_equal(view.values[:, ::2], [[0, 1, 2]] * 2 + [[3, 4, 5]] * 2)
    np.testing.assert_allclose(view.cell_boxes[3, 5], (1405.0, 555.0, 1410.0, 560.0))


def test_vicrop_pipeline_on_the_tiny_model(tiny_llava):
    image = noise_image(200, 150)
    result = vicrop_answer(tiny_llava, image, QUESTION, method="rel_att", base_answer=True)
    assert result.choice is not None and result.choice.scale is not None
    x0, y0, x1, y1 = result.box
    assert 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 150
    assert x1 - x0 == pytest.approx(64 * result.choice.scale)  # s = the 64 px model input
    assert isinstance(result.answer, str) and isinstance(result.base_answer, str)
    record = json.loads(json.dumps(result.to_dict()))
    assert record["crops"] == [list(result.box)] and record["method"] == "rel_att"


def test_vicrop_tiles_large_images(tiny_llava):
    result = vicrop(tiny_llava, noise_image(1100, 300), QUESTION, method="raw_attention")
    assert len(result.tiles) == 2 and result.map.grid.shape == (8, 16)
    assert result.map.images[0].image_size == (1100, 300)


def test_vicrop_without_a_usable_map_answers_from_the_original(tiny_llava):
    import torch

    torch.nn.init.zeros_(tiny_llava.model.lm_head.weight)  # zero entropy gradient
    result = vicrop_answer(tiny_llava, noise_image(200, 150), QUESTION, method="egg")
    assert result.box is None and "all zeros" in result.degenerate and result.crops == []


def test_compare_methods_draws_every_map(tiny_llava):
    maps, fig = compare_methods(
        tiny_llava,
        noise_image(96, 64),
        QUESTION,
        ["egg", "saliency", "raw_attention"],
        boxes=[(10, 10, 40, 40)],
    )
    assert list(maps) == ["egg", "saliency", "raw_attention"]
    assert len([ax for ax in fig.axes if ax.images]) == 4
    assert all("problem" not in m.meta for m in maps.values())
    with pytest.raises(InputError, match="valid:"):
        compare_methods(tiny_llava, noise_image(64, 64), QUESTION, ["egg", "nope"])
    assert parse_boxes("1,2,3,4;") == [(1.0, 2.0, 3.0, 4.0)]
    with pytest.raises(InputError):
        parse_boxes("1,2,0,4")


def test_cli_ground_vicrop_and_compare(tiny_llava_dir, tmp_path, capsys):
    image = tmp_path / "im.png"
    noise_image(120, 90).save(image)
    common = ["--model", str(tiny_llava_dir), "--image", str(image), "--question", QUESTION]
    out = tmp_path / "vc"
    rc = main(["ground", *common, "--pipeline", "vicrop", "--method", "rel-att", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "vicrop answer:" in text and "crop (rel_att" in text
    assert (out / "vicrop.png").exists() and json.loads((out / "vicrop.json").read_text())
    fig = tmp_path / "cmp.png"
    boxes = ["--boxes", "5,5,50,50"]
    rc = main(["compare", *common, "--methods", "egg,rel_att", *boxes, "--out", str(fig)])
    assert rc == 0 and fig.stat().st_size > 0
    rc = main(["compare", *common, "--methods", "egg,bogus", "--out", str(fig)])
    assert rc == 2 and "valid:" in capsys.readouterr().err


def test_vicrop_needs_a_native_input_side(tiny_llava, monkeypatch):
    from egg_interp.errors import UnsupportedModelError
    from egg_interp.models.base import VLMAdapter

    assert tiny_llava.input_side == 64  # the processor's centre crop
    ip = tiny_llava.processor.image_processor
    monkeypatch.setattr(ip, "do_center_crop", False)
    monkeypatch.setattr(ip, "size", {"shortest_edge": 3136, "longest_edge": 12845056})
    with pytest.raises(NotImplementedError, match="native input side"):
        VLMAdapter.input_side.fget(tiny_llava)  # pixel budgets, not a side
    monkeypatch.undo()

    def unknown(self):
        raise NotImplementedError("dynamic resolution")

    monkeypatch.setattr(VLMAdapter, "input_side", property(unknown))
    with pytest.raises(UnsupportedModelError, match="pass base_side"):
        vicrop(tiny_llava, noise_image(100, 100), QUESTION)
    result = vicrop(tiny_llava, noise_image(100, 100), QUESTION, base_side=40)
    assert result.box is not None and result.box[2] - result.box[0] <= 80
