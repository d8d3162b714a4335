"""Several attribution methods side by side: what to draw, gathered here, drawn by figures.

:func:`compare_methods` runs methods on one image (``egg-interp compare``);
:func:`comparison_grids` gathers a results file's samples with their saved (or recomputed)
maps (``egg-interp report --grids``). Both draw with
:func:`egg_interp.figures.comparison.plot_comparison`.
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
from egg_interp.maps import AttributionMap
from egg_interp.methods import get_method
from egg_interp.methods.base import AttributionMethod
from egg_interp.methods.targets import Target
from egg_interp.models.base import VLMAdapter
from egg_interp.regions import find_regions
from egg_interp.results import load_results


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
        per method with its top region (dashed cyan).
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
        label = m.name
        try:
            kwargs = {"sigma": adapter.region_sigma, **(region_kwargs or {})}
            tops[label] = top_region_box(amap, **kwargs)
        except EggError as exc:
            amap.meta["problem"] = str(exc)
            label = f"{m.name} (no region)"
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
    prompt_suffix: str = "",
    data_root: str | Path | None = None,
) -> tuple[list[Path], list[str]]:
    """One comparison figure per sample for the first ``n`` samples with map lines.

    Each figure shows the image with its evidence boxes, then every method's map with the
    evidence (green) and the method's top region (cyan, dashed), via
    :func:`egg_interp.figures.comparison.plot_comparison`. Maps come from ``map_file`` (saved by
    ``evaluate --save-maps``, relative to the results file) when it exists, else are
    recomputed with ``model`` (default: the model recorded in the line) and the method options
    recorded in the line's config; a model that cannot be loaded is one note, not one per map.

    Returns
    -------
    (paths written, notes on what could not be drawn)
    """
    from egg_interp.data.registry import load_dataset

    out = Path(out)
    records = []
    for path in results:
        for r in load_results(path):
            if r["kind"] == "map" and not r.get("error"):
                records.append((Path(path).parent, r))
    order: list[tuple[str, str, str]] = []
    for _, r in sorted(
        records, key=lambda t: (str(t[1].get("dataset")), t[1].get("index", math.inf))
    ):
        key = (str(r.get("dataset")), str(r.get("split")), r["sample_id"])
        if key not in order:
            order.append(key)
    order = order[:n]
    notes: list[str] = []
    adapter = None
    load_failed = False
    samples: dict[tuple[str, str], dict[str, Any]] = {}
    written: list[Path] = []
    for k, (dataset, split, sample_id) in enumerate(order):
        lines = [
            (base, r)
            for base, r in records
            if (str(r.get("dataset")), str(r.get("split")), r["sample_id"])
            == (dataset, split, sample_id)
        ]
        if (dataset, split) not in samples:
            root = data_root or (lines[0][1].get("run") or {}).get("data_root") or "."
            limit = (
                max(int(r.get("index", 0)) for _, r in records if str(r.get("dataset")) == dataset)
                + 1
            )
            try:
                loaded = load_dataset(dataset, root, None if split == "default" else split, limit)
            except Exception as exc:
                notes.append(f"{dataset}: cannot load the images ({type(exc).__name__}: {exc})")
                loaded = []
            samples[(dataset, split)] = {s.id: s for s in loaded}
        sample = samples[(dataset, split)].get(sample_id)
        if sample is None:
            notes.append(f"{sample_id}: not found in {dataset} (give --data-root)")
            continue
        image = sample.image
        maps, tops = {}, {}
        for base, r in lines:
            label = r["name"]
            amap = None
            if r.get("map_file") and (base / r["map_file"]).exists():
                amap = AttributionMap.load(base / r["map_file"])
            elif (model or r.get("model")) and not load_failed:
                if adapter is None:
                    from egg_interp.models import load_model

                    recorded = model or str(r.get("model"))
                    try:
                        adapter = load_model(
                            recorded, device=device, dtype=dtype, prompt_suffix=prompt_suffix
                        )
                    except InputError as exc:  # e.g. a hub id that is not on this machine
                        load_failed = True
                        notes.append(f"cannot load the model {recorded!r} (give --model): {exc}")
                if adapter is not None:
                    opts = (r.get("config") or {}).get("options") or {}
                    method = get_method(r["name"], **opts)
                    amap = method.attribute(adapter, [image], sample.question)
            if amap is None:
                if not load_failed:
                    notes.append(f"{sample_id}/{label}: no saved map and no model recorded")
                continue
            if label in maps:
                label = f"{label}@{r['config_hash'][:6]}"
            maps[label] = amap
            if r.get("regions"):
                tops[label] = tuple(r["regions"][0]["box"])
        if not maps:
            continue
        question = sample.question.splitlines()[0][:70]
        title = f"{sample_id}: {question}\nanswer: {', '.join(sample.answers[:2])}"
        fig = plot_comparison(image, maps, sample.boxes, tops, title=title)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sample_id)[:60]
        written.append(save_figure(fig, out / f"{k:03d}_{safe}.png"))
    return written, notes
