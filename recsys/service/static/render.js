// JSON -> DOM for the dashboard's panels: numbers, tables, and bar charts drawn as inline SVG.
// No library and nothing from the network; every string goes in as a text node, never parsed as HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

// keys that name a row (its bar's label), best first
const LABEL_KEYS = ["name", "label", "value", "title", "brand", "category", "shop", "merchant", "stage", "segment", "value_label",
  "bucket", "band", "level", "item_id", "user_id", "id", "key"];
// keys worth a bar, best first (a row's first numeric key otherwise)
const BAR_KEYS = ["commission_per_1000", "expected_commission", "share", "lift", "users", "count", "n", "purchases", "clicks", "value", "score"];
// keys that are bookkeeping, not content
const SKIP_KEYS = new Set(["model_version", "media_id"]);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isScalar = (v) => v === null || typeof v !== "object";

const HEADINGS = {ci_low: "95% interval from", ci_high: "to", ctr: "CTR", cvr: "CVR", pctr: "pCTR", pcvr: "pCVR",
  network_cvr: "Network CVR", commission_per_1000: "Commission per 1,000"};

function humanKey(key) {
  if (HEADINGS[key]) return HEADINGS[key];
  const words = String(key).replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function fmt(value, key = "") {
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value !== "number") return String(value);
  if (/(^|_)(rate|share|ctr|cvr|pctr|pcvr|ci_low|ci_high)$/.test(key)) return (100 * value).toFixed(value < 0.1 ? 2 : 1) + "%";
  if (/price|gmv|commission|spend|amount/.test(key)) return "¥" + value.toFixed(2);
  if (Number.isInteger(value)) return value.toLocaleString("en");
  const abs = Math.abs(value);
  if (abs !== 0 && abs < 0.01) return value.toExponential(2);
  return abs < 10 ? value.toFixed(3) : value.toFixed(1);
}

function pickLabelKey(rows) {
  const keys = Object.keys(rows[0]);
  return LABEL_KEYS.find((k) => keys.includes(k)) || keys.find((k) => typeof rows[0][k] === "string") || keys[0];
}

function pickBarKey(rows, labelKey) {
  const numeric = (k) => k !== labelKey && rows.every((r) => typeof r[k] === "number" || r[k] === null);
  const keys = Object.keys(rows[0]);
  return BAR_KEYS.find((k) => keys.includes(k) && numeric(k)) ||
    keys.find((k) => numeric(k) && !/(^|_)id$/.test(k));
}

// horizontal bars: pairs [label, value, reference?] (at most 20 bars, drawn to scale from 0); a reference
// (e.g. the network's share beside the audience's) is a dark tick across its bar
function bars(pairs, title, key = title, note = null) {
  const shown = pairs.slice(0, 20);
  const max = Math.max(...shown.flatMap(([, v, r]) => [Math.abs(v || 0), Math.abs(r || 0)]), 1e-12);
  const rowH = 22, labelW = 150, barW = 250, valueW = 120;
  const chart = svg("svg", {class: "bars", width: labelW + barW + valueW, height: rowH * shown.length + 4,
    role: "img", "aria-label": title || "bar chart"});
  const scale = (v) => Math.round(barW * Math.abs(v || 0) / max);
  shown.forEach(([label, value, ref], i) => {
    const y = i * rowH + 2, width = Math.max(1, scale(value)), name = String(label);
    chart.append(svg("text", {x: labelW - 6, y: y + 15, class: "bar-label", "text-anchor": "end"},
      name.length > 22 ? name.slice(0, 21) + "…" : name));
    chart.append(svg("rect", {x: labelW, y: y + 3, width, height: rowH - 6, rx: 2, class: "bar"}));
    if (typeof ref === "number") {
      chart.append(svg("rect", {x: labelW + scale(ref) - 1, y: y + 1, width: 2, height: rowH - 2, class: "ref"}));
    }
    chart.append(svg("text", {x: labelW + Math.max(width, typeof ref === "number" ? scale(ref) : 0) + 6, y: y + 15,
      class: "bar-value"}, fmt(value, key || "") + (note ? note(i) : "")));
  });
  return el("figure", {class: "chart"}, title ? el("figcaption", {}, title) : null, chart);
}

