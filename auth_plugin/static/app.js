/*
 * Food rotation admin page. Sign in with an access token (kept only in sessionStorage, sent only as a
 * Bearer header), then: send food photos to the rotation model and save corrections as training data
 * (Predict), browse and prune the collected feedback datasets (Data), and deploy, canary, promote,
 * roll back or retire model versions (Models). Written for a strict CSP: no inline code or styles, and
 * every string that comes from the server or the user enters the page through textContent only.
 */
"use strict";

const TOKEN_KEY = "frs_token";
const MAX_FILE_BYTES = 15 * 1000 * 1000;
const PARALLEL_PREDICTIONS = 2;
const PARALLEL_THUMBNAILS = 4;
const TIMEOUT_MS = 30_000;
const DEPLOY_TIMEOUT_MS = 120_000;
const DEGREES = [0, 90, 180, 270];
const VIEW_SCOPES = { predict: "predict", data: "admin", models: "admin" };

const state = {
  token: null, user: null, scopes: [], model: null,
  session: 0, controllers: new Set(), busy: { data: 0, models: 0 },
  queue: [], sending: 0, rows: [],
  activeDataset: null, openDataset: null, itemsGeneration: 0, thumbUrls: [], defaultVersion: null,
};

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

/* ---------- small helpers ---------- */

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function setStatus(node, text, kind = "") {
  node.textContent = text;
  for (const name of ["error", "busy", "ok"]) node.classList.toggle(name, kind === name);
}

function percent(value) {
  return typeof value === "number" && Number.isFinite(value) ? `${(value * 100).toFixed(1)}%` : "—";
}

function formatDate(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function sentence(text) {
  return /[.!?…]$/.test(text) ? text : `${text}.`;
}

function parseDegree(value) {
  const number = Number(value);
  return value !== null && value !== "" && DEGREES.includes(number) ? number : null;
}

function shortSha(sha) {
  return `${String(sha).slice(0, 12)}…`;
}

/* ---------- the API ---------- */

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

async function errorFrom(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || "the request failed";
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object") {
      code = String(body.error || code);
      message = String(body.message || message);
    }
  } catch {
    if (text.trim()) message = text.trim().slice(0, 200);
  }
  return new ApiError(response.status, code, message);
}

/* Turns any failure into an ApiError; a 401 on a signed-in session signs out ("cancelled" for the caller). */
function failure(err, timeout, session) {
  if (session !== state.session) return new ApiError(0, "cancelled", "signed out");
  if (err instanceof ApiError) {
    if (err.status === 401 && state.token) {
      signOut(`Your token is no longer accepted: ${sentence(err.message)}`, "error");
      return new ApiError(0, "cancelled", "signed out");
    }
    return err;
  }
  if (err.name === "AbortError") return new ApiError(0, "timeout", `the proxy did not answer within ${timeout / 1000} s`);
  if (err instanceof SyntaxError) return new ApiError(0, "bad_response", "the proxy's answer was not valid JSON");
  return new ApiError(0, "network", "the proxy did not answer (network error)");
}

/* fetch with the Bearer header and a timeout; JSON by default, or { blob, headers } with as: "blob". */
async function api(path, { method = "GET", json, body, headers = {}, as = "json", timeout = TIMEOUT_MS, token = state.token } = {}) {
  const session = state.session;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  const init = { method, headers: { ...headers, Authorization: `Bearer ${token}` }, signal: controller.signal, cache: "no-store" };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  state.controllers.add(controller);
  try {
    const response = await fetch(path, init);
    if (!response.ok) throw await errorFrom(response);
    if (as === "blob") return { blob: await response.blob(), headers: response.headers };
    return response.status === 204 ? {} : await response.json();
  } catch (err) {
    throw failure(err, timeout, session);
  } finally {
    clearTimeout(timer);
    state.controllers.delete(controller);
  }
}

function report(node, err, prefix) {
  if (err.code !== "cancelled") setStatus(node, `${prefix}${err.message}`, "error");
}

/* ---------- confirmation dialog and busy sections ---------- */

function confirmAction(text) {
  const dialog = $("confirm");
  if (dialog.open) return Promise.resolve(false);
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
  });
}

