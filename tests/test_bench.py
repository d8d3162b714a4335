"""The benchmark suite's measuring tools (no timing assertions: ratios live in the suite)."""

from __future__ import annotations

import math

import pytest
import torch

from egg_interp.bench import bench_methods, check_targets, markdown, peak_extra_memory


def test_peak_memory_sees_a_known_allocation():
    def alloc() -> None:
        a = torch.ones(1_000_000)  # 4 MB
        b = torch.ones(2_000_000)  # 8 MB, both alive
        del a, b
        c = torch.ones(500_000)  # 2 MB after both were freed
        del c

    peak = peak_extra_memory(alloc, torch.device("cpu"))
    assert 12_000_000 <= peak < 13_000_000


def test_bench_methods_reports_ratios_to_the_forward(tiny_llava):
    rows = bench_methods(tiny_llava, ["egg", "no_such_method"], repeat=1)
    assert rows[0]["method"] == "forward" and rows[0]["time_ratio"] == 1.0
    egg = rows[1]
    assert egg["method"] == "egg" and egg["time_ratio"] > 0 and egg["memory_ratio"] >= 1.0
    assert "error" in rows[2] and "unknown method" in rows[2]["error"]
    assert tiny_llava.feature_cache_size > 0  # restored


def test_targets_and_markdown():
    results = {
        "model": "m",
        "sizes": {"parameters": 1e6, "vision": "8x1", "text": "8x1"},
        "device": "cpu",
        "dtype": "float32",
        "threads": 2,
        "torch": "x",
        "date": "d",
        "repeat": 1,
        "methods": [
            {
                "method": "forward",
                "seconds": 0.1,
                "time_ratio": 1.0,
                "peak_bytes": 2**20 * 100,
                "memory_ratio": 1.0,
            },
            {
                "method": "egg",
                "seconds": 0.25,
                "time_ratio": 2.5,
                "peak_bytes": 2**20 * 110,
                "memory_ratio": 1.1,
            },
        ],
        "regions": {"regions_ms_24": 1.0, "regions_ms_100": 60.0},
        "scaling": {"tokens": [1, 2], "seconds": [1.0, 2.0], "exponent": 1.0},
        "pipeline": {"ratio": 3.0, "steps": 2},
        "batch": {1: 1.0},
        "cache": {"methods": ["egg"], "saving": 0.5},
        "runner": {"samples": 8, "seconds": 4.0, "samples_per_second": 2.0, "errors": 0},
    }
    checks = check_targets(results)
    assert not checks["egg_map_vs_forward"]["holds"]
    assert checks["egg_map_memory_vs_forward"]["holds"]
    assert checks["regions_ms_24"]["holds"] and not checks["regions_ms_100"]["holds"]
    results["checks"] = checks
    text = markdown(results)
    assert "| egg | 2.50x | 1.10x |" in text and "fitted exponent 1.00" in text
    assert "forward 100 ms, EGG map 250 ms; peak memory forward 100 MiB, EGG map 110 MiB" in text
    assert (
        "Evaluation runner (EGG map + EGG pipeline per sample, 8 scenes): 2.00 samples/s." in text
    )
    assert not math.isnan(checks["egg_map_vs_forward"]["value"])


def test_preset_built_in_memory_matches_the_saved_checkpoint(tmp_path, monkeypatch):
    """The in-memory preset path builds the same model as a checkpoint saved and loaded."""
    import numpy as np

    from egg_interp import bench
    from egg_interp.methods import get_method
    from egg_interp.models import load_model
    from egg_interp.models.offline import build_tiny_llava

    tiny = dict(image_size=64, patch_size=8, vision_hidden=16, text_hidden=16, text_layers=1)
    monkeypatch.setitem(bench.PRESETS, "tiny", tiny)
    built = bench.preset_adapter("tiny", device="cpu")
    saved = load_model(build_tiny_llava(tmp_path, bench.BENCH_WORDS, seed=0, **tiny), device="cpu")
    image = bench._image(64, 64)
    a = get_method("egg").attribute(built, [image], "what is written on the sign ?")
    b = get_method("egg").attribute(saved, [image], "what is written on the sign ?")
    assert np.abs(a.grid).max() > 0
    np.testing.assert_allclose(a.grid, b.grid, rtol=1e-5, atol=1e-9)
    assert not any(p.requires_grad for p in built.model.parameters())


def test_unknown_preset_is_a_clear_error():
    import pytest

    from egg_interp.bench import preset_adapter
    from egg_interp.errors import InputError

    with pytest.raises(InputError, match="unknown preset 'llava-70b'"):
        preset_adapter("llava-70b")


