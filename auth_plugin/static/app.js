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
  activeDataset: null, openDataset: null, itemsGeneration: 0, thumbUrls: [], defaultVersion: null, rollbackTarget: null,
};

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

/* ---------- small helpers ---------- */

/* createElement + className + textContent (never HTML) + plain properties (type, alt, value, ariaLabel...) */
function el(tag, className, text, props = {}) {
  const node = Object.assign(document.createElement(tag), props);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function button(className, label, onClick, props = {}) {
  const node = el("button", className, label, { type: "button", ...props });
  node.addEventListener("click", onClick);
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
  const date = new Date(iso ?? "");
  if (!iso || Number.isNaN(date.getTime())) return iso ? String(iso) : "—";
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/* The collected datasets a version was retrained on, as one cell's text. */
const datasetNames = (row) => (Array.isArray(row.datasets) && row.datasets.length ? row.datasets.join(", ") : "—");
const sentence = (text) => (/[.!?…]$/.test(text) ? text : `${text}.`);
const shortSha = (sha) => `${String(sha).slice(0, 12)}…`;
const degreeText = (degree) => (degree === null ? "—" : `${degree}°`);

function parseDegree(value) {
  const number = Number(value);
  return value !== null && value !== "" && DEGREES.includes(number) ? number : null;
}

function validPercent(value) {
  const number = Number(value);
  return value !== "" && Number.isFinite(number) && number >= 0 && number <= 100 ? number : null;
}

/* ---------- the API ---------- */

function apiError(status, code, message) {
  return Object.assign(new Error(message), { name: "ApiError", status, code });
}

async function errorFrom(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || "the request failed";
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text) ?? {};
    code = String(body.error || code);
    message = String(body.message || message);
  } catch {
    if (text.trim()) message = text.trim().replace(/\s+/g, " ").slice(0, 200); // a plain-text error page
  }
  return apiError(response.status, code, message);
}

/* Any failure as an ApiError; a 401 on a signed-in session signs out, and callers get "cancelled". */
function failure(err, timeout, session) {
  const cancelled = apiError(0, "cancelled", "signed out");
  if (session !== state.session) return cancelled;
  if (err.name === "ApiError") {
    if (err.status !== 401 || !state.token) return err;
    signOut(`Your token is no longer accepted: ${sentence(err.message)}`, "error");
    return cancelled;
  }
  if (err.name === "AbortError") return apiError(0, "timeout", `the proxy did not answer within ${timeout / 1000} s`);
  if (err instanceof SyntaxError) return apiError(0, "bad_response", "the proxy's answer was not valid JSON");
  return apiError(0, "network", "the proxy did not answer (network error)");
}

/* fetch with the Bearer header and a timeout; parsed JSON, or { blob, headers } with as: "blob". */
async function api(path, { method = "GET", json, body, headers = {}, as = "json", timeout = TIMEOUT_MS, token = state.token } = {}) {
  const session = state.session;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  const init = { method, body, headers: { ...headers, Authorization: `Bearer ${token}` }, signal: controller.signal, cache: "no-store" };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
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
  dialog.returnValue = ""; // Escape closes without a value: a no
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
  });
}

/* While a section is busy all its controls are disabled; those marked data-locked stay disabled anyway. */
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

const hasScope = (scope) => state.scopes.includes(scope);

async function signIn(token) {
  $("sign-in").disabled = true;
  setStatus($("sign-in-error"), "Checking the token…", "busy");
  try {
    startSession(token, await api("/whoami", { token }));
  } catch (err) {
    const refused = err.status === 401 || err.status === 403;
    if (refused) sessionStorage.removeItem(TOKEN_KEY);
    const prefix = refused ? "That token was not accepted: " : "Could not sign in: ";
    setStatus($("sign-in-error"), prefix + sentence(err.message), "error");
    $("sign-in-form").hidden = false;
  } finally {
    $("sign-in").disabled = false;
  }
}

function startSession(token, who) {
  Object.assign(state, {
    token, user: String(who.user ?? "?"), model: String(who.model || "food_rotation"),
    scopes: Array.isArray(who.scopes) ? who.scopes.map(String) : [],
  });
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  setStatus($("sign-in-error"), "");
  $("sign-in-form").hidden = true;
  clearAllViews();
  const allowed = Object.keys(VIEW_SCOPES).filter((view) => hasScope(VIEW_SCOPES[view]));
  $("whoami").textContent = `${state.user} (${state.scopes.join(", ")})${allowed.length ? "" : ": no views for these scopes"}`;
  for (const id of ["whoami", "sign-out", "nav"]) $(id).hidden = false;
  for (const view of Object.keys(VIEW_SCOPES)) $(`nav-${view}`).hidden = !allowed.includes(view);
  if (allowed.length) showView(allowed[0]);
}

