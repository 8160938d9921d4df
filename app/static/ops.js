// The ops page: each process's latest report from the windsock.ops channel (app/ops.py).
// Rates are counter differences between two reports of the same process; nothing is
// aggregated on the server beyond the counters /metrics exports.
import { Windsock } from "./windsock.js";

const CHANNEL = "windsock.ops";
const SILENT_MS = 3000;
const WINDOW_MS = 5 * 60 * 1000;
const workers = new Map(); // name -> {report, previous, inRate, outRate, seen}
const history = []; // [time ms, total out/s]

const $ = (id) => document.getElementById(id);

function rate(now, before, key) {
  if (!before) return 0;
  const seconds = now.t - before.t;
  return seconds > 0 ? Math.max(0, (now[key] - before[key]) / seconds) : 0;
}

function take(report) {
  const known = workers.get(report.worker);
  // A restarted process (new pid) starts its counters again: no rate across it.
  const previous = known && known.report.pid === report.pid ? known.report : null;
  workers.set(report.worker, {
    report,
    inRate: rate(report, previous, "published"),
    outRate: rate(report, previous, "delivered"),
    seen: Date.now(),
  });
}

function cell(row, text, key) {
  const td = document.createElement("td");
  td.textContent = text;
  if (key) td.dataset.key = key;
  row.append(td);
}

function render() {
  const now = Date.now();
  const rows = $("rows");
  rows.replaceChildren();
  let connections = 0;
  let totalIn = 0;
  let totalOut = 0;
  let reporting = 0;
  for (const [name, w] of [...workers].sort()) {
    const r = w.report;
    const silent = now - w.seen > SILENT_MS;
    const row = document.createElement("tr");
    row.dataset.worker = name;
    row.dataset.state = silent ? "silent" : r.broker_up ? "up" : "degraded";
    cell(row, `${name} (${r.role})`);
    cell(row, silent ? "silent" : r.broker_up ? "up" : "unreachable", "broker");
    cell(row, String(r.connections.websocket || 0), "websocket");
    cell(row, String(r.connections.sse || 0), "sse");
    cell(row, w.inRate.toFixed(1), "in");
    cell(row, w.outRate.toFixed(1), "out");
    cell(row, String(r.slow_consumers), "slow");
    cell(row, `${((now - w.seen) / 1000).toFixed(0)} s ago`);
    rows.append(row);
    if (silent) continue;
    reporting += 1;
    connections += (r.connections.websocket || 0) + (r.connections.sse || 0);
    totalIn += w.inRate;
    totalOut += w.outRate;
  }
  $("workers").textContent = String(reporting);
  $("total-connections").textContent = String(connections);
  $("total-in").textContent = totalIn.toFixed(1);
  $("total-out").textContent = totalOut.toFixed(1);
  history.push([now, totalOut]);
  while (history.length && history[0][0] < now - WINDOW_MS) history.shift();
  draw();
}

function draw() {
  const canvas = $("chart");
  const width = (canvas.width = canvas.clientWidth || 600);
  const height = (canvas.height = 160);
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  canvas.dataset.points = String(history.length);
  if (history.length < 2) return;
  const top = Math.max(1, ...history.map(([, v]) => v));
  const start = history[0][0];
  ctx.strokeStyle = "#1d4ed8";
  ctx.lineWidth = 2;
  ctx.beginPath();
  history.forEach(([t, v], i) => {
    const x = ((t - start) / WINDOW_MS) * width;
    const y = height - (v / top) * (height - 10) - 5;
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

const client = new Windsock({ url: location.origin, channels: [CHANNEL] });
client.on("message", (m) => m.data && typeof m.data.worker === "string" && take(m.data));
client.on("status", (s) => {
  const pill = $("status");
  pill.dataset.state = s.status;
  pill.textContent = s.status === "live" ? "Live" : s.status === "reconnecting" ? "Reconnecting…" : s.status;
});
setInterval(render, 1000);
