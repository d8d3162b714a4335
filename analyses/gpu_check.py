"""One-command GPU check: CUDA-only tests, the benchmark on LLaVA-1.5-7B's shapes, training speed.

Usage::

    make gpu-check                                   # = python analyses/gpu_check.py
    python analyses/gpu_check.py --out figures/gpu   # on a machine with one CUDA GPU
    python analyses/gpu_check.py --smoke             # tiny sizes on the CPU (the test suite)

Sized to finish in at most 8 minutes on one H100 (``--budget`` seconds, default 420: a
section that would start after the budget is skipped and says so). Sections:

1. **CUDA tests**: ``pytest -m cuda`` (``tests/test_cuda.py``: bfloat16 maps against float32
   maps on the same weights, eager attention switched on and off for the call only, peak
   memory from ``torch.cuda.max_memory_allocated``); skipped without CUDA.
2. **Benchmark** on the random-weight ``llava-1.5-7b`` preset in bfloat16
   (:mod:`egg_interp.bench`): forward ms, EGG ms per map and its peak memory as a multiple of
   the forward's, the EGG map's time from 576 to 4,608 visual tokens (1 to 8 images), maps
   per second and runner samples per second at batch 1, 8 and 32.
3. **Training**: steps per second of the organism's training step
   (``analyses/train_organism.py``'s data, forward and loss, on this device).

Writes ``OUT/gpu_check.json`` and ``OUT/gpu_check.md`` (with the card, driver, torch and
transformers versions) and prints the markdown. ``--smoke`` runs every section at tiny
sizes (a 64 px preset, batches 1 and 2, two training steps), so the script cannot rot on a
machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "analyses"))

from egg_interp import bench  # noqa: E402

FULL = {"preset": "llava-1.5-7b", "batches": (1, 8, 32), "images": (1, 2, 4, 8), "repeat": 3}
SMOKE = {"preset": "tiny", "batches": (1, 2), "images": (1, 2), "repeat": 1}


def environment(device: torch.device) -> dict[str, Any]:
    """Card, driver, CUDA, torch and transformers versions, host and date."""
    import transformers

    env: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": str(device),
        "card": "none (CPU)",
        "driver": "n/a",
        "cuda": torch.version.cuda or "n/a",
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["card"] = props.name
        env["memory_gib"] = round(props.total_memory / 2**30, 1)
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
            env["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else "n/a"
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    else:
        env["threads"] = torch.get_num_threads()
    return env


def run_cuda_tests(timeout: float) -> dict[str, Any]:
    """``pytest -m cuda`` in a subprocess; counts of passed, failed and skipped tests."""
    import re

    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider"]
    cmd.append(str(ROOT / "tests" / "test_cuda.py"))
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    last = (out.stdout.strip().splitlines() or [""])[-1]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", last)}
    return {"returncode": out.returncode, "summary": last.strip("= "), **counts}


def run_bench(adapter: Any, sizes: dict[str, Any], runner_n: int) -> dict[str, Any]:
    """The benchmark figures the issue asks for, from :mod:`egg_interp.bench`."""
    from egg_interp.pipelines import PipelineOptions

    out: dict[str, Any] = {}
    rows = bench.bench_methods(adapter, ["egg"], repeat=sizes["repeat"])
    fwd, egg = rows[0], rows[1]
    out["forward_ms"] = 1000 * fwd["seconds"]
    out["egg_ms"] = 1000 * egg.get("seconds", float("nan"))
    out["egg_time_ratio"] = egg.get("time_ratio", float("nan"))
    out["egg_memory_ratio"] = egg.get("memory_ratio", float("nan"))
    out["forward_peak_mib"] = fwd["peak_bytes"] / 2**20
    out["egg_peak_mib"] = egg.get("peak_bytes", float("nan")) / 2**20
    if "error" in egg:
        out["egg_error"] = egg["error"]
    out["scaling"] = bench.bench_scaling(adapter, sizes["images"], repeat=sizes["repeat"])
    out["maps_per_second"] = bench.bench_batch(adapter, sizes["batches"], repeat=sizes["repeat"])
    # a bounded loop (at most 4 steps, 10 answer tokens): random weights would otherwise let the
    # spatial-entropy rule run to 15 steps on some samples
    options = PipelineOptions(max_steps=4, max_new_tokens=10)
    out["runner_options"] = {"max_steps": options.loop.max_steps, "max_new_tokens": 10}
    out["runner"] = {
        b: bench.bench_runner(adapter, n=max(runner_n, b), batch_size=b, options=options)
        for b in sizes["batches"]
    }
    return out


def run_training(device: torch.device, smoke: bool, steps: int) -> dict[str, Any]:
    """Steps per second of the organism's training step (data, forward, backward, update)."""
    import train_organism as tr

    cfg = tr.Config(**tr.TINY) if smoke else tr.Config()
    model, head, processor = tr.build(cfg)
    model.to(device).train()
    head.to(device)
    if cfg.ground_weight > 0:
        model.set_attn_implementation("eager")
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    batcher = tr.Batcher(processor, cfg)

    def data(step: int) -> dict[str, Any]:
        examples = [tr.make_example(step * cfg.batch + b, 4, cfg) for b in range(cfg.batch)]
        batch = batcher(examples)
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def step(batch: dict[str, Any]) -> None:
        ans, aux, _ = tr.forward(model, head, batch, cfg)
        opt.zero_grad(set_to_none=True)
        (ans + cfg.aux_weight * aux).backward()
        opt.step()

    warm = 1 if smoke else 3
    for i in range(warm):
        step(data(i))
    bench._sync(device)
    t_data = t_step = 0.0
    for i in range(warm, warm + steps):
        t0 = time.perf_counter()
        batch = data(i)
        t1 = time.perf_counter()
        step(batch)
        bench._sync(device)
        t_data += t1 - t0
        t_step += time.perf_counter() - t1
    return {
        "config": "tiny" if smoke else "organism",
        "batch": cfg.batch,
        "steps": steps,
        "steps_per_second": steps / (t_data + t_step),
        "model_steps_per_second": steps / t_step,
        "data_seconds_per_step": t_data / steps,
    }