function signOut(message = "", kind = "") {
  state.session += 1; // answers still on their way are dropped
  for (const controller of state.controllers) controller.abort();
  state.controllers.clear();
  sessionStorage.removeItem(TOKEN_KEY);
  Object.assign(state, { token: null, user: null, scopes: [], model: null });
  if ($("confirm").open) $("confirm").close("no");
  clearAllViews();
  for (const view of Object.keys(VIEW_SCOPES)) $(`view-${view}`).hidden = true;
  for (const id of ["whoami", "sign-out", "nav"]) $(id).hidden = true;
  $("whoami").textContent = "";
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
      continue;
    }
    row.parts.progress.textContent = "waiting…";
    state.queue.push(row);
  }
  pumpQueue();
}

function pumpQueue() {
  while (state.sending < PARALLEL_PREDICTIONS && state.queue.length) {
    state.sending += 1;
    predictRow(state.queue.shift()).finally(() => {
      state.sending -= 1;
      pumpQueue();
    });
  }
}

function figure(imgClass, alt, caption) {
  const node = el("figure", "photo");
  const img = el("img", imgClass, null, { alt });
  const text = el("figcaption", "", caption);
  node.append(img, text);
  return { node, img, caption: text };
}

function fact(list, label, className) {
  const value = el("dd", className, "—");
  list.append(el("dt", "", label), value);
  return value;
}

function createResultRow(file) {
  const row = {
    file, urls: [URL.createObjectURL(file)], modelDegree: null, appliedDegree: 0, modelVersion: "", cleared: false,
  };
  const input = figure("input", "The photo as sent", "Sent");
  const upright = figure("upright", "The photo turned upright by the model", "Upright");
  input.img.src = row.urls[0];
  upright.node.hidden = true; // until the model answers
  const facts = el("dl", "facts");
  row.parts = {
    progress: el("p", "progress"), error: el("p", "error"), upright: upright.img, uprightFigure: upright.node,
    uprightCaption: upright.caption,
    exif: fact(facts, "EXIF rotation", "exif-degree"), model: fact(facts, "Model turn", "model-degree"),
    confidence: fact(facts, "Confidence", "confidence"), version: fact(facts, "Model version", "model-version"),
    ...createFixControl(row),
  };
  const images = el("div", "images");
  images.append(input.node, upright.node);
  const details = el("div", "details");
  details.append(row.parts.progress, facts, row.parts.error, row.parts.fix);
  row.node = el("article", "result");
  row.node.append(el("h3", "file-name", file.name || "(unnamed file)"), images, details);
  state.rows.push(row);
  $("results").prepend(row.node);
  return row;
}

function createFixControl(row) {
  const select = el("select", "true-degree", null, { disabled: true });
  for (const degree of DEGREES) {
    select.append(el("option", "", degree === 0 ? "0° (upright)" : `${degree}°`, { value: String(degree) }));
  }
  select.addEventListener("change", () => previewChoice(row));
  const label = el("label", "", "Right answer ");
  label.append(select);
  const send = button("send-fix", "Save as training data", () => sendFix(row), { disabled: true });
  const fixStatus = el("p", "fix-status status");
  const fix = el("div", "fix");
  fix.append(label, send, fixStatus);
  return { fix, select, send, fixStatus };
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
    if (!blob.type.startsWith("image/")) throw apiError(200, "unexpected_answer", "the service did not answer with an image");
    showPrediction(row, blob, headers);
  } catch (err) {
    if (err.code !== "cancelled" && !row.cleared) failRow(row, `${err.code}: ${err.message}`);
  }
}

/* An unsure model leaves the photo as it is (only the EXIF turn applied): say so rather than show its guess as a
   turn. A handler older than X-Trusted always turned. */
