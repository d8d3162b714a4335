"""Several attribution methods on one sample, side by side (``egg-interp compare``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from egg_interp.errors import DegenerateMapError, EggError, InputError
from egg_interp.geometry import Box
from egg_interp.maps import AttributionMap
from egg_interp.methods import get_method
from egg_interp.methods.base import AttributionMethod
from egg_interp.methods.targets import Target
from egg_interp.models.base import VLMAdapter
from egg_interp.regions import find_regions


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
        For :func:`egg_interp.regions.find_regions` (``sigma``, ``threshold``, ...).

    Returns
    -------
    maps : dict of str to AttributionMap
        In the order given. A map that cannot give a region (all zeros, NaN, negative values)
        keeps its values and records why in ``meta["problem"]``; its panel says so.
    figure : matplotlib Figure
        :func:`egg_interp.figures.plot_comparison`: the image with ``boxes``, then one overlay
        per method with its top region (dashed cyan).
    """
    from egg_interp.figures import plot_comparison

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
            tops[label] = top_region_box(amap, **(region_kwargs or {}))
        except EggError as exc:
            amap.meta["problem"] = str(exc)
            label = f"{m.name} (no region)"
        panels[label] = amap
    figure = plot_comparison(image, panels, boxes, tops, title=question)
    return maps, figure
