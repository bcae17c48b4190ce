/*
 * Food rotation admin page. Sign in with an access token (kept only in sessionStorage, sent only as a
 * Bearer header), then: send food photos to the rotation model and save corrections as training data
 * (Predict: predict.js), browse and prune the collected feedback datasets (Data: data.js), and deploy, canary,
 * promote, roll back or retire model versions (Models: models.js), and issue or revoke access tokens (Tokens:
 * tokens.js); what they share is common.js. This module is
 * the session: sign-in, sign-out, and which views the token's scopes open. Written for a strict CSP: no inline
 * code or styles, and every string that comes from the server or the user enters the page through textContent only.
 */

import { $, TOKEN_KEY, api, onTokenRefused, sentence, setStatus, state } from "./common.js";
import { dataView } from "./data.js";
import { modelsView } from "./models.js";
import { predictView } from "./predict.js";
import { tokensView } from "./tokens.js";

const VIEWS = [predictView, dataView, modelsView, tokensView];

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
  const allowed = VIEWS.filter((view) => hasScope(view.scope)).map((view) => view.name);
  $("whoami").textContent = `${state.user} (${state.scopes.join(", ")})${allowed.length ? "" : ": no views for these scopes"}`;
  for (const id of ["whoami", "sign-out", "nav"]) $(id).hidden = false;
  for (const view of VIEWS) $(`nav-${view.name}`).hidden = !allowed.includes(view.name);
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
  for (const view of VIEWS) $(`view-${view.name}`).hidden = true;
  for (const id of ["whoami", "sign-out", "nav"]) $(id).hidden = true;
  $("whoami").textContent = "";
  $("sign-in-form").hidden = false;
  setStatus($("sign-in-error"), message, kind);
  $("token").focus();
}

function showView(name) {
  const shown = VIEWS.find((view) => view.name === name);
  if (!state.token || !shown || !hasScope(shown.scope)) return;
  for (const view of VIEWS) {
    $(`view-${view.name}`).hidden = view !== shown;
    $(`nav-${view.name}`).setAttribute("aria-pressed", String(view === shown));
  }
  if (shown.load) shown.load();
}

function clearAllViews() {
  for (const view of VIEWS) view.clear();
}

function init() {
  onTokenRefused((message) => signOut(message, "error"));
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token) signIn(token);
    else setStatus($("sign-in-error"), "Enter a token first.", "error");
  });
  $("sign-out").addEventListener("click", () => signOut("Signed out.", "ok"));
  for (const view of VIEWS) $(`nav-${view.name}`).addEventListener("click", () => showView(view.name));
  $("confirm-yes").addEventListener("click", () => $("confirm").close("yes"));
  $("confirm-no").addEventListener("click", () => $("confirm").close("no"));
  for (const view of VIEWS) view.wire();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (!saved) return $("token").focus();
  $("sign-in-form").hidden = true; // shown again if the saved token is refused
  return signIn(saved);
}

document.addEventListener("DOMContentLoaded", init);
