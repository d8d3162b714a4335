"""Answer pipelines: how an answer is produced for one sample, behind one call signature.

Every pipeline is a small function ``fn(adapter, sample, options) -> dict`` registered in
:data:`PIPELINES` with the option fields it reads (only those enter the runner's config
hash, so changing the loop's stopping rule does not invalidate ``base`` results). The dict
holds at least ``answer`` (str) and ``crops`` (list of ``[x0, y0, x1, y1]`` boxes in
original-image pixels, fed to the model as extra images after the original); ``steps`` and
anything else JSON-able may follow.

Registered pipelines:

``base``
    The original image alone.
``egg``
    EGG's zoom-and-reground loop (:func:`egg_interp.loop.zoom_and_reground`), then the
    answer with the kept crops.
``vicrop``
    The ViCrop baseline (Zhang et al., ICLR 2025) from :mod:`egg_interp.vicrop`.
``oracle``
    Crops around the sample's evidence boxes (a square of ``crop_scale`` times the box's
    longer side, shifted inside the image): an upper reference for crop-based answering.
``oracle_one``
    A crop around the first evidence box only: with two boxes (multi-evidence questions),
    what one of the two crops gives.
``random``
    Crops of the oracle's sizes at random places (seeded by the sample id): the control.
``random_egg``
    EGG's own crops moved to random places: the loop runs as in ``egg``, then every kept
    crop keeps its size and gets a random place (seeded by the sample id). The control for
    *where* EGG looks, with how much it zooms held equal (EGG's crops can be larger than the
    oracle's, and a larger random crop catches the evidence more often).

Adding a pipeline is one decorated function::

    @register_pipeline("mine", uses=("max_new_tokens",))
    def mine(adapter, sample, options): ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from egg_interp.data.sample import Sample
from egg_interp.errors import InputError
from egg_interp.geometry import Box, random_boxes_like, square_crop
from egg_interp.loop import (
    answer_batch,
    answer_with_crops,
    zoom_and_reground,
    zoom_and_reground_batch,
)
from egg_interp.methods import get_method
from egg_interp.models.base import VLMAdapter
from egg_interp.results import without_neutral
from egg_interp.settings import LoopSettings

_LOOP_FIELDS = frozenset(LoopSettings.__dataclass_fields__)


@dataclass(frozen=True, init=False)
class PipelineOptions:
    """Options of all pipelines (each reads the fields it declares in :data:`PIPELINES`).

    Attributes
    ----------
    loop : LoopSettings
        Method, target, stopping rule, top-k, steps and crop policy of the crop-choosing
        pipelines (``egg``, ``vicrop``; ``oracle``/``random`` read its ``crop_scale``).
    max_new_tokens : int
        Greedy decoding length of every answer.
    seed : int
        Seed of the random crops (combined with the sample id).

    The loop's fields may also be given flat: ``PipelineOptions(stop="fixed:2")`` is
    ``PipelineOptions(loop=LoopSettings(stop="fixed:2"))``.
    """

    loop: LoopSettings
    max_new_tokens: int
    seed: int

    def __init__(
        self,
        loop: LoopSettings | None = None,
        max_new_tokens: int = 20,
        seed: int = 0,
        **loop_fields: Any,
    ) -> None:
        unknown = set(loop_fields) - _LOOP_FIELDS
        if unknown:
            raise InputError(f"unknown pipeline options {sorted(unknown)}")
        loop = loop or LoopSettings()
        if loop_fields:
            loop = loop.replace(**loop_fields)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise InputError(f"max_new_tokens must be an integer, got {max_new_tokens!r}")
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        object.__setattr__(self, "loop", loop)
        object.__setattr__(self, "max_new_tokens", max_new_tokens)
        object.__setattr__(self, "seed", int(seed))

    def flat(self) -> dict[str, Any]:
        """Every option by the name pipelines declare (``method`` is the loop's resolved map,
        ``vicrop_method`` ViCrop's)."""
        loop = self.loop.to_dict()
        loop["method"] = self.loop.method_for("egg")
        loop["vicrop_method"] = self.loop.method_for("vicrop")
        return {**loop, "max_new_tokens": self.max_new_tokens, "seed": self.seed}

    def subset(self, fields: Sequence[str]) -> dict[str, Any]:
        """The named fields as a dict (what a pipeline's config hash covers), less those at a
        value the hash leaves out (:data:`egg_interp.results.HASH_NEUTRAL`)."""
        values = self.flat()
        return without_neutral("pipeline", {f: values[f] for f in fields})


OPTION_NAMES = frozenset(PipelineOptions(loop=LoopSettings()).flat())
"""Names a pipeline may declare in ``uses``."""


PipelineFn = Callable[[VLMAdapter, Sample, PipelineOptions], dict[str, Any]]
BatchFn = Callable[[VLMAdapter, Sequence[Sample], PipelineOptions], list[dict[str, Any]]]


@dataclass(frozen=True)
class Pipeline:
    """A registered pipeline: the function, the option fields it reads, and optionally a
    function running it on several samples at once (same results as one by one)."""

    fn: PipelineFn
    uses: tuple[str, ...]
    description: str = ""
    batch_fn: BatchFn | None = None


PIPELINES: dict[str, Pipeline] = {}
"""Pipeline name -> :class:`Pipeline`."""


def register_pipeline(
    name: str, uses: Sequence[str] = (), description: str = ""
) -> Callable[[PipelineFn], PipelineFn]:
    """Decorator adding ``fn`` to :data:`PIPELINES` under ``name``."""
    unknown = set(uses) - OPTION_NAMES
    if unknown:
        raise ValueError(f"pipeline {name!r} uses unknown options {sorted(unknown)}")

    def register(fn: PipelineFn) -> PipelineFn:
        doc = description or (fn.__doc__ or "").strip().splitlines()[0]
        PIPELINES[name] = Pipeline(fn, tuple(uses), doc)
        return fn

    return register


def register_batch(name: str) -> Callable[[BatchFn], BatchFn]:
    """Decorator adding the batched form of the registered pipeline ``name``."""

    def register(fn: BatchFn) -> BatchFn:
        PIPELINES[name] = replace(PIPELINES[name], batch_fn=fn)
        return fn

    return register


def get_pipeline(name: str) -> Pipeline:
    """The registered pipeline ``name`` (an unknown name lists the valid ones)."""
    if name not in PIPELINES:
        raise InputError(f"unknown pipeline {name!r}; valid: {', '.join(sorted(PIPELINES))}")
    return PIPELINES[name]


def run_pipeline(
    name: str, adapter: VLMAdapter, sample: Sample, options: PipelineOptions | None = None
) -> dict[str, Any]:
    """Run pipeline ``name`` on one sample; the result always has ``answer`` and ``crops``."""
    return _normalised(get_pipeline(name).fn(adapter, sample, options or PipelineOptions()))


def run_pipeline_batch(
    name: str,
    adapter: VLMAdapter,
    samples: Sequence[Sample],
    options: PipelineOptions | None = None,
) -> list[dict[str, Any]]:
    """Run pipeline ``name`` on several samples: batched where it has a batch form, one result
    per sample, equal to :func:`run_pipeline` on each."""
    pipeline, options = get_pipeline(name), options or PipelineOptions()
    if pipeline.batch_fn is None or len(samples) == 1:
        return [run_pipeline(name, adapter, s, options) for s in samples]
    return [_normalised(r) for r in pipeline.batch_fn(adapter, samples, options)]


def _normalised(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    out["answer"] = str(out.get("answer", ""))
    out["crops"] = [[float(v) for v in b] for b in out.get("crops", [])]
    return out


# ---------------------------------------------------------------- the pipelines


@register_pipeline("base", uses=("max_new_tokens",))
def base_pipeline(adapter: VLMAdapter, sample: Sample, options: PipelineOptions) -> dict[str, Any]:
    """The original image alone."""
    answer = adapter.answer(sample.image, sample.question, max_new_tokens=options.max_new_tokens)
    return {"answer": answer, "crops": []}


@register_pipeline(
    "egg",
    uses=(
        "method",
        "method_options",
        "target",
        "stop",
        "top_k",
        "max_steps",
        "min_crop_side",
        "sigma",
        "max_new_tokens",
    ),
)
def egg_pipeline(adapter: VLMAdapter, sample: Sample, options: PipelineOptions) -> dict[str, Any]:
    """EGG: the zoom-and-reground loop, then the answer with the kept crops."""
    image = sample.image
    prefixes: list = []  # the maps' own forwards: the final answer continues the kept one
    result = zoom_and_reground(
        adapter,
        image,
        sample.question,
        keep_maps=False,
        settings=options.loop,
        prefixes=prefixes,
    )
    answer = answer_with_crops(
        adapter, image, sample.question, result.crops, options.max_new_tokens, prefixes
    )
    log = result.to_dict()
    return {
        "answer": answer,
        "crops": result.crops,
        "steps": log["steps"],
        "decision": log["decision"],
        "n_steps": len(result.steps),
    }


def oracle_crops(sample: Sample, options: PipelineOptions) -> list[Box]:
    """Squares of ``crop_scale`` times each evidence box's longer side around the sample's
    boxes, shifted inside the image (the oracle's crops; the random control takes their sizes)."""
    return [square_crop(b, options.loop.crop_scale, sample.image.size) for b in sample.boxes]


@register_pipeline("oracle", uses=("crop_scale", "max_new_tokens"))
def oracle_pipeline(
    adapter: VLMAdapter, sample: Sample, options: PipelineOptions
) -> dict[str, Any]:
    """Crops around the evidence boxes (none when the sample has no boxes)."""
    image = sample.image
    crops = oracle_crops(sample, options)
    answer = answer_with_crops(adapter, image, sample.question, crops, options.max_new_tokens)
    return {"answer": answer, "crops": crops}


@register_pipeline("random", uses=("crop_scale", "seed", "max_new_tokens"))
def random_pipeline(
    adapter: VLMAdapter, sample: Sample, options: PipelineOptions
) -> dict[str, Any]:
    """Crops of the oracle's sizes at random places (none when the sample has no boxes)."""
    image = sample.image
    crops = random_boxes_like(oracle_crops(sample, options), image.size, options.seed, sample.id)
    answer = answer_with_crops(adapter, image, sample.question, crops, options.max_new_tokens)
    return {"answer": answer, "crops": crops}


@register_pipeline("random_egg", uses=(*PIPELINES["egg"].uses, "seed"))
def random_egg_pipeline(
    adapter: VLMAdapter, sample: Sample, options: PipelineOptions
) -> dict[str, Any]:
    """EGG's kept crops, each moved to a random place (same size)."""
    image = sample.image
    result = zoom_and_reground(
        adapter, image, sample.question, keep_maps=False, settings=options.loop
    )
    crops = random_boxes_like(result.crops, image.size, options.seed, sample.id)
    answer = answer_with_crops(adapter, image, sample.question, crops, options.max_new_tokens)
    return {"answer": answer, "crops": crops, "egg_crops": [list(b) for b in result.crops]}


@register_pipeline("oracle_one", uses=("crop_scale", "max_new_tokens"))
def oracle_one_pipeline(
    adapter: VLMAdapter, sample: Sample, options: PipelineOptions
) -> dict[str, Any]:
    """A crop around the first evidence box only (multi-evidence questions: one of two)."""
    image = sample.image
    crops = oracle_crops(sample, options)[:1]
    answer = answer_with_crops(adapter, image, sample.question, crops, options.max_new_tokens)
    return {"answer": answer, "crops": crops}


@register_pipeline("vicrop", uses=("vicrop_method", "method_options", "target", "max_new_tokens"))
def vicrop_pipeline(
    adapter: VLMAdapter, sample: Sample, options: PipelineOptions
) -> dict[str, Any]:
    """ViCrop (Zhang et al., ICLR 2025): one crop chosen from an attention/gradient map."""
    try:
        from egg_interp.vicrop import vicrop_answer
    except ImportError as exc:
        raise InputError(
            "the 'vicrop' pipeline needs egg_interp.vicrop (the ViCrop baseline), which is "
            "not available in this installation"
        ) from exc
    result = vicrop_answer(
        adapter,
        sample.image,
        sample.question,
        method=get_method(options.loop.method_for("vicrop"), **options.loop.method_kwargs()),
        max_new_tokens=options.max_new_tokens,
    ).to_dict()
    keep = ("answer", "crops", "method", "scale", "window", "scales", "tiles", "degenerate")
    return {k: result[k] for k in keep if k in result}


# ---------------------------------------------------------------- batched forms
# Crops are chosen per sample (EGG's loop steps batched across the samples still running),
# then every answer of the batch comes from one left-padded generate.


def _answers(adapter: VLMAdapter, samples: Sequence[Sample], crops: list, n: int) -> list[str]:
    return answer_batch(adapter, [(s.image, c, s.question) for s, c in zip(samples, crops)], n)


def _answered(
    adapter: VLMAdapter, samples: Sequence[Sample], crops: list, options: PipelineOptions
) -> list[dict[str, Any]]:
    """The results of a pipeline whose crops are fixed before answering: one batched answer."""
    answers = _answers(adapter, samples, crops, options.max_new_tokens)
    return [{"answer": a, "crops": c} for a, c in zip(answers, crops)]


def _loops(adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions) -> list:
    return zoom_and_reground_batch(
        adapter, [s.image for s in samples], [s.question for s in samples], settings=options.loop
    )


@register_batch("base")
def base_batch(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    return _answered(adapter, samples, [[] for _ in samples], options)


@register_batch("oracle")
def oracle_batch(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    crops = [oracle_crops(s, options) for s in samples]
    return _answered(adapter, samples, crops, options)


@register_batch("oracle_one")
def oracle_one_batch(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    crops = [oracle_crops(s, options)[:1] for s in samples]
    return _answered(adapter, samples, crops, options)


@register_batch("random")
def random_batch(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    crops = [
        random_boxes_like(oracle_crops(s, options), s.image.size, options.seed, s.id)
        for s in samples
    ]
    return _answered(adapter, samples, crops, options)


@register_batch("egg")
def egg_batch(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    results = _loops(adapter, samples, options)
    answers = _answers(adapter, samples, [r.crops for r in results], options.max_new_tokens)
    out = []
    for answer, result in zip(answers, results):
        log = result.to_dict()
        out.append(
            {
                "answer": answer,
                "crops": result.crops,
                "steps": log["steps"],
                "decision": log["decision"],
                "n_steps": len(result.steps),
            }
        )
    return out


@register_batch("random_egg")
def random_egg_batch(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    results = _loops(adapter, samples, options)
    crops = [
        random_boxes_like(r.crops, s.image.size, options.seed, s.id)
        for r, s in zip(results, samples)
    ]
    answers = _answers(adapter, samples, crops, options.max_new_tokens)
    return [
        {"answer": a, "crops": c, "egg_crops": [list(b) for b in r.crops]}
        for a, c, r in zip(answers, crops, results)
    ]


@register_batch("vicrop")
def vicrop_batch(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    from egg_interp.vicrop import vicrop

    method = get_method(options.loop.method_for("vicrop"), **options.loop.method_kwargs())
    results = [vicrop(adapter, s.image, s.question, method) for s in samples]
    answers = _answers(adapter, samples, [r.crops for r in results], options.max_new_tokens)
    keep = ("answer", "crops", "method", "scale", "window", "scales", "tiles", "degenerate")
    out = []
    for answer, result in zip(answers, results):
        result.answer = answer
        d = result.to_dict()
        out.append({k: d[k] for k in keep if k in d})
    return out
