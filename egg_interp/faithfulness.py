"""Faithfulness of a map on a VLM: does the model's answer depend on what the map ranks first?

Deletion and insertion curves (RISE; ROAD's imputation; :mod:`egg_interp.metrics.deletion`
holds the pure parts and :class:`~egg_interp.metrics.deletion.FaithfulnessSettings`) wired to
a model adapter:

* **what is tracked**: the log-probability of the model's *original* greedy answer,
  teacher-forced (the sum over its tokens, each at its own position; the probability is its
  exponential), so the target does not move while the image is perturbed;
* **where**: ``space="pixels"``: the cells of the map's finest view are replaced in the
  original image by a substrate (blur, mean colour, ROAD's noisy linear imputation) and the
  image goes through the processor and the vision tower again; ``space="tokens"``: the
  image's visual token embeddings are replaced by a baseline embedding (its mean visual
  token, or zeros) or dropped from the sequence (LLaVA-family prompts, whose ids and mask
  are their only per-token inputs);
* **orders**: most relevant first (MoRF), least relevant first (LeRF), a seeded random
  order; a fixed number of steps (x = changed fraction in [0, 1], trapezoid area);
* **cost**: every distinct masked input is scored once (MoRF and LeRF deletion and insertion
  at 16 steps: 32 inputs, as insertion under MoRF keeps what deletion under LeRF keeps), in
  batched forwards of ``rows_per_forward`` rows; the random order does not depend on the map,
  so its curves (30 more inputs) are scored once per prompt and shared by all its maps.

The one entry point is :func:`faithfulness_scores`; a runner records its scores on the map
line and its curves in the map file.

Only the first image of a prompt is perturbed (the original; crops after it stay as they
are); the map must be that prompt's map (its first image's grid ranks the cells).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np
import torch
from PIL import Image

from egg_interp.data.sample import Sample
from egg_interp.errors import InputError, UnsupportedModelError
from egg_interp.maps import AttributionMap
from egg_interp.methods.base import read_positions
from egg_interp.methods.targets import AnswerLogProb, Target
from egg_interp.metrics.deletion import (
    Curve,
    FaithfulnessSettings,
    area_input,
    curves_from_batch,
    trapezoid,
)
from egg_interp.metrics.registry import scores as declared_scores
from egg_interp.metrics.substrates import cell_labels, noisy_linear_imputation, substrate_image
from egg_interp.models.base import PromptInputs, VLMAdapter

Prompt = Sample | tuple[Sequence[Image.Image] | Image.Image, str]
"""A sample, or ``(images, question)`` with the original image first."""


def faithfulness_scores(
    adapter: VLMAdapter,
    prompt: Prompt,
    amap: AttributionMap,
    settings: FaithfulnessSettings | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Deletion and insertion scores of one map, and the curves behind them.

    Parameters
    ----------
    adapter : VLMAdapter
    prompt : Sample or (images, question)
        The prompt the map was computed for (its original image first).
    amap : AttributionMap
        The map; its first image's finest view ranks the cells (pixels), or all its views'
        tokens do (tokens).
    settings : FaithfulnessSettings, optional
        Default: deletion and insertion, MoRF/LeRF/random, pixels with blur, 16 steps, the
        probability tracked.

    Returns
    -------
    scores : dict of str to float
        ``settings.score_names()``, as the metric registry declares them
        (:func:`area_scores`): ``deletion_auc`` (MoRF; lower is better), ``insertion_auc``
        (higher), ``*_auc_lerf``, ``*_auc_random`` and the MoRF-LeRF ``*_gap`` (higher is
        better for both curves).
    curves : dict
        JSON-able: ``fractions`` (x, shared), ``curves[curve][order]`` with ``logprob`` and
        ``prob`` lists, ``areas`` (the areas by map-score input, ``deletion_morf``, ...: what
        a run gives :func:`egg_interp.scoring.score_map`), the tracked ``answer`` and
        ``answer_ids``, ``full_logprob`` (the unperturbed input), and the cost: ``rows``
        (masked inputs scored), ``forwards`` (batched forwards), ``seconds``.

    Raises
    ------
    DegenerateMapError
        The map holds NaN or inf.
    UnsupportedModelError
        ``substrate="drop"`` on an architecture whose prompts carry other per-token inputs.
    """
    settings = settings or FaithfulnessSettings()
    images, question = _unpack(prompt)
    start = time.perf_counter()
    curves: dict[tuple[str, str], Curve] = {}
    probes = []
    for substrate in dict.fromkeys(settings.substrate_of(c) for c in settings.curves):
        probe = _PROBES[settings.space].build(adapter, images, question, amap, settings, substrate)
        group = [c for c in settings.curves if settings.substrate_of(c) == substrate]
        mapped = [o for o in settings.orders if o != "random"]
        if mapped:
            curves |= curves_from_batch(
                probe.relevance, probe.score, group, mapped, settings.steps, settings.seed
            )
        if "random" in settings.orders:
            curves |= _random_curves(probe, group)
        probes.append(probe)
    seconds = time.perf_counter() - start
    areas = _areas(curves, settings)
    record = _curves_record(curves, probes, adapter, seconds)
    return area_scores(areas), {**record, "areas": areas}


