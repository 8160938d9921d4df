// The live demo page: sensor chart and table, weather card, chat, connection status.
import { Windsock, httpPublish } from "./windsock.js";

const params = new URLSearchParams(location.search);
const VALID = /^[A-Za-z0-9_.:-]{1,128}$/;
const extra = (params.get("sensors") || "")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean)
  .map((s) => (s.startsWith("sensors.") ? s : `sensors.${s}`));
const SENSORS = [...new Set(["sensors.demo-1", "sensors.demo-2", "sensors.demo-3", ...extra])].filter(
  (c) => VALID.test(c),
);
const WEATHER = "weather.oslo";
const WEATHER_STATUS = "weather.oslo.status";
const CHAT = "chat.lobby";
const TICKER = "demo.ticker";
const CHANNELS = [...SENSORS, TICKER, WEATHER, WEATHER_STATUS, CHAT];
// Where each channel starts: sensors and chat from the start of their history
// (the chart opens filled), the weather card and the ticker at their newest
// value only ("latest"), then live.
const LATEST = new Set([TICKER, WEATHER, WEATHER_STATUS]);
const START = Object.fromEntries(CHANNELS.map((c) => [c, LATEST.has(c) ? "latest" : 0]));
const WINDOW_MS = 5 * 60 * 1000;
const COLORS = ["#1d4ed8", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d"];
const TRANSPORTS = { websocket: "WebSocket", sse: "SSE" };

const $ = (id) => document.getElementById(id);
const el = (tag, text, cls) => {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
};
const time = (seconds) => new Date(seconds * 1000).toLocaleTimeString();

function age(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 2) return "just now";
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

// Sensors: one series and one table row per channel.

const sensors = new Map();
SENSORS.forEach((channel) => sensorRow(channel));

function sensorRow(channel) {
  if (sensors.has(channel)) return sensors.get(channel);
  const color = COLORS[sensors.size % COLORS.length];
  const row = el("tr");
  const name = el("th");
  name.scope = "row";
  name.append(el("span", "", "swatch"), channel.slice("sensors.".length));
  name.firstChild.style.background = color;
  const cells = { temperature: el("td", "—"), humidity: el("td", "—"), updated: el("td", "no data yet") };
  row.append(name, cells.temperature, cells.humidity, cells.updated);
  row.dataset.channel = channel;
  $("readings").append(row);
  const key = el("li", channel.slice("sensors.".length));
  key.prepend(el("span", "", "swatch"));
  key.firstChild.style.background = color;
  $("legend").append(key);
  const sensor = { color, cells, points: [], at: 0 };
  sensors.set(channel, sensor);
  return sensor;
}

function onReading(channel, data) {
  const sensor = sensorRow(channel);
  const reading = data && typeof data === "object" ? data : { temperature: data };
  const at = Number.isFinite(reading.ts) ? reading.ts * 1000 : Date.now();
  const { temperature: t, humidity: h } = reading;
  if (Number.isFinite(t)) {
    sensor.points.push({ at, value: t });
    sensor.cells.temperature.textContent = `${t.toFixed(1)} °C`;
  }
  if (Number.isFinite(h)) sensor.cells.humidity.textContent = `${Math.round(h <= 1 ? h * 100 : h)} %`;
  sensor.at = Math.max(sensor.at, at);
  sensor.cells.updated.textContent = age(sensor.at);
  dirty = true;
}

// The chart, drawn by hand.

const canvas = $("chart");
let dirty = true;

function draw() {
  const ctx = canvas.getContext("2d");
  const ratio = devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const now = Date.now();
  const start = now - WINDOW_MS;
  let low = Infinity;
  let high = -Infinity;
  let count = 0;
  for (const sensor of sensors.values()) {
    sensor.points = sensor.points.filter((p) => p.at >= start - 60000).slice(-3000);
    for (const p of sensor.points) {
      if (p.at < start) continue;
      low = Math.min(low, p.value);
      high = Math.max(high, p.value);
      count += 1;
    }
  }
  canvas.dataset.points = String(count);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#374151";
  if (!count) {
    ctx.fillText("Waiting for readings…", 12, height / 2);
    return;
  }
  if (high - low < 1) [low, high] = [(low + high) / 2 - 0.5, (low + high) / 2 + 0.5];
  const left = 40;
  const bottom = height - 20;
  const x = (at) => left + ((at - start) / WINDOW_MS) * (width - left - 8);
  const y = (value) => 8 + ((high - value) / (high - low)) * (bottom - 8);
  ctx.strokeStyle = "#d1d5db";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i += 1) {
    const value = low + ((high - low) * i) / 4;
    ctx.beginPath();
    ctx.moveTo(left, y(value));
    ctx.lineTo(width - 8, y(value));
    ctx.stroke();
    ctx.fillText(value.toFixed(1), 2, y(value) + 4);
  }
  const step = width < 500 ? 2 : 1; // fewer labels on a phone
  for (let m = 5; m >= 0; m -= step) {
    const label = m === 5 ? "now" : `−${5 - m} min`;
    ctx.fillText(label, Math.min(x(start + m * 60000) - 10, width - 30), height - 4);
  }
  ctx.lineWidth = 2;
  for (const sensor of sensors.values()) {
    const shown = sensor.points.filter((p) => p.at >= start).sort((a, b) => a.at - b.at);
    if (!shown.length) continue;
    ctx.strokeStyle = ctx.fillStyle = sensor.color;
    ctx.beginPath();
    shown.forEach((p, i) => (i ? ctx.lineTo(x(p.at), y(p.value)) : ctx.moveTo(x(p.at), y(p.value))));
    ctx.stroke();
    const last = shown[shown.length - 1];
    ctx.fillRect(x(last.at) - 2.5, y(last.value) - 2.5, 5, 5);
  }
}