def test_width_check_rows_join_the_targets():
    results = {
        "methods": [{"method": "egg", "time_ratio": 1.9, "memory_ratio": 1.5}],
        "regions": {"regions_ms_24": 1.0, "regions_ms_100": 2.0},
        "width": {
            "preset": "w",
            "methods": [
                {"method": "forward", "time_ratio": 1.0, "memory_ratio": 1.0},
                {"method": "egg", "time_ratio": 2.0, "memory_ratio": 1.06},
            ],
        },
    }
    checks = check_targets(results)
    assert not checks["egg_map_memory_vs_forward"]["holds"]
    assert checks["egg_map_memory_vs_forward (w)"]["holds"]
    assert checks["egg_map_memory_vs_forward (w)"]["value"] == 1.06


def test_runner_throughput_runs_the_real_runner(tiny_llava):
    from egg_interp.bench import bench_runner

    out = bench_runner(tiny_llava, n=2)
    assert out["samples"] == 2 and out["errors"] == 0
    assert out["samples_per_second"] == pytest.approx(2 / out["seconds"])


def test_runner_batches_interleave_the_four_configurations(monkeypatch):
    """Batch 1 and 8, answers prefilled afresh and continued: run interleaved after a warm-up,
    each figure the median of its runs, ratios from the medians."""
    from egg_interp import bench

    calls = []
    rates = {(1, False): [2.0, 9.0, 2.2], (1, True): [3.0, 3.1, 1.0], (8, False): [4.0] * 3}
    rates[8, True] = [6.0, 6.6, 7.0]

    def fake(adapter, n, batch_size=1, options=None):
        reuse = None if options is None else options.reuse_forward
        calls.append((batch_size, reuse))
        seen = sum(c == (batch_size, reuse) for c in calls)
        sps = rates[batch_size, reuse][seen - 1] if options is not None else 1.0
        return {"samples": n, "seconds": n / sps, "samples_per_second": sps, "errors": 0}

    monkeypatch.setattr(bench, "bench_runner", fake)
    adapter = type("A", (), {"name": "organism"})()
    out = bench.bench_runner_batches(adapter, n=4, batch=8, repeat=3)
    assert calls[0] == (8, None)  # the warm-up
    assert calls[1:5] == [(1, False), (1, True), (8, False), (8, True)]  # interleaved
    assert len(calls) == 1 + 4 * 3
    assert out["samples_per_second"] == {
        "batch_1": {"fresh": 2.2, "continued": 3.0},
        "batch_8": {"fresh": 4.0, "continued": 6.6},
    }
    assert out["speedup"] == {"fresh": pytest.approx(4.0 / 2.2), "continued": pytest.approx(2.2)}
    assert out["continued_vs_fresh"]["batch_8"] == pytest.approx(6.6 / 4.0)
    assert out["model"] == "organism" and out["errors"] == 0


def test_markdown_reports_both_answer_paths_at_both_batches_side_by_side():
    run = {"samples": 8, "seconds": 4.0, "samples_per_second": 2.0, "errors": 0}
    results = {
        "model": "m",
        "sizes": {"parameters": 1e6, "vision": "8x1", "text": "8x1"},
        "device": "cpu",
        "dtype": "float32",
        "threads": 1,
        "torch": "x",
        "date": "d",
        "repeat": 1,
        "methods": [
            {
                "method": "forward",
                "seconds": 0.1,
                "time_ratio": 1.0,
                "peak_bytes": 1,
                "memory_ratio": 1.0,
            }
        ],
        "checks": {},
        "scaling": {"tokens": [1], "seconds": [1.0], "exponent": 1.0},
        "pipeline": {"ratio": 4.2, "old_ratio": 6.9, "steps": 2},
        "batch": {1: 1.0},
        "cache": {"methods": ["egg"], "saving": 0.5},
        "runner": run,
        "runner_batch": {
            "model": "organism",
            "samples": 16,
            "batch": 8,
            "repeat": 3,
            "samples_per_second": {
                "batch_1": {"fresh": 4.0, "continued": 5.0},
                "batch_8": {"fresh": 6.0, "continued": 9.0},
            },
            "speedup": {"fresh": 1.5, "continued": 1.8},
            "continued_vs_fresh": {"batch_1": 1.25, "batch_8": 1.5},
            "errors": 0,
        },
        "rerun": {"sections": ["pipeline"], "date": "d2"},
    }
    text = markdown(results)
    assert "4.2x the base answer (answers from the maps' own forwards; 6.9x" in text
    assert "Runner on organism, 16 scenes" in text and "medians of 3 interleaved runs:" in text
    assert "| 1 | 4.00 | 5.00 | 1.25x |" in text
    assert "| 8 | 6.00 | 9.00 | 1.50x |" in text
    assert "| batch 8 / batch 1 | 1.50x | 1.80x | |" in text
    assert "Sections rerun on d2: pipeline" in text


