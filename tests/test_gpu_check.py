"""``make gpu-check`` runs on a CPU at smoke sizes, so the script cannot rot without a GPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "analyses"))

import gpu_check  # noqa: E402


def test_smoke_run_writes_every_section(tmp_path, capsys):
    code = gpu_check.main(["--smoke", "--device", "cpu", "--out", str(tmp_path), "--skip", "tests"])
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 0, {k: res.get(k) for k in ("bench", "training")}
    env = res["environment"]
    assert {"card", "driver", "torch", "transformers"} <= set(env)
    bench = res["bench"]
    assert bench["forward_ms"] > 0 and bench["egg_memory_ratio"] >= 1.0
    assert bench["scaling"]["tokens"] == [64, 128]
    assert set(bench["maps_per_second"]) == {"1", "2"}
    assert all(r["errors"] == 0 for r in bench["runner"].values())
    assert res["training"]["steps_per_second"] > 0
    md = (tmp_path / "gpu_check.md").read_text()
    assert "runner samples/s, batch 2" in md and "steps/s" in md
    assert "GPU check" in capsys.readouterr().out


def test_cuda_tests_are_marked_and_skip_without_a_gpu():
    import test_cuda

    marks = {m.name for m in test_cuda.pytestmark}
    assert {"cuda", "skipif"} <= marks
