/* Predict: photos sent to the model, shown turned (or left as they were), and corrections saved as training data. */

import {
  $,
  DEGREES,
  MAX_FILE_BYTES,
  PARALLEL_PREDICTIONS,
  api,
  apiError,
  button,
  degreeText,
  el,
  enc,
  fact,
  figure,
  parseDegree,
  percent,
  report,
  setStatus,
  state,
} from "./common.js";

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

export const predictView = {
  name: "predict", scope: "predict", load: null, clear: clearResults,
  wire() {
    wireDropZone();
    $("clear-results").addEventListener("click", clearResults);
  },
};
