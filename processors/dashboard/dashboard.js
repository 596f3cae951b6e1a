"use strict";
// Renders the derived snapshots the API serves; every name goes through textContent, never parsed as HTML.

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell === null || cell === undefined ? "-" : String(cell);
    tr.appendChild(td);
  }
  return tr;
}

const fixed = (v, d = 1) => (v === null || v === undefined ? "-" : Number(v).toFixed(d));
const kib = (bytes) => (bytes === null || bytes === undefined ? "-" : (bytes / 1024).toFixed(1));
const percent = (v) => (v === null || v === undefined ? "-" : (100 * v).toFixed(1) + "%");
const clock = (s) => (s ? new Date(s * 1000).toISOString().slice(11, 19) : "-");

async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(path + " answered " + response.status);
  return response.json();
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Pipepulse-Token": $("token").value },
    body: JSON.stringify(body),
  });
  $("action-result").textContent = response.ok ? "sent" : "refused (" + response.status + "): " + (await response.text());
  return response.ok;
}

function replace(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function renderOverview(view) {
  const health = view.health;
  $("updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
  if (health) {
    $("health").textContent = fixed(health.score, 0);
    $("level").textContent = health.level;
    $("breakdown").replaceChildren(...Object.entries(health.factors).map(([name, part]) => el("span", name + " " + fixed(part.points) + "/" + part.of + "  ", "muted")));
  }
  const pipeline = view.components["(pipeline)"] || {};
  const counters = pipeline.counters || {};
  const kpis = [
    ["efficiency", fixed(pipeline.efficiency_score)],
    ["operations/s", fixed(pipeline.rate_per_s)],
    ["calls/s", fixed((counters.calls_detected || {}).rate_per_s)],
    ["files/s", fixed((counters.files_processed || {}).rate_per_s)],
    ["error rate", percent(pipeline.error_rate)],
  ];
  $("kpis").replaceChildren(...kpis.map(([name, value]) => { const k = el("div", null, "kpi"); k.appendChild(el("b", value)); k.appendChild(el("span", name, "muted")); return k; }));
  const statuses = health ? health.components : {};
  const components = Object.entries(view.components).filter(([name]) => name !== "(pipeline)");
  replace($("components").tBodies[0], components.map(([name, c]) => {
    const status = (statuses[name] || {}).status || "unknown";
    const causes = ((statuses[name] || {}).impacted_by || []).map((cause) => cause.component);
    const latency = c.latency_ms || {};
    return row([el("span", null, "light " + status), name, fixed(c.rate_per_s), (c.in_progress || {}).running, percent(c.error_rate), fixed(latency.p50, 3), fixed(latency.p95, 3), fixed(latency.p99, 3), percent((c.cache || {}).hit_rate), fixed(c.efficiency_score), causes.join(", ") || "-"]);
  }));
  replace($("alerts").tBodies[0], view.alerts.map((alert) => {
    const ack = el("button", alert.acked_by ? "unack" : "ack");
    ack.addEventListener("click", () => post("/api/alerts/" + encodeURIComponent(alert.fingerprint) + (alert.acked_by ? "/unack" : "/ack"), { reason: "from the dashboard", by: "dashboard" }));
    const silence = el("button", "silence 2h");
    const matchers = { alertname: "=" + alert.rule };
    if (alert.labels && alert.labels.component !== undefined) matchers.component = "=" + alert.labels.component;
    silence.addEventListener("click", () => post("/api/silences", { matchers: matchers, for_s: 7200, reason: "from the dashboard", by: "dashboard" }));
    const buttons = el("span");
    buttons.append(ack, silence);
    return row([alert.severity, alert.state, alert.rule, alert.message, buttons]);
  }));
  const processes = [];
  for (const [field, views] of Object.entries(view.stats)) {
    for (const body of Object.values(views)) {
      for (const [process, p] of Object.entries(body.processes || {})) {
        processes.push(row([field, process, fixed(p.cpu_percent), fixed((p.rss_bytes || 0) / 1048576), p.threads, kib(p.net_sent_bytes_per_s), kib(p.net_recv_bytes_per_s)]));
      }
      for (const [host, h] of Object.entries(body.hosts || {})) {  // only the pipeline-wide field carries hosts
        processes.push(row(["(host)", host, fixed(h.cpu_percent), fixed((h.rss_bytes || 0) / 1048576) + " of " + fixed((h.memory_total_bytes || 0) / 1048576, 0), "-", kib(h.net_sent_bytes_per_s), kib(h.net_recv_bytes_per_s)]));
      }
    }
  }
  replace($("resources").tBodies[0], processes);
  const optimizer = view.optimizer;
  $("optimizer-mode").textContent = optimizer ? "mode: " + optimizer.mode + "; settings: " + (Object.entries(optimizer.settings).map(([k, v]) => k + "=" + v.value).join(", ") || "none") : "optimizer: no decision yet";
  $("recommendations").replaceChildren(...view.recommendations.map((r) => el("li", r.priority + " " + r.component + ": " + r.kind + " (" + r.current + " -> " + (r.proposed === null ? "restart" : r.proposed) + "): " + r.reason)));
}

function chart(id, traces, title) {
  if (typeof Plotly === "undefined") return;
  Plotly.react($(id), traces, { title: { text: title, font: { size: 13 } }, margin: { t: 30, r: 10, b: 30, l: 40 } }, { displayModeBar: false, responsive: true });
}

async function renderHistory() {
  const [health, stats, alerts, actions, forecasts] = await Promise.all(["health", "stats", "alerts", "actions"].map((s) => getJSON("/api/" + s + "?count=120")).concat([getJSON("/api/forecasts/latest")]));
  chart("health-chart", [{ x: health.map((h) => new Date(h.at_s * 1000)), y: health.map((h) => h.score), name: "health", mode: "lines" }], "health score");
  const series = {};
  for (const window of stats) {
    for (const [name, body] of Object.entries(window.components || {})) {
      // plotly reads label text as markup (<a>, <b>): the name goes in escaped, and shows as written
      const s = (series[name] = series[name] || { x: [], y: [], name: name.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"), mode: "lines" });
      s.x.push(new Date(window.end_s * 1000));
      s.y.push((body.stats || {}).rate_per_s);
    }
  }
  chart("rate-chart", Object.values(series), "operations/s per component (10 s windows)");
  $("alert-history").replaceChildren(...alerts.slice(-15).reverse().map((a) => el("li", clock(a.at_s) + " " + a.transition + " " + a.severity + " " + a.rule + ": " + a.message)));
  $("actions").replaceChildren(...actions.slice(-15).reverse().map((a) => el("li", clock(a.at_s) + " " + a.decision + " " + a.component + "/" + a.setting + ": " + a.reason)));
  const rows = [];
  for (const [name, metrics] of Object.entries(forecasts)) {
    for (const [metric, doc] of Object.entries(metrics || {})) {
      if (!doc || !doc.models) continue; // not enough points for this metric yet
      const soon = (doc.predictions || []).find((p) => p.in_s === 600) || {};
      const crossing = (doc.thresholds || []).map((t) => t.band_in_s).filter((v) => v !== null && v !== undefined);
      const band = soon.low === undefined ? "-" : fixed(soon.low, 2) + " .. " + fixed(soon.high, 2);
      rows.push(row([name, metric, fixed(doc.models[doc.best].value, 2), fixed(soon.value, 2), band, crossing.length ? fixed(Math.min(...crossing), 0) + " s" : "-"]));
    }
  }
  replace($("forecasts").tBodies[0], rows);
}

function start() {
  $("token").value = sessionStorage.getItem("pipepulse-token") || "";
  $("token").addEventListener("change", () => sessionStorage.setItem("pipepulse-token", $("token").value));
  for (const button of document.querySelectorAll("button[data-mode]")) {
    button.addEventListener("click", () => post("/api/optimizer/mode", { mode: button.dataset.mode, reason: "from the dashboard", by: "dashboard" }));
  }
  const live = new EventSource("/api/live");
  live.addEventListener("overview", (event) => renderOverview(JSON.parse(event.data)));
  renderHistory().catch((error) => { $("updated").textContent = String(error); });
  setInterval(() => renderHistory().catch(() => {}), 10000);
}

document.addEventListener("DOMContentLoaded", start);
