/* Data: the collected feedback datasets, browsed and pruned. */

import {
  $,
  DEGREES,
  PARALLEL_THUMBNAILS,
  api,
  applyBusy,
  button,
  confirmAction,
  el,
  enc,
  figure,
  formatDate,
  report,
  setStatus,
  shortSha,
  state,
  withBusy,
} from "./common.js";

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

export const dataView = {
  name: "data", scope: "admin", load: () => refreshData(), clear: clearDatasets,
  wire() {
    $("data-refresh").addEventListener("click", () => refreshData());
    $("new-dataset").addEventListener("click", startNewDataset);
  },
};