/* Controls marked data-locked stay disabled whatever the busy state (the default row, no archives). */
function applyBusy(section) {
  const busy = state.busy[section] > 0;
  const view = $(`view-${section}`);
  view.setAttribute("aria-busy", String(busy));
  for (const control of view.querySelectorAll("button, input, select")) {
    control.disabled = busy || control.dataset.locked === "1";
  }
}

async function withBusy(section, work) {
  state.busy[section] += 1;
  applyBusy(section);
  try {
    return await work();
  } finally {
    state.busy[section] -= 1;
    applyBusy(section);
  }
}

/* ---------- sign-in, sign-out, views ---------- */

function hasScope(scope) {
  return state.scopes.includes(scope);
}

async function signIn(token) {
  const button = $("sign-in");
  button.disabled = true;
  setStatus($("sign-in-error"), "Checking the token…", "busy");
  try {
    startSession(token, await api("/whoami", { token }));
  } catch (err) {
    const refused = err.status === 401 || err.status === 403;
    if (refused) sessionStorage.removeItem(TOKEN_KEY);
    const text = refused ? "That token was not accepted: " : "Could not sign in: ";
    setStatus($("sign-in-error"), text + sentence(err.message), "error");
    $("sign-in-form").hidden = false;
  } finally {
    button.disabled = false;
  }
}

function startSession(token, who) {
  state.token = token;
  state.user = String(who.user ?? "?");
  state.scopes = Array.isArray(who.scopes) ? who.scopes.map(String) : [];
  state.model = String(who.model || "food_rotation");
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  setStatus($("sign-in-error"), "");
  $("sign-in-form").hidden = true;
  clearAllViews();
  const allowed = Object.keys(VIEW_SCOPES).filter((view) => hasScope(VIEW_SCOPES[view]));
  $("whoami").textContent = `${state.user} (${state.scopes.join(", ")})` + (allowed.length ? "" : ": no views for these scopes");
  $("whoami").hidden = false;
  $("sign-out").hidden = false;
  $("nav").hidden = false;
  for (const view of Object.keys(VIEW_SCOPES)) $(`nav-${view}`).hidden = !allowed.includes(view);
  if (allowed.length) showView(allowed[0]);
}

function signOut(message = "", kind = "") {
  state.session += 1;
  for (const controller of state.controllers) controller.abort();
  state.controllers.clear();
  sessionStorage.removeItem(TOKEN_KEY);
  Object.assign(state, { token: null, user: null, scopes: [], model: null });
  if ($("confirm").open) $("confirm").close("no");
  clearAllViews();
  for (const view of Object.keys(VIEW_SCOPES)) $(`view-${view}`).hidden = true;
  $("nav").hidden = true;
  $("whoami").hidden = true;
  $("whoami").textContent = "";
  $("sign-out").hidden = true;
  $("sign-in-form").hidden = false;
  setStatus($("sign-in-error"), message, kind);
  $("token").focus();
}

function showView(name) {
  if (!state.token || !hasScope(VIEW_SCOPES[name])) return;
  for (const view of Object.keys(VIEW_SCOPES)) {
    $(`view-${view}`).hidden = view !== name;
    $(`nav-${view}`).setAttribute("aria-pressed", String(view === name));
  }
  if (name === "data") refreshData();
  if (name === "models") loadModels();
}

function clearAllViews() {
  clearResults();
  clearDatasets();
  clearModels();
}

/* ---------- Predict ---------- */

function addFiles(fileList) {
  for (const file of Array.from(fileList)) {
    const row = createResultRow(file);
    if (file.size > MAX_FILE_BYTES) {
      failRow(row, `file_too_large: ${(file.size / 1e6).toFixed(1)} MB is over the 15 MB limit; the photo was not sent`);
    } else {
      row.parts.progress.textContent = "waiting…";
      state.queue.push(row);
    }
  }
  pumpQueue();
}

function pumpQueue() {
  while (state.sending < PARALLEL_PREDICTIONS && state.queue.length) {
    const row = state.queue.shift();
    state.sending += 1;
    predictRow(row).finally(() => {
      state.sending -= 1;
      pumpQueue();
    });
  }
}

function figure(imgClass, alt, caption) {
  const node = el("figure", "photo");
  const img = el("img", imgClass);
  img.alt = alt;
  node.append(img, el("figcaption", "", caption));
  return { node, img };
}

function fact(list, label, className) {
  const value = el("dd", className, "—");
  list.append(el("dt", "", label), value);
  return value;
}

