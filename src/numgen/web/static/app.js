"use strict";
// The numgen page: three small tools over this server's /api endpoints (documented at /docs).
// Plain browser JavaScript, no framework and no build step, so the page works offline from the
// files the server ships.

const DIGIT_COLOURS = [  // matplotlib's tab10, as numgen's plots use
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];
const PLANE = 480;  // the latent canvas's size in CSS pixels
const MANIFOLD_SIZE = 30;  // digits per side of the manifold picture

const $ = (id) => document.getElementById(id);

// --- talking to the API ---------------------------------------------------------------------------

/** A query string; array values repeat their key (z=1&z=2); null and undefined are left out. */
function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined) continue;
    for (const item of [].concat(value)) search.append(key, item);
  }
  return search.toString();
}

/** The API's error as one line: its `detail`, or each invalid field as "field: message". */
function errorMessage(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => `${e.loc.slice(1).join(".")}: ${e.msg}`).join("; ");
  }
  return `the server answered HTTP ${status}`;
}

/** fetch() that throws the API's error message when the answer is not a success. */
async function request(url, options) {
  const response = await fetch(url, options);
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new Error(errorMessage(body, response.status));
  }
  return response;
}

function showError(id, err) {
  $(id).hidden = !err;
  $(id).textContent = err ? err.message : "";
}

/** An async task whose result is shown only if no newer run of it started in the meantime
 *  (typing fast must not let an old answer overwrite a newer one); errors go to `errorId`. */
function newestOnly(errorId, load, show) {
  let ticket = 0;
  return async () => {
    const mine = ++ticket;
    try {
      const result = await load();
      if (mine === ticket) {
        show(result);
        showError(errorId, null);
      }
    } catch (err) {
      if (mine === ticket) showError(errorId, err);
    }
  };
}

function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function fillSelect(select, values, chosen, label = String) {
  select.replaceChildren(...values.map((value) => new Option(label(value), value)));
  if (chosen !== null && chosen !== undefined) select.value = chosen;
}

const whole = (id) => Math.max(0, Math.floor(Number($(id).value) || 0));

// --- latent explorer ------------------------------------------------------------------------------

const explorer = {
  info: null,  // the served model, as /api/models lists it
  limit: 10,  // the largest |z| the API decodes
  scatter: null,  // {points: [[x, y], ...], labels: [...], bounds}
  view: null,  // the visible rectangle of the plane: {x_min, x_max, y_min, y_max}
  point: null,  // the decoded point [x, y]
  hidden: new Set(),  // digits left out of the scatter
  manifold: null,  // {view, image}: the last manifold picture and the rectangle it covers
  wanted: null,  // the next point to decode; only the newest waits while one is in flight
  busy: false,
};

const explorerDigit = () => (explorer.info.conditional ? $("explorer-digit").value : null);

/** Fractions of the canvas (0..1 from the left and from the top) -> a point of the plane. */
function toPlane(fx, fy) {
  const v = explorer.view;
  return [v.x_min + fx * (v.x_max - v.x_min), v.y_max - fy * (v.y_max - v.y_min)];
}

/** A point of the plane -> canvas pixels. */
function toCanvas(x, y) {
  const v = explorer.view;
  return [
    ((x - v.x_min) / (v.x_max - v.x_min)) * PLANE,
    ((v.y_max - y) / (v.y_max - v.y_min)) * PLANE,
  ];
}

/** A square view of `span` around (cx, cy), kept inside the range the API decodes. */
function squareView(cx, cy, span) {
  const limit = explorer.limit;
  span = Math.min(Math.max(span, 0.01), 2 * limit);
  cx = Math.min(Math.max(cx, -limit + span / 2), limit - span / 2);
  cy = Math.min(Math.max(cy, -limit + span / 2), limit - span / 2);
  return { x_min: cx - span / 2, x_max: cx + span / 2, y_min: cy - span / 2, y_max: cy + span / 2 };
}

function homeView() {
  const b = explorer.scatter.bounds;
  const span = Math.max(b.x_max - b.x_min, b.y_max - b.y_min, 1) * 1.1;
  return squareView((b.x_min + b.x_max) / 2, (b.y_min + b.y_max) / 2, span);
}

