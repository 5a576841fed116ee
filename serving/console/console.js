// The dnnzoo console: one page per task, each a thin caller of the server's /v1 task endpoints.
// Plain browser JavaScript, no libraries: the server may be offline from the internet.
"use strict";

const $ = (id) => document.getElementById(id);
const tokenInput = $("token");
tokenInput.value = sessionStorage.getItem("dnnzoo-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("dnnzoo-token", tokenInput.value));

// An error the page has shown: thrown on to stop the handler, then not reported again.
class Shown extends Error {}

// The error line, and the page's results greyed out while it stands: they answer an earlier request.
function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
  const page = document.querySelector(".page.shown");
  if (page) page.classList.toggle("failed", Boolean(message));
  return new Shown(message);
}

// Handlers are async; what they throw (a refused request, a typo in a field) is shown once, not left
// as an "Uncaught (in promise)" error in the browser's console.
window.addEventListener("unhandledrejection", (e) => {
  if (!(e.reason instanceof Shown)) showError(String((e.reason && e.reason.message) || e.reason));
  e.preventDefault();
});
// The browser's own check of a field (a number above its max) replaces any earlier error.
document.addEventListener("invalid", () => showError(""), true);

// POST (or GET when body is undefined) to the server; JSON back, or a Blob when asked for a picture.
async function api(path, body, { blob = false } = {}) {
  const headers = {};
  if (tokenInput.value) headers.Authorization = "Bearer " + tokenInput.value;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  document.body.classList.add("busy");
  let answer;
  try {
    answer = await fetch(path, { method: body === undefined ? "GET" : "POST", headers,
                                 body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw showError("cannot reach the server (" + e.message + "); is it still running?");
  } finally {
    document.body.classList.remove("busy");
  }
  if (!answer.ok) {
    let message = answer.status + " " + answer.statusText;
    try { message = (await answer.json()).error || message; } catch (e) { /* not JSON */ }
    throw showError(message);
  }
  showError("");
  return blob ? answer.blob() : answer.json();
}

// A number field's value; an empty field is refused here (Number("") would send 0).
function numberIn(id, name) {
  const text = $(id).value.trim();
  if (text === "" || !Number.isFinite(Number(text))) throw showError(name + ": give a number");
  return Number(text);
}

function cell(row, text, tag = "td") {
  const el = document.createElement(tag);
  el.textContent = text;
  row.appendChild(el);
  return el;
}

function fillTable(table, header, rows) {
  table.replaceChildren();
  const head = table.insertRow();
  header.forEach((h) => cell(head, h, "th"));
  rows.forEach((values) => { const r = table.insertRow(); values.forEach((v) => cell(r, v)); });
}

const pngData = (b64) => "data:image/png;base64," + b64;

// -- drawing pads ------------------------------------------------------------------------------------

function pad(canvas, onDone) {
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const clear = () => { ctx.fillStyle = "black"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  let drawing = false;
  const at = (e) => { const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height]; };
  canvas.addEventListener("pointerdown", (e) => {
    drawing = true; canvas.setPointerCapture(e.pointerId);
    ctx.strokeStyle = "white"; ctx.lineWidth = canvas.width / 9; ctx.lineCap = ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(...at(e)); ctx.lineTo(...at(e)); ctx.stroke();
  });
  canvas.addEventListener("pointermove", (e) => { if (drawing) { ctx.lineTo(...at(e)); ctx.stroke(); } });
  const end = () => { if (drawing) { drawing = false; onDone(); } };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointerleave", end);
  return { clear, ctx, png: () => canvas.toDataURL("image/png"), digit: () => framed(canvas) };
}

// The drawing as the training digits look: scikit-learn's 8×8 digits fill their frame from top to
// bottom, so the ink's bounding box is cut out, centred in a square as tall as the ink, and sent.
function framed(canvas) {
  const { width, height } = canvas;
  const data = canvas.getContext("2d").getImageData(0, 0, width, height).data;
  let top = height, bottom = -1, left = width, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (data[(y * width + x) * 4] > 32) {
        top = Math.min(top, y); bottom = Math.max(bottom, y); left = Math.min(left, x); right = Math.max(right, x);
      }
    }
  }
  if (bottom < 0) return null;  // no ink: nothing to classify
  const side = Math.max(bottom - top, right - left) + 1;
  const cx = (left + right) / 2, cy = (top + bottom) / 2;
  // through 8×8, the resolution of the training digits, then up again, so strokes blur as theirs did
  const small = document.createElement("canvas");
  small.width = small.height = 8;
  const s = small.getContext("2d");
  s.imageSmoothingQuality = "high";
  s.fillStyle = "black"; s.fillRect(0, 0, 8, 8);
  s.drawImage(canvas, cx - side / 2, cy - side / 2, side, side, 0, 0, 8, 8);
  const out = document.createElement("canvas");
  out.width = out.height = 112;
  const ctx = out.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(small, 0, 0, 112, 112);
  return out.toDataURL("image/png");
}

