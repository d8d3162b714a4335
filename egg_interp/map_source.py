"""The images and maps of a results file's samples: one source for the report and the explorer.

Result lines (:mod:`egg_interp.runner`) hold each map's scores and ranked regions, but
neither the image nor the map. :class:`MapSource` finds them, for
:func:`egg_interp.compare.comparison_grids` (``report --grids``) and the explorer alike:

* **Images**: the dataset's own loader (:func:`egg_interp.data.registry.load_dataset`),
  once per (dataset, split), up to the largest index asked for, from the data root given,
  else the one recorded in the lines (``run.data_root``), else ``"."``.
* **Maps**, in this order: the line's ``map_file`` (saved by ``evaluate --save-maps``,
  relative to the results file): ``"saved"``; else recomputed with the model given, else
  the one recorded in the line, in the dtype and with the prompt suffix given, else
  recorded, and the method options recorded in the line's config: ``"recomputed"``; else
  ``"none"``. Each model is loaded once (adapters are cached by model, dtype and prompt
  suffix) and its weights are fingerprinted (:func:`egg_interp.results.weights_fingerprint`)
  against those recorded in the lines: maps recomputed with other weights are noted.

* **Faithfulness curves** (:meth:`MapSource.curves`) of a run with ``--faithfulness``: those
  the saved map holds, else measured again on the map with the settings of the line's
  config: ``"saved"``, ``"recomputed"`` or ``"none"``.

Error policy, the same for every caller: nothing here ends a report or a page. A dataset,
an image, a model or a map that cannot be loaded or computed is left out, and the reason
(the exception's type and message) goes once into :attr:`MapSource.notes`, which the
caller shows. ``KeyboardInterrupt`` is not caught.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egg_interp.results import load_results

SampleKey = tuple[str, str, str]
"""``(dataset, split, sample_id)`` of a line."""


def sample_key(record: Mapping[str, Any]) -> SampleKey:
    """The ``(dataset, split, sample_id)`` of a results line, as strings."""
    return (str(record.get("dataset", "")), str(record.get("split", "")), str(record["sample_id"]))


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class MapLine:
    """A map line and the folder of its results file (saved maps are relative to it)."""

    record: Mapping[str, Any]
    folder: Path

    @property
    def key(self) -> SampleKey:
        return sample_key(self.record)

    @property
    def saved(self) -> Path | None:
        """The saved map's path (``map_file`` under :attr:`folder`), or None."""
        name = self.record.get("map_file")
        return self.folder / name if name else None


def read_map_lines(paths: Iterable[str | Path]) -> list[MapLine]:
    """The map lines without error of each results file (de-duplicated per file), in order."""
    return [
        MapLine(r, Path(path).parent)
        for path in paths
        for r in load_results(path)
        if r["kind"] == "map" and not r.get("error")
    ]


