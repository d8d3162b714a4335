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
``random``
    Crops of the oracle's sizes at random places (seeded by the sample id): the control.

Adding a pipeline is one decorated function::

    @register_pipeline("mine", uses=("max_new_tokens",))
    def mine(adapter, sample, options): ...
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from egg_interp.data.sample import Sample
from egg_interp.errors import InputError
from egg_interp.loop import answer_with_crops, zoom_and_reground
from egg_interp.models.base import VLMAdapter

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class PipelineOptions:
    """Options of all pipelines (each reads the fields it declares in :data:`PIPELINES`).

    Attributes
    ----------
    method : str
        Map method of EGG's loop (default ``"egg"``).
    stop : str
        Stopping rule of the loop (``"ent"``, ``"fixed:N"``, ...; see :mod:`egg_interp.stopping`).
    top_k : int
        Regions (crops) per loop step.
    max_steps : int
        Upper bound on loop steps.
    max_new_tokens : int
        Greedy decoding length of every answer.
    vicrop_method : str
        ViCrop's map (``"rel_att"``, ``"grad_att"``, ``"pure_grad"``).
    crop_scale : float
        Oracle/random crop side = this times the evidence box's longer side.
    seed : int
        Seed of the random crops (combined with the sample id).
    """

    method: str = "egg"
    stop: str = "ent"
    top_k: int = 2
    max_steps: int = 15
    max_new_tokens: int = 20
    vicrop_method: str = "rel_att"
    crop_scale: float = 1.5
    seed: int = 0

    def subset(self, fields: Sequence[str]) -> dict[str, Any]:
        """The named fields as a dict (what a pipeline's config hash covers)."""
        values = asdict(self)
        return {f: values[f] for f in fields}


PipelineFn = Callable[[VLMAdapter, Sample, PipelineOptions], dict[str, Any]]


@dataclass(frozen=True)
class Pipeline:
    """A registered pipeline: the function and the option fields it reads."""

    fn: PipelineFn
    uses: tuple[str, ...]
    description: str = ""


PIPELINES: dict[str, Pipeline] = {}
"""Pipeline name -> :class:`Pipeline`."""


def register_pipeline(
    name: str, uses: Sequence[str] = (), description: str = ""
) -> Callable[[PipelineFn], PipelineFn]:
    """Decorator adding ``fn`` to :data:`PIPELINES` under ``name``."""
    unknown = set(uses) - set(PipelineOptions.__dataclass_fields__)
    if unknown:
        raise ValueError(f"pipeline {name!r} uses unknown options {sorted(unknown)}")

    def register(fn: PipelineFn) -> PipelineFn:
        doc = description or (fn.__doc__ or "").strip().splitlines()[0]
        PIPELINES[name] = Pipeline(fn, tuple(uses), doc)
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
    out = dict(get_pipeline(name).fn(adapter, sample, options or PipelineOptions()))
    out["answer"] = str(out.get("answer", ""))
    out["crops"] = [[float(v) for v in b] for b in out.get("crops", [])]
    return out


# ---------------------------------------------------------------- crops around evidence


def square_crop(box: Sequence[float], scale: float, size: tuple[int, int]) -> Box:
    """A square around ``box`` with side ``scale`` times its longer side, inside the image.

    The side is rounded to whole pixels, at least 1 and at most the image's shorter side;
    the square is centred on the box and shifted (not shrunk) to fit inside the image.

    >>> square_crop((10, 10, 30, 20), 1.5, (100, 80))
    (5.0, 0.0, 35.0, 30.0)
    """
    w, h = size
    x0, y0, x1, y1 = (float(v) for v in box)
    side = int(min(max(round(max(x1 - x0, y1 - y0) * scale), 1), w, h))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = float(round(min(max(cx - side / 2, 0), w - side)))
    top = float(round(min(max(cy - side / 2, 0), h - side)))
    return (left, top, left + side, top + side)


def random_crops(boxes: Sequence[Box], size: tuple[int, int], seed: int, key: str) -> list[Box]:
    """Crops of the same sizes as ``boxes`` at uniformly random places inside the image.

    Deterministic for a given ``(seed, key)`` (the key is the sample id), so a sharded or
    resumed run draws the same crops as an uninterrupted one.
    """
    digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    w, h = size
    out = []
    for x0, y0, x1, y1 in boxes:
        bw, bh = int(round(x1 - x0)), int(round(y1 - y0))
        left = float(rng.integers(0, w - bw + 1))
        top = float(rng.integers(0, h - bh + 1))
        out.append((left, top, left + bw, top + bh))
    return out


# ---------------------------------------------------------------- the pipelines


@register_pipeline("base", uses=("max_new_tokens",))
def base_pipeline(adapter: VLMAdapter, sample: Sample, options: PipelineOptions) -> dict[str, Any]:
    """The original image alone."""
    answer = adapter.answer(sample.image, sample.question, max_new_tokens=options.max_new_tokens)
    return {"answer": answer, "crops": []}


@register_pipeline("egg", uses=("method", "stop", "top_k", "max_steps", "max_new_tokens"))
def egg_pipeline(adapter: VLMAdapter, sample: Sample, options: PipelineOptions) -> dict[str, Any]:
    """EGG: the zoom-and-reground loop, then the answer with the kept crops."""
    image = sample.image
    result = zoom_and_reground(
        adapter,
        image,
        sample.question,
        method=options.method,
        stop=options.stop,
        top_k=options.top_k,
        max_steps=options.max_steps,
        keep_maps=False,
    )
    answer = answer_with_crops(
        adapter, image, sample.question, result.crops, options.max_new_tokens
    )
    log = result.to_dict()
    return {
        "answer": answer,
        "crops": result.crops,
        "steps": log["steps"],
        "decision": log["decision"],
        "n_steps": len(result.steps),
    }


@register_pipeline("oracle", uses=("crop_scale", "max_new_tokens"))
def oracle_pipeline(
    adapter: VLMAdapter, sample: Sample, options: PipelineOptions
) -> dict[str, Any]:
    """Crops around the evidence boxes (none when the sample has no boxes)."""
    image = sample.image
    crops = [square_crop(b, options.crop_scale, image.size) for b in sample.boxes]
    answer = answer_with_crops(adapter, image, sample.question, crops, options.max_new_tokens)
    return {"answer": answer, "crops": crops}


@register_pipeline("random", uses=("crop_scale", "seed", "max_new_tokens"))
def random_pipeline(
    adapter: VLMAdapter, sample: Sample, options: PipelineOptions
) -> dict[str, Any]:
    """Crops of the oracle's sizes at random places (none when the sample has no boxes)."""
    image = sample.image
    oracle = [square_crop(b, options.crop_scale, image.size) for b in sample.boxes]
    crops = random_crops(oracle, image.size, options.seed, sample.id)
    answer = answer_with_crops(adapter, image, sample.question, crops, options.max_new_tokens)
    return {"answer": answer, "crops": crops}


@register_pipeline("vicrop", uses=("vicrop_method", "max_new_tokens"))
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
        method=options.vicrop_method,
        max_new_tokens=options.max_new_tokens,
    ).to_dict()
    keep = ("answer", "crops", "method", "scale", "window", "scales", "tiles", "degenerate")
    return {k: result[k] for k in keep if k in result}
