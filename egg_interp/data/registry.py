"""Names of the benchmark loaders, their answer metric, and :func:`load_dataset`.

Each entry names the loader's module (imported on first use, so listing the datasets stays
cheap) and the answer metric its answers are scored with. Adding a dataset is one line::

    "scenes": DatasetEntry("egg_interp.data.scenes", "exact"),

The module must define ``load(data_root, split=..., limit=None) -> list[Sample]``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from egg_interp.data.sample import Sample
from egg_interp.errors import InputError

METRICS = ("vqa", "anls", "exact", "multiple_choice", "pope")
"""Answer metric names an entry may use."""


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset.

    Attributes
    ----------
    module : str
        Dotted name of the module whose ``load`` function reads the dataset.
    metric : str
        Answer metric, one of :data:`METRICS`.
    """

    module: str
    metric: str

    @property
    def loader(self) -> Callable[..., list[Sample]]:
        """The module's ``load`` function (imports the module)."""
        return importlib.import_module(self.module).load


DATASETS: dict[str, DatasetEntry] = {
    "vstar": DatasetEntry("egg_interp.data.vstar", "multiple_choice"),
    "textvqa": DatasetEntry("egg_interp.data.textvqa", "vqa"),
    "docvqa": DatasetEntry("egg_interp.data.docvqa", "anls"),
    "infovqa": DatasetEntry("egg_interp.data.infovqa", "anls"),
    "pope": DatasetEntry("egg_interp.data.pope", "pope"),
    "gqa": DatasetEntry("egg_interp.data.gqa", "exact"),
    "realworldqa": DatasetEntry("egg_interp.data.realworldqa", "exact"),
    "scenes": DatasetEntry("egg_interp.data.scenes", "exact"),
}
"""Dataset name -> :class:`DatasetEntry`."""


def get_entry(name: str) -> DatasetEntry:
    """The registry entry for ``name``.

    Raises
    ------
    InputError
        For an unknown name; the message lists the valid ones.
    """
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def answer_metric(name: str) -> str:
    """Name of the answer metric for dataset ``name`` (see :data:`METRICS`)."""
    return get_entry(name).metric


def load_dataset(
    name: str, data_root: str | Path, split: str | None = None, limit: int | None = None
) -> list[Sample]:
    """Load a registered dataset.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    data_root : str or Path
        Local folder with the benchmark's official files (nothing is downloaded).
    split : str, optional
        The loader's split; ``None`` uses the loader's default.
    limit : int, optional
        Keep at most this many samples.

    Returns
    -------
    list of Sample

    Raises
    ------
    InputError
        Unknown dataset name (the message lists the valid ones) or split.
    DatasetFormatError
        Missing or malformed benchmark files.
    """
    loader = get_entry(name).loader
    if split is None:
        return loader(data_root, limit=limit)
    return loader(data_root, split=split, limit=limit)
