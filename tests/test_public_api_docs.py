"""Public functions document their options; the map's repr is short; the package is typed."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import noise_image

from egg_interp.geometry import regular_cell_boxes
from egg_interp.loop import ground
from egg_interp.maps import AttributionMap, GridView, ImageMap
from egg_interp.methods import attribute
from egg_interp.settings import LoopSettings

ROOT = Path(__file__).resolve().parents[1]


def test_attribute_and_ground_have_numpydoc_docstrings():
    for func in (attribute, ground):
        doc = func.__doc__ or ""
        assert "Parameters\n    ----------" in doc and "Returns\n    -------" in doc, func
    for word in ("entropy", "logprob", "top_p_entropy", "space=", "METHODS"):
        assert word in attribute.__doc__
    for word in ("fixed:N", "area:PX", "prob", "none", "max_steps", "region_kwargs"):
        assert word in ground.__doc__


def test_map_repr_is_short():
    views = [GridView(np.random.rand(24, 24), regular_cell_boxes(24, 24, 0, 0, 14, 14))]
    amap = AttributionMap([ImageMap(views, (336, 336), (0, 0, 336, 336))], "egg", "entropy")
    text = repr(amap)
    assert len(text) < 120 and "24x24" in text and "array" not in text


def test_py_typed_is_shipped():
    assert (ROOT / "egg_interp" / "py.typed").exists()
    assert '"egg_interp" = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()


def test_a_tiny_image_warns_and_stops_when_crops_repeat(tiny_llava):
    with pytest.warns(UserWarning, match="cannot zoom in"):
        result = ground(
            tiny_llava,
            noise_image(1, 1),
            "what colour is the square ?",
            settings=LoopSettings(top_k=1),
        )
    assert len(result.steps) <= 2 and "repeat" in result.decision.reason
    log = result.to_dict()
    json.dumps(log, allow_nan=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        settings = LoopSettings(stop="fixed:2")
        ground(tiny_llava, noise_image(64, 64), "what colour is the square ?", settings=settings)