// -- classify ----------------------------------------------------------------------------------------

const digitPad = pad($("pad"), classify);
$("clear-pad").addEventListener("click", () => { digitPad.clear(); $("bars").replaceChildren(); });

async function classify() {
  const image = digitPad.digit();
  if (image === null) { $("bars").replaceChildren(); throw showError("draw a digit first: the pad is empty"); }
  const answer = await api("/v1/classify", { images: [image], top_k: 5 });
  $("classify-model").textContent = answer.model + " v" + answer.model_version;
  const bars = $("bars");
  bars.replaceChildren();
  bars.dataset.sent = image;
  answer.results[0].classes.forEach((c, i) => {
    const bar = document.createElement("div");
    bar.className = "bar" + (i === 0 ? " best" : "");
    bar.dataset.label = c.label;
    const label = document.createElement("span"); label.className = "label"; label.textContent = c.label;
    const fill = document.createElement("span"); fill.className = "fill"; fill.style.width = Math.max(2, 260 * c.score) + "px";
    const score = document.createElement("span"); score.textContent = c.score.toFixed(3);
    bar.append(label, fill, score);
    bars.appendChild(bar);
  });
}

// -- detect ------------------------------------------------------------------------------------------

async function detect(dataUrl) {
  const answer = await api("/v1/detect", { images: [dataUrl], draw: true });
  const result = answer.results[0];
  $("scene-drawn").src = pngData(result.drawn_png);
  fillTable($("detections"), ["label", "score", "box (x_min, y_min, x_max, y_max)"],
            result.detections.map((d) => [d.label, d.score.toFixed(3), d.box.map((v) => v.toFixed(0)).join(", ")]));
}

$("scene-file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => detect(reader.result);
  reader.readAsDataURL(file);
});

const loadImage = (src) => new Promise((resolve, reject) => {
  const img = new Image(); img.onload = () => resolve(img); img.onerror = reject; img.src = src;
});

// A 256-pixel scene: three GAN digits at random sizes, one per column band, so they never overlap.
$("make-scene").addEventListener("click", async () => {
  $("scene-file").value = "";  // the scene shown is no longer the uploaded file
  const seed = Math.floor(Math.random() * 1e6);
  const answer = await api("/v1/generate", { count: 3, seed });
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 256;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "black"; ctx.fillRect(0, 0, 256, 256);
  ctx.globalCompositeOperation = "lighten";
  for (let i = 0; i < answer.images.length; i++) {
    const img = await loadImage(pngData(answer.images[i]));
    const size = 60 + Math.floor(Math.random() * 24);
    const x = i * 85 + Math.floor(Math.random() * (85 - size + 1));
    const y = Math.floor(Math.random() * (256 - size));
    ctx.drawImage(img, x, y, size, size);
  }
  await detect(canvas.toDataURL("image/png"));
});

// -- words -------------------------------------------------------------------------------------------

const words = (text) => text.split(/[\s,]+/).filter(Boolean);
$("words-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const answer = await api("/v1/similar", { positive: words($("positive").value), negative: words($("negative").value),
                                            top_k: numberIn("words-k", "top") });
  fillTable($("neighbours"), ["rank", "word", "cosine"], answer.neighbors.map((n, i) => [i + 1, n.word, n.score.toFixed(4)]));
});

// -- forecast ----------------------------------------------------------------------------------------

