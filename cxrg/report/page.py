"""The report page: static HTML for the run's header, summary table, chart and failures, and the sample
data as JSON that a little vanilla JavaScript (SCRIPT) turns into the gallery, the comparison strip and the
large view.

Safety: every string from the data (phrases, ids, class names, errors, paths) is either escaped with
html.escape here or put into the page by the script with textContent/setAttribute, never as markup; the
JSON block escapes '<', '>' and '&' so no phrase can close its <script> element.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from cxrg import __version__
from cxrg.bench.bootstrap import AVERAGE
from cxrg.bench.reports import METRIC_TITLES, _cell, _layout, markdown_table
from cxrg.report.imaging import LARGE_SIDE, THUMB_SIDE, WINDOW
from cxrg.report.run import RunData

PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 25


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def json_for_script(data: Any) -> str:
    """JSON that is safe inside <script type="application/json"> whatever the strings hold."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def summary_table(summary: dict[str, Any]) -> str:
    """Classes x (metric, model): mean [95 % CI] and n, as in results.md; then results.md's notes."""
    models, metrics, categories, index = _layout(summary)
    head = "".join(f"<th>{esc(METRIC_TITLES[m])}<br>{esc(model)}</th>" for m in metrics for model in models)
    body = []
    for category in categories:
        cells = []
        for m in metrics:
            for model in models:
                row = index.get((model, category, m))
                n = f' <span class="n">n={int(row["n"])}</span>' if row is not None and row.get("n") else ""
                cells.append(f"<td>{esc(_cell(row))}{n}</td>")
        css = ' class="average"' if category == AVERAGE else ""
        body.append(f"<tr{css}><th>{esc(category)}</th>{''.join(cells)}</tr>")
    table = (f'<table id="summary-table"><thead><tr><th>Class</th>{head}</tr></thead>'
             f"<tbody>{''.join(body)}</tbody></table>")
    _, _, notes = markdown_table(summary).partition("\n\n")
    paragraphs, items = [], []
    for line in notes.splitlines():
        if line.startswith("- "):
            items.append(f"<li>{esc(line[2:])}</li>")
        elif line.strip():
            paragraphs.append(f"<p>{esc(line)}</p>")
    return table + "".join(paragraphs) + (f'<ul class="notes">{"".join(items)}</ul>' if items else "")


def failures_table(run: RunData) -> tuple[str, int]:
    """Every failed or skipped (model, sample) pair with its reason; a model that was not run is one line."""
    lines = []
    for model in run.models:
        if model in run.model_errors and not any(m == model for m, _ in run.rows):
            lines.append(f'<tr class="skipped"><td>{esc(model)}</td><td colspan="2">all {len(run.samples)} '
                         f"samples</td><td>skipped</td><td>{esc('model not run: ' + run.model_errors[model])}"
                         "</td></tr>")
            continue
        for sample in run.samples:
            status, reason = run.status(model, sample.sample_id)
            if status != "ok":
                lines.append(f'<tr class="{status}"><td>{esc(model)}</td><td>{esc(sample.sample_id)}</td>'
                             f"<td>{esc(sample.category)}</td><td>{status}</td><td>{esc(reason)}</td></tr>")
    if not lines:
        return "<p>Every model scored every sample.</p>", 0
    table = ('<table id="failures-table"><thead><tr><th>Model</th><th>Sample</th><th>Class</th>'
             f"<th>Status</th><th>Reason</th></tr></thead><tbody>{''.join(lines)}</tbody></table>")
    return table, len(lines)


def render(run: RunData, data: dict[str, Any], chart: str | None, seconds: float) -> str:
    config = run.config
    facts = [("dataset", run.dataset), ("annotations", config.get("annotations")),
             ("images", config.get("images")), ("split", config.get("split")), ("limit", config.get("limit")),
             ("models", ", ".join(run.models)), ("samples", len(run.samples)),
             ("heatmaps kept at", f"{config.get('heatmap_size', 256)} px (float16)"
              if config.get("save_heatmaps", True) else "not kept (--no-save-heatmaps)"),
             ("run written", run.written)]
    facts_html = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts if v not in (None, ""))
    notes_html = "".join(f'<p class="note">{esc(note)}</p>' for note in run.notes)
    summary_html = summary_table(run.summary) if run.summary else "<p>No scores yet.</p>"
    chart_html = (f'<img id="chart" src="{esc(chart)}" alt="Per-class means with 95 % CI bars">'
                  if chart else "")
    failures_html, failed = failures_table(run)
    page_sizes = "".join(f'<option value="{n}"{" selected" if n == DEFAULT_PAGE_SIZE else ""}>{n}</option>'
                         for n in PAGE_SIZES)
    low, high = WINDOW
    made = (f"made by cxrg {esc(__version__)} in {seconds:.1f} s; radiographs windowed to their "
            f"{low:g}-{high:g} % percentiles, thumbnails {THUMB_SIDE} px, large view {LARGE_SIDE} px")
    title = f"cxrg bench report: {run.dataset} ({run.path.name})"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{esc(title)}</title>
