"""Answer pipelines: how an answer is produced for a batch of samples, behind one signature.

Every pipeline is written once, over a batch: a small function
``fn(adapter, samples, options) -> list of dict`` registered in :data:`PIPELINES` with the
option fields it reads (only those enter the runner's config hash, so changing the loop's
stopping rule does not invalidate ``base`` results). One sample is the batch of one
(:func:`run_pipeline`); a batch gives the same results as its samples one by one (tested).
Each dict holds at least ``answer`` (str) and ``crops`` (list of ``[x0, y0, x1, y1]`` boxes
in original-image pixels, fed to the model as extra images after the original); ``steps``
and anything else JSON-able may follow.

Crops are chosen per sample (EGG's loop steps batched across the samples still running),
then the answers of the batch come together: those whose prompt a map already ran on (the
``egg`` loop's last step, when it holds the kept crops) continue that map's forward, the
others share one left-padded ``generate`` (:func:`egg_interp.loop.answer_batch`).

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

Adding a pipeline is one decorated function over a batch::

    @register_pipeline("mine", uses=("max_new_tokens",))
    def mine(adapter, samples, options): ...  # one result dict per sample
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from egg_interp.data.sample import Sample
from egg_interp.errors import InputError
from egg_interp.geometry import Box, random_boxes_like, square_crop
from egg_interp.loop import GroundingResult, answer_batch, zoom_and_reground_batch
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
    reuse_forward : bool
        Answers continue from the maps' own forwards where a map ran on the answer's prompt
        (default; the same answers, one prefill less); ``False`` prefills every answer
        afresh (the old path, kept for the benchmark). Not an option a pipeline declares:
        it changes no result, so no config hash covers it.

    The loop's fields may also be given flat: ``PipelineOptions(stop="fixed:2")`` is
    ``PipelineOptions(loop=LoopSettings(stop="fixed:2"))``.
    """

    loop: LoopSettings
    max_new_tokens: int
    seed: int
    reuse_forward: bool

    def __init__(
        self,
        loop: LoopSettings | None = None,
        max_new_tokens: int = 20,
        seed: int = 0,
        reuse_forward: bool = True,
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
        object.__setattr__(self, "reuse_forward", bool(reuse_forward))

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
    """A registered pipeline: one sample's function, the option fields it reads, and the
    function over a batch (registered pipelines are written over a batch, and ``fn`` is the
    batch of one; a pipeline given as ``fn`` alone runs a batch one sample at a time)."""

    fn: PipelineFn
    uses: tuple[str, ...]
    description: str = ""
    batch_fn: BatchFn | None = None


PIPELINES: dict[str, Pipeline] = {}
"""Pipeline name -> :class:`Pipeline`."""


def register_pipeline(
    name: str, uses: Sequence[str] = (), description: str = ""
) -> Callable[[BatchFn], BatchFn]:
    """Decorator adding ``fn(adapter, samples, options) -> list of dict`` to :data:`PIPELINES`
    under ``name`` (its one-sample form is the batch of one)."""
    unknown = set(uses) - OPTION_NAMES
    if unknown:
        raise ValueError(f"pipeline {name!r} uses unknown options {sorted(unknown)}")

    def register(fn: BatchFn) -> BatchFn:
        doc = description or (fn.__doc__ or "").strip().splitlines()[0]
        PIPELINES[name] = Pipeline(_batch_of_one(fn), tuple(uses), doc, fn)
        return fn

    return register


def _batch_of_one(fn: BatchFn) -> PipelineFn:
    def one(adapter: VLMAdapter, sample: Sample, options: PipelineOptions) -> dict[str, Any]:
        return fn(adapter, [sample], options)[0]

    one.__doc__ = fn.__doc__
    return one


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
    """Run pipeline ``name`` on several samples at once, one result per sample, equal to
    :func:`run_pipeline` on each."""
    pipeline, options = get_pipeline(name), options or PipelineOptions()
    if pipeline.batch_fn is None or len(samples) == 1:
        return [run_pipeline(name, adapter, s, options) for s in samples]
    return [_normalised(r) for r in pipeline.batch_fn(adapter, samples, options)]


def _normalised(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    out["answer"] = str(out.get("answer", ""))
    out["crops"] = [[float(v) for v in b] for b in out.get("crops", [])]
    return out


# ---------------------------------------------------------------- shared steps


def _answers(
    adapter: VLMAdapter,
    samples: Sequence[Sample],
    images: Sequence[Any],
    crops: Sequence[Sequence[Box]],
    options: PipelineOptions,
    results: Sequence[GroundingResult] | None = None,
) -> list[str]:
    """One answer per sample with its crops; ``results``: the samples' loops, whose kept map
    forwards the answers continue (when ``options.reuse_forward``)."""
    prompts = [(im, c, s.question) for s, im, c in zip(samples, images, crops, strict=True)]
    recorded = [r.forwards for r in results] if results is not None else None
    return answer_batch(adapter, prompts, options.max_new_tokens, recorded)


def _answered(
    adapter: VLMAdapter, samples: Sequence[Sample], crops: list, options: PipelineOptions
) -> list[dict[str, Any]]:
    """The results of a pipeline whose crops are fixed before answering."""
    answers = _answers(adapter, samples, [s.image for s in samples], crops, options)
    return [{"answer": a, "crops": c} for a, c in zip(answers, crops)]


def _loops(
    adapter: VLMAdapter,
    images: Sequence[Any],
    samples: Sequence[Sample],
    options: PipelineOptions,
    keep_last_forward: bool = False,
) -> list[GroundingResult]:
    """The zoom-and-reground loop of every sample (steps batched across the samples)."""
    keep = ("last",) if keep_last_forward and options.reuse_forward else ()
    questions = [s.question for s in samples]
    return zoom_and_reground_batch(
        adapter, images, questions, settings=options.loop, keep_forwards=keep
    )


def oracle_crops(sample: Sample, options: PipelineOptions) -> list[Box]:
    """Squares of ``crop_scale`` times each evidence box's longer side around the sample's
    boxes, shifted inside the image (the oracle's crops; the random control takes their sizes)."""
    return [square_crop(b, options.loop.crop_scale, sample.image.size) for b in sample.boxes]


# ---------------------------------------------------------------- the pipelines

EGG_USES = (
    "method",
    "method_options",
    "target",
    "stop",
    "top_k",
    "max_steps",
    "min_crop_side",
    "sigma",
    "max_new_tokens",
)


@register_pipeline("base", uses=("max_new_tokens",))
def base_pipeline(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    """The original image alone."""
    return _answered(adapter, samples, [[] for _ in samples], options)


@register_pipeline("egg", uses=EGG_USES)
def egg_pipeline(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    """EGG: the zoom-and-reground loop, then the answer with the kept crops."""
    images = [s.image for s in samples]
    results = _loops(adapter, images, samples, options, keep_last_forward=True)
    crops = [r.crops for r in results]
    answers = _answers(adapter, samples, images, crops, options, results)
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


@register_pipeline("oracle", uses=("crop_scale", "max_new_tokens"))
def oracle_pipeline(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    """Crops around the evidence boxes (none when the sample has no boxes)."""
    return _answered(adapter, samples, [oracle_crops(s, options) for s in samples], options)


@register_pipeline("random", uses=("crop_scale", "seed", "max_new_tokens"))
def random_pipeline(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    """Crops of the oracle's sizes at random places (none when the sample has no boxes)."""
    crops = [
        random_boxes_like(oracle_crops(s, options), s.image.size, options.seed, s.id)
        for s in samples
    ]
    return _answered(adapter, samples, crops, options)


@register_pipeline("random_egg", uses=(*EGG_USES, "seed"))
def random_egg_pipeline(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    """EGG's kept crops, each moved to a random place (same size)."""
    images = [s.image for s in samples]
    results = _loops(adapter, images, samples, options)
    crops = [
        random_boxes_like(r.crops, im.size, options.seed, s.id)
        for r, im, s in zip(results, images, samples)
    ]
    answers = _answers(adapter, samples, images, crops, options)
    return [
        {"answer": a, "crops": c, "egg_crops": [list(b) for b in r.crops]}
        for a, c, r in zip(answers, crops, results)
    ]


@register_pipeline("oracle_one", uses=("crop_scale", "max_new_tokens"))
def oracle_one_pipeline(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    """A crop around the first evidence box only (multi-evidence questions: one of two)."""
    crops = [oracle_crops(s, options)[:1] for s in samples]
    return _answered(adapter, samples, crops, options)


VICROP_KEYS = ("answer", "crops", "method", "scale", "window", "scales", "tiles", "degenerate")
"""What a ``vicrop`` result keeps of :meth:`egg_interp.vicrop.ViCropResult.to_dict`."""


@register_pipeline("vicrop", uses=("vicrop_method", "method_options", "target", "max_new_tokens"))
def vicrop_pipeline(
    adapter: VLMAdapter, samples: Sequence[Sample], options: PipelineOptions
) -> list[dict[str, Any]]:
    """ViCrop (Zhang et al., ICLR 2025): one crop chosen from an attention/gradient map."""
    from egg_interp.vicrop import vicrop

    method = get_method(options.loop.method_for("vicrop"), **options.loop.method_kwargs())
    images = [s.image for s in samples]
    results = [vicrop(adapter, im, s.question, method) for im, s in zip(images, samples)]
    answers = _answers(adapter, samples, images, [r.crops for r in results], options)
    out = []
    for answer, result in zip(answers, results):
        result.answer = answer
        d = result.to_dict()
        out.append({k: d[k] for k in VICROP_KEYS if k in d})
    return out
