/* Models: versions, signals, the default history and the audit log; deploy, canary, promote, roll back, retire. */

import {
  $,
  DEPLOY_TIMEOUT_MS,
  TIMEOUT_MS,
  api,
  applyBusy,
  button,
  confirmAction,
  datasetNames,
  el,
  enc,
  formatDate,
  percent,
  report,
  setStatus,
  state,
  validPercent,
  withBusy,
} from "./common.js";

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

export const modelsView = {
  name: "models", scope: "admin", load: () => loadModels(), clear: clearModels,
  wire() {
    $("models-refresh").addEventListener("click", () => loadModels());
    $("rollback").addEventListener("click", rollback);
    $("remove-archive").addEventListener("click", removeArchive);
    $("deploy").addEventListener("click", deploy);
  },
};