<style>{STYLE}</style></head>
<body class="show-boxes">
<header><h1>{esc(title)}</h1><dl class="facts">{facts_html}</dl>{notes_html}</header>
<nav><a href="#summary">Summary</a> <a href="#compare">Where does A beat B</a> <a href="#gallery">Gallery</a>
<a href="#failures">Failed and skipped ({failed})</a></nav>
<section id="summary"><h2>Summary</h2>{summary_html}{chart_html}</section>
<section id="controls"><h2>Samples</h2>
<div class="toolbar">
<label>Class <select id="filter-class"><option value="">all classes</option></select></label>
<label>Status <select id="filter-status"></select></label>
<label>Search <input id="filter-text" type="search" placeholder="id or phrase"></label>
<label>Sort by <select id="sort"></select></label>
<label>Order <select id="dir"><option value="desc">descending</option><option value="asc">ascending</option>
</select></label>
<label>A <select id="model-a"></select></label> <label>B <select id="model-b"></select></label>
<label>Metric <select id="metric"></select></label>
</div>
<div class="toolbar">
<span>Models shown:</span> <span id="model-toggles"></span>
<label>Heatmap opacity <input id="opacity" type="range" min="0" max="1" step="0.05" value="0.8"></label>
<label><input id="show-boxes" type="checkbox" checked> boxes</label>
</div></section>
<section id="compare"><h2>Where does <span id="compare-a"></span> beat <span id="compare-b"></span></h2>
<p id="compare-text"></p><div id="strip"></div>
<p class="legend">One bar per sample scored by both, sorted by the difference A &minus; B; green: A higher;
click a bar for the sample.</p></section>
<section id="gallery"><h2>Gallery</h2>
<div class="pager"><button id="prev" type="button">&larr; previous</button> <span id="page-info"></span>
<button id="next" type="button">next &rarr;</button> <span id="count"></span>
<label>per page <select id="page-size">{page_sizes}</select></label></div>
<table id="gallery-table"><thead><tr id="gallery-head"></tr></thead><tbody id="gallery-body"></tbody></table>
<p class="legend">Heatmaps: jet, as scored (min-max normalised); hatched: no value (outside the model's view);
boxes: ground truth. Click a row for the large view with the Otsu mask.</p></section>
<section id="failures"><h2>Failed and skipped ({failed})</h2>
<details{" open" if 0 < failed <= 50 else ""}><summary>{failed} (model, sample) pairs without a score,
with the reason</summary>{failures_html}</details></section>
<div id="viewer" hidden><div class="viewer-bar"><button id="viewer-prev" type="button">&larr;</button>
<button id="viewer-next" type="button">&rarr;</button> <strong id="viewer-title"></strong>
<button id="viewer-close" type="button">close &times;</button></div><div id="viewer-body"></div></div>
<footer>{made}</footer>
<script id="cxrg-data" type="application/json">{json_for_script(_finite(data))}</script>
<script>{SCRIPT}</script>
</body></html>
"""


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


STYLE = """
:root { --heat-opacity: 0.8; font-family: system-ui, sans-serif; font-size: 14px; color: #111; }
body { margin: 0 1.5em 2em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0 1em; margin: 0; }
dl.facts dt { color: #555; } dl.facts dd { margin: 0; word-break: break-all; }
.note { background: #fff4d6; padding: 0.3em 0.6em; border-left: 4px solid #e0a800; }
nav { position: sticky; top: 0; background: #fff; padding: 0.4em 0; border-bottom: 1px solid #ddd;
  z-index: 2; }
nav a { margin-right: 1.2em; }
table { border-collapse: collapse; }
#summary-table td, #summary-table th, #failures-table td, #failures-table th {
  border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
#summary-table th:first-child, #failures-table td { text-align: left; }
#summary-table tr.average { font-weight: bold; background: #f3f3f3; }
.n { color: #777; font-size: 0.85em; font-weight: normal; }
#chart { max-width: 100%; display: block; margin-top: 1em; }
.toolbar { display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; align-items: center; margin: 0.4em 0; }
#model-toggles label { margin-right: 0.8em; }
.legend { color: #555; font-size: 0.9em; }
#strip svg { width: 100%; height: 140px; display: block; background: #fafafa; border: 1px solid #ddd; }
#strip rect { cursor: pointer; } #strip rect:hover { fill: #000; }
.pager { display: flex; gap: 1em; align-items: center; margin: 0.4em 0; }
#gallery-table th, #gallery-table td { border-bottom: 1px solid #ddd; padding: 0.3em; vertical-align: top;
  text-align: left; }
#gallery-table tbody tr { cursor: pointer; } #gallery-table tbody tr:hover { background: #f4f8ff; }
td.info { max-width: 16em; } td.info .id { font-family: monospace; } td.info .cat { color: #555; }
td.info .phrase { color: #555; font-style: italic; }
.frame { position: relative; background: #000; overflow: hidden; }
.frame img, .frame svg { position: absolute; left: 0; top: 0; width: 100%; height: 100%; display: block; }
.frame img.heat { opacity: var(--heat-opacity); }
.frame svg rect { fill: none; stroke: #0f0; stroke-width: 2px; vector-effect: non-scaling-stroke; }
body:not(.show-boxes) .frame svg.boxes { display: none; }
.thumb { width: 160px; }
.metrics { font-size: 0.85em; font-variant-numeric: tabular-nums; }
.fail { width: 160px; min-height: 3em; background: #fde8e8; color: #8a1010; font-size: 0.8em; padding: 0.3em;
  box-sizing: border-box; overflow-wrap: anywhere; max-height: 9em; overflow: hidden; }
.fail.skipped { background: #eee; color: #444; }
.noimage { width: 160px; height: 100px; background: #eee; color: #555; font-size: 0.8em; padding: 0.3em;
  box-sizing: border-box; overflow-wrap: anywhere; }
#viewer { position: fixed; inset: 0; background: #fff; overflow: auto; z-index: 10;
  padding: 0.6em 1.2em; }
#viewer[hidden] { display: none; }
.viewer-bar { display: flex; gap: 0.8em; align-items: center; position: sticky; top: 0; background: #fff;
  padding: 0.3em 0; }
#viewer-close { margin-left: auto; }
.viewer-grid { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.viewer-grid .radiograph { position: sticky; top: 3em; }
.viewer-models h3 { font-size: 1em; margin: 0.2em 0; }
.panels { display: flex; flex-wrap: wrap; gap: 1em; margin: 0 0 1.2em; }
.panel { width: 340px; } .panel p { margin: 0.2em 0; font-size: 0.9em; }
footer { margin-top: 2em; color: #777; font-size: 0.85em; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("cxrg-data").textContent);
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const TITLES = {cnr: "CNR", miou: "mIoU"};
  const S = {cat: "", status: "", text: "", sort: "order", dir: "asc", page: 0, size: 25,
             a: 0, b: Math.min(1, D.models.length - 1),
             metric: D.metrics.includes("miou") ? "miou" : D.metrics[0],
             shown: D.models.map(() => true)};
  let view = [];
  let open = -1;

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "className") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children || []) if (c) node.appendChild(c);
    return node;
  }
  function option(value, label, selected) {
    const o = el("option", {value: value, text: label});
    if (selected) o.selected = true;
    return o;
  }
  function fmt(v) { return v === null || v === undefined ? "-" : v.toFixed(3); }

  function frame(sample, width, large, layer, label) {
    const img = sample.img >= 0 ? D.images[sample.img] : null;
    if (!img || img.err || !img.w) {
      return el("div", {className: "noimage", text: img && img.err ? "image unreadable: " + img.err
                                                                   : "no image"});
    }
    const f = el("div", {className: "frame"});
    f.style.width = width + "px";
    f.style.aspectRatio = img.w + " / " + img.h;
    if (layer && layer.mask) {
      f.appendChild(el("img", {src: layer.mask, alt: "Otsu mask " + label, loading: "lazy"}));
    } else {
      f.appendChild(el("img", {src: large ? img.l : img.t, alt: "radiograph " + sample.id, loading: "lazy",
                               decoding: "async"}));
      if (layer && layer.heat) {
        f.appendChild(el("img", {className: "heat", src: layer.heat, alt: "heatmap " + label, loading: "lazy",
                                 decoding: "async"}));
      }
    }
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "boxes");
    svg.setAttribute("viewBox", "0 0 " + img.w + " " + img.h);
    svg.setAttribute("preserveAspectRatio", "none");
    for (const [x, y, w, h] of sample.boxes) {
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("x", x); r.setAttribute("y", y); r.setAttribute("width", w); r.setAttribute("height", h);
      svg.appendChild(r);
    }
    f.appendChild(svg);
    return f;
  }

  function metricsLine(m) {
    return D.metrics.map((k) => TITLES[k] + " " + fmt(m[k])).join(" \u00b7 ");
  }

  function value(s, key) {
    if (key === "order") return s.index;
    if (key === "id") return s.id;
    if (key === "cat") return s.cat;
    const parts = key.split(":");
    if (parts[0] === "v") { const v = s.m[+parts[2]][parts[1]]; return v === null ? NaN : v; }
    if (parts[0] === "d") { return diff(s, parts[1]); }
    return NaN;
  }
  function diff(s, metric) {
    const a = s.m[S.a][metric], b = s.m[S.b][metric];
    return a === null || b === null ? NaN : a - b;
  }
  function failedFor(s, j) { return s.m[j].s !== "ok"; }
  function keep(s) {
    if (S.cat && s.cat !== S.cat) return false;
    if (S.text) {
      const t = S.text.toLowerCase();
      if (!(s.id.toLowerCase().includes(t) || s.prompt.toLowerCase().includes(t)
            || s.phrase.toLowerCase().includes(t))) return false;
    }
    if (S.status === "ok") return s.m.every((m) => m.s === "ok");
    if (S.status === "failed") return s.m.some((m) => m.s !== "ok");
    if (S.status.startsWith("failed:")) return failedFor(s, +S.status.slice(7));
    return true;
  }
  function compute() {
    const rows = D.samples.filter(keep);
    const sign = S.dir === "asc" ? 1 : -1;
    rows.sort((p, q) => {
      const x = value(p, S.sort), y = value(q, S.sort);
      if (typeof x === "string") return sign * x.localeCompare(y) || p.index - q.index;
      const xn = Number.isNaN(x), yn = Number.isNaN(y);
      if (xn || yn) return xn === yn ? p.index - q.index : (xn ? 1 : -1);  // no value: always last
      return sign * (x - y) || p.index - q.index;
    });
    view = rows;
  }

  function renderHead() {
    const head = $("gallery-head");
    head.replaceChildren(el("th", {text: "Sample"}), el("th", {text: "Image and boxes"}));
    D.models.forEach((m, j) => { if (S.shown[j]) head.appendChild(el("th", {text: m})); });
  }
  function renderPage() {
    const pages = Math.max(1, Math.ceil(view.length / S.size));
    S.page = Math.min(S.page, pages - 1);
    const body = $("gallery-body");
    body.replaceChildren();
    for (const s of view.slice(S.page * S.size, (S.page + 1) * S.size)) {
      const info = el("td", {className: "info"}, [
        el("div", {className: "id", text: s.id}), el("div", {className: "cat", text: s.cat}),
        el("div", {className: "prompt", text: s.prompt}),
        s.phrase ? el("div", {className: "phrase", text: "\u201c" + s.phrase + "\u201d"}) : null,
        s.err ? el("div", {className: "fail", text: s.err}) : null]);
      const tr = el("tr", {"data-index": s.index, "data-id": s.id, "data-category": s.cat},
                    [info, el("td", {}, [frame(s, 160, false, null, "")])]);
      s.m.forEach((m, j) => {
        if (!S.shown[j]) return;
        const td = el("td", {className: "model", "data-model": D.models[j], "data-status": m.s});
        for (const k of D.metrics) td.setAttribute("data-" + k, m[k] === null ? "" : String(m[k]));
        if (m.s === "ok" && m.h) {
          td.appendChild(frame(s, 160, false, {heat: m.h}, D.models[j]));
          td.appendChild(el("div", {className: "metrics", text: metricsLine(m)}));
        } else if (m.s === "ok") {
          td.appendChild(el("div", {className: "fail skipped", text: m.r}));
          td.appendChild(el("div", {className: "metrics", text: metricsLine(m)}));
        } else {
          const box = el("div", {className: "fail " + m.s, text: m.s + ": " + m.r, title: m.r});
          td.appendChild(box);
        }
        tr.appendChild(td);
      });
      tr.addEventListener("click", () => openSample(s.index));
      body.appendChild(tr);
    }
    $("page-info").textContent = "page " + (S.page + 1) + " of " + pages;
    $("count").textContent = view.length + " of " + D.samples.length + " samples";
    $("count").setAttribute("data-count", view.length);
    $("prev").disabled = S.page === 0;
    $("next").disabled = S.page >= pages - 1;
  }

  function renderStrip() {
    const metric = S.metric;
    $("compare-a").textContent = D.models[S.a] || "-";
    $("compare-b").textContent = D.models[S.b] || "-";
    const pairs = D.samples.map((s) => [s, diff(s, metric)]).filter((p) => !Number.isNaN(p[1]));
    pairs.sort((p, q) => q[1] - p[1]);
    const host = $("strip");
    host.replaceChildren();
    if (!metric || S.a === S.b || pairs.length === 0) {
      $("compare-text").textContent = "Choose two different models that both scored some samples.";
      return;
    }
    const wins = pairs.filter((p) => p[1] > 0).length, losses = pairs.filter((p) => p[1] < 0).length;
    const sorted = pairs.map((p) => p[1]).sort((x, y) => x - y);
    const median = sorted[Math.floor(sorted.length / 2)];
    $("compare-text").textContent = D.models[S.a] + " has the higher " + TITLES[metric] + " on " + wins +
      " of " + pairs.length + " samples scored by both, " + D.models[S.b] + " on " + losses +
      "; median difference " + fmt(median) + ".";
    const n = pairs.length, width = Math.max(n, 200), height = 140;
    const top = Math.max(...pairs.map((p) => Math.abs(p[1])), 1e-9);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("preserveAspectRatio", "none");
    const step = width / n;
    pairs.forEach(([s, d], k) => {
      const h = Math.abs(d) / top * (height / 2 - 4);
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("x", k * step); r.setAttribute("width", Math.max(step * 0.9, 0.5));
      r.setAttribute("y", d >= 0 ? height / 2 - h : height / 2); r.setAttribute("height", Math.max(h, 0.5));
      r.setAttribute("fill", d >= 0 ? "#2a9d4b" : "#c0392b");
      r.setAttribute("data-index", s.index);
      const t = document.createElementNS(SVG, "title");
      t.textContent = s.id + " (" + s.cat + "): " + (d >= 0 ? "+" : "") + d.toFixed(3);
      r.appendChild(t);
      r.addEventListener("click", () => openSample(s.index));
      svg.appendChild(r);
    });
    const axis = document.createElementNS(SVG, "line");
    axis.setAttribute("x1", 0); axis.setAttribute("x2", width);
    axis.setAttribute("y1", height / 2); axis.setAttribute("y2", height / 2);
    axis.setAttribute("stroke", "#000"); axis.setAttribute("stroke-width", 0.5);
    svg.appendChild(axis);
    host.appendChild(svg);
  }

  function openSample(index) {
    const s = D.samples[index];
    if (!s) return;
    open = index;
    const body = $("viewer-body");
    body.replaceChildren();
    $("viewer-title").textContent = s.id + " \u00b7 " + s.cat;
    body.appendChild(el("p", {className: "prompt", text: "Prompt: " + s.prompt}));
    if (s.phrase) body.appendChild(el("p", {className: "phrase", text: "Phrase: " + s.phrase}));
    if (s.err) body.appendChild(el("p", {className: "fail", text: s.err}));
    const models = el("div", {className: "viewer-models"});
    body.appendChild(el("div", {className: "viewer-grid"}, [
      el("div", {className: "panel radiograph"}, [frame(s, 340, true, null, ""),
        el("p", {text: "radiograph (windowed) and " + s.boxes.length + " ground-truth box(es)"})]), models]));
    s.m.forEach((m, j) => {
      const name = D.models[j];
      const section = el("div", {className: "model-panels", "data-model": name}, [
        el("h3", {text: name + " \u2014 " + (m.s === "ok" ? metricsLine(m) : m.s)})]);
      if (m.s === "ok" && m.h) {
        section.appendChild(el("div", {className: "panels"}, [
          el("div", {className: "panel"}, [frame(s, 340, true, {heat: m.h}, name),
            el("p", {text: "heatmap over the radiograph, boxes in green"})]),
          el("div", {className: "panel"}, [frame(s, 340, true, {mask: m.k}, name),
            el("p", {text: "Otsu mask (threshold " + fmt(m.t) + " of the saved map) and the boxes"})])]));
      } else {
        section.appendChild(el("p", {className: "fail " + m.s, text: m.r}));
      }
      models.appendChild(section);
    });
    $("viewer").hidden = false;
    if (location.hash !== "#sample=" + index) history.replaceState(null, "", "#sample=" + index);
  }
  function closeViewer() {
    $("viewer").hidden = true;
    open = -1;
    history.replaceState(null, "", "#gallery");
  }
  function step(delta) {
    if (open < 0) return;
    const at = view.findIndex((s) => s.index === open);
    const next = at < 0 ? view[0] : view[at + delta];
    if (next) openSample(next.index);
  }

  function refresh(keepPage) {
    if (!keepPage) S.page = 0;
    compute();
    renderHead();
    renderPage();
    renderStrip();
  }

  function init() {
    D.samples.forEach((s, k) => { s.index = k; });
    for (const c of D.categories) $("filter-class").appendChild(option(c, c));
    const status = $("filter-status");
    status.appendChild(option("", "all"));
    status.appendChild(option("ok", "scored by every model"));
    status.appendChild(option("failed", "failed or skipped by any model"));
    D.models.forEach((m, j) => status.appendChild(option("failed:" + j, "failed or skipped by " + m)));
    const sort = $("sort");
    sort.appendChild(option("order", "dataset order", true));
    sort.appendChild(option("id", "sample id"));
    sort.appendChild(option("cat", "class"));
    for (const k of D.metrics) D.models.forEach((m, j) => sort.appendChild(option("v:" + k + ":" + j,
                                                                                TITLES[k] + " of " + m)));
    for (const k of D.metrics) sort.appendChild(option("d:" + k, TITLES[k] + " difference A \u2212 B"));
    D.models.forEach((m, j) => {
      $("model-a").appendChild(option(j, m, j === S.a));
      $("model-b").appendChild(option(j, m, j === S.b));
      const box = el("input", {type: "checkbox", "data-model": m});
      box.checked = true;
      box.addEventListener("change", () => { S.shown[j] = box.checked; refresh(true); });
      $("model-toggles").appendChild(el("label", {}, [box, document.createTextNode(" " + m)]));
    });
    for (const k of D.metrics) $("metric").appendChild(option(k, TITLES[k], k === S.metric));
    $("dir").value = S.dir;
    $("filter-class").addEventListener("change", (e) => { S.cat = e.target.value; refresh(); });
    status.addEventListener("change", (e) => { S.status = e.target.value; refresh(); });
    $("filter-text").addEventListener("input", (e) => { S.text = e.target.value.trim(); refresh(); });
    sort.addEventListener("change", (e) => {
      S.sort = e.target.value;
      S.dir = S.sort.startsWith("v:") || S.sort.startsWith("d:") ? "desc" : "asc";
      $("dir").value = S.dir;
      refresh();
    });
    $("dir").addEventListener("change", (e) => { S.dir = e.target.value; refresh(); });
    $("model-a").addEventListener("change", (e) => { S.a = +e.target.value; refresh(); });
    $("model-b").addEventListener("change", (e) => { S.b = +e.target.value; refresh(); });
    $("metric").addEventListener("change", (e) => { S.metric = e.target.value; refresh(true); });
    $("page-size").addEventListener("change", (e) => { S.size = +e.target.value; refresh(); });
    $("prev").addEventListener("click", () => { S.page -= 1; renderPage(); });
    $("next").addEventListener("click", () => { S.page += 1; renderPage(); });
    $("opacity").addEventListener("input", (e) => {
      document.documentElement.style.setProperty("--heat-opacity", e.target.value);
    });
    $("show-boxes").addEventListener("change", (e) => {
      document.body.classList.toggle("show-boxes", e.target.checked);
    });
    $("viewer-close").addEventListener("click", closeViewer);
    $("viewer-prev").addEventListener("click", () => step(-1));
    $("viewer-next").addEventListener("click", () => step(1));
    document.addEventListener("keydown", (e) => {
      if (open < 0) return;
      if (e.key === "Escape") closeViewer();
      else if (e.key === "ArrowLeft") step(-1);
      else if (e.key === "ArrowRight") step(1);
    });
    S.size = +$("page-size").value;
    refresh();
    const m = /^#sample=(\d+)$/.exec(location.hash);
    if (m) openSample(+m[1]);
    document.body.setAttribute("data-ready", "1");
  }
  init();
})();
"""
