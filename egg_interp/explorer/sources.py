"""Where the explorer's images and maps come from: the dataset loader and the maps' sources.

Images: the dataset's own loader (:func:`egg_interp.data.registry.load_dataset`) with the data
root given or recorded in the lines, as ``report --grids`` finds them. Maps, in this order:
the line's ``map_file`` (``evaluate --save-maps``), else recomputed with the model (given, or
recorded in the line) and the method options recorded in the line's config, else none.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # build imports this module
    from egg_interp.explorer.build import ExplorerOptions

SampleKey = tuple[str, str, str]
"""``(dataset, split, sample_id)``."""


class MapSource:
    """Maps of one sample: from the saved file, else recomputed (model loaded once, lazily)."""

    def __init__(self, options: ExplorerOptions) -> None:
        self.options = options
        self.adapters: dict[tuple[str, str | None, str], Any] = {}
        self.notes: list[str] = []

    def get(self, entry: Mapping[str, Any], model: str, image: Any, question: str) -> tuple:
        from egg_interp.maps import AttributionMap

        path = entry.get("_file")
        if path is not None and Path(path).exists():
            return AttributionMap.load(path), "saved"
        if not self.options.recompute:
            return None, "none"
        adapter = self._adapter(self.options.model or model, entry)
        if adapter is None:
            return None, "none"
        from egg_interp.methods import get_method

        method = get_method(entry["_name"], **entry["_options"])
        return method.attribute(adapter, [image], question), "recomputed"

    def _adapter(self, model: str, entry: Mapping[str, Any]) -> Any:
        dtype = self.options.dtype or entry.get("_dtype")
        key = (model, dtype, entry.get("_suffix", ""))
        if key not in self.adapters:
            from egg_interp.models import load_model

            try:
                adapter = load_model(
                    model, device=self.options.device, dtype=dtype, prompt_suffix=key[2]
                )
            except Exception as exc:  # the page still shows everything but these maps
                self.notes.append(f"cannot load {model} to recompute maps: {exc}")
                adapter = None
            if adapter is not None and entry.get("_weights"):
                from egg_interp.results import weights_fingerprint

                if weights_fingerprint(adapter.model) != entry["_weights"]:
                    self.notes.append(
                        f"maps recomputed with {model} whose weights differ from those "
                        "recorded in the results"
                    )
            self.adapters[key] = adapter
        return self.adapters[key]


def load_images(
    wanted: list[dict[str, Any]], data_root: str | None, notes: list[str]
) -> dict[SampleKey, Any]:
    """Samples (with their lazy images) of every (dataset, split) in ``wanted``."""
    from egg_interp.data.registry import load_dataset

    found: dict[SampleKey, Any] = {}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in wanted:
        groups.setdefault((s["dataset"], s["split"]), []).append(s)
    for (dataset, split), group in groups.items():
        recorded = next(
            (
                e["_data_root"]
                for s in group
                for e in [*s["maps"].values(), *s["pipelines"].values()]
                if e.get("_data_root")
            ),
            None,
        )
        root = data_root or recorded or "."
        limit = max((s["index"] for s in group if isinstance(s["index"], int)), default=-1) + 1
        try:
            loaded = load_dataset(
                dataset, root, None if split in ("", "default") else split, limit or None
            )
        except Exception as exc:
            notes.append(f"{dataset}: cannot load the images ({type(exc).__name__}: {exc})")
            continue
        for sample in loaded:
            found[dataset, split, sample.id] = sample
    return found
