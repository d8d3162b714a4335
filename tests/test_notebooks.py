"""Both notebooks run end to end (small sample count) and match their generator."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "analyses"))

import make_notebooks  # noqa: E402


@pytest.mark.parametrize("name", sorted(make_notebooks.NOTEBOOKS))
def test_committed_notebook_shows_figures_and_no_warnings(name):
    committed = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    outputs = [o for c in committed.cells if c.cell_type == "code" for o in c.outputs]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, "the committed notebook draws figures, so its outputs must hold pictures"
    for o in outputs:
        text = o.get("text", "") if o.output_type == "stream" else ""
        assert o.output_type != "error"
        assert not (o.output_type == "stream" and o.name == "stderr"), text[:200]
        assert "Warning" not in text and str(ROOT) not in text and "/site-packages/" not in text


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(make_notebooks.NOTEBOOKS))
def test_notebook_runs_end_to_end(name, tmp_path, monkeypatch):
    committed = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    sources = [c.source for c in committed.cells]
    assert sources == [
        c.source for c in make_notebooks.build(make_notebooks.NOTEBOOKS[name]).cells
    ], "notebook out of date: run python analyses/make_notebooks.py --execute"
    for cell in committed.cells:
        if cell.cell_type == "code":
            assert cell.execution_count, "committed notebooks carry the outputs of a full run"
            cell.outputs = []
    monkeypatch.setenv("EGG_NB_N", os.environ.get("EGG_NB_N", "8"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    make_notebooks.execute(committed, tmp_path, timeout=600)  # a failing cell raises
    errors = [o for c in committed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