function createResultRow(file) {
  const row = { file, urls: [], modelDegree: null, modelVersion: "", cleared: false };
  const node = el("article", "result");
  const input = figure("input", "The photo as sent", "Sent");
  const upright = figure("upright", "The photo turned upright by the model", "Upright");
  upright.img.hidden = true;
  const url = URL.createObjectURL(file);
  row.urls.push(url);
  input.img.src = url;
  const facts = el("dl", "facts");
  const parts = {
    progress: el("p", "progress"), error: el("p", "error"), upright: upright.img,
    exif: fact(facts, "EXIF rotation", "exif-degree"), model: fact(facts, "Model turn", "model-degree"),
    confidence: fact(facts, "Confidence", "confidence"), version: fact(facts, "Model version", "model-version"),
  };
  Object.assign(parts, createFixControl(row));
  row.parts = parts;
  const images = el("div", "images");
  images.append(input.node, upright.node);
  const details = el("div", "details");
  details.append(parts.progress, facts, parts.error, parts.fix);
  node.append(el("h3", "file-name", file.name || "(unnamed file)"), images, details);
  row.node = node;
  state.rows.push(row);
  $("results").prepend(node);
  return row;
}

function createFixControl(row) {
  const fix = el("div", "fix");
  const label = el("label", "", "Right answer ");
  const select = el("select", "true-degree");
  for (const degree of DEGREES) {
    const option = el("option", "", degree === 0 ? "0° (upright)" : `${degree}°`);
    option.value = String(degree);
    select.append(option);
  }
  select.disabled = true;
  label.append(select);
  const send = el("button", "send-fix", "Save as training data");
  send.type = "button";
  send.disabled = true;
  const status = el("p", "fix-status status");
  select.addEventListener("change", () => previewChoice(row));
  send.addEventListener("click", () => sendFix(row));
  fix.append(label, send, status);
  return { fix, select, send, fixStatus: status };
}

async function predictRow(row) {
  if (row.cleared) return;
  row.parts.progress.textContent = "sending…";
  try {
    const { blob, headers } = await api(`/predictions/${enc(state.model)}`, {
      method: "POST", body: row.file, as: "blob",
      headers: { "Content-Type": row.file.type || "application/octet-stream", Accept: "image/jpeg" },
    });
    if (row.cleared) return;
    if (!blob.type.startsWith("image/")) throw new ApiError(200, "unexpected_answer", "the service did not answer with an image");
    showPrediction(row, blob, headers);
  } catch (err) {
    if (err.code !== "cancelled" && !row.cleared) failRow(row, `${err.code}: ${err.message}`);
  }
}

function showPrediction(row, blob, headers) {
  const { parts } = row;
  const degree = parseDegree(headers.get("X-Model-Degree"));
  const exif = parseDegree(headers.get("X-Exif-Degree"));
  const confidence = Number.parseFloat(headers.get("X-Confidence") ?? "");
  row.modelDegree = degree;
  row.modelVersion = headers.get("X-Model-Version") || "";
  const url = URL.createObjectURL(blob);
  row.urls.push(url);
  parts.upright.src = url;
  parts.upright.hidden = false;
  parts.exif.textContent = exif === null ? "—" : `${exif}°`;
  parts.model.textContent = degree === null ? "—" : `${degree}°`;
  parts.confidence.textContent = percent(confidence);
  parts.version.textContent = row.modelVersion || "—";
  parts.progress.textContent = "";
  parts.select.value = String(degree ?? 0);
  parts.select.disabled = false;
  parts.send.disabled = false;
}

function failRow(row, message) {
  row.parts.progress.textContent = "";
  row.parts.error.textContent = message;
  row.node.classList.add("failed");
}

/* The server turned the photo counter-clockwise by d; answer t needs a further (t - d) counter-clockwise,
   which is rotate(d - t) in CSS, where positive angles turn clockwise. */
function previewChoice(row) {
  const chosen = Number(row.parts.select.value);
  row.parts.upright.style.transform = `rotate(${(row.modelDegree ?? 0) - chosen}deg)`;
  setStatus(row.parts.fixStatus, "");
}

