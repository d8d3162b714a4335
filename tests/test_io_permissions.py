"""Outputs are created with the user's normal permissions (the umask), not private 0600."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from egg_interp.geometry import regular_cell_boxes
from egg_interp.io import atomic_path, write_json
from egg_interp.maps import AttributionMap, GridView, ImageMap


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_follow_the_umask(tmp_path, umask_022):
    write_json(tmp_path / "steps.json", {"a": 1})
    assert _mode(tmp_path / "steps.json") == 0o644
    with atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("x")
    assert _mode(tmp_path / "x.txt") == 0o644
    assert not list(tmp_path.glob(".*.tmp"))


def test_saved_map_and_figure_follow_the_umask(tmp_path, umask_022):
    import matplotlib.pyplot as plt

    from egg_interp.io import save_figure

    grid = np.arange(16, dtype=np.float32).reshape(4, 4)
    boxes = regular_cell_boxes(4, 4, 0.0, 0.0, 10.0, 10.0)
    amap = AttributionMap([ImageMap([GridView(grid, boxes)], (40, 40), (0, 0, 40, 40))], "egg")
    amap.save(tmp_path / "map.npz")
    assert _mode(tmp_path / "map.npz") == 0o644
    fig, _ = plt.subplots()
    save_figure(fig, tmp_path / "f.png")
    assert _mode(tmp_path / "f.png") == 0o644


def test_a_private_umask_is_respected(tmp_path):
    old = os.umask(0o077)
    try:
        write_json(tmp_path / "s.json", {})
    finally:
        os.umask(old)
    assert _mode(tmp_path / "s.json") == 0o600
