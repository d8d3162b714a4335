"""An interactive results explorer: one self-contained HTML page per results file.

``egg-interp explore results.jsonl --out report.html`` (or :func:`write_explorer`) writes a
page that opens from disk with no server and no network: the report's tables and plots, a
table of samples that sorts and filters, and a view of one sample (image and evidence, each
method's map as an overlay, ranked regions, the loop's steps with their crops, every
pipeline's answer). Data gathering is in :mod:`egg_interp.explorer.build`, pictures in
:mod:`egg_interp.explorer.media`, the HTML in :mod:`egg_interp.explorer.page` and its
``assets/``; images and maps come from :mod:`egg_interp.map_source`, the command from
:mod:`egg_interp.cli.explore`. This package imports nothing heavy until used.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "ExplorerOptions": "egg_interp.explorer.build",
    "collect": "egg_interp.explorer.build",
    "ExplorerPage": "egg_interp.explorer.page",
    "write_explorer": "egg_interp.explorer.page",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'egg_interp.explorer' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
