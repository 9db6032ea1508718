// Query-by-example: upload, drop or paste an image; click a result for "more like this".
"use strict";

const $ = (id) => document.getElementById(id);
const resultsEl = $("results");
const statusEl = $("status");
let queryUrl = null;

function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

function showQuery(src, caption) {
  if (queryUrl) URL.revokeObjectURL(queryUrl);
  queryUrl = src.startsWith("blob:") ? src : null;
  $("query-image").src = src;
  $("query-caption").textContent = caption;
  $("query").hidden = false;
}

async function runSearch(init, label) {
  setStatus("Searching…");
  resultsEl.setAttribute("aria-busy", "true");
  try {
    const response = await fetch("/api/search", init);
    const body = await response.json();
    if (!response.ok) {
      throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    }
    render(body.results);
    setStatus(`${body.results.length} results for ${label} in ${body.took_ms} ms`);
  } catch (err) {
    setStatus(`Search failed: ${err.message}`, true);
  } finally {
    resultsEl.removeAttribute("aria-busy");
  }
}

function searchFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setStatus(`${file.name} is not an image`, true);
    return;
  }
  showQuery(URL.createObjectURL(file), file.name || "pasted image");
  const form = new FormData();
  form.append("image", file, file.name || "pasted.png");
  form.append("k", "24");
  runSearch({ method: "POST", body: form }, file.name || "the pasted image");
}

function searchId(hit) {
  showQuery(hit.thumbnail_url, `${hit.label || "(no label)"} · id ${hit.id}`);
  runSearch({
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id: hit.id, k: 24 }),
  }, `image ${hit.id}`);
}

function render(results) {
  $("results-title").hidden = false;
  resultsEl.replaceChildren(...results.map((hit) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "hit";
    button.dataset.id = hit.id;
    button.title = hit.path;
    button.setAttribute("aria-label", `More like ${hit.label || "this image"} (id ${hit.id}, score ${hit.score.toFixed(3)})`);
    const img = document.createElement("img");
    img.src = hit.thumbnail_url;
    img.alt = hit.label || `image ${hit.id}`;
    img.loading = "lazy";
    const caption = document.createElement("span");
    caption.className = "caption";
    const score = document.createElement("strong");
    score.textContent = hit.score.toFixed(3);
    const label = document.createElement("span");
    label.textContent = hit.label || "—";
    caption.append(score, label);
    button.append(img, caption);
    button.addEventListener("click", () => searchId(hit));
    li.append(button);
    return li;
  }));
}

const dropzone = $("dropzone");
$("file-input").addEventListener("change", (e) => searchFile(e.target.files[0]));
dropzone.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file-input").click(); }
});
["dragenter", "dragover"].forEach((type) => dropzone.addEventListener(type, (e) => {
  e.preventDefault();
  dropzone.classList.add("over");
}));
["dragleave", "drop"].forEach((type) => dropzone.addEventListener(type, () => dropzone.classList.remove("over")));
dropzone.addEventListener("drop", (e) => {
  e.preventDefault();
  searchFile(e.dataTransfer.files[0]);
});
document.addEventListener("paste", (e) => {
  const item = [...(e.clipboardData || {}).items || []].find((i) => i.type.startsWith("image/"));
  if (item) searchFile(item.getAsFile());
});