/** A round tick spacing (1, 2 or 5 × 10^k) giving about five ticks over `span`. */
function tickStep(span) {
  const raw = span / 5;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw);
}

function drawTicks(ctx) {
  const v = explorer.view;
  const step = tickStep(v.x_max - v.x_min);
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  ctx.strokeStyle = "rgba(255, 255, 255, 0.12)";
  ctx.fillStyle = "rgba(255, 255, 255, 0.6)";
  ctx.font = "11px system-ui, sans-serif";
  for (let x = Math.ceil(v.x_min / step) * step; x <= v.x_max; x += step) {
    const [px] = toCanvas(x, 0);
    ctx.beginPath(); ctx.moveTo(px, 0); ctx.lineTo(px, PLANE); ctx.stroke();
    ctx.fillText(x.toFixed(decimals), px + 3, PLANE - 4);
  }
  for (let y = Math.ceil(v.y_min / step) * step; y <= v.y_max; y += step) {
    const [, py] = toCanvas(0, y);
    ctx.beginPath(); ctx.moveTo(0, py); ctx.lineTo(PLANE, py); ctx.stroke();
    ctx.fillText(y.toFixed(decimals), 3, py - 3);
  }
}

function draw() {
  const canvas = $("latent");
  const ctx = canvas.getContext("2d");
  const scale = canvas.width / PLANE;
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, PLANE, PLANE);
  const manifold = $("manifold-toggle").checked ? explorer.manifold : null;
  if (manifold) {  // placed on the rectangle it covers, so it lines up while a new one loads
    const m = manifold.view;
    const [left, top] = toCanvas(m.x_min, m.y_max);
    const [right, bottom] = toCanvas(m.x_max, m.y_min);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(manifold.image, left, top, right - left, bottom - top);
  }
  drawTicks(ctx);
  const { points, labels } = explorer.scatter;
  ctx.globalAlpha = manifold ? 0.5 : 0.85;
  points.forEach(([x, y], i) => {
    if (explorer.hidden.has(labels[i])) return;
    const [px, py] = toCanvas(x, y);
    ctx.fillStyle = DIGIT_COLOURS[labels[i]];
    ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
  });
  ctx.globalAlpha = 1;
  if (explorer.point) {
    const [px, py] = toCanvas(...explorer.point);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(px - 9, py); ctx.lineTo(px + 9, py);
    ctx.moveTo(px, py - 9); ctx.lineTo(px, py + 9);
    ctx.stroke();
    ctx.lineWidth = 1;
  }
  const v = explorer.view;
  $("view-range").textContent =
    `z[0] from ${v.x_min.toFixed(2)} to ${v.x_max.toFixed(2)}, ` +
    `z[1] from ${v.y_min.toFixed(2)} to ${v.y_max.toFixed(2)}`;
  canvas.dataset.manifold = manifold ? "shown" : "hidden";
}

/** Decode `point`; while a request is in flight only the newest point waits, so moving the mouse
 *  never queues up more than one request. */
async function decodeAt(point) {
  explorer.point = point.map((c) => Math.round(c * 1000) / 1000);
  explorer.wanted = explorer.point;
  draw();
  if (explorer.busy) return;
  explorer.busy = true;
  try {
    while (explorer.wanted) {
      const [x, y] = explorer.wanted;
      explorer.wanted = null;
      const params = { z: [x, y], model: explorer.info.name, digit: explorerDigit(), format: "json" };
      const answer = await (await request(`/api/decode?${query(params)}`)).json();
      $("decoded").src = `data:image/png;base64,${answer.png}`;
      $("coords").textContent = `z = (${x.toFixed(3)}, ${y.toFixed(3)})`;
    }
    showError("explorer-error", null);
  } catch (err) {
    showError("explorer-error", err);
  } finally {
    explorer.busy = false;
  }
}

const loadManifold = newestOnly(
  "explorer-error",
  async () => {
    const view = { ...explorer.view };
    const params = { ...view, n: MANIFOLD_SIZE, model: explorer.info.name, digit: explorerDigit() };
    const blob = await (await request(`/api/manifold?${query(params)}`)).blob();
    return { view, image: await createImageBitmap(blob) };
  },
  (manifold) => {
    explorer.manifold = manifold;
    draw();
  },
);
const refreshManifold = debounce(() => $("manifold-toggle").checked && loadManifold(), 200);

