"""Several attribution methods side by side: what to draw, gathered here, drawn by figures.

:func:`compare_methods` runs methods on one image (``egg-interp compare``);
:func:`comparison_grids` gathers a results file's samples with their saved (or recomputed)
maps (``egg-interp report --grids``) from :class:`egg_interp.map_source.MapSource`. Both
draw with :func:`egg_interp.figures.comparison.plot_comparison`, panels labelled by
:func:`egg_interp.titles.method_label`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from egg_interp.errors import DegenerateMapError, EggError, InputError
from egg_interp.figures.comparison import plot_comparison
from egg_interp.geometry import Box
from egg_interp.io import save_figure
from egg_interp.map_source import MapLine, MapSource, SampleKey, read_map_lines
from egg_interp.maps import AttributionMap
from egg_interp.methods import get_method
from egg_interp.methods.base import AttributionMethod
from egg_interp.methods.targets import Target
from egg_interp.models.base import VLMAdapter
from egg_interp.regions import find_regions
from egg_interp.titles import method_label


def top_region_box(amap: AttributionMap, **region_kwargs: Any) -> Box:
    """The best region's box (original-image pixels) on the original image's primary grid.

    Raises :class:`DegenerateMapError` (all zeros, NaN) or :class:`InputError` (e.g. negative
    values of a signed map) instead of normalising the map.
    """
    amap.check()
    im = amap.images[0]
    view = im.primary
    regions = find_regions(view.values, view.cell_boxes, im.image_size, top_k=1, **region_kwargs)
    if not regions:
        raise DegenerateMapError(f"{amap.method} map has no region above its threshold")
    return regions[0].box


def compare_methods(
    adapter: VLMAdapter,
    image: Image.Image,
    question: str,
    methods: Sequence[str | AttributionMethod],
    boxes: Sequence[Box] = (),
    target: str | Target | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    region_kwargs: Mapping[str, Any] | None = None,
) -> tuple[dict[str, AttributionMap], Any]:
    """Run ``methods`` on one image and question and draw them in one comparison grid.

    Parameters
    ----------
    adapter : VLMAdapter
    image : PIL.Image.Image
    question : str
    methods : sequence of str or AttributionMethod
        Registered names (unknown names fail, listing the valid ones) or instances. Every
        method is checked against the model before the first one runs.
    boxes : sequence of Box
        Ground-truth evidence ``(x0, y0, x1, y1)`` in original pixels, drawn on every panel.
    target : str or Target, optional
        One target for all methods (fair comparison); default: each method's own.
    method_options : mapping, optional
        Per method name, its options (e.g. ``{"integrated_gradients": {"n_steps": 16}}``).
    region_kwargs : mapping, optional
        For :func:`egg_interp.regions.find_regions` (``sigma``, ``threshold``, ...); ``sigma``
        defaults to the model's own (``adapter.region_sigma``).

    Returns
    -------
    maps : dict of str to AttributionMap
        In the order given. A map that cannot give a region (all zeros, NaN, negative values)
        keeps its values and records why in ``meta["problem"]``; its panel says so.
    figure : matplotlib Figure
        :func:`egg_interp.figures.comparison.plot_comparison`: the image with ``boxes``, then one overlay
        per method with its top region (dashed cyan), titled by
        :func:`egg_interp.titles.method_label` (``saliency[logprob]`` under another target).
    """
    options = method_options or {}
    objs = [
        m if isinstance(m, AttributionMethod) else get_method(m, **options.get(m, {}))
        for m in methods
    ]
    if not objs:
        raise InputError("no method to compare")
    for m in objs:
        m.check_supported(adapter)
    inputs = adapter.build_inputs([image], question)
    maps: dict[str, AttributionMap] = {}
    panels: dict[str, AttributionMap] = {}
    tops: dict[str, Box] = {}
    for m in objs:
        amap = m.attribute(adapter, [image], question, target=target, inputs=inputs)
        maps[m.name] = amap
        label = method_label(m.name, amap.target)
        try:
            kwargs = {"sigma": adapter.region_sigma, **(region_kwargs or {})}
            tops[label] = top_region_box(amap, **kwargs)
        except EggError as exc:
            amap.meta["problem"] = str(exc)
            label = f"{label} (no region)"
        panels[label] = amap
    figure = plot_comparison(image, panels, boxes, tops, title=question)
    return maps, figure


def comparison_grids(
    results: Sequence[str | Path],
    out: str | Path,
    n: int,
    model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    prompt_suffix: str | None = None,
    data_root: str | Path | None = None,
) -> tuple[list[Path], list[str]]:
    """One comparison figure per sample for the first ``n`` samples with map lines.

    Each figure shows the image with its evidence boxes, then every method's map with the
    evidence (green) and the method's top region (cyan, dashed), via
    :func:`egg_interp.figures.comparison.plot_comparison`; panels are labelled by
    :func:`egg_interp.titles.method_label` (the target when not the method's default).
    Images and maps come from :class:`egg_interp.map_source.MapSource` (saved by
    ``evaluate --save-maps``, else recomputed with ``model``, default the model recorded in
    the lines, in ``dtype`` and with ``prompt_suffix``, default as recorded); what cannot be
    found is noted once, never raised.

    Returns
    -------
    (paths written, notes on what could not be drawn)
    """
    source = MapSource(model, device, dtype, prompt_suffix, data_root)
    lines = read_map_lines(results)
    keys = _first_samples(lines, n)
    samples = source.samples(line.record for line in lines if line.key in keys)
    written: list[Path] = []
    for k, key in enumerate(keys):
        sample = samples.get(key)
        if sample is None:
            source.note(f"{key[2]}: not found in {key[0]} (give --data-root)")
            continue
        image = source.image(sample)
        if image is None:
            continue
        maps, tops = _panels(source, [x for x in lines if x.key == key], sample, image)
        if maps:
            written.append(_save_grid(sample, image, maps, tops, Path(out), k))
    return written, source.notes


def _first_samples(lines: Sequence[MapLine], n: int) -> list[SampleKey]:
    """The first ``n`` samples of the lines, by dataset and index."""
    keys: list[SampleKey] = []
    ordered = sorted(
        lines, key=lambda x: (str(x.record.get("dataset")), x.record.get("index", math.inf))
    )
    for line in ordered:
        if line.key not in keys:
            keys.append(line.key)
    return keys[:n]


def _panels(
    source: MapSource, lines: Sequence[MapLine], sample: Any, image: Image.Image
) -> tuple[dict[str, AttributionMap], dict[str, Box]]:
    """Each line's map (saved or recomputed) by label, and its top region where it has one."""
    maps: dict[str, AttributionMap] = {}
    tops: dict[str, Box] = {}
    for line in lines:
        amap, _ = source.map(line, image, sample.question)
        if amap is None:
            continue
        r = line.record
        label = method_label(r["name"], r.get("target"))
        if label in maps:
            label = f"{label}@{r['config_hash'][:6]}"
        maps[label] = amap
        if r.get("regions"):
            tops[label] = tuple(r["regions"][0]["box"])
    return maps, tops


def _save_grid(
    sample: Any,
    image: Image.Image,
    maps: dict[str, AttributionMap],
    tops: dict[str, Box],
    out: Path,
    k: int,
) -> Path:
    """Draw and save one sample's grid as ``out/<k>_<sample id>.png``."""
    question = sample.question.splitlines()[0][:70]
    title = f"{sample.id}: {question}\nanswer: {', '.join(sample.answers[:2])}"
    fig = plot_comparison(image, maps, sample.boxes, tops, title=title)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sample.id)[:60]
    return save_figure(fig, out / f"{k:03d}_{safe}.png")