def markdown(res: dict[str, Any]) -> str:
    """The check's results as markdown."""
    env = res["environment"]
    lines = [
        f"# GPU check{' (smoke, CPU sizes)' if res['smoke'] else ''}",
        "",
        f"{env['date']} on {env['card']} (driver {env['driver']}, CUDA {env['cuda']}), torch "
        f"{env['torch']}, transformers {env['transformers']}; {res['seconds']:.0f} s in all.",
        "",
    ]
    tests = res.get("tests", {})
    lines.append(f"CUDA tests (`pytest -m cuda`): {tests.get('summary') or tests.get('skipped')}.")
    b = res.get("bench")
    if isinstance(b, dict) and "forward_ms" in b:
        lines += [
            "",
            f"Benchmark: {res['model']} in {res['dtype']}.",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| forward (ms) | {b['forward_ms']:.1f} |",
            f"| EGG map (ms) | {b['egg_ms']:.1f} |",
            f"| EGG map / forward, time | {b['egg_time_ratio']:.2f}x |",
            f"| EGG map / forward, peak memory | {b['egg_memory_ratio']:.2f}x |",
            f"| peak memory, forward / EGG map (MiB) | {b['forward_peak_mib']:.1f} / "
            f"{b['egg_peak_mib']:.1f} |",
        ]
        sc = b["scaling"]
        for t, s in zip(sc["tokens"], sc["seconds"]):
            lines.append(f"| EGG map, {t} visual tokens (ms) | {1000 * s:.1f} |")
        lines.append(f"| fitted exponent (time ~ tokens^k) | {sc['exponent']:.2f} |")
        for k, v in b["maps_per_second"].items():
            lines.append(f"| EGG maps/s, batch {k} | {v:.2f} |")
        for k, v in b["runner"].items():
            lines.append(f"| runner samples/s, batch {k} | {v['samples_per_second']:.2f} |")
        opts = b["runner_options"]
        lines += [
            "",
            f"Runner: EGG map + EGG pipeline per scene (at most {opts['max_steps']} loop steps, "
            f"{opts['max_new_tokens']} answer tokens).",
        ]
    elif b:
        lines += ["", f"Benchmark: {b}"]
    tr = res.get("training")
    if isinstance(tr, dict) and "steps_per_second" in tr:
        lines += [
            "",
            f"Training ({tr['config']} config, batch {tr['batch']}, {tr['steps']} steps): "
            f"{tr['steps_per_second']:.2f} steps/s with data preparation, "
            f"{tr['model_steps_per_second']:.2f} steps/s for forward, backward and update "
            f"({1000 * tr['data_seconds_per_step']:.0f} ms of data per step on the CPU).",
        ]
    elif tr:
        lines += ["", f"Training: {tr}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="default figures/gpu (smoke: none)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, runs on a CPU")
    ap.add_argument("--device", default=None, help="default cuda when available, else cpu")
    ap.add_argument("--dtype", default=None, help="default bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds; later sections skip")
    ap.add_argument("--skip", action="append", default=[], choices=["tests", "bench", "training"])
    args = ap.parse_args(argv)

    start = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sizes = SMOKE if args.smoke else FULL
    res: dict[str, Any] = {"smoke": args.smoke, "environment": environment(device)}

    def section(name: str, fn: Any) -> None:
        elapsed = time.perf_counter() - start
        if name in args.skip:
            res[name] = {"skipped": "--skip"}
        elif elapsed > args.budget:
            res[name] = {"skipped": f"time budget ({elapsed:.0f} s > {args.budget:.0f} s)"}
        else:
            t0 = time.perf_counter()
            try:
                res[name] = fn()
            except Exception as exc:  # recorded: one failing section must not hide the others
                res[name] = {"error": f"{type(exc).__name__}: {exc}"}
            res[name]["seconds"] = time.perf_counter() - t0
        print(f"[gpu-check] {name}: {time.perf_counter() - start:.0f} s", flush=True)

    section("tests", lambda: run_cuda_tests(timeout=max(60.0, args.budget / 2)))

    def bench_section() -> dict[str, Any]:
        adapter = bench.preset_adapter(sizes["preset"], str(device), args.dtype)
        res["model"] = f"{sizes['preset']} (random weights)"
        res["dtype"] = str(adapter.dtype).replace("torch.", "")
        return run_bench(adapter, sizes, runner_n=2 if args.smoke else 32)

    section("bench", bench_section)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    section("training", lambda: run_training(device, args.smoke, 2 if args.smoke else 30))
    res["seconds"] = time.perf_counter() - start

    text = markdown(res)
    print(text)
    out = args.out or (None if args.smoke else ROOT / "figures" / "gpu")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
        (out / "gpu_check.md").write_text(text)
    failed = [k for k in ("tests", "bench", "training") if "error" in res.get(k, {})]
    failed += ["tests"] if res["tests"].get("failed") else []
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