function setView(view) {
  explorer.view = view;
  draw();
  refreshManifold();
}

function eventPoint(event) {
  const rect = $("latent").getBoundingClientRect();
  return toPlane((event.clientX - rect.left) / rect.width, (event.clientY - rect.top) / rect.height);
}

function zoom(event) {
  event.preventDefault();
  const [x, y] = eventPoint(event);
  const v = explorer.view;
  const factor = Math.exp(event.deltaY * 0.002);  // the point under the cursor stays put
  const span = (v.x_max - v.x_min) * factor;
  const cx = x + (((v.x_min + v.x_max) / 2) - x) * factor;
  const cy = y + (((v.y_min + v.y_max) / 2) - y) * factor;
  setView(squareView(cx, cy, span));
}

function step(event) {
  const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };
  if (!(event.key in moves)) return;
  event.preventDefault();
  const v = explorer.view;
  const [dx, dy] = moves[event.key].map((m) => (m * (v.x_max - v.x_min)) / 50);
  const [x, y] = explorer.point || toPlane(0.5, 0.5);
  const clamp = (c, lo, hi) => Math.min(Math.max(c, lo), hi);
  decodeAt([clamp(x + dx, v.x_min, v.x_max), clamp(y + dy, v.y_min, v.y_max)]);
}

function buildLegend() {
  const items = DIGIT_COLOURS.map((colour, digit) => {
    const button = document.createElement("button");
    button.type = "button";
    button.setAttribute("aria-pressed", "true");
    button.innerHTML = `<span class="swatch" style="background:${colour}"></span>${digit}`;
    button.addEventListener("click", () => {
      const shown = explorer.hidden.has(digit);
      shown ? explorer.hidden.delete(digit) : explorer.hidden.add(digit);
      button.setAttribute("aria-pressed", String(shown));
      draw();
    });
    const item = document.createElement("li");
    item.append(button);
    return item;
  });
  $("legend").replaceChildren(...items);
}

async function selectExplorerModel(info) {
  explorer.info = info;
  $("explorer-digit-label").hidden = !info.conditional;
  explorer.scatter = await (await request(`/api/scatter?${query({ model: info.name })}`)).json();
  explorer.manifold = null;
  setView(homeView());
  await decodeAt(toPlane(0.5, 0.5));
}

function setUpExplorer(models, chosen) {
  const usable = models.filter((m) => m.explorer);
  if (!chosen) {
    $("explorer").querySelector(".explorer-body").hidden = true;
    showError("explorer-error", new Error("No served model has a 2-D latent to explore."));
    return Promise.resolve();
  }
  const canvas = $("latent");
  const ratio = window.devicePixelRatio || 1;  // a sharp plane on high-density screens
  canvas.width = canvas.height = Math.round(PLANE * ratio);
  fillSelect($("explorer-model"), usable.map((m) => m.name), chosen);
  fillSelect($("explorer-digit"), [...Array(10).keys()], 0);
  buildLegend();
  const byName = (name) => usable.find((m) => m.name === name);
  $("explorer-model").addEventListener("change", (e) => {
    selectExplorerModel(byName(e.target.value)).catch((err) => showError("explorer-error", err));
  });
  $("explorer-digit").addEventListener("change", () => {
    explorer.manifold = null;
    refreshManifold();
    decodeAt(explorer.point);
  });
  $("manifold-toggle").addEventListener("change", () => {
    draw();
    refreshManifold();
  });
  $("reset-view").addEventListener("click", () => setView(homeView()));
  canvas.addEventListener("pointermove", (e) => decodeAt(eventPoint(e)));
  canvas.addEventListener("pointerdown", (e) => decodeAt(eventPoint(e)));
  canvas.addEventListener("wheel", zoom, { passive: false });
  canvas.addEventListener("keydown", step);
  return selectExplorerModel(byName(chosen));
}

// --- number writer --------------------------------------------------------------------------------