def _unpack(prompt: Prompt) -> tuple[list[Image.Image], str]:
    if isinstance(prompt, Sample):
        return [prompt.image], prompt.question
    images, question = prompt
    images = [images] if isinstance(images, Image.Image) else list(images)
    if not images:
        raise InputError("faithfulness needs at least one image")
    return images, question


def _random_curves(probe: _Probe, group: list[str]) -> dict[tuple[str, str], Curve]:
    """The random-order control's curves: they do not depend on the map, so they are scored
    once per prompt, model weights, cell geometry and settings, and shared by every map of
    that prompt (the last 64 per adapter are kept)."""
    adapter, settings = probe.adapter, probe.settings
    key = (
        adapter.weights_state(),
        tuple(adapter.image_key(im) for im in probe.images),
        probe.question,
        repr({**settings.to_dict(), "orders": None, "rows_per_forward": None}),
        probe.substrate,
        tuple(group),
        probe.geometry(),
    )
    shared = _CONTROLS.setdefault(adapter, OrderedDict())
    if key in shared:
        shared.move_to_end(key)
        curves, full = shared[key]
        probe.full_logprob = full if np.isnan(probe.full_logprob) else probe.full_logprob
        return curves
    curves = curves_from_batch(
        probe.relevance, probe.score, group, ["random"], settings.steps, settings.seed
    )
    shared[key] = (curves, probe.full_logprob)
    while len(shared) > 64:
        shared.popitem(last=False)
    return curves


_CONTROLS: WeakKeyDictionary[VLMAdapter, OrderedDict[tuple, Any]] = WeakKeyDictionary()
"""Random-order curves per adapter, shared by the maps of one prompt."""


def forget_controls(adapter: VLMAdapter) -> None:
    """Forget the random-order curves kept for ``adapter``: the next map of each prompt
    scores them again (what a prompt's first map costs; the benchmark times it)."""
    _CONTROLS.pop(adapter, None)


def _areas(curves: dict[tuple[str, str], Curve], settings: FaithfulnessSettings) -> dict:
    """The area of the tracked value under each curve and order, keyed by its map-score input
    (:func:`~egg_interp.metrics.deletion.area_input`: ``deletion_morf``, ...)."""
    areas = {}
    for (curve, order), c in curves.items():
        values = np.exp(c.scores) if settings.track == "prob" else c.scores
        areas[area_input(curve, order)] = trapezoid(values, c.fractions)
    return areas


