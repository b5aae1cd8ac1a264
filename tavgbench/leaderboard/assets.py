"""The style sheet and script inlined into ``leaderboard/index.html``.

The page loads nothing from anywhere: the script reads the table data from a JSON script element,
sorts tables on header clicks, hides reported rows on request, and draws the plots as inline SVG
(per metric a bar chart with 95% interval whiskers; FVD against AVHScore as a scatter plot),
redrawing them when the reported rows are shown or hidden.
"""

from __future__ import annotations

PAGE_CSS = r"""
:root { --computed: #2b6cb0; --reported: #8a94a6; --ink: #1a202c; --muted: #5a6475; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); margin: 0 auto; max-width: 1280px; padding: 0 20px 40px; }
h1 { margin: 24px 0 8px; }
h2 { margin: 32px 0 10px; border-bottom: 1px solid #e2e8f0; padding-bottom: 4px; }
h2 small { font-weight: normal; color: var(--muted); font-size: 60%; }
a { color: #2c5282; }
code { font-size: 90%; }
.toggle { display: inline-block; margin: 6px 0; font-weight: 600; cursor: pointer; }
.reported-note { color: var(--muted); max-width: 960px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 12px; }
th, td { padding: 5px 8px; border-bottom: 1px solid #e2e8f0; vertical-align: top; }
th { text-align: left; background: #f7fafc; white-space: nowrap; }
th button { font: inherit; font-weight: 600; background: none; border: 0; padding: 0;
  cursor: pointer; color: inherit; }
th[aria-sort="ascending"] button::after { content: " \25B2"; font-size: 70%; }
th[aria-sort="descending"] button::after { content: " \25BC"; font-size: 70%; }
td.num, th.num { text-align: right; white-space: nowrap; }
td .ci { display: block; font-size: 80%; color: var(--muted); }
td.notes { font-size: 80%; color: var(--muted); max-width: 420px; }
td.notes summary { cursor: pointer; color: #2c5282; }
td.date { white-space: nowrap; }
tr.reported td { background: repeating-linear-gradient(135deg, #fff, #fff 6px, #f4f5f8 6px,
  #f4f5f8 12px); }
tr.reported td.num { font-style: italic; color: #4a5568; }
.badge { display: inline-block; font-size: 70%; font-weight: 600; border-radius: 3px;
  padding: 0 5px; vertical-align: 1px; text-transform: uppercase; letter-spacing: 0.03em; }
.reported-badge { border: 1px solid var(--reported); color: #4a5568; background: #edf0f4; }
.computed-badge { border: 1px solid var(--computed); color: #fff; background: var(--computed); }
body.hide-reported tr.reported { display: none; }
.plots { display: flex; flex-wrap: wrap; gap: 12px 24px; margin-top: 8px; }
.plots figure { margin: 0; }
.plots figcaption { font-weight: 600; font-size: 13px; }
.plots .legend { flex-basis: 100%; color: var(--muted); font-size: 12px; }
.plots svg text { font: 11px system-ui, sans-serif; fill: var(--ink); }
.plots svg .axis text { fill: var(--muted); font-size: 10px; }
.plots svg .axis line, .plots svg .axis path { stroke: #cbd5e0; }
table.protocol td.settings { font-size: 80%; color: var(--muted); }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"""

