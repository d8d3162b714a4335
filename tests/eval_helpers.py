"""Shared fixtures of the runner and report tests: a tiny V* folder in the official format."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import noise_image

QUESTIONS = [
    ("what colour is the square ?", ["red", "blue"], [[10, 8, 30, 20]]),
    ("what colour is the circle ?", ["blue", "green"], [[60, 40, 20, 20], [5, 5, 10, 10]]),
    ("is there a square ?", ["yes", "no"], [[0, 0, 119, 79]]),
    ("what pattern is on the red circle ?", ["red", "green"], [[90, 50, 12, 12]]),
    ("what colour is the square ?", ["green", "red"], [[30, 30, 40, 30]]),
    ("what colour is the circle ?", ["red", "blue"], [[70, 10, 16, 16]]),
]


def make_vstar(root: Path, n: int = 4, size: tuple[int, int] = (120, 80)) -> Path:
    """``n`` V* samples (``direct_attributes/``) with noise images of ``size`` and boxes."""
    folder = Path(root) / "direct_attributes"
    folder.mkdir(parents=True, exist_ok=True)
    (Path(root) / "relative_position").mkdir(exist_ok=True)
    for i in range(n):
        question, options, boxes = QUESTIONS[i % len(QUESTIONS)]
        noise_image(*size, seed=i).save(folder / f"sa_{i:03d}.png")
        record = {
            "target_object": ["thing"] * len(boxes),
            "bbox": boxes,
            "question": question,
            "options": options,
        }
        (folder / f"sa_{i:03d}.json").write_text(json.dumps(record))
    return Path(root)
