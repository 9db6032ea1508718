// Query-by-example: upload, drop or paste an image; click a result for "more like this".
// The Duplicates view (#duplicates) lists groups of near-duplicates; click one to search by it.
// With classification heads, the query's predicted classes show beside it, and
// "head-aware search" blends the head's class probabilities into the similarity.
"use strict";

const $ = (id) => document.getElementById(id);
const resultsEl = $("results");
const statusEl = $("status");
const headSelect = $("head-select");  // absent when the index has no heads
const headAware = $("head-aware");
const K = 24;
let queryUrl = null;
let lastQuery = null;  // {query, label}: searched again when the filter changes

function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

function showQuery(src, caption) {
  if (queryUrl) URL.revokeObjectURL(queryUrl);
  queryUrl = src.startsWith("blob:") ? src : null;
  $("query-image").src = src;
  $("query-caption").textContent = caption;
  $("predictions").hidden = true;
  $("query").hidden = false;
}

// POST a query ({file} or {id}) with extra fields to an API endpoint; resolve to the JSON body.
async function post(endpoint, query, fields) {
  let init;
  if (query.file) {
    const form = new FormData();
    form.append("image", query.file, query.file.name || "pasted.png");
    for (const [name, value] of Object.entries(fields)) {
      form.append(name, typeof value === "object" ? JSON.stringify(value) : String(value));  // a filter: JSON
    }
    init = { method: "POST", body: form };
  } else {
    init = {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: query.id, ...fields }),
    };
  }
  const response = await fetch(endpoint, init);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

