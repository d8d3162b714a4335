"""Region extraction on hand-made maps with known components."""

import json

import numpy as np
import pytest
from scipy import ndimage

from egg_interp.errors import DegenerateMapError, InputError
from egg_interp.regions import (
    THRESHOLDS,
    Region,
    cap_aspect,
    cells_to_box,
    clip_box,
    component_scores,
    expand_box,
    find_regions,
    label_components,
    rank_regions,
    smooth,
    threshold_elbow,
    threshold_otsu,
    threshold_quantile,
)


def tiling(rows, cols, cell_w=10.0, cell_h=10.0, x_off=0.0, y_off=0.0):
    """cell_boxes of a regular grid whose top-left corner sits at (x_off, y_off)."""
    c, r = np.meshgrid(np.arange(cols), np.arange(rows))
    x0, y0 = x_off + c * cell_w, y_off + r * cell_h
    return np.stack([x0, y0, x0 + cell_w, y0 + cell_h], axis=-1).astype(float)


def two_blobs():
    g = np.zeros((8, 10))
    g[1:3, 1:3] = 1.0  # sum 4, peak 1
    g[5:7, 6:9] = 0.8  # sum 4.8, peak 0.8
    return g


def test_two_blobs_ranked_by_raw_sum():
    regions = find_regions(two_blobs(), tiling(8, 10), (100, 80), sigma=0)
    assert [r.rank for r in regions] == [0, 1]
    assert [r.score for r in regions] == pytest.approx([4.8, 4.0])
    assert regions[0].grid_box == (5, 6, 7, 9)
    assert regions[0].box == (60.0, 50.0, 90.0, 70.0)
    assert regions[1].grid_box == (1, 1, 3, 3)
    assert regions[1].box == (10.0, 10.0, 30.0, 30.0)
    assert regions[0].cells.sum() == 6 and regions[0].cells.dtype == bool


def test_two_blobs_with_default_smoothing_score_on_raw_map():
    regions = find_regions(two_blobs(), tiling(8, 10), (100, 80))
    assert len(regions) == 2
    assert [r.score for r in regions] == pytest.approx([4.8, 4.0])


def test_peak_and_mean_scores_reorder():
    regions = find_regions(two_blobs(), tiling(8, 10), (100, 80), sigma=0, score="peak")
    assert [r.score for r in regions] == pytest.approx([1.0, 0.8])
    assert regions[0].grid_box == (1, 1, 3, 3)
    regions = find_regions(two_blobs(), tiling(8, 10), (100, 80), sigma=0, score="mean")
    assert regions[0].score == pytest.approx(1.0)


def test_top_k_limits_and_none_keeps_all():
    g = np.zeros((5, 9))
    g[2, 0], g[2, 4], g[2, 8] = 3.0, 2.0, 1.0
    cb = tiling(5, 9)
    assert len(find_regions(g, cb, (90, 50), top_k=1, sigma=0)) == 1
    assert [r.score for r in find_regions(g, cb, (90, 50), top_k=None, sigma=0)] == [3, 2, 1]
    with pytest.raises(InputError):
        find_regions(g, cb, (90, 50), top_k=0)


def test_connectivity_on_diagonal_pair():
    mask = np.array([[1, 0], [0, 1]], dtype=bool)
    assert label_components(mask, 4).max() == 2
    assert label_components(mask, 8).max() == 1
    g = np.eye(3)
    cb = tiling(3, 3)
    kw = dict(sigma=0, threshold=0.5, top_k=None, max_aspect=None)
    assert len(find_regions(g, cb, (30, 30), connectivity=4, **kw)) == 3
    (one,) = find_regions(g, cb, (30, 30), connectivity=8, **kw)
    assert one.score == 3.0 and one.box == (0.0, 0.0, 30.0, 30.0)
    with pytest.raises(InputError):
        label_components(mask, 6)


def test_component_scores_by_hand():
    raw = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 5.0]])
    labels = np.array([[1, 1, 0], [0, 0, 2]])
    assert component_scores(raw, labels).tolist() == [3.0, 5.0]
    assert component_scores(raw, labels, "peak").tolist() == [2.0, 5.0]
    assert component_scores(raw, labels, "mean").tolist() == [1.5, 5.0]
    assert component_scores(raw, np.zeros((2, 3), int)).shape == (0,)
    with pytest.raises(InputError, match="valid"):
        component_scores(raw, labels, "median")


def test_elbow_on_hand_computed_curve():
    # Sorted: 0 0 0 0 1 5 10; chord (0, 0)-(6, 10); |10 i - 6 v_i| = 0 10 20 30 34 20 0.
    assert threshold_elbow([10, 0, 5, 0, 1, 0, 0]) == 1.0
    # 2-D input is flattened: 0 x5, 1, 5, 10; |10 i - 7 v_i| peaks at 43 for i = 5 (value 1).
    assert threshold_elbow(np.array([[10.0, 0, 5, 0], [1, 0, 0, 0]])) == 1.0
    assert threshold_elbow([3.0, 3.0, 3.0]) == 3.0
    assert threshold_elbow([2.0, 1.0]) == 1.0
    # Rescaling either axis keeps the same point.
    assert threshold_elbow(np.array([10, 0, 5, 0, 1, 0, 0]) * 1e-6) == pytest.approx(1e-6)


