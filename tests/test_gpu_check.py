"""``make gpu-check`` runs on a CPU at smoke sizes, so the script cannot rot without a GPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "analyses"))

import gpu_check  # noqa: E402


def test_smoke_run_writes_every_section_in_bfloat16(tmp_path, capsys):
    """Both models (LLaVA and Qwen3-VL presets) and training at tiny sizes, in bfloat16 as
    on the GPU, so that the bfloat16 path through maps, answers and the runner runs here."""
    args = ["--smoke", "--device", "cpu", "--dtype", "bfloat16", "--out", str(tmp_path)]
    code = gpu_check.main([*args, "--skip", "tests"])
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 0, {k: res.get(k) for k in ("bench", "training")}
    env = res["environment"]
    assert {"card", "driver", "torch", "transformers"} <= set(env)
    assert set(res["bench"]) == {"tiny", "qwen3-vl-tiny"}
    tokens = {"tiny": 64, "qwen3-vl-tiny": 12}  # 64 px / patch 8; 128 x 96 px / 32 px per token
    for name, b in res["bench"].items():
        assert b["dtype"] == "bfloat16" and b["record"]["attn_implementation"] == "sdpa"
        assert b["forward_ms"] > 0 and b["egg_memory_ratio"] >= 1.0, name
        assert b["visual_tokens"] == tokens[name]
        assert b["scaling"]["tokens"] == [tokens[name], 2 * tokens[name]]
        assert set(b["maps_per_second"]) == {"1", "2"}
        assert 1 <= b["answer"]["new_tokens"] <= 10
        assert all(r["errors"] == 0 for r in b["runner"].values()) and set(b["runner"]) == {
            "1",
            "2",
        }
        assert not b["not_measured"] and not b["errors"]
    assert res["bench"]["qwen3-vl-tiny"]["sizes"]["vision"] == "32x2"
    assert res["training"]["steps_per_second"] > 0
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| measure | tiny | qwen3-vl-tiny |" in md
    assert "| image (px) -> visual tokens | 64x64 -> 64 | 128x96 -> 12 |" in md
    assert "runner samples/s, batch 2" in md and "steps/s" in md
    assert "GPU check" in capsys.readouterr().out


def test_sections_keep_their_share_of_a_short_budget(tmp_path):
    """With 80 s, the last section (training) keeps 40 s; the model before it has the other
    40 s, under the 45 s a model needs to start, and the first model less than nothing (the
    second keeps 140 s): neither starts, and the output says so."""
    code = gpu_check.main(["--smoke", "--budget", "80", "--skip", "tests", "--out", str(tmp_path)])
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 0 and res["training"]["steps_per_second"] > 0
    for b in res["bench"].values():
        assert b["skipped"].startswith("time budget") and "forward_ms" not in b
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| forward (ms) | skipped | skipped |" in md
    assert "- qwen3-vl-tiny: skipped, time budget" in md


def test_full_sizes_refuse_to_run_without_cuda(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the full sizes would run")
    assert gpu_check.main(["--device", "cpu"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_budget_skips_what_does_not_fit_and_records_why():
    clock = Clock()
    total = gpu_check.Budget(100.0, clock)
    part = total.before(40.0)  # 40 s kept for later sections
    assert part.left() == 60.0 and total.left() == 100.0
    m = gpu_check.Measurements(part)

    def slow() -> str:
        clock.now += 50.0
        return "done"

    assert m.run("first", 55.0, slow) == "done"  # fits 60 s, then takes 50
    assert m.run("second", 20.0, slow) is None  # 10 s left: skipped, not run
    assert clock.now == 50.0
    assert m.missing["second"].startswith("skipped: time budget (about 20 s needed, 10 s left")
    assert m.run("third", 5.0, lambda: 1 / 0) is None
    assert m.errors == {"third": "ZeroDivisionError: division by zero"}

    def oom() -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    assert m.run("fourth", 0.0, oom) is None and m.missing["fourth"] == "out of GPU memory"


def test_markdown_names_what_was_not_measured():
    b = {
        "sizes": {"parameters": 8.77e9, "vision": "1152x27", "text": "4096x36"},
        "record": {"attn_implementation": "sdpa"},
        "image": [896, 672],
        "visual_tokens": 588,
        **dict(forward_ms=30.0, egg_ms=66.0, egg_time_ratio=2.2, egg_memory_ratio=1.1),
        **dict(forward_peak_mib=17_000.0, egg_peak_mib=900.0, answer=None),
        "scaling": {"tokens": [588], "seconds": [0.05], "exponent": float("nan")},
        "maps_per_second": {1: 2.0},
        "runner": {},
        "not_measured": {
            "answer": "skipped: time budget",
            "scaling 2 images": "skipped: time budget",
            "maps/s batch 32": "out of GPU memory",
            "runner batch 8": "skipped: x",
        },
        "errors": {"runner batch 1": "ValueError: y"},
        "plan": {"images": [1, 2], "batches": [1, 32], "runner_batches": [1, 8]},
    }
    rows = dict(gpu_check._bench_rows({"m": b}))
    assert rows["parameters"] == ["8.77B"] and rows["image (px) -> visual tokens"] == [
        "896x672 -> 588"
    ]
    assert rows["peak memory, forward / EGG map"] == ["16.60 GiB / 900.0 MiB"]
    assert rows["greedy answer from pixels, ms (tokens)"] == ["skipped"]
    assert rows["EGG map, 1 image, ms (visual tokens)"] == ["50.0 (588)"]
    assert rows["EGG map, 2 images, ms (visual tokens)"] == ["skipped"]
    assert rows["EGG maps/s, batch 1"] == ["2.00"] and rows["EGG maps/s, batch 32"] == ["OOM"]
    assert rows["runner samples/s, batch 1"] == ["error"]
    assert rows["runner samples/s, batch 8"] == ["skipped"]
    failed = dict(gpu_check._bench_rows({"m": {"error": "RuntimeError: z", "plan": b["plan"]}}))
    assert failed["forward (ms)"] == ["failed"]


def test_cuda_tests_are_marked_and_skip_without_a_gpu():
    import test_cuda

    marks = {m.name for m in test_cuda.pytestmark}
    assert {"cuda", "skipif"} <= marks
