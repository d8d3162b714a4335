"""The explorer page: one self-contained HTML file (inline CSS, JS, data and pictures).

Layout (see ``assets/explorer.html``): at the top the report's tables (the same tables as
``egg-interp report``: :func:`egg_interp.report.build_tables`, with each score's direction
arrow in its header) and bar plots
(:func:`egg_interp.figures.bars.bar_plots`), embedded as PNG data URIs; below, the table of
samples and the sample view, driven by ``assets/explorer.js`` from one JSON block
(:func:`egg_interp.explorer.build.collect`). Nothing is fetched when the page opens: it works
from disk, offline.
"""

from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from egg_interp.explorer.build import ExplorerOptions, collect
from egg_interp.io import atomic_path, to_json
from egg_interp.report import Table


@dataclass
class ExplorerPage:
    """What :func:`write_explorer` wrote."""

    path: Path
    bytes: int
    n_samples: int
    n_media: int
    map_sources: dict[str, dict[str, int]]


def _asset(name: str) -> str:
    return resources.files("egg_interp.explorer").joinpath("assets", name).read_text("utf-8")


def _cell(col: str, value: Any, percent: Any, digits: int) -> str:
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "-"
        if col in percent:
            return f"{100 * value:.{digits}f}"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return html.escape(str(value))


_BETTER = {"\u2191": "higher is better", "\u2193": "lower is better"}


def _header(col: str, table: Table) -> str:
    """A column's header cell: its header (a score's label and arrow) or its name, with the
    score's direction arrow (:mod:`egg_interp.metrics.registry`) and a tooltip saying it."""
    text = table.headers.get(col, col)
    arrow = table.arrows.get(col, "")
    shown = f"{text} {arrow}" if arrow else text
    tip = next((why for sign, why in _BETTER.items() if sign in shown), "")
    title = f' title="{tip}"' if tip else ""
    return f"<th{title}>{html.escape(str(shown))}</th>"


def table_html(table: Table) -> str:
    """An HTML table of what ``table`` shows: percent columns times 100, NaN as ``-`` (as in
    the report), headers with the scores' direction arrows."""
    df = table.shown
    if df.empty:
        return "<p><i>(no rows)</i></p>"
    head = "".join(_header(c, table) for c in df.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{_cell(c, v, table.percent, table.digits)}</td>" for c, v in zip(df.columns, row)
        )
        + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f'<table class="report-table"><tr>{head}</tr>{body}</table>'


def report_html(results: list[Path], plots: bool = True) -> str:
    """The report's tables (:func:`egg_interp.report.build_tables`) and (optionally) bar
    plots as one HTML fragment."""
    from egg_interp.report import TITLES, build_tables, load_frames

    maps, answers = load_frames(results)
    parts = []
    for name, table in build_tables(maps, answers).items():
        parts.append(f"<h3>{html.escape(TITLES.get(name, name))}</h3>")
        parts.append(table_html(table))
    if plots:
        parts.append(_plots_html(maps, answers))
    return "\n".join(parts)


def _plots_html(maps: pd.DataFrame, answers: pd.DataFrame) -> str:
    from egg_interp.figures.bars import bar_plots

    with tempfile.TemporaryDirectory() as tmp:
        images = []
        for png in bar_plots(maps, answers, tmp):
            uri = base64.b64encode(Path(png).read_bytes()).decode("ascii")
            images.append(f'<img src="data:image/png;base64,{uri}" alt="{png.stem}">')
    if not images:
        return ""
    return (
        "<h3>Figures (bars: mean; error bars: 95 % bootstrap CI)</h3>\n"
        + '<div class="plots">'
        + "".join(images)
        + "</div>"
    )


def _json_for_script(data: Any) -> str:
    """JSON safe inside ``<script>``: no ``</`` or ``<!--`` can end or confuse the block.
    Numbers are encoded as everywhere (:func:`egg_interp.io.to_json`: NaN as ``null``, +-inf
    as ``"inf"``/``"-inf"``, which the page's ``num()`` reads back)."""
    text = json.dumps(to_json(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(data: dict[str, Any], report: str, title: str) -> str:
    """The page's HTML from the collected data and the report fragment."""
    page = _asset("explorer.html")
    for marker, value in (
        ("__CSS__", _asset("explorer.css")),
        ("__JS__", _asset("explorer.js")),
        ("__REPORT__", report),
        ("__TITLE__", html.escape(title)),
        ("__DATA__", _json_for_script(data)),
    ):
        page = page.replace(marker, value)
    return page


def write_explorer(
    results: str | Path | list[str | Path],
    out: str | Path = "report.html",
    options: ExplorerOptions | None = None,
    title: str | None = None,
) -> ExplorerPage:
    """Write the explorer page of one or more results files.

    Parameters
    ----------
    results : path or list of paths
        Results JSONL file(s) written by ``egg-interp evaluate``.
    out : str or Path, default "report.html"
        The HTML file (written atomically; parent folders created).
    options : ExplorerOptions, optional
        Model for recomputed maps, image root, sample limit and picture sizes.
    title : str, optional
        Page title (default: "Results explorer: <file names>").

    Returns
    -------
    ExplorerPage
    """
    options = options or ExplorerOptions()
    paths = [Path(results)] if isinstance(results, (str, Path)) else [Path(p) for p in results]
    data = collect(paths, options)
    title = title or "Results explorer: " + ", ".join(p.name for p in paths)
    text = render(data, report_html(paths, options.plots), title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    meta = data["meta"]
    return ExplorerPage(
        path=out,
        bytes=out.stat().st_size,
        n_samples=meta["n_samples"],
        n_media=meta["with_media"],
        map_sources=meta["map_sources"],
    )