def test_other_thresholds_and_registry():
    v = np.array([0.0, 0.0, 0.0, 1.0, 1.0])
    assert 0.0 <= threshold_otsu(v) < 1.0
    assert threshold_quantile(np.arange(11.0), 0.9) == pytest.approx(9.0)
    assert set(THRESHOLDS) == {"elbow", "otsu", "quantile"}
    with pytest.raises(InputError):
        threshold_quantile(v, 1.5)
    with pytest.raises(InputError):
        threshold_elbow([])
    for name in THRESHOLDS:
        assert find_regions(two_blobs(), tiling(8, 10), (100, 80), threshold=name)
    with pytest.raises(InputError, match="elbow"):
        find_regions(two_blobs(), tiling(8, 10), (100, 80), threshold="mean")


def test_explicit_threshold_above_maximum_gives_no_region():
    assert find_regions(two_blobs(), tiling(8, 10), (100, 80), sigma=0, threshold=5.0) == []


def test_constant_map_falls_back_to_ge_mask():
    (region,) = find_regions(np.ones((3, 4)), tiling(3, 4), (40, 30), max_aspect=None)
    assert region.cells.all() and region.box == (0.0, 0.0, 40.0, 30.0)


def test_aspect_cap_on_strip():
    g = np.zeros((10, 10))
    g[5, 2:8] = 1.0  # a 1x6 strip: box (20, 50, 80, 60), aspect 6
    (r,) = find_regions(g, tiling(10, 10), (100, 100), sigma=0, threshold=0.5)
    assert r.box == pytest.approx((20.0, 45.0, 80.0, 65.0))
    assert r.grid_box == (5, 2, 6, 8)
    (r,) = find_regions(g.T, tiling(10, 10), (100, 100), sigma=0, threshold=0.5)
    assert r.box == pytest.approx((45.0, 20.0, 65.0, 80.0))
    (r,) = find_regions(g, tiling(10, 10), (100, 100), sigma=0, threshold=0.5, max_aspect=None)
    assert r.box == (20.0, 50.0, 80.0, 60.0)


def test_aspect_cap_shifts_inside_image_and_clips_when_too_small():
    # At the top edge the widened box is shifted down, keeping its size.
    assert cap_aspect((20, 0, 80, 10), 3.0, (100, 100)) == pytest.approx((20, 0, 80, 20))
    assert cap_aspect((20, 0, 80, 10), 3.0) == pytest.approx((20, -5, 80, 15))
    # An image only 15 px high cannot hold the capped box: clipped, aspect 4 > 3 (documented).
    assert cap_aspect((0, 0, 60, 10), 3.0, (60, 15)) == pytest.approx((0, 0, 60, 15))
    assert cap_aspect((0, 0, 30, 10), 3.0) == (0, 0, 30, 10)  # exactly at the cap
    with pytest.raises(InputError):
        cap_aspect((0, 0, 10, 10), 0.5)
    with pytest.raises(InputError):
        cap_aspect((5, 5, 5, 10), 3.0)


def test_centre_cropped_grid_maps_to_image_pixels():
    # Image 100x60; the 3x3 grid covers x in [20, 80), y in [0, 60): cells 20x20.
    cb = tiling(3, 3, cell_w=20, cell_h=20, x_off=20)
    g = np.zeros((3, 3))
    g[1, 2] = 1.0
    (r,) = find_regions(g, cb, (100, 60), sigma=0)
    assert r.box == (60.0, 20.0, 80.0, 40.0)
    g = np.zeros((3, 3))
    g[:, 0] = 1.0  # left column: (20, 0, 40, 60), aspect exactly 3
    (r,) = find_regions(g, cb, (100, 60), sigma=0, threshold=0.5)
    assert r.box == (20.0, 0.0, 40.0, 60.0)
    # A tighter cap widens into border pixels that no cell covers; they are image pixels.
    (r,) = find_regions(g, cb, (100, 60), sigma=0, threshold=0.5, max_aspect=2.0)
    assert r.box == pytest.approx((15.0, 0.0, 45.0, 60.0))
    assert cells_to_box(g > 0, cb) == (20.0, 0.0, 40.0, 60.0)


def test_non_square_grid_and_cells():
    cb = tiling(3, 5, cell_w=8, cell_h=12)
    g = np.zeros((3, 5))
    g[1:3, 3:5] = 2.0
    (r,) = find_regions(g, cb, (40, 36), sigma=0)
    assert r.grid_box == (1, 3, 3, 5)
    assert r.box == (24.0, 12.0, 40.0, 36.0)
    assert r.cells.shape == (3, 5)