function showPrediction(row, blob, headers) {
  const { parts } = row;
  const trusted = headers.get("X-Trusted") !== "false";
  row.modelDegree = parseDegree(headers.get("X-Model-Degree"));
  row.appliedDegree = parseDegree(headers.get("X-Applied-Degree")) ?? (trusted ? row.modelDegree ?? 0 : 0);
  row.modelVersion = headers.get("X-Model-Version") || "";
  row.answerId = headers.get("X-Answer-Id") || "";  // a correction quoting it counts for that version
  row.urls.push(URL.createObjectURL(blob));
  parts.upright.src = row.urls.at(-1);
  parts.upright.alt = trusted ? "The photo turned upright by the model" : "The photo as sent: the model was unsure";
  parts.uprightCaption.textContent = trusted ? "Upright" : "Left as is";
  parts.uprightFigure.hidden = false;
  row.node.classList.toggle("unsure", !trusted);
  parts.exif.textContent = degreeText(parseDegree(headers.get("X-Exif-Degree")));
  parts.model.textContent = trusted ? degreeText(row.modelDegree) : "unsure (left as is)";
  const disagree = headers.get("X-Views-Agree") === "false" ? "; its four turned views disagree" : "";
  parts.model.title = trusted || row.modelDegree === null ? "" : `best guess: ${row.modelDegree}°${disagree}`;
  parts.confidence.textContent = percent(Number.parseFloat(headers.get("X-Confidence") ?? ""));
  parts.version.textContent = row.modelVersion || "—";
  parts.progress.textContent = "";
  parts.select.value = String(row.appliedDegree);
  parts.select.disabled = false;
  parts.send.disabled = false;
}

function failRow(row, message) {
  row.parts.progress.textContent = "";
  row.parts.error.textContent = message;
  row.node.classList.add("failed");
}

/* The server turned the photo counter-clockwise by d (none when unsure); answer t needs a further (t - d)
   counter-clockwise, which is rotate(d - t) in CSS, where positive angles turn clockwise. */
function previewChoice(row) {
  const chosen = Number(row.parts.select.value);
  row.parts.upright.style.transform = `rotate(${row.appliedDegree - chosen}deg)`;
  setStatus(row.parts.fixStatus, "");
}

async function sendFix(row) {
  const { parts } = row;
  const form = new FormData();
  form.append("image", row.file, row.file.name || "photo");
  form.append("true_degree", parts.select.value);
  if (row.modelDegree !== null) form.append("model_degree", String(row.modelDegree));
  if (row.modelVersion) form.append("model_version", row.modelVersion);
  if (row.answerId) form.append("answer_id", row.answerId);
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
    row.cleared = true; // a prediction still on its way is dropped
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
    const name = String(dataset.name);
    const active = name === state.activeDataset || !dataset.closed_at;
    const tr = el("tr", "dataset");
    tr.classList.toggle("active", active);
    tr.classList.toggle("open", name === state.openDataset);
    tr.dataset.name = name;
    const open = button("open", "Open", () => withBusy("data", () => openDataset(name)), { ariaLabel: `Open ${name}` });
    const actions = el("td", "actions");
    actions.append(open);
    tr.append(el("td", "name", name), el("td", "state", active ? "active" : `closed ${formatDate(dataset.closed_at)}`),
      el("td", "photos", dataset.photos ?? 0), el("td", "submissions", dataset.submissions ?? 0),
      ...DEGREES.map((degree) => el("td", `c${degree}`, dataset.per_class?.[String(degree)] ?? 0)), actions);
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
    for (const tr of $("datasets").querySelectorAll("tr.dataset")) tr.classList.toggle("open", tr.dataset.name === name);
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
  dropItems();
  const grid = $("dataset-items");
  if (!items.length) grid.append(el("p", "empty", "No photos in this dataset yet."));
  const pending = items.map((item) => {
    const card = itemCard(name, item);
    grid.append(card.node);
    return { img: card.img, sha: String(item.sha256) };
  });
  loadThumbnails(name, pending, generation);
  applyBusy("data");
}

function itemMeta(item) {
  const answer = item.model_degree === null || item.model_degree === undefined ? "no model answer"
    : `model said ${item.model_degree}°${item.model_version ? ` (v${item.model_version})` : ""}`;
  return [shortSha(item.sha256), answer, item.user ? `by ${item.user}` : "", item.time ? formatDate(item.time) : ""]
    .filter(Boolean).join(" · ");
}

function itemCard(name, item) {
  const img = el("img", "thumb", null, { alt: `photo ${shortSha(item.sha256)}` });
  const answer = el("p", "answer");
  answer.append(el("span", "degree", `was turned ${item.true_degree}°`), " ", el("span", "count", `×${item.count ?? 1}`));
  const remove = button("remove", "Remove", () => removeItem(name, item), { ariaLabel: `Remove photo ${shortSha(item.sha256)}` });
  const caption = el("figcaption");
  caption.append(answer, el("p", "meta", itemMeta(item)), remove);
  const node = el("figure", "item");
  node.append(img, caption);
  return { node, img };
}