def area_scores(areas: dict[str, float]) -> dict[str, float]:
    """The registry's faithfulness scores (:mod:`egg_interp.metrics.registry`, group
    ``"faithfulness"``) whose inputs ``areas`` holds, in declaration order: the AUCs and the
    MoRF-LeRF gaps.

    >>> area_scores({"deletion_morf": 0.25, "deletion_lerf": 0.75})
    {'deletion_auc': 0.25, 'deletion_auc_lerf': 0.75, 'deletion_gap': 0.5}
    """
    held = [s for s in declared_scores("map", "faithfulness") if set(s.needs) <= set(areas)]
    return {s.name: s.compute(areas) for s in held}


def _curves_record(
    curves: dict[tuple[str, str], Curve],
    probes: list[_Probe],
    adapter: VLMAdapter,
    seconds: float,
) -> dict[str, Any]:
    record: dict[str, Any] = {"curves": {}}
    for (curve, order), c in curves.items():
        record["fractions"] = c.fractions.tolist()
        record["curves"].setdefault(curve, {})[order] = {
            "logprob": c.scores.tolist(),
            "prob": np.exp(c.scores).tolist(),
        }
    ids = list(probes[0].target.answer_ids)
    record.update(
        answer_ids=ids,
        answer=adapter.tokenizer.decode(ids),
        full_logprob=probes[0].full_logprob,
        rows=sum(p.rows for p in probes),
        forwards=sum(p.forwards for p in probes),
        seconds=seconds,
    )
    return record


# ------------------------------------------------------------------------------ the probes
@dataclass
class _Probe:
    """The model side of the curves: the original answer and ``score(masks) -> logprobs``.

    Subclasses turn keep masks over :attr:`relevance`'s cells into inputs and run them in
    batches of ``settings.rows_per_forward`` rows.
    """

    adapter: VLMAdapter
    images: list[Image.Image]
    question: str
    settings: FaithfulnessSettings
    substrate: str
    inputs: PromptInputs
    target: Target
    relevance: np.ndarray = field(default_factory=lambda: np.zeros((1, 1)))
    rows: int = 0
    forwards: int = 0
    full_logprob: float = float("nan")

    @classmethod
    def build(
        cls,
        adapter: VLMAdapter,
        images: list[Image.Image],
        question: str,
        amap: AttributionMap,
        settings: FaithfulnessSettings,
        substrate: str,
    ) -> _Probe:
        inputs = adapter.build_inputs(images, question)
        answer = AnswerLogProb(max_tokens=settings.max_answer_tokens)
        target, _ = answer.for_prompt(adapter, inputs)
        probe = cls(adapter, images, question, settings, substrate, inputs, target)
        probe.prepare(amap)
        return probe

    def prepare(self, amap: AttributionMap) -> None:
        """Set :attr:`relevance` (the cells' grid) from the map and precompute what the
        masks need."""
        raise NotImplementedError

    def geometry(self) -> str:
        """What makes two maps' cells the same cells (a hash), for sharing the random control."""
        raise NotImplementedError

    def score(self, masks: np.ndarray) -> np.ndarray:
        """The answer's teacher-forced log-probability for each keep mask, ``(M,)``."""
        chunk = self.settings.rows_per_forward or (8 if self.adapter.device.type == "cpu" else 32)
        out = []
        with torch.no_grad():
            for lo in range(0, len(masks), chunk):
                part = masks[lo : lo + chunk]
                out.append(self.target(self.logits(part)).float().cpu().numpy())
                self.rows += len(part)
                self.forwards += 1
        values = np.concatenate(out).astype(np.float64)
        full = np.flatnonzero(masks.reshape(len(masks), -1).all(axis=1))
        if full.size:
            self.full_logprob = float(values[full[0]])
        return values

    def logits(self, masks: np.ndarray) -> torch.Tensor:
        """What :attr:`target` reads for each mask: ``(m, vocab)`` or ``(m, n, vocab)``."""
        raise NotImplementedError

    def answered(self, rows: PromptInputs) -> PromptInputs:
        """``rows`` (a batch of prompts of one length) extended by the answer's tokens but its
        last, so the last ``n`` positions predict the answer's ``n`` tokens."""
        ids = list(self.target.answer_ids[:-1])
        if not ids:
            return rows
        batch = dict(rows.batch)
        n_rows = batch["input_ids"].shape[0]
        new = torch.tensor([ids] * n_rows, device=batch["input_ids"].device)
        batch["input_ids"] = torch.cat([batch["input_ids"], new.to(batch["input_ids"].dtype)], 1)
        if "attention_mask" in batch:
            mask = batch["attention_mask"]
            batch["attention_mask"] = torch.cat([mask, torch.ones_like(new, dtype=mask.dtype)], 1)
        return replace(rows, batch=self.adapter.extend_extra(batch, len(ids)), answer_ids=ids)