def test_margin_and_min_side():
    assert expand_box((40, 40, 60, 50), margin=0.5) == (30, 35, 70, 55)
    assert expand_box((40, 40, 60, 50), min_side=30) == (35, 30, 65, 60)
    assert expand_box((0, 0, 10, 10), min_side=30, image_size=(100, 100)) == (0, 0, 30, 30)
    assert expand_box((0, 0, 10, 10), min_side=300, image_size=(100, 50)) == (0, 0, 100, 50)
    g = np.zeros((10, 10))
    g[4:6, 4:6] = 1.0
    (r,) = find_regions(g, tiling(10, 10), (100, 100), sigma=0, margin=0.25, min_side=0)
    assert r.box == (35.0, 35.0, 65.0, 65.0)
    with pytest.raises(InputError):
        expand_box((0, 0, 1, 1), margin=-0.1)


def test_clip_box():
    assert clip_box((-5, -5, 10, 10), (100, 60)) == (0, 0, 10, 10)
    assert clip_box((90, 50, 130, 70), (100, 60)) == (90, 50, 100, 60)
    with pytest.raises(InputError, match="outside"):
        clip_box((100, 0, 120, 10), (100, 60))
    with pytest.raises(InputError, match="outside"):
        clip_box((-20, -20, -1, -1), (100, 60))
    with pytest.raises(InputError, match="one pixel"):
        clip_box((99.5, 0, 120, 10), (100, 60))
    with pytest.raises(InputError):
        clip_box((0, 0, float("nan"), 10), (100, 60))
    with pytest.raises(InputError):
        clip_box((0, 0, 10, 10), (0, 60))


@pytest.mark.parametrize(
    "grid, error",
    [
        (np.zeros((4, 4)), DegenerateMapError),
        (np.where(np.eye(4) > 0, np.nan, 1.0), DegenerateMapError),
        (np.full((4, 4), np.inf), DegenerateMapError),
        (-np.ones((4, 4)), InputError),
        (np.ones(4), InputError),
    ],
)
def test_bad_maps(grid, error):
    with pytest.raises(error):
        find_regions(grid, tiling(4, 4), (40, 40))


def test_cell_boxes_shape_checked():
    with pytest.raises(InputError, match="cell_boxes"):
        find_regions(np.ones((3, 3)), tiling(3, 4), (40, 30))


def test_region_to_dict_is_plain_json():
    (r,) = find_regions(two_blobs(), tiling(8, 10), (100, 80), sigma=0, top_k=1, view="orig")
    d = r.to_dict()
    text = json.dumps(d)
    assert type(d["score"]) is float and type(d["rank"]) is int
    assert all(type(v) is int for v in d["grid_box"])
    assert all(type(v) is float for v in d["box"])
    assert type(d["cells"][0][0]) is bool
    back = Region.from_dict(json.loads(text))
    assert back.box == r.box and back.grid_box == r.grid_box and back.view == "orig"
    assert np.array_equal(back.cells, r.cells)
    assert r.area == 30.0 * 20.0


def test_rank_regions_merges_images():
    a = find_regions(two_blobs(), tiling(8, 10), (100, 80), sigma=0, image_index=0)
    g = np.zeros((4, 4))
    g[1, 1] = 4.5
    b = find_regions(g, tiling(4, 4), (40, 40), sigma=0, image_index=1, view="crop")
    merged = rank_regions([a, b])
    assert [r.score for r in merged] == pytest.approx([4.8, 4.5, 4.0])
    assert [r.image_index for r in merged] == [0, 1, 0]
    assert [r.rank for r in merged] == [0, 1, 2]
    assert [r.score for r in rank_regions([a, b], top_k=2)] == pytest.approx([4.8, 4.5])
    assert a[1].rank == 1  # inputs untouched


def test_smooth_is_a_weighted_mean_of_real_cells_and_sigma_zero_copies():
    g = np.zeros((5, 6))
    g[0, 0] = 1.0
    s = smooth(g)
    assert 0.0 <= s.min() and s.max() <= 1.0
    assert np.allclose(smooth(np.full((5, 6), 3.0)), 3.0)  # a uniform map stays uniform
    s0 = smooth(g, 0)
    assert np.array_equal(s0, g) and s0 is not g
    with pytest.raises(InputError):
        smooth(g, -1.0)


def test_smoothing_border_does_not_favour_edge_cells_on_a_small_grid():
    """8 x 8, sigma 1.5 (the organism's grid): a 0.83 centre cell outranks a 0.47 edge cell.

    With a mirroring border the edge cell counted its own value again and won (0.061 against
    0.060); normalised convolution averages real cells only.
    """
    g = np.zeros((8, 8))
    g[0, 3], g[4, 4] = 0.47, 0.83
    s = smooth(g, 1.5)
    assert s[4, 4] > s[0, 3]
    lone = np.zeros((8, 8))
    lone[0, 0] = 1.0
    reflected = ndimage.gaussian_filter(lone, 1.5, mode="reflect")[0, 0]
    assert smooth(lone, 1.5)[0, 0] < reflected  # less edge favour than a mirroring border