function frame() {
  if (dirty) {
    dirty = false;
    draw();
  }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
new ResizeObserver(() => (dirty = true)).observe(canvas);

// Weather card.

let weatherAt = 0;
let weatherStamped = false;

function onWeather(data) {
  const list = $("weather-value");
  list.replaceChildren();
  const entries = data && typeof data === "object" ? Object.entries(data) : [["value", data]];
  for (const [key, value] of entries.slice(0, 8)) {
    let shown = typeof value === "object" ? JSON.stringify(value) : String(value);
    if (typeof value === "number" && value > 1e9 && (key === "ts" || key === "time")) shown = time(value);
    else if (/^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(shown)) shown = shown.replace("T", " "); // ISO time
    list.append(el("dt", key), el("dd", shown));
  }
  const stamp = data && (data.ts ?? data.time);
  weatherStamped = Number.isFinite(stamp);
  weatherAt = weatherStamped ? stamp * 1000 : Date.now();
  showWeatherAge();
}

function showWeatherAge() {
  if (weatherAt) $("weather-age").textContent = `${weatherStamped ? "Updated" : "Received"} ${age(weatherAt)}.`;
}

function onWeatherStatus(status) {
  const node = $("weather-status");
  node.dataset.state = status?.state === "failing" ? "failing" : "ok";
  if (status?.state === "failing") {
    const since = Number.isFinite(status.since) ? ` since ${time(status.since)}` : "";
    const last = Number.isFinite(status.last_success) ? ` Last success ${time(status.last_success)}.` : "";
    node.textContent = `⚠ Stale: ${status.source || "the source"} is failing${since}: ${status.error || "unknown error"}.${last}`;
  } else {
    const since = Number.isFinite(status?.since) ? ` since ${time(status.since)}` : "";
    node.textContent = `✓ Source ${status?.source || ""} is ok${since}.`;
  }
}

// Chat.

const nameInput = $("chat-name");
nameInput.value = localStorage.getItem("windsock.name") || `guest-${Math.floor(1000 + Math.random() * 9000)}`;

function onChat(data, id) {
  const log = $("chat-log");
  const item = el("li");
  item.dataset.id = String(id);
  item.append(el("strong", String(data?.name ?? "anonymous")), ` ${String(data?.text ?? JSON.stringify(data))}`);
  log.append(item);
  while (log.children.length > 200) log.firstChild.remove();
  log.scrollTop = log.scrollHeight;
}

$("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("chat-text").value.trim();
  const name = nameInput.value.trim() || "anonymous";
  if (!text) return;
  localStorage.setItem("windsock.name", name);
  $("chat-error").textContent = "";
  try {
    if (client.transport === "websocket") await client.publish(CHAT, { name, text });
    else await httpPublish(location.origin, CHAT, { name, text });
    $("chat-text").value = "";
  } catch (err) {
    $("chat-error").textContent = `Not sent: ${err.message}`;
  }
});

