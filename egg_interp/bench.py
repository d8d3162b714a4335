"""The benchmark suite: cost of every method and of the EGG pipeline, as ratios.

Absolute times on a shared CPU are noise; the figures here are ratios measured in one
process: each method's time as a multiple of one plain forward pass of the same prompt
(``model(**inputs, logits_to_keep=1)`` without gradients, vision tower included), peak
memory as a multiple of that forward's, the whole EGG pipeline as a multiple of the base
answer, the EGG map's scaling with the number of visual tokens, batched throughput, and
the saving of the shared vision-feature cache, and the cost of a map's deletion and
insertion curves (``faithfulness``) against two batched forwards of 17 rows. Every time is
the median of ``repeat`` runs after one warm-up run.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated``; on the CPU, the allocations the
PyTorch profiler records during the call. Both are reported as weights + inputs + the
peak extra memory of the call, the figure a user sizes a machine by.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from egg_interp.models.base import VLMAdapter

TARGETS = {
    "egg_map_vs_forward": 2.2,
    "egg_map_memory_vs_forward": 1.25,
    "regions_ms_24": 5.0,
    "regions_ms_100": 50.0,
}
"""The performance goals (upper bounds) the suite checks and reports."""

FAITHFULNESS_TARGET = 1.0
"""Goal of the faithfulness section: deletion + insertion at 16 steps of one map no dearer
than two batched forwards of 17 rows (checked when the section was measured)."""

LLAVA_SHAPED = dict(
    image_size=336,
    patch_size=14,
    vision_hidden=256,
    vision_layers=4,
    vision_heads=4,
    text_hidden=512,
    text_layers=4,
    text_heads=8,
)
"""A random-weight model with LLaVA-1.5's token shapes (336 px, patch 14: 576 visual tokens
per image, layer -2 features, MLP projector), scaled down in width and depth for a CPU."""

LLAVA_7B = dict(
    image_size=336,
    patch_size=14,
    vision_hidden=1024,
    vision_intermediate=4096,
    vision_layers=24,
    vision_heads=16,
    text_hidden=4096,
    text_intermediate=11008,
    text_layers=32,
    text_heads=32,
    vocab_size=32064,
)
"""LLaVA-1.5-7B's full shapes (CLIP ViT-L/14-336 tower, Vicuna-7B language model)."""

QWEN3_VL_8B: dict[str, Any] = dict(
    family="qwen3_vl",
    text=dict(
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        max_position_embeddings=262144,
        rope_parameters=dict(
            rope_type="default",
            rope_theta=5000000.0,
            mrope_section=[24, 20, 20],
            mrope_interleaved=True,
        ),
    ),
    vision=dict(
        depth=27,
        hidden_size=1152,
        intermediate_size=4304,
        num_heads=16,
        patch_size=16,
        out_hidden_size=4096,
        num_position_embeddings=2304,
        deepstack_visual_indexes=[8, 16, 24],
        hidden_act="gelu_pytorch_tanh",
    ),
    max_tokens=16384,
    min_tokens=64,
)
"""Qwen3-VL-8B's full shapes: a Qwen3-8B language model (4096 wide, 36 layers, 32 query and
8 key/value heads of 128, vocabulary 151,936, interleaved 3-D rotary sections 24/20/20) and
the 27-layer SigLIP-2 vision tower of transformers' ``Qwen3VLVisionConfig`` defaults (1152
wide, patch 16, 2x2 merger to 4096, deepstack from vision layers 8, 16 and 24); the released
processor's pixel budget (64 to 16,384 tokens of 32 x 32 px). Read from the released
checkpoint's published configuration, not downloaded; 8.8B parameters."""

PRESETS: dict[str, dict[str, Any]] = {
    "llava-1.5-shaped": LLAVA_SHAPED,
    # full width, 2 of the 32 language layers and 2 of the 24 vision layers: the ratio of
    # saved activations to weights per layer is the real model's, so memory ratios carry over
    # (and the tokenizer's small vocabulary, so embeddings do not inflate the weights' share)
    "llava-1.5-7b-width": {**LLAVA_7B, "vision_layers": 2, "text_layers": 2, "vocab_size": 0},
    "llava-1.5-7b": LLAVA_7B,
    # 64 px, patch 8 (64 visual tokens per image), widths of 16: smoke runs of scripts
    "tiny": dict(image_size=64, patch_size=8, vision_hidden=16, text_hidden=16, text_layers=1),
    "qwen3-vl-8b": QWEN3_VL_8B,
    # full width, 2 of the 36 language layers and 2 of the 27 vision layers (deepstack after
    # the first), the tokenizer's small vocabulary: as llava-1.5-7b-width
    "qwen3-vl-8b-width": {
        **QWEN3_VL_8B,
        "text": {
            **{k: v for k, v in QWEN3_VL_8B["text"].items() if k != "vocab_size"},
            "num_hidden_layers": 2,
        },
        "vision": {**QWEN3_VL_8B["vision"], "depth": 2, "deepstack_visual_indexes": [0]},
    },
    # the tiny Qwen3-VL of the tests (width 32, 2 layers, deepstack after vision layer 0)
    "qwen3-vl-tiny": dict(family="qwen3_vl", max_tokens=64, min_tokens=4),
}
"""Random-weight models the suite can build in memory, by name (``egg-interp bench --preset``).

An entry is the keyword arguments of its family's configuration: ``family`` names it
(``"llava"`` when absent: :func:`~egg_interp.models.offline.llava_config`'s arguments;
``"qwen3_vl"``: ``text`` and ``vision`` settings over
:func:`~egg_interp.models.offline.qwen.qwen3_vl_config`'s tiny ones, and the processor's
``max_tokens`` and ``min_tokens``)."""