/* Thumbnails need the Authorization header, so they come through fetch as blob URLs, a few at a time. */
async function loadThumbnails(name, pending, generation) {
  const worker = async () => {
    while (pending.length && generation === state.itemsGeneration) {
      const { img, sha } = pending.shift();
      try {
        const { blob } = await api(`/datasets/${enc(name)}/photos/${enc(sha)}/thumbnail`, { as: "blob" });
        if (generation !== state.itemsGeneration) return;
        state.thumbUrls.push(URL.createObjectURL(blob));
        img.src = state.thumbUrls.at(-1);
      } catch (err) {
        if (err.code === "cancelled") return;
        img.alt = `thumbnail not available: ${err.message}`;
        img.classList.add("missing");
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL_THUMBNAILS }, worker));
}

/* Confirm, run `call` with the section busy, show its message (or the error), then reload quietly. */
async function dataAction(question, progress, call, reload) {
  if (!(await confirmAction(question))) return;
  const status = $("data-status");
  await withBusy("data", async () => {
    setStatus(status, progress, "busy");
    try {
      setStatus(status, await call(), "ok");
    } catch (err) {
      report(status, err, "Refused: ");
      if (err.code === "cancelled") return;
    }
    await refreshData({ ...reload, quiet: true });
  });
}

function removeItem(name, item) {
  const sha = shortSha(item.sha256);
  dataAction(`Remove photo ${sha} (was turned ${item.true_degree}°, ×${item.count ?? 1}) from ${name}? It will no longer be used for training.`,
    "Removing…", async () => {
      await api(`/datasets/${enc(name)}/photos/${enc(item.sha256)}`, { method: "DELETE" });
      return `Removed ${sha} from ${name}.`;
    }, { open: name });
}

function startNewDataset() {
  const old = state.activeDataset;
  dataAction(old ? `Close ${old} and start a new dataset? ${old} keeps its photos; new corrections go to the new dataset.`
    : "Start a new dataset? New corrections will go to it.", "Starting a new dataset…", async () => {
    const created = await api("/datasets", { method: "POST", json: {} });
    state.openDataset = created.name ?? null;
    return `Started ${created.name}${old ? `; ${old} is closed.` : "."}`;
  }, {});
}

function dropItems() {
  state.thumbUrls.forEach((url) => URL.revokeObjectURL(url));
  state.thumbUrls = [];
  $("dataset-items").replaceChildren();
}

function clearItems() {
  state.itemsGeneration += 1; // thumbnails still loading are dropped
  dropItems();
  $("dataset-title").textContent = "";
  $("dataset-summary").textContent = "";
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
    const [versions, archives, audit, signals] = await Promise.allSettled([api(base), api(`${base}/archives`),
      api("/admin/audit?limit=50"), api(`${base}/signals?window=300`)]);
    if ([versions, archives, audit, signals].some((result) => result.reason?.code === "cancelled")) return;
    renderSignals(signals.status === "fulfilled" ? signals.value.versions || [] : []);
    if (versions.status === "fulfilled") {
      renderVersions(versions.value.versions || []);
      renderHistory(versions.value.history || [], versions.value.rollback_target ?? null);
    }
    renderArchives(archives.status === "fulfilled" ? archives.value.archives || [] : null);
    renderAudit(audit.status === "fulfilled" ? audit.value.entries || [] : []);
    if (versions.status === "rejected") report(status, versions.reason, "Could not load the versions: ");
    else if (archives.status === "rejected") report(status, archives.reason, "Could not load the archives: ");
    else if (!quiet) setStatus(status, "");
  });
}

function renderVersions(list) {
  state.defaultVersion = list.find((version) => version.default)?.version ?? null;
  const rows = list.map(versionRow);
  if (!rows.length) {
    rows.push(el("tr"));
    rows[0].append(el("td", "empty", "No versions are deployed.", { colSpan: 8 }));
  }
  $("versions").tBodies[0].replaceChildren(...rows);
  applyBusy("models");
}

/* The button says where a rollback goes (the server's answer: it skips defaults already rolled back). */
function renderHistory(history, target) {
  state.rollbackTarget = target;
  $("rollback").textContent = target ? `Roll back to ${target}` : "Roll back (no earlier default)";
  $("rollback").dataset.locked = target ? "" : "1";
  $("default-history").tBodies[0].replaceChildren(...history.map((change) => {
    const tr = el("tr");
    tr.append(el("td", "", formatDate(new Date(change.at * 1000).toISOString())), el("td", "", String(change.version)),
      el("td", "", change.action), el("td", "", change.actor), el("td", "", change.rolled_back ? "yes" : ""));
    return tr;
  }));
  applyBusy("models");
}

