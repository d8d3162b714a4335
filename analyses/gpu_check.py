"""One-command GPU check: CUDA-only tests, the benchmark on real VLM shapes, training speed.

Usage::

    make gpu-check TORCH=torch                       # = python analyses/gpu_check.py
    python analyses/gpu_check.py --out figures/gpu   # on a machine with one CUDA GPU
    python analyses/gpu_check.py --smoke             # tiny sizes on the CPU (the test suite)

Sized to finish in at most 8 minutes on one H100 or H200 (``--budget`` seconds, default
420): each section has a share of the budget (:data:`SHARES`) that later sections keep for
themselves, and inside a benchmark section each measurement runs only when its estimate
(from the times measured before it) fits what is left; what does not fit is skipped and
named in the output, as is a batch that runs out of GPU memory. Sections:

1. **CUDA tests**: ``pytest -m cuda`` (``tests/test_cuda.py``: bfloat16 maps against float32
   maps on the same weights, on the organism and on Qwen3-VL at full width; eager attention
   switched on and off for the call only; peak memory from ``torch.cuda.max_memory_allocated``).
2. **Benchmark** (:mod:`egg_interp.bench`, through the adapter interface only) of two
   random-weight models built in memory on the GPU in bfloat16, with real shapes: LLaVA-1.5-7B
   (``llava-1.5-7b``, 576 visual tokens per 336 px image) and Qwen3-VL-8B (``qwen3-vl-8b``,
   deepstack; an 896 x 672 image, 588 tokens at its native resolution). For each: forward
   ms, EGG ms per map and its time and peak memory as multiples of the forward's, one greedy
   answer of 10 tokens, the EGG map's time for 1 to 8 images, EGG maps per second at batch
   1, 8 and 32, and runner samples per second (EGG map + EGG pipeline per scene) at batch 1
   and 8. Random weights: cost figures only.
3. **Training**: steps per second of the organism's training step
   (``analyses/train_organism.py``'s data, forward and loss, on this device).

Writes ``OUT/gpu_check.json`` and ``OUT/gpu_check.md`` (with the card, driver, torch and
transformers versions) and prints the markdown. ``--smoke`` runs every section at tiny
sizes (the ``tiny`` and ``qwen3-vl-tiny`` presets, batches 1 and 2, two training steps),
so the script cannot rot on a machine without a GPU. Without ``--smoke`` it refuses to run
without CUDA (the full shapes would take hours on a CPU).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "analyses"))

from egg_interp import bench  # noqa: E402

FULL: dict[str, Any] = {
    "models": {
        "llava-1.5-7b": {"image": (336, 336), "images": (1, 2, 4, 8)},
        "qwen3-vl-8b": {"image": (896, 672), "images": (1, 2, 4, 8)},
    },
    "batches": (1, 8, 32),
    "runner_batches": (1, 8),
    "runner_n": 16,
    "repeat": 3,
    "training_steps": 30,
}
"""The GPU run: the presets with their image (width, height) and image counts, and the sizes
every model shares."""

SMOKE: dict[str, Any] = {
    "models": {
        "tiny": {"image": (64, 64), "images": (1, 2)},
        "qwen3-vl-tiny": {"image": (128, 96), "images": (1, 2)},
    },
    "batches": (1, 2),
    "runner_batches": (1, 2),
    "runner_n": 2,
    "repeat": 1,
    "training_steps": 2,
}
"""The same sections at tiny sizes, for a CPU."""

SHARES = {"tests": 70.0, "bench": 140.0, "training": 40.0}
"""Seconds of the budget each section keeps for itself (``bench``: per model; about twice
the estimates in the README's GPU section); a section may also use what earlier ones left,
and starts only with at least :data:`MIN_START` of its kind left."""

MIN_START = {"tests": 20.0, "bench": 45.0, "training": 10.0}
"""Seconds a section needs to start (a benchmark: building the model, its forward and map)."""

DECODE_GUESS_S = 0.05
"""Seconds per decoded token assumed before any answer was timed (a 7-8B model in eager
transformers on one GPU: 20-35 ms)."""


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


class Budget:
    """A deadline: the seconds left before it, and whether an estimate fits them."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.end = clock() + seconds

    def left(self) -> float:
        return self.end - self.clock()

    def fits(self, estimate: float) -> bool:
        return estimate <= self.left()

    def before(self, reserve: float) -> Budget:
        """A budget that ends ``reserve`` seconds before this one (kept for later sections)."""
        part = Budget(0.0, self.clock)
        part.end = self.end - reserve
        return part


class Measurements:
    """A section's measurements under a budget: each runs when its estimate fits; a skip, a
    GPU out-of-memory error or any other error is recorded under the measurement's name."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.missing: dict[str, str] = {}
        self.errors: dict[str, str] = {}

    def run(self, name: str, estimate: float, fn: Callable[[], Any]) -> Any:
        """``fn()``, or ``None`` when it was skipped or failed (then recorded)."""
        if not self.budget.fits(estimate):
            self.missing[name] = (
                f"skipped: time budget (about {estimate:.0f} s needed, "
                f"{max(self.budget.left(), 0):.0f} s left)"
            )
            return None
        try:
            return fn()
        except torch.cuda.OutOfMemoryError:
            self.missing[name] = "out of GPU memory"
        except Exception as exc:  # recorded: one failing measurement must not hide the others
            self.errors[name] = f"{type(exc).__name__}: {exc}"
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None


def run_cuda_tests(timeout: float) -> dict[str, Any]:
    """``pytest -m cuda`` in a subprocess (this checkout first on its path); counts of
    passed, failed and skipped tests."""
    import re

    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs", "-p", "no:cacheprovider"]
    cmd.append(str(ROOT / "tests" / "test_cuda.py"))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    last = (out.stdout.strip().splitlines() or [""])[-1]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", last)}
    return {"returncode": out.returncode, "summary": last.strip("= "), **counts}


def run_bench(
    adapter: Any, model: dict[str, Any], sizes: dict[str, Any], budget: Budget
) -> dict[str, Any]:
    """One model's benchmark figures (:mod:`egg_interp.bench`), the most wanted first: the
    forward and EGG map (always), one answer, maps/s at batch 1 and 8, the scaling with the
    number of images, the runner, maps/s at larger batches; later ones when they fit."""
    from egg_interp.models.record import model_record

    image, repeat = tuple(model["image"]), sizes["repeat"]
    out: dict[str, Any] = {"sizes": bench.model_sizes(adapter), "record": model_record(adapter)}
    out["dtype"] = out["record"]["dtype"]
    out["image"] = list(image)
    out["visual_tokens"] = bench.visual_tokens(adapter, image)
    out.update(_forward_and_map(adapter, image, repeat))
    m = Measurements(budget)
    fwd_s, egg_s = out["forward_ms"] / 1000, out["egg_ms"] / 1000
    guess = (repeat + 1) * (fwd_s + 10 * DECODE_GUESS_S)
    out["answer"] = m.run("answer", guess, lambda: bench.bench_answer(adapter, image, 10, repeat))
    maps: dict[int, float] = {}
    out["maps_per_second"] = maps

    def batch(b: int) -> None:
        value = m.run(
            f"maps/s batch {b}",
            (repeat + 1) * b * egg_s,
            lambda: bench.bench_batch(adapter, [b], repeat, image)[b],
        )
        if value is not None:
            maps[b] = value

    small = [b for b in sizes["batches"] if b <= 8]
    for b in small:
        batch(b)
    out["scaling"] = _scaling(adapter, model, repeat, egg_s, m)
    per_sample = 2 * (out["answer"] or {}).get("seconds", 10 * DECODE_GUESS_S) + 8 * egg_s
    out["runner"] = _runner(adapter, sizes, per_sample, m)
    for b in sizes["batches"]:
        if b not in small:
            batch(b)
    out["not_measured"], out["errors"] = m.missing, m.errors
    return out


def _forward_and_map(adapter: Any, image: tuple[int, int], repeat: int) -> dict[str, Any]:
    """Forward and EGG map of one image: times, ratios and peak memory (the section's core,
    run whatever the budget)."""
    rows = bench.bench_methods(adapter, ["egg"], repeat=repeat, image_size=image)
    fwd, egg = rows[0], rows[1]
    if "error" in egg:
        raise RuntimeError(f"the EGG map failed: {egg['error']}")
    return {
        "forward_ms": 1000 * fwd["seconds"],
        "egg_ms": 1000 * egg["seconds"],
        "egg_time_ratio": egg["time_ratio"],
        "egg_memory_ratio": egg["memory_ratio"],
        "forward_peak_mib": fwd["peak_bytes"] / 2**20,
        "egg_peak_mib": egg["peak_bytes"] / 2**20,
    }


def _scaling(
    adapter: Any, model: dict[str, Any], repeat: int, egg_s: float, m: Measurements
) -> dict[str, Any] | None:
    """The EGG map's time for the image counts whose estimates (linear in the count from one
    image's map, 30 % spare) fit the budget together."""
    counts, total = [], 0.0
    for n in model["images"]:
        total += (repeat + 1) * n * egg_s * 1.3
        if not m.budget.fits(total):
            m.missing[f"scaling {n} images"] = "skipped: time budget"
            continue
        counts.append(n)
    if not counts:
        return None
    image = tuple(model["image"])
    return m.run(
        "scaling", 0.0, lambda: bench.bench_scaling(adapter, counts, repeat, image_size=image)
    )


def _runner(
    adapter: Any, sizes: dict[str, Any], per_sample: float, m: Measurements
) -> dict[int, dict[str, Any]]:
    """Runner samples per second at each batch size; each estimate from the previous rate
    (the first from ``per_sample`` seconds)."""
    from egg_interp.pipelines import PipelineOptions

    # a bounded loop (at most 4 steps, 10 answer tokens): random weights would otherwise let the
    # spatial-entropy rule run to 15 steps on some samples
    options = PipelineOptions(max_steps=4, max_new_tokens=10)
    n, out = sizes["runner_n"], {}
    for b in sizes["runner_batches"]:
        estimate = n * per_sample + 5.0
        run = m.run(
            f"runner batch {b}",
            estimate,
            lambda b=b: bench.bench_runner(adapter, n=max(n, b), batch_size=b, options=options),
        )
        if run is not None:
            out[b] = run
            per_sample = run["seconds"] / run["samples"]
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


# ---------------------------------------------------------------------------- markdown
def _cell(b: dict[str, Any], key: str, value: Any, fmt: str = "{:.2f}") -> str:
    """A table cell: the value, else why it is missing (``key`` in ``not_measured`` or
    ``errors``)."""
    if value is not None:
        return fmt.format(value)
    if key in b.get("errors", {}):
        return "error"
    why = b.get("not_measured", {}).get(key, "")
    return "OOM" if why.startswith("out of") else ("skipped" if why else "n/a")


def _count(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,.0f}"


def _memory(mib: float) -> str:
    return f"{mib / 1024:.2f} GiB" if mib >= 1024 else f"{mib:.1f} MiB"


def _answer_cell(b: dict[str, Any]) -> str:
    a = b.get("answer")
    return f"{1000 * a['seconds']:.0f} ({a['new_tokens']})" if a else _cell(b, "answer", None)


def _scaling_cell(b: dict[str, Any], n: int) -> str:
    sc = b.get("scaling") or {"tokens": [], "seconds": []}
    counts = [t // b["visual_tokens"] for t in sc["tokens"]]
    if n not in counts:
        return _cell(b, f"scaling {n} images", None)
    i = counts.index(n)
    return f"{1000 * sc['seconds'][i]:.1f} ({sc['tokens'][i]})"


ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("parameters", lambda b: _count(b["sizes"]["parameters"])),
    ("vision / text (hidden x layers)", lambda b: f"{b['sizes']['vision']} / {b['sizes']['text']}"),
    ("attention", lambda b: str(b["record"]["attn_implementation"])),
    (
        "image (px) -> visual tokens",
        lambda b: "{0[0]}x{0[1]} -> {1}".format(b["image"], b["visual_tokens"]),
    ),
    ("forward (ms)", lambda b: f"{b['forward_ms']:.1f}"),
    ("EGG map (ms)", lambda b: f"{b['egg_ms']:.1f}"),
    ("EGG map / forward, time", lambda b: f"{b['egg_time_ratio']:.2f}x"),
    ("EGG map / forward, peak memory", lambda b: f"{b['egg_memory_ratio']:.2f}x"),
    (
        "peak memory, forward / EGG map",
        lambda b: f"{_memory(b['forward_peak_mib'])} / {_memory(b['egg_peak_mib'])}",
    ),
    ("greedy answer from pixels, ms (tokens)", _answer_cell),
]
"""The benchmark table's fixed rows: (measure, cell of one model's results)."""


def _absent(b: dict[str, Any]) -> str:
    """The cell of a model whose section did not run (skipped) or broke (failed)."""
    return "skipped" if "skipped" in b else "failed"


def _bench_rows(benches: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The benchmark table: the fixed :data:`ROWS`, then one row per image count, batch size
    and runner batch size any model planned; a model whose section failed reads "failed"."""
    plans = [b.get("plan", {}) for b in benches.values()]
    counts = sorted({n for p in plans for n in p.get("images", ())})
    batches = sorted({k for p in plans for k in p.get("batches", ())})
    runner = sorted({k for p in plans for k in p.get("runner_batches", ())})
    rows = list(ROWS)
    rows += [
        (
            f"EGG map, {n} image{'s' * (n > 1)}, ms (visual tokens)",
            lambda b, n=n: _scaling_cell(b, n),
        )
        for n in counts
    ]
    rows.append(
        (
            "fitted exponent (time ~ tokens^k)",
            lambda b: _cell(b, "scaling", (b.get("scaling") or {}).get("exponent")),
        )
    )
    rows += [
        (
            f"EGG maps/s, batch {k}",
            lambda b, k=k: _cell(b, f"maps/s batch {k}", b["maps_per_second"].get(k)),
        )
        for k in batches
    ]
    rows += [
        (
            f"runner samples/s, batch {k}",
            lambda b, k=k: _cell(
                b, f"runner batch {k}", (b["runner"].get(k) or {}).get("samples_per_second")
            ),
        )
        for k in runner
    ]
    return [
        (label, [fn(b) if "forward_ms" in b else _absent(b) for b in benches.values()])
        for label, fn in rows
    ]


def _md_bench(res: dict[str, Any]) -> list[str]:
    """The benchmark table (a column per model), then what was not measured and why."""
    benches = res.get("bench", {})
    if not benches:
        return []
    dtypes = sorted({b.get("dtype", "?") for b in benches.values()})
    lines = [
        "",
        f"Benchmark: random weights in {', '.join(dtypes)}, each model built in memory on the "
        "device at its preset's shapes (cost figures only); medians of "
        f"{res['sizes']['repeat']} run(s) after a warm-up. EGG maps are cold (vision tower "
        "included, like the forward); the scaling rows reuse cached vision features.",
        "",
        "| measure | " + " | ".join(benches) + " |",
        "|---|" + "---:|" * len(benches),
    ]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in _bench_rows(benches)]
    lines += [
        "",
        f"Runner: EGG map + EGG pipeline per synthetic scene, {res['sizes']['runner_n']} scenes "
        "per batch size, at most 4 loop steps and 10 answer tokens.",
    ]
    for name, b in benches.items():
        for key, why in {**b.get("not_measured", {}), **b.get("errors", {})}.items():
            lines.append(f"- {name}, {key}: {why}")
        if "error" in b or "skipped" in b:
            lines.append(f"- {name}: {b.get('error') or 'skipped, ' + b['skipped']}")
        for k, run in (b.get("runner") or {}).items():
            if run["errors"]:
                lines.append(
                    f"- {name}, runner batch {k}: {run['errors']} results lines with errors"
                )
    return lines


def _md_training(tr: dict[str, Any] | None) -> list[str]:
    if not tr:
        return []
    if "steps_per_second" not in tr:
        return ["", f"Training: {tr.get('error') or 'skipped, ' + str(tr.get('skipped'))}."]
    return [
        "",
        f"Training ({tr['config']} config, batch {tr['batch']}, {tr['steps']} steps): "
        f"{tr['steps_per_second']:.2f} steps/s with data preparation, "
        f"{tr['model_steps_per_second']:.2f} steps/s for forward, backward and update "
        f"({1000 * tr['data_seconds_per_step']:.0f} ms of data per step on the CPU).",
    ]


def _tests_text(tests: dict[str, Any]) -> str:
    if "summary" in tests:
        return tests["summary"]
    return f"skipped ({tests['skipped']})" if "skipped" in tests else str(tests)


def markdown(res: dict[str, Any]) -> str:
    """The check's results as markdown."""
    env = res["environment"]
    tests = res.get("tests", {})
    lines = [
        f"# GPU check{' (smoke, CPU sizes)' if res['smoke'] else ''}",
        "",
        f"{env['date']} on {env['card']} (driver {env['driver']}, CUDA {env['cuda']}), torch "
        f"{env['torch']}, transformers {env['transformers']}; {res['seconds']:.0f} s in all "
        f"(budget {res['budget']:.0f} s).",
        "",
        f"CUDA tests (`pytest -m cuda`): {_tests_text(tests)}.",
    ]
    lines += _md_bench(res) + _md_training(res.get("training"))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- main
def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="default figures/gpu (smoke: none)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, runs on a CPU")
    ap.add_argument("--device", default=None, help="default cuda when available, else cpu")
    ap.add_argument("--dtype", default=None, help="default bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds (see the doc above)")
    ap.add_argument("--skip", action="append", default=[], choices=["tests", "bench", "training"])
    ap.add_argument(
        "--models", default=None, help="comma-separated, among the run's presets (default: all)"
    )
    return ap.parse_args(argv)


def _bench_model(
    name: str, model: dict[str, Any], args: argparse.Namespace, budget: Budget, res: dict[str, Any]
) -> dict[str, Any]:
    """Build preset ``name`` on the device, benchmark it, and free the device memory."""
    adapter = bench.preset_adapter(name, args.device, args.dtype)
    try:
        out = run_bench(adapter, model, res["sizes"], budget)
    finally:
        del adapter
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    out["plan"] = {
        "images": list(model["images"]),
        "batches": list(res["sizes"]["batches"]),
        "runner_batches": list(res["sizes"]["runner_batches"]),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(args.device)
    if device.type != "cuda" and not args.smoke:
        print(
            f"gpu-check: no CUDA device (torch {torch.__version__}, CUDA build: "
            f"{torch.version.cuda or 'no'}); on a GPU machine install a CUDA build of torch "
            "(make gpu-check TORCH=torch), or run --smoke for the CPU sizes",
            file=sys.stderr,
        )
        return 2
    sizes = dict(SMOKE if args.smoke else FULL)
    models = sizes["models"]
    if args.models:
        unknown = [m for m in args.models.split(",") if m not in models]
        if unknown:
            print(f"gpu-check: unknown model(s) {unknown}; known: {list(models)}", file=sys.stderr)
            return 2
        models = {m: models[m] for m in args.models.split(",")}
    sizes = {k: v for k, v in sizes.items() if k != "models"}
    total = Budget(args.budget)
    res: dict[str, Any] = {"smoke": args.smoke, "budget": args.budget, "sizes": sizes}
    res["environment"] = environment(device)
    shares = [("tests", SHARES["tests"])]
    shares += [(f"bench:{m}", SHARES["bench"]) for m in models] + [("training", SHARES["training"])]
    runs: dict[str, Callable[[Budget], Any]] = {
        "tests": lambda b: run_cuda_tests(timeout=max(30.0, b.left())),
        "training": lambda b: run_training(device, args.smoke, sizes["training_steps"]),
    }
    for m, model in models.items():
        runs[f"bench:{m}"] = lambda b, m=m, model=model: _bench_model(m, model, args, b, res)
    for i, (name, _) in enumerate(shares):
        later = sum(s for _, s in shares[i + 1 :])
        _section(res, name, runs[name], total.before(later), args.skip)
    res["seconds"] = args.budget - total.left()
    return _finish(res, args)


def _section(
    res: dict[str, Any], name: str, fn: Callable[[Budget], Any], budget: Budget, skip: list[str]
) -> None:
    """Run section ``name`` into ``res`` (``bench:<model>`` into ``res["bench"][model]``)
    unless skipped or out of time; an error is recorded, not raised."""
    kind, _, model = name.partition(":")
    if kind in skip:
        out: dict[str, Any] = {"skipped": "--skip"}
    elif budget.left() < MIN_START[kind]:
        out = {"skipped": f"time budget ({max(budget.left(), 0):.0f} s left)"}
    else:
        t0 = time.perf_counter()
        try:
            out = fn(budget)
        except Exception as exc:  # recorded: one failing section must not hide the others
            out = {"error": f"{type(exc).__name__}: {exc}"}
        out["seconds"] = time.perf_counter() - t0
    if model:
        res.setdefault("bench", {})[model] = out
    else:
        res[name] = out
    print(f"[gpu-check] {name}: {out.get('seconds', 0):.0f} s", flush=True)


def _finish(res: dict[str, Any], args: argparse.Namespace) -> int:
    """Print and write the results; 1 when a section, a measurement or a CUDA test failed."""
    text = markdown(res)
    print(text)
    out = args.out or (None if args.smoke else ROOT / "figures" / "gpu")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
        (out / "gpu_check.md").write_text(text)
    sections = [res.get("tests", {}), res.get("training", {}), *res.get("bench", {}).values()]
    failed = any("error" in s or s.get("errors") for s in sections)
    failed |= any(
        r["errors"] for b in res.get("bench", {}).values() for r in b.get("runner", {}).values()
    )
    return 1 if failed or res.get("tests", {}).get("failed") else 0


if __name__ == "__main__":
    raise SystemExit(main())