// Connection: status, worker, rate, and the transport switch.

const arrivals = [];
let client;

function onMessage({ channel, id, data }) {
  arrivals.push(Date.now());
  if (channel.startsWith("sensors.")) onReading(channel, data);
  else if (channel === WEATHER) onWeather(data);
  else if (channel === WEATHER_STATUS) onWeatherStatus(data);
  else if (channel === CHAT) onChat(data, id);
  else if (channel === TICKER) $("ticker").textContent = data?.price ? `${data.symbol} ${data.price}` : JSON.stringify(data);
}

function showStatus() {
  const node = $("status");
  const { status } = client;
  node.dataset.state = status;
  if (status === "reconnecting") {
    const seconds = Math.max(0, Math.ceil((client.retryAt - Date.now()) / 1000));
    node.textContent = `Reconnecting in ${seconds} s`;
  } else {
    node.textContent = { connecting: "Connecting…", live: "Live", closed: "Closed" }[status];
  }
}

async function showWorker() {
  try {
    const answer = await fetch("healthz", { cache: "no-store" });
    const body = await answer.json();
    $("worker").textContent = `via worker ${body.worker}`;
  } catch {
    $("worker").textContent = "worker unknown";
  }
}

function notice(text) {
  const list = $("notices");
  if (list.dataset.used !== "yes") list.replaceChildren();
  list.dataset.used = "yes";
  list.prepend(el("li", `${new Date().toLocaleTimeString()}: ${text}`));
}

function connect(transport, since) {
  client = new Windsock({ url: location.origin, transport, channels: CHANNELS, since });
  client.on("message", onMessage);
  client.on("status", ({ status }) => {
    showStatus();
    if (status === "live") showWorker();
  });
  client.on("reset", ({ channel }) => notice(`history of ${channel} was lost; showing what is kept`));
  client.on("error", ({ code, message }) => notice(`${code}: ${message}`));
  $("transport-name").textContent = TRANSPORTS[transport];
  for (const radio of document.querySelectorAll("input[name=transport]")) radio.checked = radio.value === transport;
  window.windsock = client; // for the console
}

for (const radio of document.querySelectorAll("input[name=transport]")) {
  radio.addEventListener("change", () => {
    if (!radio.checked || radio.value === client.transport) return;
    params.set("transport", radio.value);
    history.replaceState(null, "", `?${params}`);
    const positions = { ...START, ...client.positions() };
    client.close();
    connect(radio.value, positions); // carries on from the same ids: no gap, no repeat
  });
}

setInterval(() => {
  const now = Date.now();
  while (arrivals.length && arrivals[0] < now - 5000) arrivals.shift();
  $("rate").textContent = (arrivals.length / 5).toFixed(1);
  for (const sensor of sensors.values()) if (sensor.at) sensor.cells.updated.textContent = age(sensor.at);
  showWeatherAge();
  dirty = true; // the time axis moves
}, 1000);
setInterval(() => client.status === "reconnecting" && showStatus(), 250); // the countdown

connect(params.get("transport") === "sse" ? "sse" : "websocket", START);
