"""The shared map type: persistence, heat maps on the image, plotting."""

from __future__ import annotations

import numpy as np
import pytest

from egg_interp.errors import DegenerateMapError
from egg_interp.maps import AttributionMap, GridView, ImageMap
from egg_interp.models.base import regular_cell_boxes


def _map():
    base = GridView(
        np.arange(4, dtype=np.float32).reshape(2, 2), regular_cell_boxes(2, 2, 0, 0, 50, 30)
    )
    fine = GridView(
        np.ones((2, 4), np.float32) * 10, regular_cell_boxes(2, 4, 50, 0, 12.5, 15), "highres"
    )
    return AttributionMap([ImageMap([base, fine], (100, 60), (0, 0, 100, 60))], "egg", "entropy")


def test_save_load_roundtrip(tmp_path):
    m = _map()
    m.meta["top1_token"] = "red"
    m.save(tmp_path / "m.npz")
    back = AttributionMap.load(tmp_path / "m.npz")
    assert back.method == "egg" and back.meta == {"top1_token": "red"}
    for a, b in zip(m.images[0].views, back.images[0].views):
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.cell_boxes, b.cell_boxes)
        assert a.name == b.name


def test_heatmap_finer_view_wins_where_it_exists():
    heat = _map().heatmap()
    assert heat.shape == (60, 100)
    # the fine view covers x in [50, 100), y in [0, 30): value 10 there
    assert np.allclose(heat[0:30, 50:100], 10)
    # elsewhere the coarse 2x2 grid (bilinear between its cell values 0..3)
    assert heat[45, 10] == pytest.approx(2.0, abs=0.6)
    assert np.isfinite(heat).all()
    assert _map().images[0].primary.name == "highres"


def test_heatmap_scales_to_any_size():
    heat = _map().heatmap(size=(50, 30))
    assert heat.shape == (30, 50) and np.allclose(heat[0:15, 25:50], 10)


def test_check_rejects_degenerate_maps():
    m = _map()
    m.images[0].views[0].values[:] = 0
    m.images[0].views[1].values[:] = 0
    with pytest.raises(DegenerateMapError, match="all zeros"):
        m.check()
    m.images[0].views[0].values[0, 0] = np.nan
    with pytest.raises(DegenerateMapError, match="NaN"):
        m.check()


def test_plot_returns_fig_and_ax():
    import matplotlib.pyplot as plt

    fig, ax = _map().plot(image=np.zeros((60, 100, 3)), boxes=[(10, 10, 20, 20)])
    assert len(ax.patches) == 1 and ax.figure is fig
    fig2, ax2 = plt.subplots()
    assert _map().plot(ax=ax2) == (fig2, ax2)
    plt.close("all")