// stacked horizontal bars: rows [label, [[part, value], ...]]; each part's class is "part-<part>"
function stacked(rows, parts, title) {
  const rowH = 24, labelW = 150, barW = 280, legendH = 22;
  const max = Math.max(...rows.map(([, vs]) => vs.reduce((a, [, v]) => a + (v || 0), 0)), 1);
  const chart = svg("svg", {class: "stacked", width: labelW + barW + 60, height: legendH + rowH * rows.length + 4,
    role: "img", "aria-label": title || "stacked bars"});
  parts.forEach((part, i) => {
    chart.append(svg("rect", {x: labelW + i * 80, y: 4, width: 12, height: 12, class: `part-${part}`}));
    chart.append(svg("text", {x: labelW + i * 80 + 16, y: 14, class: "legend"}, part));
  });
  rows.forEach(([label, values], i) => {
    const y = legendH + i * rowH + 2;
    let x = labelW;
    chart.append(svg("text", {x: labelW - 6, y: y + 15, "text-anchor": "end", class: "bar-label"}, String(label)));
    for (const [part, value] of values) {
      const width = Math.round(barW * (value || 0) / max);
      if (width > 0) chart.append(svg("rect", {x, y: y + 3, width, height: rowH - 6, class: `part-${part}`}));
      x += width;
    }
    const total = values.reduce((a, [, v]) => a + (v || 0), 0);
    chart.append(svg("text", {x: x + 6, y: y + 15, class: "bar-value"}, fmt(total)));
  });
  return el("figure", {class: "chart"}, title ? el("figcaption", {}, title) : null, chart);
}

// a row of headline figures: pairs [label, value, key?]
function stats(pairs) {
  return el("div", {class: "stats"}, ...pairs.map(([label, value, key]) => el("div", {class: "stat"},
    el("div", {class: "stat-value"}, fmt(value, key || "")), el("div", {class: "stat-label"}, label))));
}

// a table folded under a summary line (the chart above it says the same; the table gives every figure)
function folded(summary, node) {
  return el("details", {}, el("summary", {}, summary), node);
}

function table(rows, columns) {
  const head = el("tr", {}, ...columns.map((c) => el("th", {}, humanKey(c))));
  const body = rows.map((r) => el("tr", {}, ...columns.map((c) => el("td", {}, isScalar(r[c]) ? fmt(r[c], c)
    : JSON.stringify(r[c])))));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

// a list of rows: flat rows -> bars of their main number + a table; nested rows -> one titled block each
function renderRows(rows, name) {
  const labelKey = pickLabelKey(rows);
  const flat = rows.every((r) => Object.values(r).every(isScalar));
  if (!flat) {
    return el("div", {class: "rows"}, ...rows.slice(0, 10).map((r) => el("div", {class: "row-block"},
      el("h4", {}, `${humanKey(labelKey)}: ${fmt(r[labelKey])}`),
      render(Object.fromEntries(Object.entries(r).filter(([k]) => k !== labelKey)), name))));
  }
  const barKey = pickBarKey(rows, labelKey);
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))].slice(0, 10);
  return el("div", {class: "rows"},
    rows.length >= 2 && barKey ? bars(rows.map((r) => [r[labelKey], r[barKey]]),
      `${name ? humanKey(name) + " · " : ""}${barKey.replace(/_/g, " ")}`, barKey)
      : null,
    table(rows.slice(0, 20), columns));
}

// any JSON value as DOM: scalars as text, maps of >= 3 non-negative numbers as bars, lists of objects as
// bars + tables, other objects as a definition list (one entry per key, nested values rendered in place)
function render(value, name = "") {
  if (isScalar(value)) return el("span", {class: "value"}, fmt(value, name));
  if (Array.isArray(value)) {
    if (!value.length) return el("span", {class: "muted"}, "none");
    if (value.every(isObject)) return renderRows(value, name);
    if (value.every(isScalar)) return el("span", {class: "value"}, value.map((v) => fmt(v, name)).join(", "));
    return el("ol", {}, ...value.map((v) => el("li", {}, render(v, name))));
  }
  const entries = Object.entries(value).filter(([k]) => !SKIP_KEYS.has(k));
  if (entries.length >= 3 && entries.every(([, v]) => typeof v === "number" && v >= 0)) return bars(entries, humanKey(name), name);
  const list = el("dl", {});
  for (const [k, v] of entries) list.append(el("dt", {}, humanKey(k)), el("dd", {}, render(v, k)));
  return list;
}

window.RecsysRender = {el, svg, bars, stacked, stats, table, folded, render, fmt, humanKey};