async function run(query, label) {
  setStatus("Searching…");
  resultsEl.setAttribute("aria-busy", "true");
  const head = headSelect ? headSelect.value : null;
  const fields = { k: K };
  if (head && headAware.checked) fields.head = head;
  const filter = currentFilter();
  if (filter) fields.filter = filter;
  lastQuery = { query, label };
  try {
    const [found, classified] = await Promise.all([
      post("/api/search", query, fields),
      head ? post("/api/classify", query, { head, top: 3 }) : Promise.resolve(null),
    ]);
    render(found.results);
    if (classified) renderPredictions(classified.predictions);
    const how = found.head ? ` (head-aware: ${found.head})` : "";
    const among = found.matched === undefined ? "" : ` among ${found.matched} images the filter selects`;
    const note = found.note ? ` — ${found.note}` : "";
    setStatus(`${found.results.length} results for ${label}${among} in ${found.took_ms} ms${how}${note}`);
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
  run({ file }, file.name || "the pasted image");
}

function searchId(hit) {
  showQuery(hit.thumbnail_url, `${hit.label || "(no label)"} · id ${hit.id}`);
  run({ id: hit.id }, `image ${hit.id}`);
}

function renderPredictions(predictions) {
  const list = $("predictions");
  list.replaceChildren(...predictions.map((p) => {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = p.class;
    const bar = document.createElement("meter");
    bar.min = 0;
    bar.max = 1;
    bar.value = p.probability;
    const pct = document.createElement("strong");
    pct.textContent = `${(100 * p.probability).toFixed(1)} %`;
    li.append(name, bar, pct);
    return li;
  }));
  list.hidden = false;
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

// ---------------------------------------------------------------- the filter picker
// Its fields become the API's "filter" object: searched inside the index, so k results come back when k match.
function currentFilter() {
  const filter = {};
  const labels = [...$("filter-labels").selectedOptions].map((o) => o.value);
  if (labels.length) filter.label = labels;
  const prefix = $("filter-prefix").value.trim();
  if (prefix) filter.path_prefix = prefix;
  const minWidth = $("filter-min-width").value;
  if (minWidth !== "") filter.width = { ">=": Number(minWidth) };
  const from = $("filter-taken-from").value;
  const to = $("filter-taken-to").value;
  if (from || to) {
    filter.taken = {};
    if (from) filter.taken[">="] = from;
    if (to) filter.taken["<="] = `${to}T23:59:59`;
  }
  return Object.keys(filter).length ? filter : null;
}

function refilter() {
  if (lastQuery) run(lastQuery.query, lastQuery.label);
}

for (const id of ["filter-labels", "filter-min-width", "filter-taken-from", "filter-taken-to"]) {
  $(id).addEventListener("change", refilter);
}
$("filter-prefix").addEventListener("change", refilter);
$("filter-clear").addEventListener("click", () => {
  for (const o of $("filter-labels").options) o.selected = false;
  for (const id of ["filter-prefix", "filter-min-width", "filter-taken-from", "filter-taken-to"]) $(id).value = "";
  refilter();
});

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

// ---------------------------------------------------------------- views: search | duplicates (#duplicates)
const views = { search: $("search-view"), duplicates: $("duplicates-view") };

function showView(name) {
  for (const [key, el] of Object.entries(views)) el.hidden = key !== name;
  for (const [key, link] of [["search", $("nav-search")], ["duplicates", $("nav-duplicates")]]) {
    if (key === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (name === "duplicates" && !dup.loaded) loadDuplicates();
}

function viewOfHash() {
  return location.hash === "#duplicates" ? "duplicates" : "search";
}

window.addEventListener("hashchange", () => showView(viewOfHash()));

// ---------------------------------------------------------------- the Duplicates view
// Groups of near-duplicates and exact copies, a page at a time, from GET /api/duplicates.
const dup = { offset: 0, total: 0, loaded: false, request: 0 };
const dupThreshold = $("dup-threshold");
const dupStatus = $("dup-status");

function dupLimit() {
  return Number($("dup-limit").value);
}

function setDupStatus(text, isError = false) {
  dupStatus.textContent = text;
  dupStatus.classList.toggle("error", isError);
}

async function loadDuplicates() {
  dup.loaded = true;
  const ticket = ++dup.request;  // a slower answer to an earlier request is dropped
  const params = new URLSearchParams({
    threshold: dupThreshold.value, keep: $("dup-keep").value, offset: dup.offset, limit: dupLimit(),
    keypoints: $("dup-keypoints").checked,
  });
  setDupStatus("Finding duplicates…");
  $("dup-groups").setAttribute("aria-busy", "true");
  try {
    const response = await fetch(`/api/duplicates?${params}`);
    const body = await response.json();
    if (ticket !== dup.request) return;
    if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    dup.total = body.total;
    renderGroups(body.groups);
    const first = body.total ? body.offset + 1 : 0;
    const last = body.offset + body.groups.length;
    $("dup-page").textContent = `${first}–${last} of ${body.total}`;
    $("dup-prev").disabled = body.offset === 0;
    $("dup-next").disabled = last >= body.total;
    setDupStatus(`${body.total} groups at threshold ${body.threshold.toFixed(2)} (keep ${body.keep}` +
                 `${body.keypoints ? ", keypoints checked" : ", scores only"}) among ${body.images} images`);
  } catch (err) {
    if (ticket === dup.request) setDupStatus(`Finding duplicates failed: ${err.message}`, true);
  } finally {
    if (ticket === dup.request) $("dup-groups").removeAttribute("aria-busy");
  }
}

function baseName(path) {
  return path.split("/").pop();
}

function renderGroups(groups) {
  $("dup-groups").replaceChildren(...groups.map((group) => {
    const li = document.createElement("li");
    li.className = "dup-group";
    li.dataset.group = group.group;
    const title = document.createElement("h3");
    title.textContent = `Group ${group.group} · ${group.exact ? "exact copies" : "near-duplicates"} · ` +
                        `${group.ids.length} files`;
    const row = document.createElement("ol");
    row.className = "dup-row";
    row.replaceChildren(...group.ids.map((id, i) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "hit dup-hit";
      button.dataset.id = id;
      button.title = group.paths[i];
      const kept = i === 0;
      if (kept) button.classList.add("keeper");
      button.setAttribute("aria-label", `Search by ${baseName(group.paths[i])} (id ${id}, score ` +
                                        `${group.scores[i].toFixed(3)}${kept ? ", kept" : ""})`);
      const img = document.createElement("img");
      img.src = group.thumbnail_urls[i];
      img.alt = baseName(group.paths[i]);
      img.loading = "lazy";
      const caption = document.createElement("span");
      caption.className = "caption";
      const score = document.createElement("strong");
      score.textContent = group.scores[i].toFixed(3);
      const label = document.createElement("span");
      label.textContent = kept ? "keep" : baseName(group.paths[i]);
      if (kept) label.className = "keep-badge";
      caption.append(score, label);
      button.append(img, caption);
      button.addEventListener("click", () => {
        location.hash = "#search";
        searchId({ id, thumbnail_url: group.thumbnail_urls[i], label: baseName(group.paths[i]) });
      });
      item.append(button);
      return item;
    }));
    li.append(title, row);
    return li;
  }));
}

dupThreshold.addEventListener("input", () => {
  $("dup-threshold-value").textContent = Number(dupThreshold.value).toFixed(2);
});
dupThreshold.addEventListener("change", () => { dup.offset = 0; loadDuplicates(); });
$("dup-keep").addEventListener("change", () => { dup.offset = 0; loadDuplicates(); });
$("dup-keypoints").addEventListener("change", () => { dup.offset = 0; loadDuplicates(); });
$("dup-limit").addEventListener("change", () => { dup.offset = 0; loadDuplicates(); });
$("dup-prev").addEventListener("click", () => { dup.offset = Math.max(0, dup.offset - dupLimit()); loadDuplicates(); });
$("dup-next").addEventListener("click", () => { dup.offset += dupLimit(); loadDuplicates(); });
showView(viewOfHash());