PAGE_JS = r"""
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const data = JSON.parse(document.getElementById("leaderboard-data").textContent);
  const metricByKey = Object.fromEntries(data.metrics.map((m) => [m.key, m]));
  const toggle = document.getElementById("show-reported");

  function showReported() { return !toggle || toggle.checked; }

  function el(name, attrs, parent, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function niceTicks(low, high, count) {
    if (!(high > low)) { high = low + 1; }
    const raw = (high - low) / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((f) => f * power).find((s) => raw <= s);
    const ticks = [];
    for (let t = Math.floor(low / step) * step; t <= high + step * 1e-9; t += step) {
      ticks.push(Math.round(t / step) * step);
    }
    if (ticks[ticks.length - 1] < high) ticks.push(ticks[ticks.length - 1] + step);
    return ticks;
  }

  function tickText(ticks) {
    const step = ticks.length > 1 ? ticks[1] - ticks[0] : 1;
    const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    return (value) => value.toFixed(digits);
  }

  function short(name, max) { return name.length > max ? name.slice(0, max - 1) + "…" : name; }

  function hatch(svg, id) {
    const defs = el("defs", {}, svg);
    const pattern = el("pattern", {id: id, width: 6, height: 6,
      patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)"}, defs);
    el("rect", {width: 6, height: 6, fill: "#edf0f4"}, pattern);
    el("line", {x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#8a94a6", "stroke-width": 2}, pattern);
  }

  function extent(rows, key) {
    let low = 0;
    let high = 0;
    for (const row of rows) {
      for (const v of row.values[key]) {
        if (v === null) continue;
        low = Math.min(low, v);
        high = Math.max(high, v);
      }
    }
    return [low, high];
  }

  function barChart(rows, metric, split) {
    const best = metric.higherIsBetter ? -1 : 1;
    rows = rows.slice().sort((a, b) => best * (a.values[metric.key][0] - b.values[metric.key][0]));
    const left = 190, right = 16, top = 8, barH = 16, gap = 5, axisH = 24, width = 420;
    const height = top + rows.length * (barH + gap) + axisH;
    const [low, high] = extent(rows, metric.key);
    const ticks = niceTicks(low, high, 4);
    const x0 = ticks[0], x1 = ticks[ticks.length - 1];
    const sx = (v) => left + (v - x0) / (x1 - x0) * (width - left - right);
    const svg = el("svg", {width: width, height: height, viewBox: `0 0 ${width} ${height}`,
      role: "img", "aria-label": `${metric.title} by system`});
    const patternId = `hatch-${split}-${metric.key}`;
    hatch(svg, patternId);
    const axis = el("g", {class: "axis"}, svg);
    const axisY = height - axisH + 4;
    const fmt = tickText(ticks);
    for (const t of ticks) {
      el("line", {x1: sx(t), x2: sx(t), y1: top - 4, y2: axisY, "stroke-dasharray": "2,3"}, axis);
      el("text", {x: sx(t), y: axisY + 12, "text-anchor": "middle"}, axis, fmt(t));
    }
    rows.forEach((row, i) => {
      const [value, ciLow, ciHigh] = row.values[metric.key];
      const y = top + i * (barH + gap);
      const g = el("g", {class: row.reported ? "bar reported" : "bar computed"}, svg);
      el("title", {}, g, `${row.system}: ${value}` +
        (ciLow === null ? " (reported)" : ` [${ciLow}, ${ciHigh}]`));
      el("text", {x: left - 6, y: y + barH - 4, "text-anchor": "end"}, g, short(row.system, 30));
      const a = sx(Math.min(0, value)), b = sx(Math.max(0, value));
      el("rect", {x: a, y: y, width: Math.max(b - a, 1), height: barH,
        fill: row.reported ? `url(#${patternId})` : "var(--computed)",
        stroke: row.reported ? "#8a94a6" : "none"}, g);
      if (ciLow !== null && ciHigh !== null) {
        const mid = y + barH / 2;
        el("line", {x1: sx(ciLow), x2: sx(ciHigh), y1: mid, y2: mid, stroke: "#1a202c"}, g);
        for (const v of [ciLow, ciHigh]) {
          el("line", {x1: sx(v), x2: sx(v), y1: mid - 4, y2: mid + 4, stroke: "#1a202c"}, g);
        }
      }
    });
    return svg;
  }

  function scatter(rows, xm, ym, split) {
    const width = 560, height = 380, left = 56, right = 20, top = 16, bottom = 44;
    const [xl, xh] = extent(rows, xm.key);
    const [yl, yh] = extent(rows, ym.key);
    const xt = niceTicks(xl, xh, 5), yt = niceTicks(yl, yh, 5);
    const sx = (v) => left + (v - xt[0]) / (xt[xt.length - 1] - xt[0]) * (width - left - right);
    const sy = (v) => height - bottom -
      (v - yt[0]) / (yt[yt.length - 1] - yt[0]) * (height - top - bottom);
    const svg = el("svg", {width: width, height: height, viewBox: `0 0 ${width} ${height}`,
      role: "img", "aria-label": `${xm.title} against ${ym.title}`});
    hatch(svg, `hatch-${split}-scatter`);
    const axis = el("g", {class: "axis"}, svg);
    const xFmt = tickText(xt), yFmt = tickText(yt);
    for (const t of xt) {
      el("line", {x1: sx(t), x2: sx(t), y1: top, y2: height - bottom, "stroke-dasharray": "2,3"},
        axis);
      el("text", {x: sx(t), y: height - bottom + 14, "text-anchor": "middle"}, axis, xFmt(t));
    }
    for (const t of yt) {
      el("line", {x1: left, x2: width - right, y1: sy(t), y2: sy(t), "stroke-dasharray": "2,3"},
        axis);
      el("text", {x: left - 6, y: sy(t) + 3, "text-anchor": "end"}, axis, yFmt(t));
    }
    const xArrow = xm.higherIsBetter ? "↑" : "↓", yArrow = ym.higherIsBetter ? "↑" : "↓";
    el("text", {x: (left + width - right) / 2, y: height - 8, "text-anchor": "middle"}, svg,
      `${xm.title} ${xArrow}`);
    el("text", {x: 14, y: (top + height - bottom) / 2, "text-anchor": "middle",
      transform: `rotate(-90 14 ${(top + height - bottom) / 2})`}, svg, `${ym.title} ${yArrow}`);
    const labels = [];
    for (const row of rows) {
      const [x, xLow, xHigh] = row.values[xm.key];
      const [y, yLow, yHigh] = row.values[ym.key];
      const g = el("g", {class: row.reported ? "point reported" : "point computed"}, svg);
      el("title", {}, g, `${row.system}: ${xm.title} ${x}, ${ym.title} ${y}` +
        (row.reported ? " (reported)" : ""));
      if (xLow !== null && xHigh !== null) {
        el("line", {x1: sx(xLow), x2: sx(xHigh), y1: sy(y), y2: sy(y), stroke: "#4a5568"}, g);
      }
      if (yLow !== null && yHigh !== null) {
        el("line", {x1: sx(x), x2: sx(x), y1: sy(yLow), y2: sy(yHigh), stroke: "#4a5568"}, g);
      }
      if (row.reported) {
        const cx = sx(x), cy = sy(y);
        el("path", {d: `M${cx},${cy - 6}L${cx + 6},${cy}L${cx},${cy + 6}L${cx - 6},${cy}Z`,
          fill: `url(#hatch-${split}-scatter)`, stroke: "#4a5568"}, g);
      } else {
        el("circle", {cx: sx(x), cy: sy(y), r: 5, fill: "var(--computed)"}, g);
      }
      labels.push({g: g, x: sx(x), y: sy(y), text: short(row.system, 26)});
    }
    placeLabels(labels, width - right);
    return svg;
  }

  // Labels go right of their point (left of it near the right edge), moved down past labels
  // already placed that they would overlap; 6 px per character is a safe width at 11 px.
  function placeLabels(labels, rightEdge) {
    const placed = [];
    labels.sort((a, b) => a.y - b.y || a.x - b.x);
    for (const label of labels) {
      const width = label.text.length * 6;
      const flip = label.x + 8 + width > rightEdge;
      const x0 = flip ? label.x - 8 - width : label.x + 8;
      let y = label.y - 6;
      const clashes = (p) => Math.abs(p.y - y) < 12 && x0 < p.x0 + p.width && p.x0 < x0 + width;
      while (placed.some(clashes)) y += 12;
      placed.push({x0: x0, y: y, width: width});
      el("text", {x: flip ? label.x - 8 : label.x + 8, y: y,
        "text-anchor": flip ? "end" : "start"}, label.g, label.text);
    }
  }

  function figure(title, svg) {
    const fig = document.createElement("figure");
    const caption = document.createElement("figcaption");
    caption.textContent = title;
    fig.appendChild(caption);
    fig.appendChild(svg);
    return fig;
  }

  function drawPlots() {
    for (const box of document.querySelectorAll(".plots")) {
      const split = box.dataset.split;
      const rows = data.rows.filter((r) => r.split === split && (showReported() || !r.reported));
      box.replaceChildren();
      if (!rows.length) continue;
      const legend = document.createElement("div");
      legend.className = "legend";
      legend.textContent = "Solid: computed with tavgbench (whiskers: 95% interval). " +
        "Hatched: reported by a paper, protocol unknown, no interval.";
      box.appendChild(legend);
      for (const metric of data.metrics) {
        const arrow = metric.higherIsBetter ? "↑ higher is better" : "↓ lower is better";
        box.appendChild(figure(`${metric.title} (${arrow})`, barChart(rows, metric, split)));
      }
      if (metricByKey.fvd && metricByKey.avhscore) {
        box.appendChild(figure("FVD against AVHScore (better: left and up)",
          scatter(rows, metricByKey.fvd, metricByKey.avhscore, split)));
      }
    }
  }

  function cellValue(row, index, type) {
    const raw = row.cells[index].dataset.value;
    if (type === "number") return raw === "" || raw === undefined ? null : parseFloat(raw);
    return raw === undefined ? row.cells[index].textContent.trim().toLowerCase() : raw;
  }

  function sortBy(table, th) {
    const headers = Array.from(th.parentNode.children);
    const index = headers.indexOf(th);
    const type = th.dataset.type;
    const current = th.getAttribute("aria-sort");
    let ascending;
    if (current === "ascending") ascending = false;
    else if (current === "descending") ascending = true;
    else ascending = !(type === "number" && th.dataset.better === "higher");
    for (const other of headers) if (other.hasAttribute("aria-sort")) {
      other.setAttribute("aria-sort", "none");
    }
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    const sign = ascending ? 1 : -1;
    rows.sort((a, b) => {
      const x = cellValue(a, index, type), y = cellValue(b, index, type);
      if (x === null || y === null) return (x === null) - (y === null);
      if (type === "number") return sign * (x - y);
      return sign * String(x).localeCompare(String(y));
    });
    for (const row of rows) body.appendChild(row);
  }

  for (const table of document.querySelectorAll("table.board")) {
    for (const th of table.tHead.rows[0].cells) {
      const button = th.querySelector("button");
      if (button) button.addEventListener("click", () => sortBy(table, th));
    }
  }
  if (toggle) {
    toggle.addEventListener("change", () => {
      document.body.classList.toggle("hide-reported", !toggle.checked);
      drawPlots();
    });
  }
  drawPlots();
})();
"""
