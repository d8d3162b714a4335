"""One sample's zoom-and-reground loop: its images and crops, and what one step measures.

:class:`LoopState` holds a sample's user images, the current crops (each with the index of the
image it is cut from), the step log and the stopping rule's decision; :meth:`LoopState.advance`
takes one step's map, finds and ranks the regions of every image of the prompt, measures the
originals' entropies and decides on stopping. The loop (:mod:`egg_interp.loop`) batches the maps
of the samples still running and hands each its map.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from PIL import Image

from egg_interp.entropy import shannon_entropy, spatial_entropy
from egg_interp.errors import DegenerateMapError, InputError
from egg_interp.geometry import Box, crop_image, pixel_box, to_original
from egg_interp.loop.log import GroundingResult, LoopStep
from egg_interp.maps import AttributionMap, ImageMap
from egg_interp.models.answering import RecordedPrompt
from egg_interp.models.base import VLMAdapter
from egg_interp.regions import Region, find_regions, rank_regions
from egg_interp.stopping import Decision, StoppingRule


def answer_images(
    originals: Sequence[Image.Image], crops: Sequence[Box], sources: Sequence[int] | None = None
) -> list[Image.Image]:
    """The images of a grounded prompt: the originals, then each crop cut from its own original.

    Parameters
    ----------
    originals : sequence of PIL.Image.Image
        The user's images, in prompt order.
    crops : sequence of Box
        ``(x0, y0, x1, y1)`` in the pixels of the original each is cut from.
    sources : sequence of int, optional
        Index into ``originals`` of each crop's image (default: all from the first).
    """
    sources = list(sources) if sources is not None else [0] * len(crops)
    return [*originals, *[crop_image(originals[s], b) for s, b in zip(sources, crops, strict=True)]]


def _image_regions(
    amap: AttributionMap, top_k: int, region_kwargs: dict[str, Any], names: Sequence[str]
) -> list[list[Region]]:
    """Regions of every image of the map (``names``: each image's label), boxes mapped to the
    pixels of the original each image shows or was cut from."""
    out = []
    for i, im in enumerate(amap.images):
        view = im.primary
        regions = find_regions(
            view.values,
            view.cell_boxes,
            im.image_size,
            top_k=top_k,
            image_index=i,
            view=names[i],
            **region_kwargs,
        )
        for r in regions:
            r.box = to_original(r.box, im.origin_box, im.image_size)
        out.append(regions)
    return out


def _originals_entropies(originals: Sequence[ImageMap], sigma: float) -> tuple[float, float]:
    """Spatial and Shannon entropy of the originals' maps (the stopping rule's measure).

    One original: its map's. Several: the entropy of their components together, by the chain
    rule ``H = H(w) + sum_j w_j H_j`` with ``w_j`` original ``j``'s share of the summed
    absolute relevance and ``H_j`` its own spatial entropy; Shannon entropy of all their cells
    as one distribution.
    """
    grids = [im.primary.values for im in originals]
    if len(grids) == 1:
        return spatial_entropy(grids[0], sigma=sigma), shannon_entropy(grids[0])
    mass = np.array([float(np.abs(g).sum()) for g in grids])
    shannon = shannon_entropy(np.concatenate([g.ravel() for g in grids])[None, :])
    if not mass.sum() > 0:
        return math.inf, shannon
    w = mass / mass.sum()
    parts = [(wj, spatial_entropy(g, sigma=sigma)) for wj, g in zip(w, grids) if wj > 0]
    return float(sum(-wj * math.log(wj) + wj * hj for wj, hj in parts)), shannon


def originals_of(images: Image.Image | Sequence[Image.Image]) -> list[Image.Image]:
    """One sample's user images as a non-empty list."""
    out = [images] if isinstance(images, Image.Image) else list(images)
    if not out:
        raise InputError("at least one image is needed")
    return out


