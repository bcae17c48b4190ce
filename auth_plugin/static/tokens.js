/* Tokens: who may call the service. Listed without their secret, issued (the new token shown once, with a copy
   button), revoked; every change lands in the audit log (the Models view shows it). */

import { $, api, button, confirmAction, el, formatDate, report, setStatus, withBusy } from "./common.js";

const when = (seconds) => (typeof seconds === "number" ? formatDate(new Date(seconds * 1000).toISOString()) : "never");

async function loadTokens({ quiet = false } = {}) {
  const status = $("tokens-status");
  if (!quiet) setStatus(status, "Loading tokens…", "busy");
  return withBusy("tokens", async () => {
    try {
      const listing = await api("/admin/tokens");
      renderTokens(Array.isArray(listing.tokens) ? listing.tokens : []);
      if (!quiet) setStatus(status, "");
    } catch (err) {
      if (err.code !== "cancelled") report(status, err, "Could not load the tokens: ");
    }
  });
}

function renderTokens(tokens) {
  $("tokens").tBodies[0].replaceChildren(...tokens.map((token) => {
    const tr = el("tr", `token ${token.state}`);
    tr.dataset.id = String(token.id);
    const actions = el("td", "actions");
    if (token.state === "active") {
      actions.append(button("revoke", "Revoke", () => revoke(token), { ariaLabel: `Revoke token ${token.id}` }));
    }
    tr.append(el("td", "id", String(token.id)), el("td", "user", token.user),
      el("td", "scopes", (token.scopes || []).join(", ")), el("td", "", when(token.created_at)),
      el("td", "", when(token.expires_at)), el("td", "last-used", when(token.last_used_at)),
      el("td", "state", token.state), actions);
    return tr;
  }));
}

async function issue() {
  const status = $("tokens-status");
  const user = $("token-user").value.trim();
  const scopes = ["predict", "admin"].filter((scope) => $(`token-${scope}`).checked);
  const days = Number($("token-days").value);
  if (!user) return setStatus(status, "Give the user's name first.", "error");
  if (!scopes.length) return setStatus(status, "Choose at least one scope.", "error");
  if (!(days > 0)) return setStatus(status, "The lifetime is a number of days, more than 0.", "error");
  if (!(await confirmAction(`Issue a token for ${user} (${scopes.join(", ")}, ${days} days)?`))) return undefined;
  return withBusy("tokens", async () => {
    setStatus(status, "Issuing…", "busy");
    try {
      const made = await api("/admin/tokens", { method: "POST", json: { user, scopes, ttl_days: days } });
      showNewToken(made.token);
      setStatus(status, `Issued token ${made.id} for ${made.user}.`, "ok");
      $("token-user").value = "";
    } catch (err) {
      if (err.code !== "cancelled") report(status, err, "Not issued: ");
    }
    await loadTokens({ quiet: true });
  });
}

function showNewToken(token) {
  $("new-token-value").textContent = token;
  setStatus($("copy-status"), "");
  $("new-token").hidden = false;
}

async function copyToken() {
  try {
    await navigator.clipboard.writeText($("new-token-value").textContent);
    setStatus($("copy-status"), "Copied.", "ok");
  } catch {
    setStatus($("copy-status"), "The browser refused the clipboard: select the token and copy it by hand.", "error");
  }
}

async function revoke(token) {
  if (!(await confirmAction(`Revoke token ${token.id} of ${token.user}? Calls with it are refused within a second.`))) return;
  const status = $("tokens-status");
  await withBusy("tokens", async () => {
    setStatus(status, "Revoking…", "busy");
    try {
      await api(`/admin/tokens/${token.id}`, { method: "DELETE" });
      setStatus(status, `Token ${token.id} revoked.`, "ok");
    } catch (err) {
      if (err.code !== "cancelled") report(status, err, "Not revoked: ");
    }
    await loadTokens({ quiet: true });
  });
}

function clearTokens() {
  $("tokens").tBodies[0].replaceChildren();
  $("new-token-value").textContent = ""; // a token shown once is gone with the session
  $("new-token").hidden = true;
  setStatus($("tokens-status"), "");
}

export const tokensView = {
  name: "tokens", scope: "admin", load: () => loadTokens(), clear: clearTokens,
  wire() {
    $("tokens-refresh").addEventListener("click", () => loadTokens());
    $("issue-token").addEventListener("click", issue);
    $("copy-token").addEventListener("click", copyToken);
  },
};