def _to_pixels(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] as 8-bit pixels (rounded, clipped)."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


@dataclass
class _PixelProbe(_Probe):
    """Cells of the map's finest view painted over in the original image."""

    labels: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), dtype=np.int64))
    image: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 3)))
    fill: np.ndarray | None = None
    pixels: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 3), dtype=np.uint8))
    fill_pixels: np.ndarray | None = None

    def prepare(self, amap: AttributionMap) -> None:
        view = amap.images[0].primary
        self.relevance = np.asarray(view.values, dtype=np.float64)
        original = self.images[0].convert("RGB")
        self.labels = cell_labels(view.cell_boxes, original.size)
        self.pixels = np.asarray(original, dtype=np.uint8)
        self.image = self.pixels / 255.0
        if self.substrate != "road":
            sigma = self.settings.blur_sigma * max(original.size)
            self.fill = substrate_image(self.image, self.substrate, sigma)
            self.fill_pixels = _to_pixels(self.fill)

    def geometry(self) -> str:
        return hashlib.sha1(self.labels.tobytes() + str(self.labels.shape).encode()).hexdigest()

    def perturbed(self, keep_cells: np.ndarray) -> Image.Image:
        """The original image with the cells not kept replaced by the substrate."""
        keep = np.append(keep_cells.ravel(), True)[self.labels]  # label -1: no cell, kept
        fill = self.fill_pixels if self.fill_pixels is not None else _to_pixels(self.imputed(keep))
        return Image.fromarray(np.where(keep[..., None], self.pixels, fill))

    def imputed(self, keep: np.ndarray) -> np.ndarray:
        """ROAD's noisy linear imputation of the pixels not kept, computed on the image
        scaled to fit ``settings.road_side`` and scaled back (bilinear)."""
        height, width = keep.shape
        scale = min(1.0, self.settings.road_side / max(height, width))
        small = (max(1, round(width * scale)), max(1, round(height * scale)))
        image, mask = self.image, keep
        if scale < 1.0:
            image = _resize(self.image, small)
            mask = _resize(keep.astype(np.float64)[..., None], small)[..., 0] > 0.5
        rng = np.random.default_rng(self.settings.seed)
        out = noisy_linear_imputation(image, mask, self.settings.road_noise, rng)
        return _resize(out, (width, height)) if scale < 1.0 else out

    def logits(self, masks: np.ndarray) -> torch.Tensor:
        items = [([self.perturbed(m), *self.images[1:]], self.question) for m in masks]
        rows = self.answered(self.adapter.build_batch(items))
        out = self.adapter.forward(rows, logits_to_keep=self.target.positions)
        return read_positions(out.logits, self.target)