CACHE_METHODS = ("egg", "saliency", "input_x_gradient", "raw_attention", "gradcam")
"""The methods whose shared vision features the cache section times on one sample."""

BENCH_WORDS = tuple("what is written on the sign ? describe the image red blue".split())
"""The word-level vocabulary of the preset models (the bench prompt's words)."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def paired_ratio(
    fn: Callable[[], Any], reference: Callable[[], Any], device: torch.device, repeat: int = 5
) -> tuple[float, float]:
    """Median of ``time(fn) / time(reference)`` over ``repeat`` back-to-back pairs.

    Pairing each run with a reference run just before it cancels slow changes in the load of
    a shared machine, which an independent median of each would not. Returns the median
    ratio and the median time of ``fn``.
    """
    fn()
    reference()
    ratios, times = [], []
    for _ in range(repeat):
        t_ref = time_call(reference, device, 1, warmup=False)
        t = time_call(fn, device, 1, warmup=False)
        ratios.append(t / t_ref)
        times.append(t)
    return statistics.median(ratios), statistics.median(times)


def time_call(
    fn: Callable[[], Any], device: torch.device, repeat: int = 5, warmup: bool = True
) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs after one warm-up run, in seconds."""
    if warmup:
        fn()
        _sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_extra_memory(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes allocated by ``fn()`` on top of what was live before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return int(peak)


def model_bytes(adapter: VLMAdapter) -> int:
    """Bytes held by the model's parameters and buffers."""
    tensors = [*adapter.model.parameters(), *adapter.model.buffers()]
    return int(sum(t.numel() * t.element_size() for t in tensors))


def model_sizes(adapter: VLMAdapter) -> dict[str, Any]:
    """The vision tower's and the language model's ``"hidden x layers"`` (``"?"`` where the
    configuration names neither) and the number of parameters."""

    def hidden_x_layers(cfg: Any) -> str:
        hidden = getattr(cfg, "hidden_size", None)
        layers = getattr(cfg, "num_hidden_layers", None)
        return f"{hidden}x{layers}" if hidden and layers else "?"

    cfg = adapter.model.config
    return {
        "vision": hidden_x_layers(getattr(cfg, "vision_config", None)),
        "text": hidden_x_layers(getattr(cfg, "text_config", None)),
        "parameters": sum(p.numel() for p in adapter.model.parameters()),
    }


def preset_adapter(
    name: str, device: str | None = None, dtype: str | None = None, seed: int = 0
) -> VLMAdapter:
    """Build the random-weight model ``name`` of :data:`PRESETS` in memory and wrap it.

    Built directly on ``device`` in ``dtype`` (nothing written to disk, no copy on the CPU),
    so LLaVA-1.5-7B's and Qwen3-VL-8B's full shapes fit a GPU in bfloat16 without a
    checkpoint; the tokenizer and processor are the offline builders'. Wrapped in the adapter
    :func:`~egg_interp.models.load_model` would choose for its ``model_type``.
    """
    from egg_interp.errors import InputError
    from egg_interp.models.loading import adapter_class, resolve_dtype

    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    spec = dict(PRESETS[name])
    family = spec.pop("family", "llava")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch_dtype = resolve_dtype(dtype, dev)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)
    try:
        with dev:
            model, processor = _PRESET_BUILDERS[family](spec)
    finally:
        torch.set_default_dtype(previous)
    model.eval().requires_grad_(False)
    cls = adapter_class(model.config.model_type)
    return cls(model, processor, name=f"{name} (random weights)")


def _llava_preset(spec: dict[str, Any]) -> tuple[Any, Any]:
    """A LLaVA-1.5 model of ``spec``'s sizes (:func:`~egg_interp.models.offline.llava_config`)
    and its processor."""
    from transformers import LlavaForConditionalGeneration

    from egg_interp.models.offline import build_llava_processor, build_word_tokenizer, llava_config

    tokenizer = build_word_tokenizer(BENCH_WORDS)
    cfg = llava_config(tokenizer, **spec)
    processor = build_llava_processor(
        tokenizer, cfg.vision_config.image_size, cfg.vision_config.patch_size
    )
    return LlavaForConditionalGeneration(cfg), processor


