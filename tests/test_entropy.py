"""Spatial and Shannon entropy on hand-computed cases."""

import math

import numpy as np
import pytest

from egg_interp.entropy import shannon_entropy, spatial_entropy
from egg_interp.errors import DegenerateMapError, InputError
from egg_interp.regions import smooth, threshold_elbow


def test_one_blob_is_zero():
    # 5x5, 2x2 blob of ones: mean 0.16, B = 0.68 on the blob only; elbow of S = 0.
    g = np.zeros((5, 5))
    g[1:3, 1:3] = 1.0
    assert spatial_entropy(g, sigma=0) == 0.0


def test_two_equal_blobs_is_log2():
    g = np.zeros((6, 6))
    g[0:2, 0:2] = 1.0
    g[4:6, 4:6] = 1.0
    assert spatial_entropy(g, sigma=0) == pytest.approx(math.log(2), abs=1e-12)


def test_diagonal_cells_join_under_8_connectivity():
    g = np.zeros((5, 5))
    g[1, 1] = g[2, 2] = 1.0  # touching corners: one component
    assert spatial_entropy(g, sigma=0) == 0.0


def test_probabilities_sum_below_one():
    # 1x10 map [4, 0, 2, 0, ...]: mean 0.6, B = [2.8, 0, 0.8, 0, ...], sum(B) = 3.6.
    g = np.zeros((1, 10))
    g[0, 0], g[0, 2] = 4.0, 2.0
    p = 2.8 / 3.6
    # t = 1.0 keeps only the first cell: one component holding 7/9 of the mass.
    assert spatial_entropy(g, sigma=0, threshold=1.0) == pytest.approx(-p * math.log(p))
    # Default t = elbow of S = 0 (sorted 0 x8, 2, 4): two components, 7/9 and 2/9.
    q = 0.8 / 3.6
    expected = -(p * math.log(p) + q * math.log(q))
    assert spatial_entropy(g, sigma=0) == pytest.approx(expected)


def test_default_threshold_is_elbow_of_smoothed_map():
    rng = np.random.default_rng(0)
    g = 0.1 * rng.random((9, 7))
    g[2:4, 1:3] += 1.0
    g[6, 5] += 2.0
    t = threshold_elbow(smooth(g, 1.5))
    assert spatial_entropy(g) == spatial_entropy(g, threshold=t)
    assert math.isfinite(spatial_entropy(g)) and spatial_entropy(g) >= 0


def test_smoothing_merges_nearby_peaks():
    g = np.zeros((7, 7))
    g[3, 2] = g[3, 4] = 1.0
    assert spatial_entropy(g, sigma=0) == pytest.approx(math.log(2))
    assert spatial_entropy(g, sigma=1.5) == 0.0


def test_threshold_above_everything_gives_zero():
    g = np.zeros((4, 4))
    g[0, 0] = 1.0
    assert spatial_entropy(g, sigma=0, threshold=10.0) == 0.0


@pytest.mark.parametrize("value", [0.0, 1.0, 3.5])
def test_flat_map_is_infinite(value):
    assert spatial_entropy(np.full((4, 5), value)) == math.inf


def test_spatial_entropy_bad_maps():
    g = np.ones((3, 3))
    g[1, 1] = np.nan
    with pytest.raises(DegenerateMapError):
        spatial_entropy(g)
    with pytest.raises(InputError):
        spatial_entropy(np.ones(3))


def test_shannon_entropy():
    assert shannon_entropy(np.ones((2, 2))) == pytest.approx(math.log(4))
    one_hot = np.zeros((3, 3))
    one_hot[2, 1] = 5.0
    assert shannon_entropy(one_hot) == 0.0
    assert shannon_entropy(np.array([[1.0, 3.0]])) == pytest.approx(
        -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    )
    with pytest.raises(DegenerateMapError):
        shannon_entropy(np.zeros((2, 2)))
    with pytest.raises(DegenerateMapError):
        shannon_entropy(np.array([[1.0, np.inf]]))
    with pytest.raises(InputError):
        shannon_entropy(np.array([[1.0, -1.0]]))
