"""Figures: every function here only draws what it is given; none loads data or a model.

One file per kind of figure (import from the file; this package re-exports nothing, so that
:mod:`egg_interp.maps` can use the drawing helpers without importing the loop):

* :mod:`~egg_interp.figures.drawing` -- shared helpers: ``new_axes``, ``draw_boxes``;
* :mod:`~egg_interp.figures.grounding` -- ``plot_grounding``: one grounding result (map,
  ranked regions, crops per step);
* :mod:`~egg_interp.figures.comparison` -- ``plot_comparison``: several maps of one image;
* :mod:`~egg_interp.figures.bars` -- ``bar_plots``: bar plots with bootstrap CIs of a results
  file's tables (:func:`egg_interp.report.load_frames`).

Gathering what to draw lives with its caller: :mod:`egg_interp.compare` runs methods or reads
saved maps for comparison grids; :mod:`egg_interp.report` builds the tables. No
``matplotlib.use()`` in library code: the CLI picks Agg, a notebook keeps its backend.
"""