def _qwen3_vl_preset(spec: dict[str, Any]) -> tuple[Any, Any]:
    """A Qwen3-VL model with ``spec``'s ``text`` and ``vision`` settings and a processor with
    its pixel budget; the placeholders' output rows are zeroed, as in the tiny checkpoint
    (:func:`~egg_interp.models.offline.qwen.mute_placeholders`)."""
    from transformers import Qwen3VLForConditionalGeneration, Qwen3VLProcessor

    from egg_interp.models.offline.qwen import (
        build_qwen_processor,
        mute_placeholders,
        qwen3_vl_config,
        qwen_tokenizer,
    )

    tokenizer = qwen_tokenizer(BENCH_WORDS)
    cfg = qwen3_vl_config(tokenizer, spec.get("text"), spec.get("vision"))
    model = Qwen3VLForConditionalGeneration(cfg)
    mute_placeholders(model, (cfg.image_token_id, cfg.video_token_id))
    processor = build_qwen_processor(
        Qwen3VLProcessor,
        tokenizer,
        cfg.vision_config.patch_size,
        spec["max_tokens"],
        spec["min_tokens"],
    )
    return model, processor


_PRESET_BUILDERS: dict[str, Callable[[dict[str, Any]], tuple[Any, Any]]] = {
    "llava": _llava_preset,
    "qwen3_vl": _qwen3_vl_preset,
}
"""Each preset family's model-and-processor builder (called under the device and dtype)."""