function ticks(low, high, count) {
  const span = (high - low) / Math.max(1, count - 1) || 1;
  const power = Math.pow(10, Math.floor(Math.log10(span)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= span);
  const out = [];
  for (let v = Math.floor(low / step) * step; v <= high + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  if (out[out.length - 1] < high) out.push(Number((out[out.length - 1] + step).toPrecision(12)));
  return out;
}

function plot(canvas, history, forecast) {
  const ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
  const left = 60, right = 16, top = 30, bottom = 46, w = W - left - right, h = H - top - bottom;
  const all = history.concat(forecast), steps = Math.max(1, all.length - 1);
  const ys = ticks(Math.min(...all), Math.max(...all), 6);
  const low = ys[0], high = ys[ys.length - 1] === low ? low + 1 : ys[ys.length - 1];
  const X = (i) => left + w * i / steps, Y = (v) => top + h * (1 - (v - low) / (high - low));
  ctx.clearRect(0, 0, W, H);
  ctx.font = "12px sans-serif"; ctx.fillStyle = "black"; ctx.strokeStyle = "#eee"; ctx.lineWidth = 1;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  ys.forEach((v) => { ctx.beginPath(); ctx.moveTo(left, Y(v)); ctx.lineTo(left + w, Y(v)); ctx.stroke(); ctx.fillText(String(v), left - 8, Y(v)); });
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  ticks(0, steps, 8).filter((t) => t <= steps).forEach((t) => {
    ctx.strokeStyle = "black"; ctx.beginPath(); ctx.moveTo(X(t), top + h); ctx.lineTo(X(t), top + h + 5); ctx.stroke();
    ctx.fillText(String(t), X(t), top + h + 8);
  });
  ctx.strokeStyle = "black"; ctx.strokeRect(left, top, w, h);
  ctx.fillText("time step", left + w / 2, H - 16);
  ctx.textAlign = "left"; ctx.fillText("value", 6, 8);
  const line = (points, colour) => {
    ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.beginPath();
    points.forEach(([i, v], k) => (k ? ctx.lineTo(X(i), Y(v)) : ctx.moveTo(X(i), Y(v)))); ctx.stroke();
  };
  line(history.map((v, i) => [i, v]), "#1f77b4");
  const last = history.length - 1;
  line([[last, history[last]], ...forecast.map((v, i) => [last + 1 + i, v])], "#ff7f0e");
  [["#1f77b4", "history"], ["#ff7f0e", "forecast"]].forEach(([colour, name], k) => {
    const x = left + w - 190 + k * 100;
    ctx.strokeStyle = colour; ctx.lineWidth = 3; ctx.beginPath(); ctx.moveTo(x, 14); ctx.lineTo(x + 24, 14); ctx.stroke();
    ctx.fillText(name, x + 30, 8);
  });
}

$("wave").addEventListener("click", () => {
  const values = [];
  for (let i = 0; i < 50; i++) values.push((0.5 * Math.sin(i / 4) + 0.2 * Math.sin(i / 1.7)).toFixed(3));
  $("series").value = values.join(", ");
});

// The series typed or pasted: numbers separated by commas, spaces or new lines, or a CSV table (as
// `dnnzoo samples` writes series.csv), whose last column is read and whose header line is skipped.
function seriesValues(text) {
  const lines = text.trim().split(/\r?\n/).filter((l) => l.trim());
  const table = lines.length > 1 && lines.every((l) => l.includes(","));
  let cells = table ? lines.map((l) => l.split(",").pop().trim()) : text.split(/[\s,;]+/).filter(Boolean);
  if (table && !Number.isFinite(Number(cells[0]))) cells = cells.slice(1);  // the header
  const bad = cells.find((c) => !Number.isFinite(Number(c)));
  if (!cells.length || bad !== undefined) {
    throw showError("values: " + (bad === undefined ? "none given" : JSON.stringify(bad.slice(0, 20)) + " is not a number") +
                    "; give numbers separated by commas, spaces or new lines, or paste a CSV column");
  }
  return cells.map(Number);
}

$("forecast-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const history = seriesValues($("series").value);
  const answer = await api("/v1/forecast", { series: history, horizon: numberIn("horizon", "horizon") });
  plot($("plot"), history, answer.forecasts[0]);
  $("plot").dataset.forecast = answer.forecasts[0].length;
});

// -- generate ----------------------------------------------------------------------------------------

let pending = null;
async function generate() {
  $("seed-value").textContent = $("seed").value;
  const blob = await api("/v1/generate", { count: numberIn("count", "count"), seed: Number($("seed").value), format: "png", scale: 4 },
                         { blob: true });
  const grid = $("grid");
  if (grid.src) URL.revokeObjectURL(grid.src);
  grid.src = URL.createObjectURL(blob);
  grid.dataset.seed = $("seed").value;
}
const soon = () => { clearTimeout(pending); pending = setTimeout(generate, 120); };
$("seed").addEventListener("input", soon);
$("count").addEventListener("change", soon);

// -- autoencoder -------------------------------------------------------------------------------------

const aePad = pad($("ae-pad"), reconstruct);
async function reconstruct() {
  const answer = await api("/v1/reconstruct", { images: [aePad.png()] });
  const r = answer.reconstructions[0];
  $("ae-out").src = pngData(r.png);
  $("ae-error").textContent = "mean squared error " + r.error.toFixed(4) + " (" + answer.model + ")";
}
$("ae-clear").addEventListener("click", () => { aePad.clear(); $("ae-out").removeAttribute("src"); $("ae-error").textContent = ""; });
$("ae-gan").addEventListener("click", async () => {
  const answer = await api("/v1/generate", { count: 1, seed: Math.floor(Math.random() * 1e6) });
  const img = await loadImage(pngData(answer.images[0]));
  aePad.clear();
  aePad.ctx.imageSmoothingEnabled = false;
  aePad.ctx.drawImage(img, 0, 0, 280, 280);
  await reconstruct();
});

// -- table -----------------------------------------------------------------------------------------
// The form is built from the model's columns (/v1/columns, in its input order): a numeric column
// takes a number, its training mean as the hint; a text column offers the values training saw.

let tableModel = null;
async function table() {
  const index = await api("/v1/models");
  const ready = index.models.find((m) => m.task === "tabular" && m.state === "READY");
  if (!ready) throw showError("no ready tabular model on this server");
  if (tableModel === ready.name) return;
  const described = await api("/v1/columns", { model: ready.name });
  const fields = $("table-fields");
  fields.replaceChildren();
  described.columns.forEach((column, i) => {
    const label = document.createElement("label");
    label.textContent = column.name + " ";
    const field = document.createElement("input");
    field.name = column.name;
    field.dataset.numeric = column.numeric ? "1" : "";
    if (column.numeric) {
      field.inputMode = "decimal";
      field.placeholder = column.mean === null ? "number" : "e.g. " + Number(column.mean.toPrecision(4));
      if (column.std !== null) field.title = "training rows: mean " + column.mean.toPrecision(4) + ", sd " + column.std.toPrecision(3);
    } else {
      field.placeholder = column.values.length ? column.values.slice(0, 3).join(", ") : "text";
      const choices = document.createElement("datalist");
      choices.id = "table-values-" + i;
      column.values.forEach((value) => { const option = document.createElement("option"); option.value = value; choices.appendChild(option); });
      field.setAttribute("list", choices.id);
      label.appendChild(choices);
    }
    label.appendChild(field);
    fields.appendChild(label);
  });
  tableModel = ready.name;
  $("table-model").textContent = "model: " + ready.name + " v" + ready.version;
}

$("table-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const row = {};
  for (const field of $("table-fields").querySelectorAll("input")) {
    const text = field.value.trim();
    row[field.name] = text === "" ? null : field.dataset.numeric ? Number(text) : text;
    if (field.dataset.numeric && text !== "" && !Number.isFinite(row[field.name])) throw showError(field.name + ": give a number");
  }
  const answer = await api("/v1/predict", { model: tableModel, rows: [row] });
  const p = answer.predictions[0];
  if (answer.kind === "classification") {
    $("table-answer").textContent = answer.target + ": " + p.label;
    fillTable($("table-classes"), ["class", "score"], p.classes.map((c) => [c.label, c.score.toFixed(4)]));
  } else {
    $("table-answer").textContent = answer.target + ": " + p.value.toPrecision(6);
    $("table-classes").replaceChildren();
  }
  $("table-answer").dataset.label = p.label || String(p.value);
});