async function sendFix(row) {
  const { parts } = row;
  const form = new FormData();
  form.append("image", row.file, row.file.name || "photo");
  form.append("true_degree", parts.select.value);
  if (row.modelDegree !== null) form.append("model_degree", String(row.modelDegree));
  if (row.modelVersion) form.append("model_version", row.modelVersion);
  parts.send.disabled = true;
  setStatus(parts.fixStatus, "saving…", "busy");
  try {
    const saved = await api("/feedback", { method: "POST", body: form });
    const text = saved.duplicate ? `Already collected: count ${saved.count}` : `Saved to ${saved.dataset} (count ${saved.count})`;
    setStatus(parts.fixStatus, text, "ok");
  } catch (err) {
    report(parts.fixStatus, err, "Not saved: ");
  } finally {
    parts.send.disabled = false;
  }
}

function clearResults() {
  state.queue = [];
  for (const row of state.rows) {
    row.cleared = true;
    row.urls.forEach((url) => URL.revokeObjectURL(url));
  }
  state.rows = [];
  $("results").replaceChildren();
}

/* ---------- Data ---------- */

/* Reloads the list, then opens `open`, else the dataset already open, else the active one. */
async function refreshData({ open = null, quiet = false } = {}) {
  const status = $("data-status");
  if (!quiet) setStatus(status, "Loading datasets…", "busy");
  return withBusy("data", async () => {
    try {
      const data = await api("/datasets");
      const list = Array.isArray(data.datasets) ? data.datasets : [];
      state.activeDataset = data.active ?? null;
      renderDatasets(list);
      const names = list.map((dataset) => dataset.name);
      const target = [open, state.openDataset, state.activeDataset].find((name) => name && names.includes(name));
      if (!quiet) setStatus(status, list.length ? "" : "No datasets yet.");
      if (target) await openDataset(target, quiet);
      else clearItems();
    } catch (err) {
      report(status, err, "Could not load the datasets: ");
    }
  });
}

function renderDatasets(list) {
  const rows = list.map((dataset) => {
    const tr = el("tr", "dataset");
    const active = dataset.name === state.activeDataset || !dataset.closed_at;
    tr.classList.toggle("active", active);
    tr.classList.toggle("open", dataset.name === state.openDataset);
    tr.dataset.name = String(dataset.name);
    const perClass = dataset.per_class || {};
    tr.append(el("td", "name", dataset.name), el("td", "state", active ? "active" : `closed ${formatDate(dataset.closed_at)}`),
      el("td", "photos", dataset.photos ?? 0), el("td", "submissions", dataset.submissions ?? 0),
      ...DEGREES.map((degree) => el("td", `c${degree}`, perClass[String(degree)] ?? 0)));
    const open = el("button", "open", "Open");
    open.type = "button";
    open.setAttribute("aria-label", `Open ${dataset.name}`);
    open.addEventListener("click", () => withBusy("data", () => openDataset(String(dataset.name))));
    const cell = el("td", "actions");
    cell.append(open);
    tr.append(cell);
    return tr;
  });
  $("datasets").tBodies[0].replaceChildren(...rows);
  applyBusy("data");
}

async function openDataset(name, quiet = false) {
  const generation = ++state.itemsGeneration;
  const status = $("data-status");
  if (!quiet) setStatus(status, `Loading ${name}…`, "busy");
  try {
    const data = await api(`/datasets/${enc(name)}`);
    if (generation !== state.itemsGeneration) return;
    state.openDataset = name;
    for (const tr of document.querySelectorAll("#datasets tr.dataset")) tr.classList.toggle("open", tr.dataset.name === name);
    $("dataset-title").textContent = name;
    const closed = data.closed_at ? `closed ${formatDate(data.closed_at)}` : "active";
    $("dataset-summary").textContent = `${data.photos ?? 0} photos, ${data.submissions ?? 0} submissions; ${closed}`;
    renderItems(name, Array.isArray(data.items) ? data.items : [], generation);
    if (!quiet) setStatus(status, "");
  } catch (err) {
    report(status, err, `Could not open ${name}: `);
  }
}

function renderItems(name, items, generation) {
  clearItems(false);
  const grid = $("dataset-items");
  if (!items.length) {
    grid.append(el("p", "empty", "No photos in this dataset yet."));
    return;
  }
  const pending = items.map((item) => {
    const card = itemCard(name, item);
    grid.append(card.node);
    return { img: card.img, sha: String(item.sha256) };
  });
  loadThumbnails(name, pending, generation);
  applyBusy("data");
}