def _image(width: int = 336, height: int = 336, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def bench_methods(
    adapter: VLMAdapter,
    methods: Sequence[str],
    question: str = "what is written on the sign ?",
    repeat: int = 5,
    n_images: int = 1,
    image_size: tuple[int, int] = (336, 336),
) -> list[dict[str, Any]]:
    """Each method's time and peak memory as multiples of one plain forward pass.

    Maps are computed cold (feature cache off, vision tower included), like the forward
    (:meth:`~egg_interp.models.VLMAdapter.forward` from pixels, logits of the last position
    only); each timed run is paired with a forward run just before it (:func:`paired_ratio`).
    ``image_size`` is the (width, height) of the noise images (a model that keeps the
    resolution, such as Qwen-VL, gives more tokens to larger ones).
    """
    from egg_interp.methods import get_method

    device = adapter.device
    images = [_image(*image_size, seed=i) for i in range(n_images)]
    inputs = adapter.build_inputs(images, question)
    weights = model_bytes(adapter)

    def forward() -> None:
        with torch.no_grad():
            adapter.forward(inputs, logits_to_keep=1)

    t_fwd = time_call(forward, device, repeat)
    m_fwd = weights + peak_extra_memory(forward, device)
    rows = [
        dict(method="forward", seconds=t_fwd, time_ratio=1.0, peak_bytes=m_fwd, memory_ratio=1.0)
    ]
    cache = adapter.feature_cache_size
    adapter.feature_cache_size = 0
    try:
        for name in methods:
            try:
                method = get_method(name)

                def run(method: Any = method) -> None:
                    method.attribute(adapter, images, question, inputs=inputs)

                ratio, t = paired_ratio(run, forward, device, repeat)
                m = weights + peak_extra_memory(run, device)
            except Exception as exc:  # a method that cannot run on this model: say so
                rows.append(dict(method=name, error=f"{type(exc).__name__}: {exc}"))
                continue
            rows.append(
                dict(
                    method=name,
                    seconds=t,
                    time_ratio=ratio,
                    peak_bytes=m,
                    memory_ratio=m / m_fwd,
                )
            )
    finally:
        adapter.feature_cache_size = cache
        adapter.clear_cache()
    return rows


def bench_scaling(
    adapter: VLMAdapter,
    n_images: Sequence[int] = (1, 2, 4, 8),
    repeat: int = 3,
    image_size: tuple[int, int] = (336, 336),
) -> dict[str, Any]:
    """EGG map time against the number of visual tokens (``n`` noise images of ``image_size``
    in the prompt, features cached); fitted exponent."""
    from egg_interp.methods import get_method

    egg = get_method("egg")
    tokens, seconds = [], []
    for n in n_images:
        images = [_image(*image_size, seed=i) for i in range(n)]
        inputs = adapter.build_inputs(images, "what is written on the sign ?")
        adapter.clear_cache()

        def run(images: list = images, inputs: Any = inputs) -> None:
            egg.attribute(adapter, images, "x", inputs=inputs)

        t = time_call(run, adapter.device, repeat)
        tokens.append(sum(lay.n_tokens for lay in inputs.layouts))
        seconds.append(t)
    slope = (
        float(np.polyfit(np.log(tokens), np.log(seconds), 1)[0]) if len(tokens) > 1 else math.nan
    )
    return {"tokens": tokens, "seconds": seconds, "exponent": slope}


def visual_tokens(adapter: VLMAdapter, image_size: tuple[int, int] = (336, 336)) -> int:
    """Visual tokens the model gives one noise image of ``image_size`` (width, height)."""
    inputs = adapter.build_inputs([_image(*image_size)], "what is written on the sign ?")
    return sum(lay.n_tokens for lay in inputs.layouts)


def bench_answer(
    adapter: VLMAdapter,
    image_size: tuple[int, int] = (336, 336),
    max_new_tokens: int = 10,
    repeat: int = 3,
) -> dict[str, Any]:
    """Time of one greedy answer from pixels (prefill, vision tower included, then decoding
    with the key/value cache), through :meth:`~egg_interp.models.VLMAdapter.generate_ids`.

    Returns the median ``seconds`` and the ``new_tokens`` decoded (fewer than
    ``max_new_tokens`` when the model ends its answer early).
    """
    inputs = adapter.build_inputs([_image(*image_size)], "what is written on the sign ?")
    new_tokens = []

    def run() -> None:
        adapter.reset_positions()
        ids = adapter.generate_ids(inputs.batch, max_new_tokens)
        new_tokens.append(ids.shape[1] - inputs.input_ids.shape[1])

    seconds = time_call(run, adapter.device, repeat)
    return {"seconds": seconds, "new_tokens": int(statistics.median(new_tokens))}


def bench_regions(repeat: int = 50) -> dict[str, float]:
    """Milliseconds for region extraction plus spatial entropy on 24x24 and 100x100 maps."""
    from egg_interp.entropy import spatial_entropy
    from egg_interp.models.base import regular_cell_boxes
    from egg_interp.regions import find_regions

    out = {}
    rng = np.random.default_rng(0)
    for side in (24, 100):
        grid = rng.gamma(1.0, 1.0, (side, side)).astype(np.float32)
        grid[side // 4 : side // 3, side // 4 : side // 3] += 10
        boxes = regular_cell_boxes(side, side, 0, 0, 14, 14)
        size = (14 * side, 14 * side)

        def run(grid: np.ndarray = grid, boxes: np.ndarray = boxes, size: tuple = size) -> None:
            find_regions(grid, boxes, size, top_k=2)
            spatial_entropy(grid)

        out[f"regions_ms_{side}"] = 1000 * time_call(run, torch.device("cpu"), repeat)
    return out


def bench_pipeline(
    adapter: VLMAdapter, image: Image.Image, question: str, repeat: int = 3
) -> dict[str, Any]:
    """The whole EGG pipeline (map, regions, loop, both answers) against the base answer.

    Measured side by side: the new path (answers continued from the maps' own forwards,
    ``ground(reuse_forward=True)``) and the old one (every answer prefilled afresh), each as
    the median ratio to a base answer run just before it.
    """
    from egg_interp.loop import ground

    device = adapter.device
    result = ground(adapter, image, question, max_new_tokens=5)

    def base() -> None:
        adapter.answer(image, question, max_new_tokens=5)

    t_base = time_call(base, device, repeat)
    ratio_old, t_old = paired_ratio(
        lambda: ground(adapter, image, question, max_new_tokens=5, reuse_forward=False),
        base,
        device,
        repeat,
    )
    ratio, t_egg = paired_ratio(
        lambda: ground(adapter, image, question, max_new_tokens=5), base, device, repeat
    )
    return {
        "base_seconds": t_base,
        "egg_seconds": t_egg,
        "ratio": ratio,
        "old_seconds": t_old,
        "old_ratio": ratio_old,
        "steps": len(result.steps),
    }


def bench_batch(
    adapter: VLMAdapter,
    sizes: Sequence[int] = (1, 4, 8),
    repeat: int = 3,
    image_size: tuple[int, int] = (336, 336),
) -> dict[int, float]:
    """EGG maps per second at several batch sizes (one forward/backward per batch of one
    noise image of ``image_size`` per prompt)."""
    from egg_interp.methods import get_method

    egg = get_method("egg")
    out = {}
    for b in sizes:
        items = [([_image(*image_size, seed=i)], "what is written on the sign ?") for i in range(b)]

        def run(items: list = items) -> None:
            adapter.clear_cache()
            egg.attribute_batch(adapter, items)

        out[b] = b / time_call(run, adapter.device, repeat)
    return out


def bench_runner(
    adapter: VLMAdapter, n: int = 8, batch_size: int = 1, options: Any = None
) -> dict[str, Any]:
    """Samples per second of the evaluation runner (EGG map and EGG pipeline per sample).

    Runs :func:`egg_interp.runner.evaluate` on ``n`` test scenes of the synthetic benchmark
    (images of any model's liking; no files needed), writing to a temporary JSONL file;
    ``options`` are the :class:`~egg_interp.pipelines.PipelineOptions` (default: the defaults;
    ``reuse_forward=False`` prefills every answer afresh, the path before answers continued
    the maps' forwards).
    """
    import tempfile

    from egg_interp.data import scenes
    from egg_interp.runner import evaluate

    samples = scenes.load(split="test", limit=n)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = evaluate(
            adapter,
            samples,
            methods=["egg"],
            pipelines=["egg"],
            out=Path(tmp) / "results.jsonl",
            batch_size=batch_size,
            pipeline_options=options,
            progress=False,
        )
        _sync(adapter.device)
        seconds = time.perf_counter() - start
    return {
        "samples": len(samples),
        "seconds": seconds,
        "samples_per_second": len(samples) / seconds,
        "errors": summary.errors,
    }


RUNNER_PATHS = {"fresh": False, "continued": True}
"""The two answer paths the runner bench compares: every answer prefilled afresh (before),
answers continued from the maps' own forwards (after); name -> ``reuse_forward``."""


def bench_runner_batches(
    adapter: VLMAdapter, n: int = 16, batch: int = 8, repeat: int = 3, label: str = ""
) -> dict[str, Any]:
    """The runner at batch 1 and at ``batch``, with answers prefilled afresh and continued
    from the maps' forwards, side by side on the same ``n`` scenes.

    The four configurations run interleaved ``repeat`` times after one warm-up run (so a
    change in the load of a shared machine falls on all of them); each figure is the median
    samples per second of its runs. ``label`` names the model in the table (default: the
    adapter's name).
    """
    from egg_interp.pipelines import PipelineOptions

    configs = [(b, path) for b in (1, batch) for path in RUNNER_PATHS]
    bench_runner(adapter, n, batch)  # warm-up: scenes rendered, caches filled
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {c: [] for c in configs}
    for _ in range(max(1, repeat)):
        for b, path in configs:
            options = PipelineOptions(reuse_forward=RUNNER_PATHS[path])
            runs[b, path].append(bench_runner(adapter, n, b, options))
    rate = {c: statistics.median(r["samples_per_second"] for r in rs) for c, rs in runs.items()}
    return {
        "model": label or adapter.name,
        "samples": n,
        "batch": batch,
        "repeat": max(1, repeat),
        "threads": torch.get_num_threads(),
        "samples_per_second": {
            f"batch_{b}": {path: rate[b, path] for path in RUNNER_PATHS} for b in (1, batch)
        },
        "speedup": {path: rate[batch, path] / rate[1, path] for path in RUNNER_PATHS},
        "continued_vs_fresh": {
            f"batch_{b}": rate[b, "continued"] / rate[b, "fresh"] for b in (1, batch)
        },
        "errors": sum(r["errors"] for rs in runs.values() for r in rs),
    }


def bench_faithfulness(
    adapter: VLMAdapter, repeat: int = 3, image_size: tuple[int, int] = (336, 336)
) -> dict[str, Any]:
    """Deletion + insertion of one map against two batched forwards of 17 rows.

    The map is EGG's on a noise image of ``image_size``; the curves are a run's default
    (:class:`~egg_interp.metrics.deletion.FaithfulnessSettings`: pixels, blur, 16 steps,
    MoRF, LeRF and the random order). The reference is the issue's budget: two forwards of
    17 rows each, of 17 distinct images processed and seen by the vision tower as the masked
    inputs are (the feature cache off for them: the masked images are all new to it),
    run just before each timed call (:func:`paired_ratio`). Timed: a later map of a prompt
    (the random order's curves shared, 32 masked inputs) and a prompt's first map (the random
    order scored too); the greedy answer tracked is decoded once per prompt and remembered,
    as in a run.
    """
    from egg_interp.faithfulness import faithfulness_scores, forget_controls
    from egg_interp.methods import get_method
    from egg_interp.metrics.deletion import FaithfulnessSettings

    image, question = _image(*image_size), "what is written on the sign ?"
    amap = get_method("egg").attribute(adapter, [image], question)
    settings = FaithfulnessSettings()

    rows = [([_image(*image_size, seed=i)], question) for i in range(17)]

    def reference() -> None:  # 17 distinct images, none served by the feature cache
        cache, adapter.feature_cache_size = adapter.feature_cache_size, 0
        try:
            with torch.no_grad():
                for _ in range(2):
                    adapter.forward(adapter.build_batch(rows), logits_to_keep=1)
        finally:
            adapter.feature_cache_size = cache

    def later_map() -> dict[str, Any]:
        return faithfulness_scores(adapter, ([image], question), amap, settings)[1]

    def first_map() -> dict[str, Any]:
        forget_controls(adapter)
        return later_map()

    first, later = first_map(), later_map()
    ratio_first, t_first = paired_ratio(first_map, reference, adapter.device, repeat)
    ratio, t = paired_ratio(later_map, reference, adapter.device, repeat)
    return {
        "settings": settings.hashed(),
        "rows": later["rows"],
        "forwards": later["forwards"],
        "seconds": t,
        "ratio": ratio,
        "first_rows": first["rows"],
        "first_seconds": t_first,
        "first_ratio": ratio_first,
        "reference_seconds": time_call(reference, adapter.device, 1, warmup=False),
        "target": FAITHFULNESS_TARGET,
    }


def bench_cache(adapter: VLMAdapter, methods: Sequence[str], repeat: int = 3) -> dict[str, float]:
    """Time for several methods on one sample with and without the shared vision features."""
    from egg_interp.methods import get_method

    image = _image()
    question = "what is written on the sign ?"
    objs = [get_method(m) for m in methods]

    def run_all() -> None:  # both arms start cold: no features, no remembered answer
        adapter.clear_cache()
        for m in objs:
            m.attribute(adapter, [image], question)

    cache = adapter.feature_cache_size
    try:
        adapter.feature_cache_size = 0
        t_off = time_call(run_all, adapter.device, repeat)
        adapter.feature_cache_size = max(cache, 1)

        t_on = time_call(run_all, adapter.device, repeat)
    finally:
        adapter.feature_cache_size = cache
    return {
        "methods": list(methods),
        "seconds_uncached": t_off,
        "seconds_cached": t_on,
        "saving": 1 - t_on / t_off,
    }


def run_suite(
    out_dir: str | Path,
    model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    methods: Sequence[str] | None = None,
    repeat: int = 5,
    preset: str | None = None,
    width_check: str | None = "llava-1.5-7b-width",
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run every benchmark and write ``bench.json`` and ``bench.md`` into ``out_dir``.

    ``only`` (names among ``"regions"``, ``"scaling"``, ``"pipeline"``, ``"batch"``,
    ``"cache"``, ``"runner"``, ``"runner_batch"``, ``"faithfulness"``) reruns those sections
    alone into the ``bench.json`` already in ``out_dir`` (``rerun`` says which and when;
    everything else keeps its earlier figures).

    The model is ``model`` (a checkpoint or ``"organism"``), else the random-weight
    ``preset`` built in memory (default ``"llava-1.5-shaped"``). ``width_check`` (a preset,
    ``None`` to skip) adds EGG's time and memory against the forward on a model of full width
    but few layers: memory ratios depend on the width (activations saved per token against
    weights), which the small model lacks. The runner at batch 1 and 8, answers prefilled
    afresh and continued (``runner_batch``), always runs on the organism, whatever the model:
    one of its prompts is too small to fill the cores, so batching shows there.
    """
    out_dir = Path(out_dir)
    adapter, label = _suite_adapter(model, preset, device, dtype)
    sections = _sections(adapter, model, device, repeat)
    if only:
        import json

        results = json.loads((out_dir / "bench.json").read_text())
        for name in only:
            results[name] = sections[name]()
        results["rerun"] = {"sections": list(only), "date": time.strftime("%Y-%m-%d")}
    else:
        results = _header(adapter, label, repeat)
        results["methods"] = bench_methods(adapter, _method_names(methods), repeat=repeat)
        for name, run in sections.items():
            results[name] = run()
        if width_check:
            results["width"] = _width_check(width_check, device, dtype, repeat)
    return _write(out_dir, results)


def _suite_adapter(
    model: str | None, preset: str | None, device: str | None, dtype: str | None
) -> tuple[VLMAdapter, str]:
    """The suite's model and its label: a checkpoint, else a preset built in memory."""
    if model is None:
        preset = preset or "llava-1.5-shaped"
        return preset_adapter(preset, device, dtype), f"{preset} (random weights)"
    from egg_interp.models import load_model

    return load_model(model, device=device, dtype=dtype), model


def _method_names(methods: Sequence[str] | None) -> list[str]:
    from egg_interp.methods import METHODS

    return list(methods) if methods is not None else sorted(METHODS)


def _header(adapter: VLMAdapter, label: str, repeat: int) -> dict[str, Any]:
    """What was measured on what: model sizes, device, dtype, versions, date, targets."""
    import platform

    return {
        "model": label,
        "sizes": model_sizes(adapter),
        "device": str(adapter.device),
        "dtype": str(adapter.dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "repeat": repeat,
        "targets": TARGETS,
    }


def _sections(
    adapter: VLMAdapter, model: str | None, device: str | None, repeat: int
) -> dict[str, Callable[[], Any]]:
    """The suite's sections after the methods table, in order, by their ``bench.json`` key."""
    from egg_interp.methods import METHODS

    half = max(1, repeat // 2)
    cheap = [m for m in CACHE_METHODS if m in METHODS]

    def organism() -> VLMAdapter:
        from egg_interp.models import load_model

        return adapter if model == "organism" else load_model("organism", device=device)

    return {
        "regions": bench_regions,
        "scaling": lambda: bench_scaling(adapter, repeat=half),
        "pipeline": lambda: bench_pipeline(
            adapter, _image(400, 300), "what is written on the sign ?", repeat=half
        ),
        "batch": lambda: bench_batch(adapter, repeat=half),
        "cache": lambda: bench_cache(adapter, cheap, repeat=half),
        "runner": lambda: bench_runner(adapter),
        "runner_batch": lambda: bench_runner_batches(
            organism(), repeat=max(3, repeat), label="organism"
        ),
        "faithfulness": lambda: bench_faithfulness(adapter, repeat=max(3, half)),
    }


SECTIONS = (
    "regions",
    "scaling",
    "pipeline",
    "batch",
    "cache",
    "runner",
    "runner_batch",
    "faithfulness",
)
"""The suite's sections after the methods table, in order (``bench.json`` keys; what
``run_suite(only=...)`` and ``egg-interp bench --only`` rerun)."""


def _width_check(preset: str, device: str | None, dtype: str | None, repeat: int) -> dict:
    """EGG's time and memory against the forward on the full-width preset ``preset``."""
    wide = preset_adapter(preset, device, dtype)
    sizes = model_sizes(wide)
    return {
        "preset": preset,
        "text": sizes["text"],
        "parameters": sizes["parameters"],
        "methods": bench_methods(wide, ["egg"], repeat=max(1, repeat // 2)),
    }


def _write(out_dir: Path, results: dict[str, Any]) -> dict[str, Any]:
    """Check the targets, then write ``bench.json`` and ``bench.md``."""
    from egg_interp.io import write_json

    results["checks"] = check_targets(results)
    write_json(out_dir / "bench.json", results)
    (out_dir / "bench.md").write_text(markdown(results))
    return results


def check_targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with its measured value and whether it holds."""
    egg = next((r for r in results["methods"] if r.get("method") == "egg"), {})
    measured = {
        "egg_map_vs_forward": egg.get("time_ratio", math.nan),
        "egg_map_memory_vs_forward": egg.get("memory_ratio", math.nan),
        **results["regions"],
    }
    checks = {
        k: {"value": measured[k], "target": t, "holds": bool(measured[k] <= t)}
        for k, t in TARGETS.items()
    }
    if "faithfulness" in results:
        ratio = results["faithfulness"]["ratio"]
        checks["faithfulness_vs_two_17_row_forwards"] = {
            "value": ratio,
            "target": FAITHFULNESS_TARGET,
            "holds": bool(ratio <= FAITHFULNESS_TARGET),
        }
    if "width" in results:
        egg = next((r for r in results["width"]["methods"] if r.get("method") == "egg"), {})
        for key, field in (
            ("egg_map_vs_forward", "time_ratio"),
            ("egg_map_memory_vs_forward", "memory_ratio"),
        ):
            value, target = egg.get(field, math.nan), TARGETS[key]
            checks[f"{key} ({results['width']['preset']})"] = {
                "value": value,
                "target": target,
                "holds": bool(value <= target),
            }
    return checks


def markdown(results: dict[str, Any]) -> str:
    """The suite's results as markdown: the header, the methods and targets tables, one line
    per other section, the runner's batches table."""
    lines = [_md_header(results), ""]
    lines += _md_methods(results["methods"]) + [""]
    lines += _md_targets(results["checks"]) + [""]
    lines += _md_section_lines(results)
    if "runner_batch" in results:
        lines += ["", *_md_runner_batches(results["runner_batch"])]
    if "rerun" in results:
        lines += [
            "",
            f"Sections rerun on {results['rerun']['date']}: "
            f"{', '.join(results['rerun']['sections'])} (the rest from the run above).",
        ]
    lines.append("")
    return "\n".join(lines)


def _md_header(results: dict[str, Any]) -> str:
    return (
        f"Benchmark of {results['model']} ({results['sizes']['parameters'] / 1e6:.1f}M "
        f"parameters; vision {results['sizes']['vision']}, text {results['sizes']['text']} "
        f"(hidden x layers)) on {results['device']} ({results['dtype']}, {results['threads']} "
        f"threads, torch {results['torch']}), {results['date']}; medians of "
        f"{results['repeat']} runs."
    )


def _md_methods(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| method | time / forward | peak memory / forward |", "|---|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | n/a ({r['error'][:60]}) | |")
        else:
            lines.append(f"| {r['method']} | {r['time_ratio']:.2f}x | {r['memory_ratio']:.2f}x |")
    return lines


def _md_targets(checks: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| target | measured | goal | holds |", "|---|---:|---:|---|"]
    for k, c in checks.items():
        lines.append(
            f"| {k} | {c['value']:.3g} | <= {c['target']} | {'yes' if c['holds'] else 'no'} |"
        )
    return lines


def _md_section_lines(results: dict[str, Any]) -> list[str]:
    """One sentence per measured section (absolute times, width check, scaling, pipeline,
    batched maps, cache, runner)."""
    sc, pl, ca = results["scaling"], results["pipeline"], results["cache"]
    fwd = results["methods"][0]
    egg = next(
        (r for r in results["methods"] if r.get("method") == "egg" and "error" not in r), None
    )
    lines = []
    if egg is not None:
        lines.append(
            f"Absolute (this machine): forward {fwd['seconds'] * 1000:.0f} ms, EGG map "
            f"{egg['seconds'] * 1000:.0f} ms; peak memory forward {fwd['peak_bytes'] / 2**20:.0f} "
            f"MiB, EGG map {egg['peak_bytes'] / 2**20:.0f} MiB."
        )
    if "width" in results:
        w = results["width"]
        f, e = w["methods"][0], w["methods"][1]
        lines.append(
            f"Full-width check, {w['preset']} ({w['parameters'] / 1e6:.0f}M parameters, text "
            f"{w['text']}): EGG map {e.get('time_ratio', math.nan):.2f}x the forward's time "
            f"({f['seconds'] * 1000:.0f} ms forward), {e.get('memory_ratio', math.nan):.2f}x its "
            f"peak memory ({f['peak_bytes'] / 2**20:.0f} MiB forward)."
        )
    old = (
        f" (answers from the maps' own forwards; {pl['old_ratio']:.1f}x with every answer "
        "prefilled afresh, measured side by side)."
        if "old_ratio" in pl
        else "."
    )
    lines += [
        f"EGG map time vs visual tokens {sc['tokens']}: "
        + ", ".join(f"{s * 1000:.0f} ms" for s in sc["seconds"])
        + f"; fitted exponent {sc['exponent']:.2f}.",
        f"Full EGG pipeline ({pl['steps']} loop step{'' if pl['steps'] == 1 else 's'}): "
        f"{pl['ratio']:.1f}x the base answer" + old,
        "Batched EGG maps per second: "
        + ", ".join(f"batch {b}: {v:.2f}/s" for b, v in results["batch"].items())
        + ".",
        f"Shared vision features for {len(ca['methods'])} methods on one sample "
        f"({', '.join(ca['methods'])}): {100 * ca['saving']:.0f}% less time.",
    ]
    if "faithfulness" in results:
        lines.append(_md_faithfulness(results["faithfulness"]))
    if "runner" in results:
        ru = results["runner"]
        lines.append(
            f"Evaluation runner (EGG map + EGG pipeline per sample, {ru['samples']} scenes): "
            f"{ru['samples_per_second']:.2f} samples/s."
        )
    return lines


def _md_faithfulness(fa: dict[str, Any]) -> str:
    """The faithfulness cost in one sentence: a later map and a prompt's first map, against
    two batched forwards of 17 rows."""
    st = fa["settings"]
    return (
        f"Deletion + insertion per map ({st['space']}, {st['substrate']}, {st['steps']} steps, "
        f"orders {', '.join(st['orders'])}; the random order's curves shared by a prompt's "
        f"maps): {fa['rows']} masked inputs in {fa['forwards']} batched "
        f"forward{'' if fa['forwards'] == 1 else 's'}, {fa['seconds'] * 1000:.0f} ms, "
        f"{fa['ratio']:.2f}x two batched forwards of 17 rows "
        f"({fa['reference_seconds'] * 1000:.0f} ms; goal <= {fa['target']:.2f}x); a prompt's "
        f"first map, which also scores the random order ({fa['first_rows']} inputs): "
        f"{fa['first_ratio']:.2f}x."
    )


def _md_runner_batches(rb: dict[str, Any]) -> list[str]:
    """The runner at batch 1 and at batch B, answers prefilled afresh (before) and continued
    from the maps' forwards (after), side by side."""
    if "samples_per_second" not in rb:  # a bench.json written before the two answer paths
        return []
    rate, b = rb["samples_per_second"], rb["batch"]
    ratio = rb["continued_vs_fresh"]
    return [
        f"Runner on {rb['model']}, {rb['samples']} scenes (EGG map + EGG pipeline per sample), "
        f"samples/s, medians of {rb['repeat']} interleaved runs"
        + (f" ({rb['threads']} threads)" if "threads" in rb else "")
        + (f"; {rb['errors']} errors" if rb.get("errors") else "")
        + ":",
        "",
        "| batch | answers prefilled afresh (before) | answers continued from the maps' "
        "forward (after) | after / before |",
        "|---|---:|---:|---:|",
        f"| 1 | {rate['batch_1']['fresh']:.2f} | {rate['batch_1']['continued']:.2f} | "
        f"{ratio['batch_1']:.2f}x |",
        f"| {b} | {rate[f'batch_{b}']['fresh']:.2f} | {rate[f'batch_{b}']['continued']:.2f} | "
        f"{ratio[f'batch_{b}']:.2f}x |",
        f"| batch {b} / batch 1 | {rb['speedup']['fresh']:.2f}x | "
        f"{rb['speedup']['continued']:.2f}x | |",
    ]
