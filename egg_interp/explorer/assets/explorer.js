// The explorer page: a table of samples that sorts and filters, and one sample's view
// (image, evidence, map overlays, regions, loop steps, answers). Plain JS, no library;
// all data comes from the JSON block of the page.
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("data").textContent);
  const S = D.samples, M = D.methods, P = D.pipelines, SC = D.scores || [];
  const $ = (id) => document.getElementById(id);
  // a label is name[target]@hash [model]: the name alone
  const base = (label) => label.split(" ")[0].split("@")[0].split("[")[0];
  const EGG_M = M.find((m) => base(m) === "egg");
  const BASE_P = P.find((p) => base(p) === "base");
  const EGG_P = P.find((p) => base(p) === "egg");
  const RIGHT = 0.5; // an answer is "right" when its score is at least this
  const state = {
    rows: [], order: [], pos: -1, method: EGG_M || M[0] || "", step: 0,
    loop: EGG_P || P.find((p) => S.some((s) => steps(s, p).length)) || "",
    sortKey: "index", sortDir: 1,
    score: (SC.find((c) => c.name === "pointing_game") || SC[0] || { name: "pointing_game" }).name,
  };

  // ------------------------------------------------------------ helpers
  function esc(t) {
    return String(t ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function num(v) {
    if (v === "inf") return Infinity;
    if (v === "-inf") return -Infinity;
    return typeof v === "number" ? v : NaN;
  }
  function fmt(v, d = 3) {
    const x = num(v);
    if (Number.isNaN(x)) return "-";
    if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
    return Number(x.toPrecision(d)).toString();
  }
  function pg(s, m) { return mapScore(s, m, "pointing_game"); }
  function mapScore(s, m, name) { const e = s.maps[m]; return e && !e.error ? num((e.scores || {})[name]) : NaN; }
  const scoreDecl = (name) => SC.find((c) => c.name === name) || { name, label: name, header: name, arrow: "", percent: false };
  // a score whose values are all 0 or 1 reads as hit / miss
  const BINARY = Object.fromEntries(SC.map((c) => [c.name, S.every((s) => M.every((m) => { const v = mapScore(s, m, c.name); return Number.isNaN(v) || v === 0 || v === 1; }))]));
  function scoreText(c, v) {
    if (Number.isNaN(v)) return "-";
    return c.percent && Number.isFinite(v) ? (100 * v).toFixed(1) : fmt(v);
  }
  function score(s, p) { const e = s.pipelines[p]; return e && !e.error ? num(e.score) : NaN; }
  function steps(s, p) { const e = s.pipelines[p]; return (e && e.steps) || []; }
  const hits = (s, m) => pg(s, m) === 1, misses = (s, m) => pg(s, m) === 0;
  const right = (s, p) => score(s, p) >= RIGHT, wrong = (s, p) => score(s, p) < RIGHT;
  function boxText(b) { return "(" + b.map((v) => Math.round(v)).join(", ") + ")"; }

  // ------------------------------------------------------------ header facts
  function facts() {
    const m = D.meta, out = [];
    out.push(`<b>Model:</b> ${esc(m.models.join(", ") || "-")} &middot; <b>results:</b> ${esc(m.results.join(", "))} &middot; <b>page made:</b> ${esc(m.generated)}` +
      (m.run_times.length ? ` &middot; <b>run:</b> ${esc(m.run_times[0].slice(0, 16))} to ${esc(m.run_times[1].slice(0, 16))} UTC` : ""));
    out.push(`<b>Samples:</b> ${m.n_samples}; images, maps and crops embedded for ${m.with_media}` +
      (m.n_samples > m.max_media ? ` (the first ${m.max_media}; the others show their scores and answers only)` : ""));
    const cfg = Object.entries(m.configs).map(([key, c]) => {
      const label = key.slice(c.kind.length + 1), src = c.kind === "map" && m.map_sources[label];
      return `<li>${esc(c.kind === "map" ? "map method" : "answer pipeline")} <b>${esc(label)}</b>: config hash <code>${esc(c.config_hash)}</code>` +
      (src ? ` &middot; maps: ${Object.entries(src).map(([k, n]) => `${n} ${k === "none" ? "not available" : k === "saved" ? "read from saved files" : "recomputed" + (m.recompute_model ? " with " + esc(m.recompute_model) : " with the recorded model")}`).join(", ")}` : "") +
      "</li>";
    });
    out.push(`<details><summary>Configs and where the maps come from</summary><ul>${cfg.join("")}</ul></details>`);
    for (const n of m.notes) out.push(`<div class="note">note: ${esc(n)}</div>`);
    $("facts").innerHTML = out.map((x) => `<div>${x}</div>`).join("");
  }

  // ------------------------------------------------------------ filters
  function presets() {
    const list = [["all", "all samples", () => true]];
    const baselines = M.filter((m) => m !== EGG_M);
    if (EGG_M) {
      for (const b of baselines) list.push([`egg-miss:${b}`, `EGG map misses, ${b} hits`, (s) => misses(s, EGG_M) && hits(s, b)]);
      for (const b of baselines) list.push([`egg-hit:${b}`, `EGG map hits, ${b} misses`, (s) => hits(s, EGG_M) && misses(s, b)]);
    }
    if (BASE_P) {
      for (const p of P.filter((x) => x !== BASE_P)) {
        list.push([`right:${p}`, `${p} answer right, base wrong`, (s) => right(s, p) && wrong(s, BASE_P)]);
        list.push([`wrong:${p}`, `${p} answer wrong, base right`, (s) => wrong(s, p) && right(s, BASE_P)]);
      }
    }
    list.push(["errors", "lines with errors", (s) => [...Object.values(s.maps), ...Object.values(s.pipelines)].some((e) => e.error)]);
    return list;
  }
  const PRESETS = presets();
  function fillSelect(el, options) {
    el.innerHTML = options.map(([v, t]) => `<option value="${esc(v)}">${esc(t)}</option>`).join("");
  }
  function setupFilters() {
    fillSelect($("preset"), PRESETS);
    const fams = [...new Set(S.map((s) => s.family))].sort();
    fillSelect($("family"), [["", "all"], ...fams.map((f) => [f, f || "(none)"])]);
    const buckets = ["small", "medium", "large", "none"].filter((b) => S.some((s) => s.size_bucket === b));
    fillSelect($("bucket"), [["", "all"], ...buckets.map((b) => [b, b])]);
    fillSelect($("score"), SC.map((c) => [c.name, c.header]));
    $("score").value = state.score;
    $("score").addEventListener("change", () => { state.score = $("score").value; buildTable(); applyFilters(); });
    for (const id of ["preset", "family", "bucket"]) $(id).addEventListener("change", applyFilters);
    $("search").addEventListener("input", applyFilters);
  }
  function applyFilters() {
    const pre = PRESETS.find((p) => p[0] === $("preset").value)[2];
    const fam = $("family").value, bucket = $("bucket").value;
    const q = $("search").value.trim().toLowerCase();
    const current = state.order[state.pos];
    state.order = sorted(S.map((_, i) => i).filter((i) => {
      const s = S[i];
      if (!pre(s)) return false;
      if ($("family").selectedIndex > 0 && s.family !== fam) return false;
      if (bucket && s.size_bucket !== bucket) return false;
      if (q) {
        const text = [s.id, s.question, ...s.answers, ...Object.values(s.pipelines).map((e) => e.answer)].join(" ").toLowerCase();
        if (!text.includes(q)) return false;
      }
      return true;
    }));
    renderRows();
    const keep = state.order.indexOf(current);
    select(keep >= 0 ? keep : 0);
  }

  // ------------------------------------------------------------ table
  const COLS = [
    { key: "index", title: "#", value: (s) => s.index ?? -1, cell: (s) => esc(s.index ?? "") },
    { key: "id", title: "sample", value: (s) => s.id, cell: (s) => esc(s.id) },
    { key: "family", title: "family", value: (s) => s.family, cell: (s) => esc(s.family) },
    { key: "dataset", title: "dataset", value: (s) => s.dataset, cell: (s) => esc(s.dataset) },
    { key: "size", title: "size", value: (s) => s.size_bucket, cell: (s) => esc(s.size_bucket) },
    ...M.map((m) => ({
      key: "map:" + m, title: () => `${m} ${scoreDecl(state.score).arrow}`.trim(),
      tip: () => `${scoreDecl(state.score).header} of the ${m} map (- no evidence or no map); choose the score above`,
      value: (s) => mapScore(s, m, state.score),
      cell: (s) => {
        const c = scoreDecl(state.score), v = mapScore(s, m, c.name);
        if (Number.isNaN(v)) return '<span class="na">-</span>';
        if (BINARY[c.name]) return v === 1 ? '<span class="hit">hit</span>' : '<span class="miss">miss</span>';
        return esc(scoreText(c, v));
      },
    })),
    ...P.map((p) => ({
      key: "ans:" + p, title: p, tip: `answer of the ${p} pipeline (green: score >= ${RIGHT}); sorts by score`,
      value: (s) => score(s, p),
      cell: (s) => {
        const e = s.pipelines[p];
        if (!e) return '<span class="na">-</span>';
        if (e.error) return '<span class="miss">error</span>';
        const v = num(e.score), cls = Number.isNaN(v) ? "na" : v >= RIGHT ? "hit" : "miss";
        return `<span class="ans ${cls}" title="score ${fmt(v)}">${esc(e.answer || "(empty)")}</span>`;
      },
    })),
  ];
  function sorted(indices) {
    const col = COLS.find((c) => c.key === state.sortKey) || COLS[0];
    const dir = state.sortDir;
    return indices.slice().sort((a, b) => {
      const va = col.value(S[a]), vb = col.value(S[b]);
      const na = typeof va === "number" && Number.isNaN(va), nb = typeof vb === "number" && Number.isNaN(vb);
      if (na || nb) return na && nb ? a - b : na ? 1 : -1; // missing values last
      if (va < vb) return -dir;
      if (va > vb) return dir;
      return a - b;
    });
  }
  const text = (x) => (typeof x === "function" ? x() : x);
  function buildTable() {
    $("samples").tHead.innerHTML = "<tr>" + COLS.map((c) => `<th data-key="${esc(c.key)}" title="${esc(text(c.tip) || "sort by " + text(c.title))}" class="${c.key === state.sortKey ? (state.sortDir > 0 ? "sorted-asc" : "sorted-desc") : ""}">${esc(text(c.title))}</th>`).join("") + "</tr>";
    state.rows = S.map((s, i) => {
      const tr = document.createElement("tr");
      tr.dataset.i = i;
      tr.dataset.id = s.id;
      tr.innerHTML = COLS.map((c) => `<td>${c.cell(s)}</td>`).join("");
      return tr;
    });
  }
  function setupTable() {
    buildTable();
    $("samples").tHead.addEventListener("click", (ev) => {
      const th = ev.target.closest("th");
      if (!th) return;
      state.sortDir = state.sortKey === th.dataset.key ? -state.sortDir : 1;
      state.sortKey = th.dataset.key;
      for (const h of $("samples").tHead.rows[0].cells) h.className = h === th ? (state.sortDir > 0 ? "sorted-asc" : "sorted-desc") : "";
      applyFilters();
    });
    $("samples").tBodies[0].addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr");
      if (tr) select(state.order.indexOf(Number(tr.dataset.i)));
    });
  }
  function renderRows() {
    const body = $("samples").tBodies[0];
    body.replaceChildren(...state.order.map((i) => state.rows[i]));
    $("count").textContent = `${state.order.length} of ${S.length} samples`;
  }

  // ------------------------------------------------------------ sample view
  function select(pos) {
    if (!state.order.length) { state.pos = -1; showEmpty(); return; }
    state.pos = Math.max(0, Math.min(pos, state.order.length - 1));
    for (const tr of $("samples").tBodies[0].querySelectorAll("tr.current")) tr.classList.remove("current");
    const tr = state.rows[state.order[state.pos]];
    tr.classList.add("current");
    tr.scrollIntoView({ block: "nearest" });
    state.step = 0;
    show();
  }
  function current() { return state.pos >= 0 ? S[state.order[state.pos]] : null; }
  function showEmpty() {
    $("view-title").textContent = "no sample matches the filters";
    for (const id of ["question", "map-info", "curves", "regions", "step-info", "step-crops", "answers"]) $(id).innerHTML = "";
  }
  function show() {
    const s = current();
    if (!s) return showEmpty();
    $("view-title").textContent = `${state.pos + 1} / ${state.order.length}: ${s.id} (${s.family || "-"}, ${s.dataset}, evidence ${s.size_bucket})`;
    $("question").innerHTML = `<b>Q:</b> ${esc(s.question)} <b>truth:</b> ${esc(s.answers.slice(0, 5).join(" | "))}`;
    const [w, h] = s.image_size || [1, 1];
    const k = 360 / Math.max(w, h);
    $("stage").style.width = Math.round(w * k) + "px";
    $("stage").style.height = Math.round(h * k) + "px";
    $("image").style.display = s.image ? "" : "none";
    if (s.image) $("image").src = s.image;
    $("no-image").textContent = s.image ? "" : "No image embedded for this sample (beyond the page's sample limit, or the images could not be loaded).";
    $("boxes").setAttribute("viewBox", `0 0 ${w} ${h}`);
    $("boxes").setAttribute("preserveAspectRatio", "none");
    methodButtons(s);
    showMap();
    loopSelect(s);
    showLoop();
    answers(s);
  }
  function methodButtons(s) {
    $("methods").innerHTML = M.map((m) => {
      const e = s.maps[m];
      const note = !e ? "no line" : e.overlay ? "" : " (no map)";
      return `<button data-method="${esc(m)}" class="${m === state.method ? "active" : ""}" role="radio" aria-checked="${m === state.method}" title="${esc(note || m)}">${esc(m)}${note ? "*" : ""}</button>`;
    }).join("");
  }
  function setMethod(m) {
    state.method = m;
    for (const b of $("methods").children) {
      const on = b.dataset.method === m;
      b.classList.toggle("active", on);
      b.setAttribute("aria-checked", on);
    }
    showMap();
  }
  function showMap() {
    const s = current();
    if (!s) return;
    const e = s.maps[state.method];
    paintOverlay(e && s.image ? e.overlay : null, state.method);
    const src = !e ? "no line for this method" : e.src === "saved" ? "map read from the saved file" : e.src === "recomputed" ? "map recomputed (not in the results file)" : "map not available";
    let info = `<b>${esc(state.method)}</b>: ${src}`;
    if (e) {
      if (e.error) info += `<br><span class="miss">error: ${esc(e.error)}</span>`;
      const sc = e.scores || {}, sm = e.summary || {};
      const shown = SC.filter((c) => c.name in sc).map((c) => `<span class="score" data-score="${esc(c.name)}" title="${esc(c.direction === "none" ? "neither way is better" : c.direction + " is better")}">${esc(c.header)} ${esc(scoreText(c, num(sc[c.name])))}</span>`);
      if (shown.length) info += "<br>" + shown.join(", ");
      info += `<br>spatial entropy ${fmt(sm.spatial_entropy)}, Shannon entropy ${fmt(sm.shannon_entropy)}, grid ${esc((sm.grid_shape || []).join("x"))}, target ${esc(e.target || "-")}`;
      if (sm.degenerate) info += `<br><span class="miss">degenerate: ${esc(sm.degenerate)}</span>`;
    }
    $("map-info").innerHTML = info;
    drawCurves(e);
    const regs = (e && e.regions) || [];
    $("regions").innerHTML = regs.length
      ? "<tr><th>rank</th><th>box (x0, y0, x1, y1)</th><th>score</th></tr>" + regs.map((r) => `<tr><td>${r.rank + 1}</td><td>${boxText(r.box)}</td><td>${fmt(r.score)}</td></tr>`).join("")
      : "<tr><td>no regions</td></tr>";
    drawBoxes();
  }
  // Deletion and insertion curves of the chosen map: the original answer's probability as the
  // map's cells are removed (deletion) or revealed (insertion), one line per cell order.
  const ORDER_STYLE = { morf: ["#2557d6", ""], lerf: ["#f08c00", "5 3"], random: ["#777", "1 3"] };
  function drawCurves(e) {
    const c = e && e.curves;
    const measured = e && Object.keys(e.scores || {}).some((k) => /^(deletion|insertion)_/.test(k));
    if (!c) {
      $("curves").innerHTML = measured ? '<span class="na">deletion/insertion curves: not saved (evaluate --save-maps) and not measured again for this sample</span>' : "";
      return;
    }
    const W = 180, H = 116, L = 24, B = 18, T = 6, R = 6;
    const xs = (x) => L + x * (W - L - R);
    const ys = (y) => H - B - Math.max(0, Math.min(1, y)) * (H - B - T);
    const panels = ["deletion", "insertion"].filter((kind) => c[kind]).map((kind) => {
      let svg = `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#999"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#999"/>`;
      svg += `<text x="${L}" y="${H - 5}" font-size="9" text-anchor="middle">0</text><text x="${W - R}" y="${H - 5}" font-size="9" text-anchor="end">1</text>`;
      svg += `<text x="${L - 3}" y="${T + 8}" font-size="9" text-anchor="end">1</text><text x="${L - 3}" y="${H - B}" font-size="9" text-anchor="end">0</text>`;
      for (const [order, values] of Object.entries(c[kind])) {
        const [color, dash] = ORDER_STYLE[order] || ["#000", ""];
        const pts = values.map((y, i) => `${xs(num(c.fractions[i])).toFixed(1)},${ys(num(y)).toFixed(1)}`).join(" ");
        svg += `<polyline class="curve" data-curve="${esc(kind)}" data-order="${esc(order)}" fill="none" stroke="${color}" stroke-width="1.6"${dash ? ` stroke-dasharray="${dash}"` : ""} points="${pts}"><title>${esc(kind)}, ${esc(order)}</title></polyline>`;
      }
      const what = kind === "deletion" ? "fraction removed" : "fraction revealed";
      return `<figure><svg viewBox="0 0 ${W} ${H}" xmlns="http://www.w3.org/2000/svg">${svg}</svg><figcaption>${esc(kind)} (x: ${what})</figcaption></figure>`;
    });
    const src = c.src === "saved" ? "saved with the map" : "measured again";
    const legend = Object.entries(ORDER_STYLE).map(([o, [color, dash]]) => `<span style="color:${color}">${o === "morf" ? "MoRF" : o === "lerf" ? "LeRF" : "random"}${dash ? (dash === "5 3" ? " (dashed)" : " (dotted)") : " (solid)"}</span>`).join(", ");
    $("curves").innerHTML = `<div class="curves-head">p("${esc(c.answer)}"), the original answer, teacher-forced: ${legend}; ${src}</div>` + panels.join("");
  }

  // The overlay PNG holds the normalised map as grey + alpha; colour it with the jet LUT.
  const LUT = (() => {
    const lut = new Uint8ClampedArray(256 * 3);
    const ramp = (x) => Math.max(0, Math.min(1, x));
    for (let i = 0; i < 256; i++) {
      const v = i / 255;
      lut[3 * i] = 255 * ramp(1.5 - Math.abs(4 * v - 3));
      lut[3 * i + 1] = 255 * ramp(1.5 - Math.abs(4 * v - 2));
      lut[3 * i + 2] = 255 * ramp(1.5 - Math.abs(4 * v - 1));
    }
    return lut;
  })();
  let paintToken = 0;
  function paintOverlay(uri, method) {
    const cv = $("overlay"), token = ++paintToken;
    cv.dataset.method = method;
    cv.dataset.ready = "0";
    cv.style.opacity = $("opacity").value / 100;
    if (!uri) { cv.style.display = "none"; cv.dataset.ready = "none"; return; }
    const img = new Image();
    img.onload = () => {
      if (token !== paintToken) return; // a later switch won
      cv.width = img.naturalWidth;
      cv.height = img.naturalHeight;
      const ctx = cv.getContext("2d", { willReadFrequently: true });
      ctx.clearRect(0, 0, cv.width, cv.height);
      ctx.drawImage(img, 0, 0);
      const px = ctx.getImageData(0, 0, cv.width, cv.height), d = px.data;
      for (let i = 0; i < d.length; i += 4) {
        const g = d[i];
        d[i] = LUT[3 * g]; d[i + 1] = LUT[3 * g + 1]; d[i + 2] = LUT[3 * g + 2];
        d[i + 3] = Math.round(d[i + 3] * (0.2 + 0.8 * g / 255)); // low relevance stays see-through
      }
      ctx.putImageData(px, 0, 0);
      cv.style.display = "";
      cv.dataset.ready = "1";
    };
    img.src = uri;
  }
  function rect(b, cls, color, dash, label) {
    const [x0, y0, x1, y1] = b;
    return `<rect class="${cls}" x="${x0}" y="${y0}" width="${x1 - x0}" height="${y1 - y0}" fill="none" stroke="${color}" stroke-width="2" vector-effect="non-scaling-stroke"${dash ? ' stroke-dasharray="5 3"' : ""}/>` +
      (label ? `<text x="${x0 + 2}" y="${y0 + 2}" fill="${color}" font-size="${(current().image_size || [256])[0] / 18}" dominant-baseline="hanging" font-weight="bold">${esc(label)}</text>` : "");
  }
  function drawBoxes() {
    const s = current();
    let svg = "";
    if ($("show-evidence").checked) for (const b of s.boxes) svg += rect(b, "evidence", "#00c853", false, "");
    const e = s.maps[state.method];
    if ($("show-regions").checked && e) for (const r of e.regions || []) svg += rect(r.box, "region", "#00e5ff", true, String(r.rank + 1));
    const st = steps(s, state.loop)[state.step];
    if ($("show-step").checked && st) for (const b of st.crop_boxes || []) svg += rect(b, "step-crop", "#f08c00", true, "");
    $("boxes").innerHTML = svg;
  }

  // ------------------------------------------------------------ loop
  function loopSelect(s) {
    const withSteps = P.filter((p) => steps(s, p).length);
    const el = $("loop-pipeline");
    fillSelect(el, withSteps.length ? withSteps.map((p) => [p, p]) : [["", "no pipeline with loop steps"]]);
    if (withSteps.includes(state.loop)) el.value = state.loop;
    else if (withSteps.length) state.loop = withSteps[0];
  }
  function showLoop() {
    const s = current();
    const list = steps(s, state.loop);
    const n = list.length;
    state.step = Math.max(0, Math.min(state.step, n - 1));
    $("step-label").textContent = n ? `step ${state.step + 1} of ${n}` : "no loop steps";
    $("step-label").dataset.step = n ? state.step : -1;
    const dec = (s.pipelines[state.loop] || {}).decision;
    $("decision").textContent = dec ? "decision: " + Object.entries(dec).map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : fmt(v, 4) === "-" ? v : fmt(v, 4)}`).join(", ") : "";
    trace(list);
    const st = list[state.step];
    if (!st) { $("step-info").innerHTML = ""; $("step-crops").innerHTML = ""; drawBoxes(); return; }
    $("step-info").innerHTML =
      `spatial entropy <b>${fmt(st.spatial_entropy)}</b>, Shannon entropy ${fmt(st.shannon_entropy)}, ` +
      `next-token entropy <b>${fmt(st.next_token_entropy)}</b>, top-1 answer <b>${esc(st.top1_token ?? "-")}</b> (p = ${fmt(st.top1_prob)})` +
      (st.degenerate ? `<br><span class="miss">degenerate: ${esc(st.degenerate)}</span>` : "");
    const figs = [];
    const crop = (b, key, what) => {
      const uri = s.crops[key];
      return `<figure class="${what}">${uri ? `<img src="${uri}" alt="crop">` : '<div class="na">(no picture)</div>'}<figcaption>${what === "input" ? "input" : "chosen"} ${boxText(b)}</figcaption></figure>`;
    };
    (st.crops_in || []).forEach((b, i) => figs.push(crop(b, (st.crops_in_keys || [])[i], "input")));
    (st.crop_boxes || []).forEach((b, i) => figs.push(crop(b, (st.crop_boxes_keys || [])[i], "chosen")));
    $("step-crops").innerHTML = figs.join("") || '<span class="na">no crops at this step</span>';
    drawBoxes();
  }
  function trace(list) {
    const W = 360, H = 90, pad = 14;
    const xs = (i) => pad + (list.length > 1 ? (i * (W - 2 * pad)) / (list.length - 1) : (W - 2 * pad) / 2);
    const series = [["spatial_entropy", "#2557d6", "spatial entropy"], ["next_token_entropy", "#f08c00", "next-token entropy"]];
    let svg = "";
    series.forEach(([key, color, name], j) => {
      const v = list.map((st) => num(st[key]));
      const fin = v.filter(Number.isFinite);
      const lo = fin.length ? Math.min(...fin) : 0, hi = fin.length ? Math.max(...fin) : 1;
      const ys = (x) => !Number.isFinite(x) ? pad - 6 : H - pad - (hi > lo ? ((x - lo) * (H - 2 * pad)) / (hi - lo) : (H - 2 * pad) / 2);
      const pts = v.map((x, i) => Number.isNaN(x) ? null : [xs(i), ys(x)]).filter(Boolean);
      if (pts.length > 1) svg += `<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${pts.map((p) => p.join(",")).join(" ")}"/>`;
      v.forEach((x, i) => { if (!Number.isNaN(x)) svg += `<circle cx="${xs(i)}" cy="${ys(x)}" r="${i === state.step ? 4 : 2.5}" fill="${color}"><title>${name} ${fmt(x)}</title></circle>`; });
      svg += `<text x="${W - 4}" y="${10 + 11 * j}" text-anchor="end" font-size="10" fill="${color}">${name} (own scale; top = inf)</text>`;
    });
    if (list.length) svg = `<line x1="${xs(state.step)}" x2="${xs(state.step)}" y1="0" y2="${H}" stroke="#999" stroke-dasharray="3 3"/>` + svg;
    $("trace").innerHTML = svg;
  }
  function answers(s) {
    const rows = P.map((p) => {
      const e = s.pipelines[p];
      if (!e) return `<tr><td>${esc(p)}</td><td colspan="4" class="na">no line</td></tr>`;
      const v = num(e.score), cls = Number.isNaN(v) ? "na" : v >= RIGHT ? "hit" : "miss";
      return `<tr data-pipeline="${esc(p)}"><td>${esc(p)}</td><td class="${cls}">${e.error ? "error: " + esc(e.error) : esc(e.answer)}</td><td>${fmt(v)}</td><td>${(e.crops || []).length}</td><td>${(e.steps || []).length}</td></tr>`;
    });
    $("answers").innerHTML = "<tr><th>pipeline</th><th>answer</th><th>score</th><th>crops</th><th>loop steps</th></tr>" + rows.join("");
  }

  // ------------------------------------------------------------ events
  function stepBy(d) { state.step += d; showLoop(); }
  function setup() {
    facts();
    setupFilters();
    setupTable();
    $("prev").addEventListener("click", () => select(state.pos - 1));
    $("next").addEventListener("click", () => select(state.pos + 1));
    $("methods").addEventListener("click", (ev) => { const b = ev.target.closest("button"); if (b) setMethod(b.dataset.method); });
    $("opacity").addEventListener("input", () => { $("overlay").style.opacity = $("opacity").value / 100; });
    for (const id of ["show-evidence", "show-regions", "show-step"]) $(id).addEventListener("change", drawBoxes);
    $("loop-pipeline").addEventListener("change", () => { state.loop = $("loop-pipeline").value; state.step = 0; showLoop(); });
    $("step-prev").addEventListener("click", () => stepBy(-1));
    $("step-next").addEventListener("click", () => stepBy(1));
    document.addEventListener("keydown", (ev) => {
      const tag = (ev.target.tagName || "").toLowerCase();
      if ((tag === "input" && ev.target.type !== "range") || tag === "select" || tag === "textarea") return;
      if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
      const k = ev.key;
      if (k === "ArrowRight" || k === "j") select(state.pos + 1);
      else if (k === "ArrowLeft" || k === "k") select(state.pos - 1);
      else if (k === "]") stepBy(1);
      else if (k === "[") stepBy(-1);
      else if (k === "m" && M.length) setMethod(M[(M.indexOf(state.method) + 1) % M.length]);
      else return;
      ev.preventDefault();
    });
    applyFilters();
  }
  setup();
})();