function itemMeta(item) {
  const answer = item.model_degree === null || item.model_degree === undefined
    ? "no model answer" : `model said ${item.model_degree}°` + (item.model_version ? ` (v${item.model_version})` : "");
  return [shortSha(item.sha256), answer, item.user ? `by ${item.user}` : "", item.time ? formatDate(item.time) : ""]
    .filter(Boolean).join(" · ");
}

function itemCard(name, item) {
  const node = el("figure", "item");
  const img = el("img", "thumb");
  img.alt = `photo ${shortSha(item.sha256)}`;
  const caption = el("figcaption");
  const line = el("p", "answer");
  line.append(el("span", "degree", `was turned ${item.true_degree}°`), " ", el("span", "count", `×${item.count ?? 1}`));
  const remove = el("button", "remove", "Remove");
  remove.type = "button";
  remove.setAttribute("aria-label", `Remove photo ${shortSha(item.sha256)}`);
  remove.addEventListener("click", () => removeItem(name, item));
  caption.append(line, el("p", "meta", itemMeta(item)), remove);
  node.append(img, caption);
  return { node, img };
}

async function loadThumbnails(name, pending, generation) {
  const worker = async () => {
    while (pending.length && generation === state.itemsGeneration) {
      const { img, sha } = pending.shift();
      try {
        const { blob } = await api(`/datasets/${enc(name)}/photos/${enc(sha)}/thumbnail`, { as: "blob" });
        if (generation !== state.itemsGeneration) return;
        const url = URL.createObjectURL(blob);
        state.thumbUrls.push(url);
        img.src = url;
      } catch (err) {
        if (err.code === "cancelled") return;
        img.alt = `thumbnail not available: ${err.message}`;
        img.classList.add("missing");
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL_THUMBNAILS }, worker));
}

async function removeItem(name, item) {
  const question = `Remove photo ${shortSha(item.sha256)} (was turned ${item.true_degree}°, ×${item.count ?? 1}) from ${name}? It will no longer be used for training.`;
  if (!(await confirmAction(question))) return;
  const status = $("data-status");
  await withBusy("data", async () => {
    setStatus(status, "Removing…", "busy");
    try {
      await api(`/datasets/${enc(name)}/photos/${enc(item.sha256)}`, { method: "DELETE" });
      setStatus(status, `Removed ${shortSha(item.sha256)} from ${name}.`, "ok");
    } catch (err) {
      report(status, err, "Not removed: ");
      if (err.code === "cancelled") return;
    }
    await refreshData({ open: name, quiet: true });
  });
}

async function startNewDataset() {
  const old = state.activeDataset;
  const question = old
    ? `Close ${old} and start a new dataset? ${old} keeps its photos; new corrections go to the new dataset.`
    : "Start a new dataset? New corrections will go to it.";
  if (!(await confirmAction(question))) return;
  const status = $("data-status");
  await withBusy("data", async () => {
    setStatus(status, "Starting a new dataset…", "busy");
    try {
      const created = await api("/datasets", { method: "POST", json: {} });
      state.openDataset = created.name ?? null;
      setStatus(status, `Started ${created.name}` + (old ? `; ${old} is closed.` : "."), "ok");
    } catch (err) {
      report(status, err, "Refused: ");
      if (err.code === "cancelled") return;
    }
    await refreshData({ quiet: true });
  });
}

function clearItems(resetTitle = true) {
  state.itemsGeneration += 1;
  state.thumbUrls.forEach((url) => URL.revokeObjectURL(url));
  state.thumbUrls = [];
  $("dataset-items").replaceChildren();
  if (resetTitle) {
    $("dataset-title").textContent = "";
    $("dataset-summary").textContent = "";
  }
}

function clearDatasets() {
  clearItems();
  Object.assign(state, { activeDataset: null, openDataset: null });
  $("datasets").tBodies[0].replaceChildren();
  setStatus($("data-status"), "");
}

/* ---------- Models ---------- */