def check_image_count(adapter: VLMAdapter, n_images: int, top_k: int) -> None:
    """A prompt of the loop holds the user's images and up to ``top_k`` crops: refuse in one
    line, before any work, a model that takes fewer images per prompt."""
    limit = adapter.max_images_per_prompt
    if limit is not None and n_images + top_k > limit:
        who = adapter.name or type(adapter).__name__
        raise InputError(
            f"{who} takes at most {limit} image(s) per prompt; the loop needs {n_images} "
            f"image(s) plus up to {top_k} crop(s) (top_k) in one prompt"
        )


class LoopState:
    """One sample's loop: its user images, current crops (each with the index of the image it
    is cut from), step log and the stopping rule's latest decision."""

    def __init__(self, images: Sequence[Image.Image], question: str, rule: StoppingRule) -> None:
        self.originals, self.question, self.rule = list(images), question, rule
        rule.prepare(max((im.size for im in self.originals), key=max))
        self.full: list[Box] = [(0.0, 0.0, float(im.width), float(im.height)) for im in images]
        self.crops: list[Box] = []
        self.sources: list[int] = []
        self.steps: list[LoopStep] = []
        self.step_sources: list[tuple[list[int], list[int]]] = []  # (sources in, new sources)
        self.maps: list[AttributionMap] = []
        self.decision = rule.decide(self.steps)
        self.first: RecordedPrompt | None = None
        self.last: RecordedPrompt | None = None

    @property
    def several(self) -> bool:
        """Whether the sample has several user images (the log then names each crop's image)."""
        return len(self.originals) > 1

    def images(self) -> list[Image.Image]:
        """The images of the next step's prompt: ``[originals, current crops]``."""
        return answer_images(self.originals, self.crops, self.sources)

    def prompt(self, adapter: VLMAdapter) -> tuple[list[Image.Image], Any]:
        """The next step's images and their built prompt."""
        images, boxes = self.images(), [*self.full, *self.crops]
        return images, adapter.build_inputs(images, self.question, origin_boxes=boxes)

    def place_crops(self, amap: AttributionMap) -> None:
        """Give the crops of a map built by ``build_batch`` (where each image gets its own
        rectangle) their places in their originals."""
        for im, box in zip(amap.images[len(self.originals) :], self.crops, strict=True):
            im.origin_box = box

    def view_names(self) -> list[str]:
        """Labels of the prompt's images for the regions found in them."""
        n = len(self.originals)
        if not self.several:
            return ["original", *[f"crop {k + 1}" for k in range(len(self.crops))]]
        return [
            *[f"image {j}" for j in range(n)],
            *[f"crop {k + 1} of image {s}" for k, s in enumerate(self.sources)],
        ]

    def advance(
        self,
        amap: AttributionMap,
        top_k: int,
        region_kwargs: dict[str, Any],
        keep_maps: bool,
        start: float,
    ) -> None:
        """Record the step of ``amap`` (regions, entropies, new crops) and decide on stopping."""
        found = self._measure(amap, top_k, region_kwargs)
        ranked, sources, new_crops, h_spatial, h_shannon, degenerate = found
        if keep_maps:
            self.maps.append(amap)
        step = LoopStep(
            step=len(self.steps),
            crops_in=list(self.crops),
            regions=ranked,
            crop_boxes=new_crops,
            spatial_entropy=h_spatial,
            shannon_entropy=h_shannon,
            next_token_entropy=float(amap.meta.get("next_token_entropy", math.nan)),
            top1_prob=float(amap.meta.get("top1_prob", math.nan)),
            top1_token=str(amap.meta.get("top1_token", "")),
            seconds=time.perf_counter() - start,
            degenerate=degenerate,
        )
        new_sources = sources[: len(new_crops)]
        if self.several:
            step.sources_in, step.crop_sources = list(self.sources), new_sources
            step.region_sources = sources
        self.steps.append(step)
        self.step_sources.append((list(self.sources), new_sources))
        self._decide(degenerate, new_crops, new_sources)
        self.crops, self.sources = new_crops, new_sources

    def _measure(
        self, amap: AttributionMap, top_k: int, region_kwargs: dict[str, Any]
    ) -> tuple[list[Region], list[int], list[Box], float, float, str]:
        """Ranked regions, their images' indices, the new crops, the originals' spatial and
        Shannon entropies and, for a degenerate map, why (then no crop: step 0 falls back to
        the whole images as regions)."""
        names, image_of = self.view_names(), [*range(len(self.originals)), *self.sources]
        try:
            amap.check()
            ranked = rank_regions(_image_regions(amap, top_k, region_kwargs, names), top_k)
            sources = [image_of[r.image_index] for r in ranked]
            sizes = [self.originals[s].size for s in sources]
            new_crops = [pixel_box(r.box, size) for r, size in zip(ranked, sizes)]
            n = len(self.originals)
            h_spatial, h_shannon = _originals_entropies(amap.images[:n], region_kwargs["sigma"])
        except DegenerateMapError as exc:
            ranked = [] if self.steps else _whole_image_regions(amap, self.full, names)
            sources = [r.image_index for r in ranked]
            return ranked, sources, [], math.nan, math.nan, str(exc)
        return ranked, sources, new_crops, h_spatial, h_shannon, ""

    def _decide(self, degenerate: str, new_crops: list[Box], new_sources: list[int]) -> None:
        """The rule's decision, overruled by a degenerate map (stop, keep the step before) and
        by crops that repeat the previous ones (stop: nothing left to zoom)."""
        steps = self.steps
        self.decision = self.rule.decide(steps)
        if degenerate:
            keep = steps[-2].step if len(steps) > 1 else None
            self.decision = Decision(True, keep, f"degenerate map: {degenerate}")
        elif (
            not self.decision.stop
            and self.crops
            and (new_crops, new_sources) == (self.crops, self.sources)
        ):
            # the same prompt again would give the same map and the same crops forever
            self.decision = Decision(True, steps[-1].step, "crops repeat: nothing left to zoom")

    def note_forward(self, recorded: RecordedPrompt | None, keep: Collection[str]) -> None:
        """Keep the forward of the step just taken as the first and/or the last one (the last
        only while it may still be the final answer's prompt)."""
        if recorded is not None and "first" in keep and len(self.steps) == 1:
            self.first = recorded
        if "last" in keep:
            self.last = recorded
        if self.decision.stop and self.last is not None:
            last_prompt = (self.steps[-1].crops_in, self.step_sources[-1][0])
            if self.kept() != last_prompt:
                self.last = None  # the final prompt was never mapped: nothing to continue

    def kept(self) -> tuple[list[Box], list[int]]:
        """The crops of the step the rule keeps and their images' indices (none when it keeps
        no step)."""
        for step, (_, sources) in zip(self.steps, self.step_sources):
            if step.step == self.decision.keep:
                return step.crop_boxes, sources
        return [], []

    def result(self, method_name: str) -> GroundingResult:
        crops, sources = self.kept()
        forwards = [self.first] if self.first is not None else []
        if self.last is not None and self.last is not self.first:
            forwards.append(self.last)
        return GroundingResult(
            question=self.question,
            image_size=self.originals[0].size,
            steps=self.steps,
            decision=self.decision,
            crops=list(crops),
            method=method_name,
            stop_rule=repr(self.rule),
            maps=self.maps,
            forwards=forwards,
            image_sizes=[im.size for im in self.originals],
            crop_sources=list(sources),
        )


def warn_if_too_small(image: Image.Image, min_side: float) -> None:
    """Warn when no crop can be smaller than the image (e.g. 1 x 1): the loop cannot zoom."""
    if max(image.size) <= min_side:
        warnings.warn(
            f"the image is {image.width} x {image.height} px, no larger than the smallest crop "
            f"side ({min_side:g} px): the loop cannot zoom in (it stops when its crops repeat)",
            UserWarning,
            stacklevel=3,
        )


def _whole_image_regions(
    amap: AttributionMap, full: Sequence[Box], names: Sequence[str]
) -> list[Region]:
    """Each original as one region (the fallback of a degenerate first map)."""
    out = []
    for i, box in enumerate(full):
        rows, cols = amap.images[i].primary.shape
        cells = np.ones((rows, cols), bool)
        out.append(Region(0.0, i, cells, (0, 0, rows, cols), box, i, names[i]))
    return out