def test_qwen3_vl_preset_built_in_memory_matches_the_saved_checkpoint(tmp_path):
    """The in-memory Qwen3-VL preset (offline tokenizer and processor, deepstack) is the model
    that the standard path loads once saved: same adapter class, same maps, same answers."""
    import numpy as np

    from egg_interp import bench
    from egg_interp.methods import get_method
    from egg_interp.models import load_model
    from egg_interp.models.qwen3_vl import Qwen3VLAdapter

    built = bench.preset_adapter("qwen3-vl-tiny", device="cpu")
    assert isinstance(built, Qwen3VLAdapter)
    built.model.save_pretrained(tmp_path)
    built.processor.save_pretrained(tmp_path)
    saved = load_model(tmp_path, device="cpu")
    assert type(saved) is Qwen3VLAdapter
    image, question = bench._image(128, 96), "what is written on the sign ?"
    a = get_method("egg").attribute(built, [image], question)
    b = get_method("egg").attribute(saved, [image], question)
    assert a.grid.shape == (3, 4) and np.abs(a.grid).max() > 0  # 96 x 128 px, 32 px tokens
    np.testing.assert_allclose(a.grid, b.grid, rtol=1e-5, atol=1e-9)
    assert bench.bench_answer(built, (128, 96), 4, repeat=1)["new_tokens"] >= 1
    inputs = built.build_inputs([image], question)
    assert built.generate(inputs, 4) == saved.generate(saved.build_inputs([image], question), 4)


def test_full_size_presets_have_the_released_shapes():
    """Counted on the meta device (no memory): LLaVA-1.5-7B 7.06B parameters, Qwen3-VL-8B
    8.77B, as their model cards state."""
    from egg_interp import bench

    llava = bench.model_sizes(bench.preset_adapter("llava-1.5-7b", device="meta"))
    qwen = bench.model_sizes(bench.preset_adapter("qwen3-vl-8b", device="meta"))
    assert (llava["vision"], llava["text"]) == ("1024x24", "4096x32")
    assert (qwen["vision"], qwen["text"]) == ("1152x27", "4096x36")
    assert round(llava["parameters"] / 1e9, 2) == 7.06
    assert round(qwen["parameters"] / 1e9, 2) == 8.77


def test_bench_runs_through_the_adapter_on_llama4(tmp_path):
    """Llama 4's model cannot be called directly in transformers 5.24 (its adapter drives the
    pieces itself): the forward, the map and the answer go through the adapter interface."""
    from conftest import WORDS

    from egg_interp.bench import bench_answer, bench_methods
    from egg_interp.models import load_model
    from egg_interp.models.offline.llama4 import build_tiny_llama4

    adapter = load_model(build_tiny_llama4(tmp_path, WORDS), device="cpu")
    rows = bench_methods(adapter, ["egg"], repeat=1, image_size=(96, 96))
    assert [r["method"] for r in rows] == ["forward", "egg"] and "error" not in rows[1]
    assert rows[1]["memory_ratio"] >= 1.0
    assert 1 <= bench_answer(adapter, (96, 96), 3, repeat=1)["new_tokens"] <= 3


def test_faithfulness_cost_against_two_batched_forwards_of_17_rows(tiny_llava):
    """The section counts what a map's curves cost (MoRF and LeRF of both curves: 32 masked
    inputs, in forwards of 8 rows on a CPU; a prompt's first map adds the random order's 32)
    and states it as a ratio, checked against its goal; the suite lists it among the sections
    --only reruns."""
    from egg_interp import bench

    out = bench.bench_faithfulness(tiny_llava, repeat=1, image_size=(64, 64))
    assert (out["rows"], out["forwards"], out["first_rows"]) == (32, 4, 64)
    assert out["ratio"] > 0 and out["first_ratio"] > 0 and out["reference_seconds"] > 0
    assert out["settings"]["steps"] == 16 and out["target"] == bench.FAITHFULNESS_TARGET
    assert tuple(bench._sections(tiny_llava, None, None, 1)) == bench.SECTIONS
    sentence = bench._md_faithfulness({**out, "ratio": 0.97, "first_ratio": 1.9})
    assert "32 masked inputs in 4 batched forwards" in sentence
    assert "0.97x two batched forwards of 17 rows" in sentence and "(64 inputs): 1.90x" in sentence
    results = {"methods": [], "regions": {"regions_ms_24": 1.0, "regions_ms_100": 1.0}}
    checks = check_targets({**results, "faithfulness": {**out, "ratio": 1.2}})
    assert checks["faithfulness_vs_two_17_row_forwards"] == {
        "value": 1.2,
        "target": 1.0,
        "holds": False,
    }
    assert "faithfulness_vs_two_17_row_forwards" not in check_targets(results)
