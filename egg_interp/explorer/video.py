"""The explorer's view of a video sample: every sampled frame with its map, over time.

:func:`video_view` gathers, for one video and its map, each sampled frame as a JPEG data URI
with its map overlay (:func:`egg_interp.explorer.media.overlay_uri`: grey level and alpha,
coloured by the page) and its time, the temporal slice that sees it and that slice's share of
the relevance. :func:`write_video_page` writes it as one self-contained HTML page (no server,
no network): a large frame with its overlay, a time slider (a temporal patch's frames show one
grid), an opacity slider, the strip of all frames and the relevance-over-time bars.
``egg-interp ground --video --out DIR`` writes ``DIR/video.html`` with it. Kept apart from the
results-file explorer (:mod:`egg_interp.explorer.page`), whose samples are still images; the
payload is JSON-able so that page can show video samples the same way.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from egg_interp.explorer.media import data_uri, thumbnail
from egg_interp.io import atomic_path
from egg_interp.maps import AttributionMap


def video_view(
    frames: Sequence[Image.Image], amap: AttributionMap, image_px: int = 320, video: int = 0
) -> dict[str, Any]:
    """The JSON-able view of one video sample (module docstring).

    Overlays share one scale: the maps of all frames are min-max normalised together (so
    frames compare; :func:`egg_interp.explorer.media.overlay_pixels` normalises one picture
    alone), then stored per frame as grey+alpha PNGs at the frame thumbnail's size.
    """
    entries = amap.frame_maps(video)
    if len(entries) != len(frames):
        raise ValueError(f"the map covers {len(entries)} frames, {len(frames)} were given")
    width, height = frames[0].size
    scale = min(1.0, image_px / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    heats = [im.heatmap(size) for _, _, im in entries]
    finite = np.concatenate([h[np.isfinite(h)] for h in heats])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    shares = {c.image_index: c.share for c in amap.relevance_over_time(video)}
    index = {id(im): i for i, im in enumerate(amap.images)}
    out = []
    for (f, t, im), heat in zip(entries, heats, strict=True):
        share = shares[index[id(im)]]
        out.append(
            {
                "frame": f,
                "time": t,
                "slice_frames": list(im.frames),
                "share": None if np.isnan(share) else share,
                "image": thumbnail(frames[f], image_px),
                "overlay": _overlay_uri(heat, lo, hi),
            }
        )
    return {"method": amap.method, "target": amap.target, "frames": out, "scale": [lo, hi]}


def _overlay_uri(heat: np.ndarray, lo: float, hi: float) -> str:
    """Grey (``heat`` from ``lo`` to ``hi`` -> 0..255) and alpha (0 where NaN) as a PNG URI."""
    finite = np.isfinite(heat)
    grey = np.clip((np.where(finite, heat, lo) - lo) / ((hi - lo) or 1.0), 0.0, 1.0)
    pixels = np.stack([np.round(grey * 255), np.where(finite, 255, 0)], -1).astype(np.uint8)
    return data_uri(Image.fromarray(pixels, "LA"), fmt="PNG")


def write_video_page(
    path: str | Path, frames: Sequence[Image.Image], amap: AttributionMap, title: str = ""
) -> Path:
    """One self-contained HTML page of a video sample (:func:`video_view`), written atomically."""
    view = video_view(frames, amap)
    page = _PAGE.replace("__TITLE__", html.escape(title or "video sample"))
    page = page.replace("__DATA__", json.dumps(view).replace("</", "<\\/"))
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(path)


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1em; color: #222; }
#stage { position: relative; display: inline-block; }
#stage img { display: block; width: 480px; image-rendering: auto; }
#stage canvas { position: absolute; left: 0; top: 0; width: 480px; }
#strip img { width: 88px; margin: 2px; border: 2px solid transparent; cursor: pointer; }
#strip img.on { border-color: #e07000; }
#bars { display: flex; align-items: flex-end; height: 80px; gap: 2px; margin-top: 0.6em; }
#bars div { background: #4477aa; flex: 1; }
#bars div.on { background: #e07000; }
</style></head><body>
<h1>__TITLE__</h1>
<p id="facts"></p>
<div id="stage"><img id="frame" alt="frame"><canvas id="map"></canvas></div>
<p>time <input id="time" type="range" min="0" value="0"> <span id="when"></span>
&nbsp; map opacity <input id="alpha" type="range" min="0" max="100" value="55"></p>
<div id="strip"></div>
<div id="bars" title="share of the relevance per frame (frames of one temporal patch share it)"></div>
<script>
const data = __DATA__;
const n = data.frames.length, time = document.getElementById("time");
time.max = n - 1;
document.getElementById("facts").textContent = `${data.method} (${data.target}), ${n} frames;`
  + " a temporal patch's frames share one grid: its tokens see all of them; one colour scale.";
function colour(g) {  // a short inferno-like ramp
  const stops = [[0,0,4],[87,16,110],[188,55,84],[249,142,9],[252,255,164]];
  const x = g / 255 * (stops.length - 1), i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
  return stops[i].map((v, k) => v + f * (stops[i + 1][k] - v));
}
function show(k) {
  const fr = data.frames[k], img = document.getElementById("frame");
  img.src = fr.image;
  const over = new Image();
  over.onload = () => {
    const c = document.getElementById("map"), ctx = c.getContext("2d");
    c.width = over.width; c.height = over.height; ctx.drawImage(over, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height);
    for (let i = 0; i < px.data.length; i += 4) {
      const [r, g, b] = colour(px.data[i]);
      px.data[i] = r; px.data[i + 1] = g; px.data[i + 2] = b;
    }
    ctx.putImageData(px, 0, 0);
    c.style.opacity = document.getElementById("alpha").value / 100;
  };
  over.src = fr.overlay;
  const share = fr.share === null ? "" : `, share ${(100 * fr.share).toFixed(1)} %`;
  document.getElementById("when").textContent =
    `${fr.time.toFixed(2)} s, frame ${fr.frame} (grid of frames ${fr.slice_frames.join("-")}${share})`;
  document.querySelectorAll("#strip img").forEach((e, j) => e.classList.toggle("on", j === k));
  document.querySelectorAll("#bars div").forEach((e, j) => e.classList.toggle("on", j === k));
  time.value = k;
}
const strip = document.getElementById("strip"), bars = document.getElementById("bars");
const top = Math.max(...data.frames.map(f => f.share || 0), 1e-9);
data.frames.forEach((fr, k) => {
  const im = document.createElement("img"); im.src = fr.image; im.onclick = () => show(k);
  strip.appendChild(im);
  const bar = document.createElement("div");
  bar.style.height = `${100 * (fr.share || 0) / top}%`; bar.onclick = () => show(k);
  bars.appendChild(bar);
});
time.oninput = () => show(+time.value);
document.getElementById("alpha").oninput = () => show(+time.value);
show(0);
</script></body></html>
"""


__all__ = ["video_view", "write_video_page"]
