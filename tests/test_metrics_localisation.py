"""Localisation, region and deletion/insertion metrics on hand-computed cases."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from egg_interp import metrics
from egg_interp.errors import DegenerateMapError, InputError
from egg_interp.metrics import (
    all_boxes_covered,
    any_box_hit,
    apply_substrate,
    auc,
    box_coverage,
    box_hits,
    box_iou,
    boxes_to_mask,
    cells_to_pixels,
    deletion_insertion_curve,
    energy_pointing_game,
    pointing_game,
    region_hit,
    region_iou,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)


def peak(shape, row, col):
    m = np.zeros(shape)
    m[row, col] = 1.0
    return m


# ------------------------------------------------------------------ boxes_to_mask


def test_boxes_land_in_columns_on_non_square_image():
    mask = boxes_to_mask([(40, 0, 50, 10)], (30, 50))
    assert mask.shape == (30, 50)
    assert mask.sum() == 100
    assert mask[:10, 40:50].all()  # x -> columns 40..49, y -> rows 0..9


def test_box_touching_and_crossing_the_border_is_clipped():
    assert boxes_to_mask([(0, 0, 50, 30)], (30, 50)).all()
    mask = boxes_to_mask([(45, 25, 60, 40)], (30, 50))
    assert mask.sum() == 25 and mask[25:, 45:].all()
    assert boxes_to_mask([(-5, -5, 1, 1)], (30, 50)).sum() == 1


def test_float_boxes_cover_every_overlapped_pixel():
    # x in [1.5, 3.1) overlaps columns 1, 2, 3; y in [0.2, 1.0) overlaps row 0 only
    mask = boxes_to_mask([(1.5, 0.2, 3.1, 1.0)], (2, 5))
    assert mask.astype(int).tolist() == [[0, 1, 1, 1, 0], [0, 0, 0, 0, 0]]


def test_empty_outside_and_inverted_boxes_mark_nothing():
    for boxes in ([], [(60, 0, 70, 5)], [(5, 5, 3, 8)], [(2, 2, 2, 4)]):
        assert not boxes_to_mask(boxes, (30, 50)).any()
    with pytest.raises(InputError):
        boxes_to_mask([(0, 0, np.nan, 3)], (4, 4))


# ------------------------------------------------------------------ pointing game


def test_pointing_game_hit_miss_on_non_square_image():
    sal = peak((30, 50), 5, 45)
    assert pointing_game(sal, [(40, 0, 50, 10)], tolerance=1) == 1.0
    assert pointing_game(sal, [(0, 0, 10, 10)], tolerance=1) == 0.0
    # the same box with x and y swapped lies below the image: empty ground truth
    assert math.isnan(pointing_game(sal, [(0, 40, 10, 50)]))


def test_pointing_game_tolerance_is_strict():
    sal = peak((1, 40), 0, 0)
    assert pointing_game(sal, [(15, 0, 16, 1)], tolerance=15) == 0.0  # distance 15
    assert pointing_game(sal, [(14, 0, 15, 1)], tolerance=15) == 1.0  # distance 14
    sal = peak((20, 20), 0, 0)
    assert pointing_game(sal, [(12, 9, 13, 10)]) == 0.0  # (row 9, col 12): 3-4-5 -> 15
    assert pointing_game(sal, [(11, 9, 12, 10)]) == 1.0  # sqrt(81 + 121) ~ 14.2


def test_pointing_game_empty_ground_truth_is_nan_never_a_hit():
    sal = peak((10, 10), 2, 2)
    assert math.isnan(pointing_game(sal, []))
    assert math.isnan(pointing_game(sal, [(20, 20, 30, 30)]))
    assert math.isnan(pointing_game(sal, np.zeros((10, 10), dtype=bool)))


def test_pointing_game_ties_take_first_maximum_in_row_major_order():
    sal = np.zeros((10, 10))
    sal[0, 0] = sal[9, 9] = 1.0
    assert pointing_game(sal, [(9, 9, 10, 10)], tolerance=1) == 0.0
    assert pointing_game(sal, [(0, 0, 1, 1)], tolerance=1) == 1.0


def test_pointing_game_degenerate_maps_are_nan():
    box = [(0, 0, 5, 5)]
    assert math.isnan(pointing_game(np.full((10, 10), 0.3), box))  # constant
    nan_map = peak((10, 10), 1, 1)
    nan_map[7, 7] = np.nan
    assert math.isnan(pointing_game(nan_map, box))
    with pytest.raises(InputError):
        pointing_game(peak((10, 10), 1, 1), box, tolerance=0)


def test_pointing_game_accepts_a_mask():
    mask = boxes_to_mask([(3, 1, 6, 4)], (8, 8))
    sal = peak((8, 8), 2, 4)
    assert pointing_game(sal, mask, tolerance=1) == pointing_game(sal, [(3, 1, 6, 4)], 1) == 1.0


# ------------------------------------------------------------------ mass and rank scores


def test_energy_pointing_game_and_relevance_mass_on_hand_built_map():
    sal = np.zeros((4, 4))
    sal[0, 0], sal[3, 3], sal[1, 1] = 3.0, 1.0, -2.0
    box = [(0, 0, 2, 2)]  # top-left 2x2 holds 3 and -2
    assert energy_pointing_game(sal, box) == pytest.approx(3 / 4)  # negatives clipped
    assert relevance_mass_accuracy(sal, box) == pytest.approx((3 - 2) / (3 + 1 - 2))
    sal[1, 1] = -5.0  # total 3 + 1 - 5 < 0: the ratio is meaningless
    assert math.isnan(relevance_mass_accuracy(sal, box))
    assert math.isnan(energy_pointing_game(np.zeros((4, 4)), box))
    assert math.isnan(energy_pointing_game(sal, []))


def test_rank_accuracy_uses_k_equal_to_mask_size():
    sal = np.array([[6.0, 5, 4, 3, 2, 1]])
    gt = [(0, 0, 1, 1), (3, 0, 4, 1)]  # columns 0 and 3: K = 2, top-2 = columns 0, 1
    assert relevance_rank_accuracy(sal, gt) == 0.5
    assert top_k_intersection(sal, gt, k=1) == 1.0
    assert top_k_intersection(sal, gt, k=4) == 0.5
    assert math.isnan(relevance_rank_accuracy(sal, []))
    with pytest.raises(InputError):
        top_k_intersection(sal, gt, k=7)


def test_rank_ties_are_shared_and_order_free():
    # K = 2; column 0 (inside) is above; columns 1 (inside) and 2 tie for the last slot
    sal = np.array([[5.0, 3, 3, 0]])
    gt = [(0, 0, 2, 1)]
    assert relevance_rank_accuracy(sal, gt) == pytest.approx((1 + 0.5) / 2)
    assert relevance_rank_accuracy(sal[:, ::-1], [(2, 0, 4, 1)]) == pytest.approx(0.75)
    # a constant map scores chance, |mask| / N
    assert top_k_intersection(np.ones((2, 2)), [(0, 0, 1, 1)], k=1) == pytest.approx(0.25)


def test_auc_perfect_constant_and_ties():
    mask = boxes_to_mask([(1, 1, 3, 3)], (5, 5))
    assert auc(mask.astype(float), mask) == 1.0
    assert auc(-mask.astype(float), mask) == 0.0
    assert auc(np.ones((5, 5)), mask) == 0.5
    # positives {3, 2} vs negatives {1, 2}: pairs 1 + 1 + 1 + 0.5 over 4
    assert auc(np.array([[3.0, 1, 2, 2]]), [(0, 0, 1, 1), (2, 0, 3, 1)]) == 0.875
    assert math.isnan(auc(np.ones((5, 5)), []))
    assert math.isnan(auc(np.arange(25.0).reshape(5, 5), [(0, 0, 5, 5)]))  # full mask


# ------------------------------------------------------------------ regions


def test_box_iou():
    assert box_iou((0, 0, 2, 2), (1, 0, 3, 2)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    assert box_iou((0, 0, 1, 1), (5, 5, 6, 6)) == 0.0
    assert box_iou((1, 1, 1, 1), (1, 1, 1, 1)) == 0.0


def test_region_iou_and_hit_use_the_top_ranked_box_and_best_gt():
    gt = [(100, 100, 110, 110), (0, 0, 4, 2)]
    assert region_iou([(0, 0, 2, 2), (100, 100, 110, 110)], gt) == 0.5
    assert region_hit([(0, 0, 2, 2)], gt) == 1.0  # IoU exactly 0.5 counts
    assert region_hit([(0, 0, 2, 2)], gt, iou_threshold=0.6) == 0.0
    assert region_iou([(50, 50, 60, 60), (0, 0, 4, 2)], gt) == 0.0  # only the first counts
    assert region_iou([], gt) == 0.0 and region_hit([], gt) == 0.0
    assert math.isnan(region_iou([(0, 0, 2, 2)], [])) and math.isnan(region_hit([(0, 0, 1, 1)], []))


def test_any_box_hit_with_points_and_maps():
    gt = [(0, 0, 10, 10), (40, 0, 50, 10)]
    assert any_box_hit((45.7, 5.2), gt, tolerance=1) == 1.0
    assert any_box_hit((25.0, 25.0), gt, tolerance=1) == 0.0
    assert any_box_hit((0.0, 0.0), [(15, 0, 16, 1)]) == 0.0  # distance 15, strict
    assert any_box_hit((0.0, 0.0), [(14, 0, 15, 1)]) == 1.0
    assert box_hits((45.0, 5.0), gt, tolerance=1).tolist() == [False, True]
    assert math.isnan(any_box_hit((1.0, 1.0), []))
    assert math.isnan(any_box_hit(peak((30, 50), 0, 0), [(60, 0, 70, 5)]))  # outside the map
    assert math.isnan(any_box_hit(np.ones((30, 50)), gt))


def test_any_box_hit_on_a_map_equals_pointing_game():
    rng = np.random.default_rng(0)
    for _ in range(20):
        sal = rng.random((12, 17))
        boxes = rng.uniform(-3, 20, size=(2, 4))
        boxes[:, 2:] = boxes[:, :2] + rng.uniform(0.5, 6, size=(2, 2))
        expected = pointing_game(sal, boxes, tolerance=4)
        got = any_box_hit(sal, boxes, tolerance=4)
        assert got == expected or (math.isnan(got) and math.isnan(expected))


def test_all_boxes_covered_by_top_k_regions():
    gt = [(0, 0, 10, 10), (20, 0, 30, 10)]
    regions = [(0, 0, 10, 5), (20, 0, 30, 10)]
    assert box_coverage(regions, gt).tolist() == [0.5, 1.0]
    assert all_boxes_covered(regions, gt, min_coverage=0.5) == 1.0
    assert all_boxes_covered(regions, gt, min_coverage=0.6) == 0.0
    assert all_boxes_covered(regions, gt, k=1) == 0.0  # the second box is not covered
    # overlapping regions are counted once
    assert box_coverage([(0, 0, 6, 10), (4, 0, 10, 10)], gt[:1]).tolist() == [1.0]
    assert math.isnan(all_boxes_covered(regions, []))
    assert all_boxes_covered([], gt) == 0.0


# ------------------------------------------------------------------ deletion / insertion

# 2x2 grid ranked (0,0) > (1,1) > (0,1) > (1,0); the key evidence is cells (0,0), (0,1),
# and the toy model's probability is the fraction of key cells revealed.
RELEVANCE = np.array([[4.0, 2.0], [1.0, 3.0]])


def key_fraction(keep):
    assert keep.shape == (2, 2) and keep.dtype == bool
    return keep[0].mean()


def test_deletion_curve_by_hand():
    curve = deletion_insertion_curve(RELEVANCE, key_fraction, "deletion")
    assert curve.fractions.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert curve.scores.tolist() == [1, 0.5, 0.5, 0, 0]
    # 0.25 * ((1 + .5) + (.5 + .5) + (.5 + 0) + 0) / 2 = 0.375
    assert curve.area == pytest.approx(0.375)


def test_insertion_curve_by_hand():
    curve = deletion_insertion_curve(RELEVANCE, key_fraction, "insertion")
    assert curve.scores.tolist() == [0, 0.5, 0.5, 1, 1]
    # 0.25 * ((0 + .5) + (.5 + .5) + (.5 + 1) + (1 + 1)) / 2 = 0.625
    assert curve.area == pytest.approx(0.625)


def test_curve_with_fewer_steps_and_constant_relevance():
    curve = deletion_insertion_curve(RELEVANCE, key_fraction, "deletion", n_steps=2)
    assert curve.scores.tolist() == [1, 0.5, 0]  # 0, 2 then 4 cells removed
    assert curve.area == pytest.approx(0.5 * 1.5 / 2 + 0.5 * 0.5 / 2)
    # constant grid: row-major order removes both key cells first
    flat = deletion_insertion_curve(np.ones((2, 2)), key_fraction, "deletion")
    assert flat.scores.tolist() == [1, 0.5, 0, 0, 0]


def test_curve_rejects_bad_input():
    with pytest.raises(DegenerateMapError):
        deletion_insertion_curve(np.array([[1.0, np.nan]]), key_fraction)
    with pytest.raises(InputError):
        deletion_insertion_curve(RELEVANCE, key_fraction, mode="both")


def test_cells_to_pixels_on_non_square_image():
    keep = np.array([[True, False], [False, False]])
    pixels = cells_to_pixels(keep, (4, 6))
    assert pixels.shape == (4, 6)
    assert pixels[:2, :3].all() and pixels.sum() == 6


def test_apply_substrate():
    rng = np.random.default_rng(1)
    image = rng.random((6, 8, 3))
    original = image.copy()
    keep = np.zeros((6, 8), dtype=bool)
    keep[:, :4] = True
    zeros = apply_substrate(image, keep, "zeros")
    assert np.array_equal(zeros[:, :4], image[:, :4]) and not zeros[:, 4:].any()
    mean = apply_substrate(image, keep, "mean")
    assert np.allclose(mean[:, 4:], image.mean(axis=(0, 1)))
    blur = apply_substrate(image, keep, "blur", sigma=2.0)
    assert np.allclose(blur[:, 4:], gaussian_filter(image, (2.0, 2.0, 0))[:, 4:])
    assert np.array_equal(image, original)  # input untouched
    with pytest.raises(InputError):
        apply_substrate(image, keep, "noise")


# ------------------------------------------------------------------ docs


@pytest.mark.parametrize("module", ["localisation", "regions", "deletion", "answers"])
def test_docstring_examples(module):
    result = doctest.testmod(getattr(metrics, module))
    assert result.attempted > 0 and result.failed == 0