// -- models ------------------------------------------------------------------------------------------

async function models() {
  const [index, stats] = await Promise.all([api("/v1/models"), api("/v2/models/stats").catch(() => ({ model_stats: [] }))]);
  const byName = new Map((stats.model_stats || []).map((s) => [s.name + "/" + s.version, s]));
  const table = $("models");
  fillTable(table, ["model", "version", "state", "task", "inferences", "mean ms", "reason"], []);
  index.models.forEach((m) => {
    const s = byName.get(m.name + "/" + m.version) || {};
    const ok = (s.inference_stats || {}).success || {};
    const mean = ok.count ? (Number(ok.ns) / Number(ok.count) / 1e6).toFixed(2) : "";
    const row = table.insertRow();
    [m.name, m.version, m.state, m.task, s.inference_count || 0, mean, m.reason].forEach((v) => cell(row, v));
    row.cells[2].className = "state-" + m.state;
  });
}

// -- pages -------------------------------------------------------------------------------------------

const onShow = { generate, table, models };
function show() {
  let name = (location.hash || "#classify").slice(1);
  if (!$("page-" + name)) name = "classify";  // an unknown #page shows the first one, not a blank page
  document.querySelectorAll(".page").forEach((p) => p.classList.toggle("shown", p.id === "page-" + name));
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.hash === "#" + name));
  showError("");
  if (onShow[name]) onShow[name]();
}
window.addEventListener("hashchange", show);
show();