/* Canary beside default over the same window: the numbers a promotion (or a rollback) is decided on. */
function renderSignals(rows) {
  const share = (value) => (typeof value === "number" ? `${(100 * value).toFixed(1)}%` : "—");
  const order = { canary: 0, default: 1, other: 2 };
  $("signals").tBodies[0].replaceChildren(...[...rows].sort((a, b) => order[a.role] - order[b.role]).map((row) => {
    const tr = el("tr", `signal-${row.role}`);
    tr.append(el("td", "version", String(row.version)), el("td", "", row.role), el("td", "requests", String(row.requests)),
      el("td", "", share(row.error_rate)), el("td", "", typeof row.p95_ms === "number" ? `${Math.round(row.p95_ms)} ms` : "—"),
      el("td", "unsure", share(row.unsure_share)), el("td", "", `${row.feedback} (${share(row.disagreement_rate)})`));
    return tr;
  }));
}

function renderAudit(entries) {
  $("audit-log").tBodies[0].replaceChildren(...entries.map((entry) => {
    const tr = el("tr");
    tr.classList.toggle("refused", entry.outcome !== "ok");
    tr.append(el("td", "", formatDate(new Date(entry.at * 1000).toISOString())), el("td", "", entry.actor),
      el("td", "", entry.action), el("td", "", JSON.stringify(entry.detail)), el("td", "", entry.outcome));
    return tr;
  }));
}

/* What a version's weights were measured to do (held-out photos; sources left out), else its checkpoint's val_acc. */
function quality(version) {
  const evaluation = version.evaluation;
  const unseen = version.evaluation_by_source;
  let shown = `val ${percent(version.val_acc)}`;
  if (evaluation && typeof evaluation.accuracy === "number") {
    shown = `accuracy ${percent(evaluation.accuracy)} · fix ${percent(evaluation.fix)} · harm ${evaluation.harmed}/${evaluation.upright}`;
  }
  if (unseen && typeof unseen.worst_harm === "number") {
    shown += ` · unseen sources: worst harm ${percent(unseen.worst_harm)}, food fix ${percent(unseen.food_fix)}`;
  }
  return shown;
}

function versionRow(version) {
  const name = String(version.version);
  const canary = Number(version.canary_percent) || 0;
  const inFlight = Number(version.in_flight) || 0;
  let accuracy = quality(version);
  if (typeof version.heldout_acc === "number") accuracy += ` · held-out corrections: ${percent(version.heldout_acc)}`;
  const tr = el("tr", "version");
  tr.classList.toggle("is-default", Boolean(version.default));
  tr.classList.toggle("is-canary", canary > 0);
  tr.append(el("td", "version", name, { title: [version.archive, version.arch].filter(Boolean).join(" · ") }),
    el("td", "default", version.default ? "default" : ""),
    el("td", "canary", canary > 0 ? `${Number(canary.toFixed(1))}%` : ""),
    el("td", "workers", `${version.workers ?? 0}${inFlight ? ` (${inFlight} in flight)` : ""}`),
    el("td", "accuracy", accuracy, { title: typeof version.train_acc === "number" ? `train ${percent(version.train_acc)}` : "" }),
    el("td", "dataset", datasetNames(version)), el("td", "created", formatDate(version.created_at)),
    versionActions(name, canary, Boolean(version.default)));
  return tr;
}

function versionActions(name, canary, isDefault) {
  const input = el("input", "canary-percent", null,
    { type: "number", min: "0", max: "100", step: "1", value: String(canary), ariaLabel: `Canary traffic for ${name} (%)` });
  const controls = [input, button("set-canary", "Set canary", () => setCanary(name, input.value)),
    button("promote", "Promote", () => promote(name)), button("retire", "Retire", () => retire(name))];
  if (isDefault) controls.forEach((control) => { control.dataset.locked = "1"; });
  const cell = el("td", "actions");
  cell.append(...controls);
  return cell;
}

