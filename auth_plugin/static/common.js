/*
 * What every view of the admin page shares: constants, the session's state, DOM and text helpers, the API client
 * (Bearer header, timeout, one error shape), the confirmation dialog and busy sections. Written for a strict CSP:
 * every string from the server or the user enters the page through textContent only.
 */

export const TOKEN_KEY = "frs_token";
export const MAX_FILE_BYTES = 15 * 1000 * 1000;
export const PARALLEL_PREDICTIONS = 2;
export const PARALLEL_THUMBNAILS = 4;
export const TIMEOUT_MS = 30_000;
export const DEPLOY_TIMEOUT_MS = 120_000;
export const DEGREES = [0, 90, 180, 270];

export const state = {
  token: null, user: null, scopes: [], model: null,
  session: 0, controllers: new Set(), busy: { data: 0, models: 0, tokens: 0 },
  queue: [], sending: 0, rows: [],
  activeDataset: null, openDataset: null, itemsGeneration: 0, thumbUrls: [], defaultVersion: null, rollbackTarget: null,
};

export const $ = (id) => document.getElementById(id);
export const enc = encodeURIComponent;

/* ---------- small helpers ---------- */

/* createElement + className + textContent (never HTML) + plain properties (type, alt, value, ariaLabel...) */
export function el(tag, className, text, props = {}) {
  const node = Object.assign(document.createElement(tag), props);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export function button(className, label, onClick, props = {}) {
  const node = el("button", className, label, { type: "button", ...props });
  node.addEventListener("click", onClick);
  return node;
}

export function setStatus(node, text, kind = "") {
  node.textContent = text;
  for (const name of ["error", "busy", "ok"]) node.classList.toggle(name, kind === name);
}

export function percent(value) {
  return typeof value === "number" && Number.isFinite(value) ? `${(value * 100).toFixed(1)}%` : "—";
}

export function formatDate(iso) {
  const date = new Date(iso ?? "");
  if (!iso || Number.isNaN(date.getTime())) return iso ? String(iso) : "—";
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/* The collected datasets a version was retrained on, as one cell's text. */
export const datasetNames = (row) => (Array.isArray(row.datasets) && row.datasets.length ? row.datasets.join(", ") : "—");
export const sentence = (text) => (/[.!?…]$/.test(text) ? text : `${text}.`);
export const shortSha = (sha) => `${String(sha).slice(0, 12)}…`;
export const degreeText = (degree) => (degree === null ? "—" : `${degree}°`);

export function parseDegree(value) {
  const number = Number(value);
  return value !== null && value !== "" && DEGREES.includes(number) ? number : null;
}

export function validPercent(value) {
  const number = Number(value);
  return value !== "" && Number.isFinite(number) && number >= 0 && number <= 100 ? number : null;
}

/* ---------- the API ---------- */

export function apiError(status, code, message) {
  return Object.assign(new Error(message), { name: "ApiError", status, code });
}

export async function errorFrom(response) {
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

/* What to do when the proxy refuses the session's token (app.js signs out). */
let tokenRefused = () => {};
export function onTokenRefused(handler) {
  tokenRefused = handler;
}

/* Any failure as an ApiError; a 401 on a signed-in session signs out, and callers get "cancelled". */
export function failure(err, timeout, session) {
  const cancelled = apiError(0, "cancelled", "signed out");
  if (session !== state.session) return cancelled;
  if (err.name === "ApiError") {
    if (err.status !== 401 || !state.token) return err;
    tokenRefused(`Your token is no longer accepted: ${sentence(err.message)}`);
    return cancelled;
  }
  if (err.name === "AbortError") return apiError(0, "timeout", `the proxy did not answer within ${timeout / 1000} s`);
  if (err instanceof SyntaxError) return apiError(0, "bad_response", "the proxy's answer was not valid JSON");
  return apiError(0, "network", "the proxy did not answer (network error)");
}

/* fetch with the Bearer header and a timeout; parsed JSON, or { blob, headers } with as: "blob". */
export async function api(path, { method = "GET", json, body, headers = {}, as = "json", timeout = TIMEOUT_MS, token = state.token } = {}) {
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

export function report(node, err, prefix) {
  if (err.code !== "cancelled") setStatus(node, `${prefix}${err.message}`, "error");
}

/* ---------- confirmation dialog and busy sections ---------- */

export function confirmAction(text) {
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
export function applyBusy(section) {
  const busy = state.busy[section] > 0;
  const view = $(`view-${section}`);
  view.setAttribute("aria-busy", String(busy));
  for (const control of view.querySelectorAll("button, input, select")) {
    control.disabled = busy || control.dataset.locked === "1";
  }
}

export async function withBusy(section, work) {
  state.busy[section] += 1;
  applyBusy(section);
  try {
    return await work();
  } finally {
    state.busy[section] -= 1;
    applyBusy(section);
  }
}


export function figure(imgClass, alt, caption) {
  const node = el("figure", "photo");
  const img = el("img", imgClass, null, { alt });
  const text = el("figcaption", "", caption);
  node.append(img, text);
  return { node, img, caption: text };
}

export function fact(list, label, className) {
  const value = el("dd", className, "—");
  list.append(el("dt", "", label), value);
  return value;
}