async function loadModels({ quiet = false } = {}) {
  const status = $("models-status");
  const base = `/admin/models/${enc(state.model)}`;
  if (!quiet) setStatus(status, "Loading versions…", "busy");
  return withBusy("models", async () => {
    const [versions, archives] = await Promise.allSettled([api(base), api(`${base}/archives`)]);
    const failed = [versions, archives].find((result) => result.status === "rejected");
    if (failed?.reason.code === "cancelled") return;
    if (versions.status === "fulfilled") renderVersions(versions.value.versions || []);
    renderArchives(archives.status === "fulfilled" ? archives.value.archives || [] : null);
    if (versions.status === "rejected") report(status, versions.reason, "Could not load the versions: ");
    else if (archives.status === "rejected") report(status, archives.reason, "Could not load the archives: ");
    else if (!quiet) setStatus(status, "");
  });
}

function accuracyText(version) {
  let text = `val ${percent(version.val_acc)}`;
  if (typeof version.heldout_acc === "number") text += ` · held-out corrections: ${percent(version.heldout_acc)}`;
  return text;
}

function renderVersions(list) {
  const current = list.find((version) => version.default);
  state.defaultVersion = current ? String(current.version) : null;
  const rows = list.map((version) => versionRow(version));
  if (!rows.length) {
    const cell = el("td", "empty", "No versions are deployed.");
    cell.colSpan = 8;
    const tr = el("tr");
    tr.append(cell);
    rows.push(tr);
  }
  $("versions").tBodies[0].replaceChildren(...rows);
  applyBusy("models");
}

function versionRow(version) {
  const name = String(version.version);
  const canary = Number(version.canary_percent) || 0;
  const tr = el("tr", "version");
  tr.classList.toggle("is-default", Boolean(version.default));
  tr.classList.toggle("is-canary", canary > 0);
  const cell = el("td", "version", name);
  cell.title = [version.archive, version.arch].filter(Boolean).join(" · ");
  const accuracy = el("td", "accuracy", accuracyText(version));
  if (typeof version.train_acc === "number") accuracy.title = `train ${percent(version.train_acc)}`;
  const inFlight = Number(version.in_flight) || 0;
  tr.append(cell, el("td", "default", version.default ? "default" : ""), el("td", "canary", canary > 0 ? `${Number(canary.toFixed(1))}%` : ""),
    el("td", "workers", `${version.workers ?? 0}` + (inFlight ? ` (${inFlight} in flight)` : "")), accuracy,
    el("td", "dataset", version.dataset ?? "—"), el("td", "created", formatDate(version.created_at)), versionActions(name, canary, Boolean(version.default)));
  return tr;
}

function versionActions(name, canary, isDefault) {
  const cell = el("td", "actions");
  const input = el("input", "canary-percent");
  Object.assign(input, { type: "number", min: "0", max: "100", step: "1", value: String(canary) });
  input.setAttribute("aria-label", `Canary traffic for ${name} (%)`);
  const buttons = [["set-canary", "Set canary", () => setCanary(name, input.value)], ["promote", "Promote", () => promote(name)],
    ["retire", "Retire", () => retire(name)]].map(([className, label, action]) => {
    const button = el("button", className, label);
    button.type = "button";
    button.addEventListener("click", action);
    return button;
  });
  for (const control of [input, ...buttons]) if (isDefault) control.dataset.locked = "1";
  cell.append(input, ...buttons);
  return cell;
}

function renderArchives(archives) {
  const select = $("deploy-archive");
  const candidates = (archives || []).filter((archive) => !archive.deployed);
  const options = candidates.map((archive) => {
    const option = el("option", "", `${archive.archive} (v${archive.version}, val ${percent(archive.val_acc)}, data ${archive.dataset ?? "—"})`);
    option.value = String(archive.archive);
    return option;
  });
  if (!options.length) options.push(el("option", "", archives ? "No archives to deploy" : "Archives not available"));
  options[0].selected = true;
  if (!candidates.length) options[0].value = "";
  select.replaceChildren(...options);
  for (const control of [select, $("deploy")]) control.dataset.locked = candidates.length ? "" : "1";
  applyBusy("models");
}

/* Confirm, call, show progress / the server's answer, then reload the table without clearing that answer. */
async function modelAction({ question, progress, path, body = {}, timeout = TIMEOUT_MS, success }) {
  if (!(await confirmAction(question))) return;
  const status = $("models-status");
  await withBusy("models", async () => {
    setStatus(status, progress, "busy");
    try {
      const result = await api(`/admin/models/${enc(state.model)}/${path}`, { method: "POST", json: body, timeout });
      setStatus(status, success(result), "ok");
    } catch (err) {
      if (err.code === "cancelled") return;
      const refused = err.status >= 400 && err.status < 500;
      const hint = err.code === "timeout" ? "; it may still be running: refresh in a moment" : "";
      setStatus(status, `${refused ? "Refused" : "Failed"}: ${err.message}${hint}`, "error");
    }
    await loadModels({ quiet: true });
  });
}