function renderArchives(archives) {
  const candidates = (archives || []).filter((archive) => !archive.deployed);
  const options = candidates.map((archive) => el("option", "",
    `${archive.archive} (v${archive.version}, ${quality(archive)}, data ${datasetNames(archive)})`,
    { value: String(archive.archive) }));
  if (!options.length) options.push(el("option", "", archives ? "No archives to deploy" : "Archives not available", { value: "" }));
  $("deploy-archive").replaceChildren(...options);
  for (const id of ["deploy-archive", "deploy", "remove-archive"]) $(id).dataset.locked = candidates.length ? "" : "1";
  applyBusy("models");
}

/* Confirm, call, show progress and then the server's answer; reload the table without clearing that answer. */
async function modelAction({ question, progress, path, method = "POST", body = {}, timeout = TIMEOUT_MS, success }) {
  if (!(await confirmAction(question))) return;
  const status = $("models-status");
  await withBusy("models", async () => {
    setStatus(status, progress, "busy");
    try {
      const result = await api(`/admin/models/${enc(state.model)}/${path}`,
        method === "DELETE" ? { method, timeout } : { method, json: body, timeout });
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
  const share = validPercent(value);
  if (share === null) return setStatus($("models-status"), "The canary share must be a number from 0 to 100.", "error");
  return modelAction({
    question: share > 0 ? `Send ${share}% of predictions to ${version}?` : `Stop sending predictions to ${version} (canary 0%)?`,
    progress: `Setting the canary share of ${version}…`, path: "canary", body: { version, percent: share },
    success: () => (share > 0 ? `${version} now gets ${share}% of predictions` : `${version} gets no predictions now`),
  });
}

function promote(version) {
  const old = state.defaultVersion;
  return modelAction({
    question: `Promote ${version} to default?${old ? ` ${old} will be drained and unregistered.` : ""}`,
    progress: `Promoting ${version}…`, path: "promote", body: { version }, success: () => `${version} is now the default`,
  });
}

function retire(version) {
  return modelAction({
    question: `Retire ${version}? It will be drained and unregistered; its canary share goes back to the default.`,
    progress: `Retiring ${version}…`, path: "retire", body: { version }, success: () => `${version} is retired`,
  });
}

function rollback() {
  const current = state.defaultVersion;
  const target = state.rollbackTarget;
  if (!target) return undefined;
  return modelAction({
    question: `Roll back to ${target}?${current ? ` ${current} will be drained and unregistered.` : ""}`,
    progress: `Rolling back to ${target}…`, path: "rollback", body: { version: target },
    success: (result) => (result.default ? `Rolled back: ${result.default} is now the default` : "Rolled back"),
  });
}

function deploy() {
  const archive = $("deploy-archive").value;
  const canary = validPercent($("deploy-canary").value);
  if (!archive) return undefined;
  if (canary === null) return setStatus($("models-status"), "The canary share must be a number from 0 to 100.", "error");
  return modelAction({
    question: `Deploy ${archive} with ${canary}% of predictions? It must pass the smoke gate first (up to a minute).`,
    progress: `deploying… ${archive} goes through the smoke gate first; this can take up to a minute`,
    path: "deploy", body: { archive, canary }, timeout: DEPLOY_TIMEOUT_MS,
    success: (result) => `Deployed ${result.version}: gate accuracy ${percent(result.gate_accuracy)}` +
      (typeof result.real_accuracy === "number" ? `, real photos ${percent(result.real_accuracy)}` +
        (typeof result.real_default_accuracy === "number" ? ` (default ${percent(result.real_default_accuracy)})` : "")
        : "") +
      (typeof result.heldout_accuracy === "number" ? `, held-out corrections ${percent(result.heldout_accuracy)}` : "") +
      `, canary ${result.canary_percent}%`,
  });
}

function removeArchive() {
  const archive = $("deploy-archive").value;
  if (!archive) return undefined;
  return modelAction({
    question: `Delete ${archive} from the model store? This cannot be undone.`,
    progress: `Removing ${archive}…`, path: `archives/${enc(archive)}`, method: "DELETE",
    success: (result) => `Removed ${result.removed}`,
  });
}

function clearModels() {
  $("versions").tBodies[0].replaceChildren();
  $("deploy-archive").replaceChildren();
  state.defaultVersion = null;
  state.rollbackTarget = null;
  $("default-history").tBodies[0].replaceChildren();
  $("signals").tBodies[0].replaceChildren();
  $("audit-log").tBodies[0].replaceChildren();
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
  $("remove-archive").addEventListener("click", removeArchive);
  $("deploy").addEventListener("click", deploy);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (!saved) return $("token").focus();
  $("sign-in-form").hidden = true; // shown again if the saved token is refused
  return signIn(saved);
}

document.addEventListener("DOMContentLoaded", init);