@dataclass
class _TokenProbe(_Probe):
    """The first image's visual token embeddings replaced by a baseline, or dropped."""

    covered: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    features: list[torch.Tensor] = field(default_factory=list)
    repeated: dict[int, PromptInputs] = field(default_factory=dict)

    def prepare(self, amap: AttributionMap) -> None:
        layout, image_map = self.inputs.layouts[0], amap.images[0]
        values = np.full(layout.n_tokens, np.nan)
        for view, grid in zip(layout.views, image_map.views, strict=True):
            values[np.asarray(view.token_index).ravel()] = grid.values.ravel()
        self.covered = np.flatnonzero(~np.isnan(values))  # tokens in no view stay
        self.relevance = values[self.covered][None, :]
        self.features = self.adapter.image_features(self.inputs)
        if self.substrate == "drop":
            _check_droppable(self.adapter, self.inputs)

    def geometry(self) -> str:
        return hashlib.sha1(self.covered.tobytes()).hexdigest()

    def token_masks(self, masks: np.ndarray) -> torch.Tensor:
        """Per-token keep masks of the first image, ``(m, n_tokens)`` bool."""
        keep = np.ones((len(masks), self.inputs.layouts[0].n_tokens), dtype=bool)
        keep[:, self.covered] = masks.reshape(len(masks), -1)
        return torch.as_tensor(keep, device=self.features[0].device)

    def logits(self, masks: np.ndarray) -> torch.Tensor:
        keep = self.token_masks(masks)
        if self.substrate == "drop":
            rows, flat = self.dropped_rows(keep)
        else:
            first = self.features[0]
            base = first.mean(0) if self.substrate == "mean" else torch.zeros_like(first[0])
            masked = torch.where(keep[..., None], first[None], base.expand_as(first)[None])
            rows = self.repeated_rows(len(masks))
            flat = [f for row in masked for f in (row, *self.features[1:])]
        out = self.adapter.forward_features(rows, flat, last_only=self.target.positions == 1)
        return read_positions(out.logits, self.target)

    def repeated_rows(self, n: int) -> PromptInputs:
        """The prompt repeated ``n`` times (built once per row count) and extended by the
        answer."""
        if n not in self.repeated:
            rows = self.adapter.build_batch([(self.images, self.question)] * n)
            self.repeated[n] = self.answered(rows)
        return self.repeated[n]

    def dropped_rows(self, keep: torch.Tensor) -> tuple[PromptInputs, list[torch.Tensor]]:
        """One left-padded row per mask with the dropped tokens' placeholders removed, and the
        kept features in row order."""
        single = self.answered(self.inputs)
        ids = single.input_ids[0]
        positions = self.adapter.visual_positions(single)[0]
        pad = int(getattr(self.adapter.tokenizer, "pad_token_id", None) or 0)
        rows, flat = [], []
        for row_keep in keep:
            present = torch.ones_like(ids, dtype=torch.bool)
            present[positions[~row_keep]] = False
            rows.append(ids[present])
            flat += [self.features[0][row_keep], *self.features[1:]]
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), pad, dtype=ids.dtype, device=ids.device)
        mask = torch.zeros_like(input_ids)
        for i, r in enumerate(rows):
            input_ids[i, length - len(r) :], mask[i, length - len(r) :] = r, 1
        batch = {"input_ids": input_ids, "attention_mask": mask}
        return replace(single, batch=batch), flat


def _check_droppable(adapter: VLMAdapter, inputs: PromptInputs) -> None:
    """Dropping visual tokens shortens the sequence: only prompts whose per-token inputs are
    their ids and mask (the LLaVA family) can be rebuilt without the architecture's help."""
    extra = set(inputs.batch) - {"input_ids", "attention_mask", *adapter.pixel_keys}
    if extra:
        raise UnsupportedModelError(
            f"{adapter.name or type(adapter).__name__}: substrate 'drop' cannot rebuild prompts "
            f"with {', '.join(sorted(extra))}; use substrate 'mean'"
        )


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, C)`` floats resized to ``size = (width, height)``, bilinear, per channel."""
    from skimage.transform import resize

    return resize(image, (size[1], size[0], image.shape[2]), order=1, anti_aliasing=False)


_PROBES: dict[str, type[_Probe]] = {"pixels": _PixelProbe, "tokens": _TokenProbe}


__all__ = [
    "FaithfulnessSettings",
    "Prompt",
    "area_scores",
    "faithfulness_scores",
    "forget_controls",
]