function setCanary(version, value) {
  const percentValue = Number(value);
  if (value === "" || !Number.isFinite(percentValue) || percentValue < 0 || percentValue > 100) {
    setStatus($("models-status"), "The canary share must be a number from 0 to 100.", "error");
    return;
  }
  modelAction({
    question: percentValue > 0 ? `Send ${percentValue}% of predictions to ${version}?` : `Stop sending predictions to ${version} (canary 0%)?`,
    progress: `Setting the canary share of ${version}…`, path: "canary", body: { version, percent: percentValue },
    success: () => (percentValue > 0 ? `${version} now gets ${percentValue}% of predictions` : `${version} gets no predictions now`),
  });
}

function promote(version) {
  const old = state.defaultVersion;
  modelAction({
    question: `Promote ${version} to default?` + (old ? ` ${old} will be drained and unregistered.` : ""),
    progress: `Promoting ${version}…`, path: "promote", body: { version },
    success: () => `${version} is now the default`,
  });
}

function retire(version) {
  modelAction({
    question: `Retire ${version}? It will be drained and unregistered; its canary share goes back to the default.`,
    progress: `Retiring ${version}…`, path: "retire", body: { version },
    success: () => `${version} is retired`,
  });
}

function rollback() {
  const current = state.defaultVersion;
  modelAction({
    question: "Roll back to the previous default version?" + (current ? ` ${current} will be drained and unregistered.` : ""),
    progress: "Rolling back…", path: "rollback",
    success: (result) => (result.default ? `Rolled back: ${result.default} is now the default` : "Rolled back"),
  });
}

function deploy() {
  const archive = $("deploy-archive").value;
  const canary = Number($("deploy-canary").value);
  if (!archive) return;
  if ($("deploy-canary").value === "" || !Number.isFinite(canary) || canary < 0 || canary > 100) {
    setStatus($("models-status"), "The canary share must be a number from 0 to 100.", "error");
    return;
  }
  modelAction({
    question: `Deploy ${archive} with ${canary}% of predictions? It must pass the smoke gate first (up to a minute).`,
    progress: `deploying… ${archive} goes through the smoke gate first; this can take up to a minute`,
    path: "deploy", body: { archive, canary }, timeout: DEPLOY_TIMEOUT_MS,
    success: (result) => `Deployed ${result.version}: gate accuracy ${percent(result.gate_accuracy)}, canary ${result.canary_percent}%`,
  });
}

function clearModels() {
  $("versions").tBodies[0].replaceChildren();
  $("deploy-archive").replaceChildren();
  state.defaultVersion = null;
  setStatus($("models-status"), "");
}

/* ---------- wiring ---------- */

function wireDropZone() {
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("dragging");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    if (event.dataTransfer?.files?.length) addFiles(event.dataTransfer.files);
  });
  // a photo dropped next to the zone must not make the browser navigate away from the page
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
  $("files").addEventListener("change", (event) => {
    addFiles(event.target.files);
    event.target.value = "";
  });
}

function init() {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token) signIn(token);
    else setStatus($("sign-in-error"), "Enter a token first.", "error");
  });
  $("sign-out").addEventListener("click", () => signOut("Signed out.", "ok"));
  for (const view of Object.keys(VIEW_SCOPES)) $(`nav-${view}`).addEventListener("click", () => showView(view));
  $("confirm-yes").addEventListener("click", () => $("confirm").close("yes"));
  $("confirm-no").addEventListener("click", () => $("confirm").close("no"));
  wireDropZone();
  $("clear-results").addEventListener("click", clearResults);
  $("data-refresh").addEventListener("click", () => refreshData());
  $("new-dataset").addEventListener("click", startNewDataset);
  $("models-refresh").addEventListener("click", () => loadModels());
  $("rollback").addEventListener("click", rollback);
  $("deploy").addEventListener("click", deploy);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    $("sign-in-form").hidden = true; // shown again if the saved token is refused
    signIn(saved);
  } else {
    $("token").focus();
  }
}

document.addEventListener("DOMContentLoaded", init);