const writer = {
  style: null,  // a style vector copied from an uploaded image; null: use the style seed
  url: null,  // the object URL of the picture on show (and to download)
};

const write = newestOnly(
  "writer-error",
  async () => {
    const text = $("text").value.trim();
    const params = {
      text, model: $("writer-model").value, seed: whole("seed"),
      height: $("height").value, ink: $("ink").value,
    };
    if (writer.style) params.style = writer.style;
    else params.style_seed = whole("style-seed");
    const blob = await (await request(`/api/write?${query(params)}`)).blob();
    return { text, blob };
  },
  ({ text, blob }) => {
    if (writer.url) URL.revokeObjectURL(writer.url);
    writer.url = URL.createObjectURL(blob);
    $("number").src = writer.url;
    $("download").href = writer.url;
    $("download").download = `numgen-${text}.png`;
    $("download").hidden = false;
  },
);

function useSeedStyle() {
  writer.style = null;
  $("style-note").hidden = true;
  $("style-seed").disabled = false;
}

async function copyStyle(input) {
  const file = input.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("image", file);
  try {
    const url = `/api/style?${query({ model: $("writer-model").value })}`;
    const answer = await (await request(url, { method: "POST", body: form })).json();
    writer.style = answer.style;
    $("style-name").textContent = file.name;
    $("style-thumb").src = URL.createObjectURL(file);
    $("style-note").hidden = false;
    $("style-seed").disabled = true;
    await write();
  } catch (err) {
    showError("writer-error", err);
  } finally {
    input.value = "";  // choosing the same file again must fire "change" again
  }
}

function setUpWriter(models, chosen, limits) {
  fillSelect($("writer-model"), models.filter((m) => m.conditional).map((m) => m.name), chosen);
  $("text").maxLength = limits.max_digits;
  for (const id of ["style-seed", "seed"]) $(id).max = limits.max_seed;
  const form = $("writer-form");
  const writeSoon = debounce(write, 250);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    write();
  });
  form.addEventListener("input", (e) => e.target.type !== "file" && writeSoon());
  $("random-style").addEventListener("click", () => {
    useSeedStyle();
    $("style-seed").value = Math.floor(Math.random() * 1_000_000);
    write();
  });
  $("clear-style").addEventListener("click", () => {
    useSeedStyle();
    write();
  });
  $("style-file").addEventListener("change", (e) => copyStyle(e.target));
  return write();
}

// --- digit grid -----------------------------------------------------------------------------------

const drawGrid = newestOnly(
  "grid-error",
  async () => {
    const params = {
      digit: $("grid-digit").value, n: $("grid-n").value, seed: whole("grid-seed"),
      model: $("grid-model").value,
    };
    return (await request(`/api/digits?${query(params)}`)).blob();
  },
  (blob) => {
    const image = $("grid-image");
    if (image.src) URL.revokeObjectURL(image.src);
    image.onload = () => { image.style.width = `${image.naturalWidth * 2}px`; };
    image.src = URL.createObjectURL(blob);
  },
);

function setUpGrid(models, chosen, limits) {
  fillSelect($("grid-model"), models.filter((m) => m.conditional).map((m) => m.name), chosen);
  fillSelect($("grid-digit"), [...Array(10).keys()], 7);
  $("grid-n").max = limits.max_samples;
  $("grid-seed").max = limits.max_seed;
  const form = $("grid-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    drawGrid();
  });
  form.addEventListener("input", debounce(drawGrid, 250));
  return drawGrid();
}

// --- start ----------------------------------------------------------------------------------------

async function start() {
  try {
    const served = await (await request("/api/models")).json();
    explorer.limit = served.limits.max_coordinate;
    const tools = [setUpExplorer(served.models, served.explorer)];
    if (served.writer) {
      tools.push(setUpWriter(served.models, served.writer, served.limits));
      tools.push(setUpGrid(served.models, served.writer, served.limits));
    } else {
      for (const id of ["writer", "grid"]) $(id).hidden = true;
    }
    await Promise.all(tools);
  } catch (err) {
    showError("explorer-error", err);
  }
  document.body.dataset.ready = "true";  // for tests: the first pictures have arrived
}

start();