class MapSource:
    """Images and maps of the samples of results files: saved, recomputed or none.

    Parameters
    ----------
    model : str, optional
        Model that recomputes maps the results do not hold (``"organism"``, a Hugging Face
        id or a path); default the model recorded in each line.
    device : str, optional
        Where to recompute (default: the loader's choice).
    dtype : str, optional
        Precision of the recomputing model (default: as recorded in the line's config).
    prompt_suffix : str, optional
        Text appended to every question (default: as recorded in the line's config).
    data_root : str or Path, optional
        The benchmark's files (default: as recorded in the lines, else ``"."``).
    recompute : bool, default True
        False: maps only from saved files.
    """

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        prompt_suffix: str | None = None,
        data_root: str | Path | None = None,
        recompute: bool = True,
    ) -> None:
        self.model, self.device, self.dtype = model, device, dtype
        self.prompt_suffix, self.data_root, self.recompute = prompt_suffix, data_root, recompute
        self.notes: list[str] = []
        self._adapters: dict[tuple[str, str | None, str], Any] = {}
        self._fingerprints: dict[int, str] = {}

    def note(self, text: str) -> None:
        """Add ``text`` to :attr:`notes` unless it is there already."""
        if text not in self.notes:
            self.notes.append(text)

    # ------------------------------------------------------------ images

    def samples(self, records: Iterable[Mapping[str, Any]]) -> dict[SampleKey, Any]:
        """The :class:`~egg_interp.data.sample.Sample` of every line's sample that its
        dataset's loader finds (images load lazily), by :func:`sample_key`."""
        groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for r in records:
            groups.setdefault(sample_key(r)[:2], []).append(r)
        found: dict[SampleKey, Any] = {}
        for (dataset, split), lines in groups.items():
            for sample in self._load_dataset(dataset, split, lines):
                found[dataset, split, sample.id] = sample
        return found

    def _load_dataset(self, dataset: str, split: str, lines: list[Mapping[str, Any]]) -> list:
        from egg_interp.data.registry import load_dataset

        roots = ((r.get("run") or {}).get("data_root") for r in lines)
        recorded = next((root for root in roots if root), None)
        root = self.data_root or recorded or "."
        indices = [r["index"] for r in lines if isinstance(r.get("index"), int)]
        limit = max(indices) + 1 if indices else None
        try:
            return load_dataset(dataset, root, None if split in ("", "default") else split, limit)
        except Exception as exc:
            self.note(f"{dataset}: cannot load the images ({_why(exc)})")
            return []

    def image(self, sample: Any) -> Any:
        """The sample's image (PIL), or None (noted) when it cannot be read."""
        try:
            return sample.image
        except Exception as exc:
            self.note(f"{sample.id}: cannot read the image ({_why(exc)})")
            return None

    # ------------------------------------------------------------ maps

    def map(self, line: MapLine, image: Any, question: str) -> tuple[Any, str]:
        """The line's map and where it came from: ``(AttributionMap, "saved" | "recomputed")``,
        or ``(None, "none")``."""
        from egg_interp.maps import AttributionMap

        record, saved = line.record, line.saved
        if saved is not None and saved.exists():
            try:
                return AttributionMap.load(saved), "saved"
            except Exception as exc:
                self.note(
                    f"{record['sample_id']}/{record['name']}: cannot read {saved} ({_why(exc)})"
                )
        if not self.recompute:
            return None, "none"
        model = self.model or str(record.get("model") or "")
        if not model:
            self.note(f"{record['name']}: no saved map and no model recorded (give --model)")
            return None, "none"
        adapter = self._adapter(model, record.get("config") or {})
        if adapter is None:
            return None, "none"
        return self._recompute(adapter, record, image, question)

    def _recompute(
        self, adapter: Any, record: Mapping[str, Any], image: Any, question: str
    ) -> tuple[Any, str]:
        from egg_interp.methods import get_method

        options = (record.get("config") or {}).get("options") or {}
        try:
            method = get_method(record["name"], **options)
            return method.attribute(adapter, [image], question), "recomputed"
        except Exception as exc:
            self.note(f"{record['sample_id']}/{record['name']}: map not recomputed ({_why(exc)})")
            return None, "none"

    def curves(self, line: MapLine, amap: Any, image: Any, question: str) -> tuple[Any, str]:
        """The deletion/insertion curves of the line's map and where they came from:
        ``(curves, "saved" | "recomputed")``, or ``(None, "none")``.

        ``curves`` is the record of :func:`egg_interp.faithfulness.faithfulness_scores`
        (``fractions``, ``curves[curve][order]["prob" | "logprob"]``, ``answer``, ...):
        read from the saved map (``meta["faithfulness"]``), else measured again on ``amap``
        (the line's map, from :meth:`map`) with the settings the line's config records and
        the model :meth:`map` recomputes with; none when the run did not measure them.
        """
        saved = (amap.meta or {}).get("faithfulness") if amap is not None else None
        if saved:
            return saved, "saved"
        config = line.record.get("config") or {}
        settings = config.get("faithfulness")
        model = self.model or str(line.record.get("model") or "")
        if amap is None or not settings or not self.recompute or not model:
            return None, "none"
        adapter = self._adapter(model, config)
        if adapter is None:
            return None, "none"
        from egg_interp.faithfulness import faithfulness_scores
        from egg_interp.metrics.deletion import FaithfulnessSettings

        try:
            _, record = faithfulness_scores(
                adapter, ([image], question), amap, FaithfulnessSettings.from_dict(settings)
            )
        except Exception as exc:
            where = f"{line.record['sample_id']}/{line.record['name']}"
            self.note(f"{where}: faithfulness curves not recomputed ({_why(exc)})")
            return None, "none"
        return record, "recomputed"

    def _adapter(self, model: str, config: Mapping[str, Any]) -> Any:
        """The cached adapter of ``model`` in the line's dtype and prompt suffix (None when it
        cannot be loaded), its weights checked against the line's."""
        dtype = self.dtype or config.get("dtype")
        suffix = self.prompt_suffix
        if suffix is None:
            suffix = str(config.get("prompt_suffix") or "")
        key = (model, dtype, suffix)
        if key not in self._adapters:
            self._adapters[key] = self._load(model, dtype, suffix)
        adapter = self._adapters[key]
        if adapter is not None and config.get("weights"):
            self._check_weights(adapter, model, str(config["weights"]))
        return adapter

    def _load(self, model: str, dtype: str | None, suffix: str) -> Any:
        from egg_interp.models import load_model

        try:
            return load_model(model, device=self.device, dtype=dtype, prompt_suffix=suffix)
        except Exception as exc:
            self.note(f"cannot load the model {model!r} to recompute maps (give --model): {exc}")
            return None

    def _check_weights(self, adapter: Any, model: str, recorded: str) -> None:
        from egg_interp.results import weights_fingerprint

        if id(adapter) not in self._fingerprints:
            self._fingerprints[id(adapter)] = weights_fingerprint(adapter.model)
        if self._fingerprints[id(adapter)] != recorded:
            self.note(
                f"maps recomputed with {model} whose weights differ from those recorded in the "
                "results"
            )


__all__ = ["MapLine", "MapSource", "SampleKey", "read_map_lines", "sample_key"]
