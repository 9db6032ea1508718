// Query-by-example: upload, drop or paste an image (or give its address, where the server allows it);
// click a result for "more like this"; drag a box on the query image (or use the arrow keys) to search by a region.
// Several examples: select results and search "More like these"; "Less like this" on a result
// searches again with it as a negative example (POST /api/search with positive/negative).
// The Duplicates view (#duplicates, duplicates.js) lists groups of near-duplicates; click one to search by it.
// Layout: the search bar (choose/drop/paste, the query as a chip, the panel toggles) stays on top and the
// results grid right under it; filters, teach mode and the score legend are panels opened on demand.
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
// the query shown: {file}, {id} or {url} alone, or examples {positive: [{id} | {file}], negative: [{id}]}
let current = null;
const selected = new Map();  // id -> hit, the results ticked for "More like these"
const moreButton = $("more-like-these");
let lastSearch = null;  // {query, label, region}: searched again when a region is drawn on its image
let region = null;  // [x0, y0, x1, y1], fractions of the query image, or null: the whole image

function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

function showQuery(src, caption, title = "") {
  if (queryUrl && src !== queryUrl) URL.revokeObjectURL(queryUrl);
  queryUrl = src && src.startsWith("blob:") ? src : null;
  $("query-image").hidden = !src;
  if (src) apiImage($("query-image"), src);
  else $("query-image").removeAttribute("src");
  $("query-frame").hidden = !src;  // a URL's image is not shown: the page's policy loads images from here only
  $("region-help").hidden = !src;
  $("query-caption").textContent = caption;
  $("query-caption").title = title;
  setRegion(null);
  $("predictions").hidden = true;
  $("query").hidden = false;
}

// A form field's text: a box "x0,y0,x1,y1", a filter as JSON, anything else as it prints.
function formValue(value) {
  if (Array.isArray(value)) return value.join(",");
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

// POST a query ({file}, {id} or {positive, negative}) with extra fields to an API endpoint; resolve to the JSON body.
async function post(endpoint, query, fields) {
  let init;
  if (query.positive && query.positive.some((p) => p.file)) {
    // an uploaded image among the examples: multipart, files and ids under the fields positive and negative
    const form = new FormData();
    for (const p of query.positive) {
      if (p.file) form.append("positive", p.file, p.file.name || "pasted.png");
      else form.append("positive", String(p.id));
    }
    for (const n of query.negative) form.append("negative", String(n.id));
    for (const [name, value] of Object.entries(fields)) {
      form.append(name, formValue(value));
    }
    init = { method: "POST", body: form };
  } else if (query.positive) {
    // each example by id, or by its words (a text query, then "less like this")
    const ids = (list) => list.map((e) => (e.text !== undefined ? { text: e.text } : { id: e.id }));
    init = {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ positive: ids(query.positive), negative: ids(query.negative), ...fields }),
    };
  } else if (query.file) {
    const form = new FormData();
    form.append("image", query.file, query.file.name || "pasted.png");
    for (const [name, value] of Object.entries(fields)) {
      form.append(name, formValue(value));
    }
    init = { method: "POST", body: form };
  } else {
    init = {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        ...(query.url ? { url: query.url } : query.text !== undefined ? { text: query.text } : { id: query.id }),
        ...fields,
      }),
    };
  }
  const response = await apiFetch(endpoint, init);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

$("query-image").addEventListener("error", () => {
  if (!$("query-image").getAttribute("src")) return;
  $("query-frame").hidden = true;
  $("region-help").hidden = true;
});

// the results area: what to say where there are no cards (the first view, no match, a failed search)
function showEmpty(text) {
  $("results-empty").textContent = text;
  $("results-empty").hidden = !text;
}

let runs = 0;  // the newest query's number: a reply to an older one (still out when it was superseded) is dropped

async function run(query, label) {
  const mine = ++runs;
  current = query;
  selected.clear();
  updateMoreButton();
  if (query.positive) region = null;  // a region is of one image, not of several examples
  // explain.js: "why?" explains what was searched, the region too
  document.dispatchEvent(new CustomEvent("imgsearch:query", { detail: { ...query, box: region } }));
  lastSearch = { query, label, region };
  if (region) label = `${label} (region ${describeRegion(region)})`;
  setStatus("Searching…");
  resultsEl.setAttribute("aria-busy", "true");
  window.scrollTo({ top: 0 });  // a new search shows its first results, under the search bar
  const head = headSelect ? headSelect.value : null;
  const fields = { k: K };
  const box = region ? { box: region } : {};  // a form field "x0,y0,x1,y1", or a JSON array
  if (head && headAware.checked) fields.head = head;
  const filter = currentFilter();
  if (filter) fields.filter = filter;
  try {
    const [found, classified] = await Promise.all([
      post("/api/search", query, { ...fields, ...box }),
      head && !query.positive && query.text === undefined
        ? post("/api/classify", query, { head, top: 3, ...box }) : Promise.resolve(null),
    ]);
    if (mine !== runs) return;
    render(found.results);
    showEmpty(found.results.length ? "" : found.note || "No indexed image matches: clear or widen the filter.");
    if (classified) renderPredictions(classified.predictions);
    const how = found.head ? ` (head-aware: ${found.head})` : "";
    const among = found.matched === undefined ? "" : ` among ${found.matched} images the filter selects`;
    const note = found.note ? ` — ${found.note}` : "";
    setStatus(`${found.results.length} results for ${label}${among} in ${found.took_ms} ms${how}${note}`);
  } catch (err) {
    if (mine === runs) {
      setStatus(`Search failed: ${err.message}`, true);
      render([]);  // the old results belong to another query
      showEmpty("Nothing to show for this query: see the message above, then choose another image.");
    }
  } finally {
    if (mine === runs) resultsEl.removeAttribute("aria-busy");
  }
}

function searchFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setStatus(`${file.name} is not an image`, true);
    return;
  }
  showQuery(URL.createObjectURL(file), file.name || "pasted image", "uploaded");
  run({ file }, file.name || "the pasted image");
}

function searchId(hit) {
  const name = hit.path ? baseName(hit.path) : `image ${hit.id}`;
  showQuery(hit.thumbnail_url, hit.label ? `${name} · ${hit.label}` : name, `${hit.path || ""} (id ${hit.id})`);
  run({ id: hit.id, thumbnail_url: hit.thumbnail_url, name: hit.path ? name : null }, name);  // its id: the chip's title
}

// ---------------------------------------------------------------- several examples
function nameOf(example) {
  if (example.file) return example.file.name || "pasted image";
  if (example.text !== undefined) return `“${example.text}”`;
  return example.name || `image ${example.id}`;
}

function searchExamples(positive, negative) {
  const first = positive[0];
  const src = first.file ? queryUrl : first.text !== undefined ? null : first.thumbnail_url;
  const unlike = negative.length ? ` · unlike ${negative.map(nameOf).join(", ")}` : "";
  showQuery(src, `like ${positive.map(nameOf).join(", ")}${unlike}`);
  const what = positive.length === 1 ? nameOf(first) : `${positive.length} images`;
  run({ positive, negative }, `like ${what}${negative.length ? `; unlike ${negative.length}` : ""}`);
}

function updateMoreButton() {
  moreButton.textContent = `More like these (${selected.size})`;
  moreButton.disabled = selected.size === 0;
}

moreButton.addEventListener("click", () => {
  if (selected.size) searchExamples([...selected.values()], []);
});

function lessLikeThis(hit) {
  if (current.url) {  // examples are ids and images: a URL's image is not kept here
    setStatus("“Less like this” needs an uploaded or indexed query image", true);
    return;
  }
  const positive = current.positive || [current];  // a single query becomes the one positive
  const negative = [...(current.negative || []), { id: hit.id, name: baseName(hit.path) }];
  searchExamples(positive, negative);
}

function hitActions(hit) {
  const actions = document.createElement("div");
  actions.className = "hit-actions";
  const pick = document.createElement("label");
  const box = document.createElement("input");
  box.type = "checkbox";
  box.className = "select";
  const name = baseName(hit.path);
  box.setAttribute("aria-label", `Pick ${name} for "More like these"`);
  box.addEventListener("change", () => {
    if (box.checked) selected.set(hit.id, hit);
    else selected.delete(hit.id);
    updateMoreButton();
  });
  pick.append(box, " pick");
  const less = document.createElement("button");
  less.type = "button";
  less.className = "less button quiet";
  less.textContent = "less";
  less.title = "Less like this: search again, away from it";
  less.setAttribute("aria-label", `Less like ${name}`);
  less.addEventListener("click", () => lessLikeThis(hit));
  actions.append(pick, less);
  return actions;
}

function searchUrl(url) {
  showQuery(null, url);
  run({ url }, url);
}

function searchText(text) {  // words, embedded by the index's text tower (the box shows only where it has one)
  showQuery(null, `“${text}”`);
  run({ text }, `“${text}”`);
}

// ---------------------------------------------------------------- a region of the query image
// Fractions of the image as displayed, so a box drawn on a thumbnail means the same region of the full image.
const frame = $("query-frame");
const regionBox = $("region-box");
const STEP = 0.05;  // of the image, per arrow key press
const MIN_SIDE = 0.02;  // a drag smaller than this is a click, not a box

const clamp = (v) => Math.min(1, Math.max(0, Math.round(v * 10000) / 10000));

function describeRegion(r) {
  const pct = (v) => Math.round(v * 100);
  return `${pct(r[0])}–${pct(r[2])} % across, ${pct(r[1])}–${pct(r[3])} % down`;
}

function setRegion(r, pending = false) {
  region = r;
  regionBox.hidden = !r;
  if (r) {
    regionBox.style.left = `${r[0] * 100}%`;
    regionBox.style.top = `${r[1] * 100}%`;
    regionBox.style.width = `${(r[2] - r[0]) * 100}%`;
    regionBox.style.height = `${(r[3] - r[1]) * 100}%`;
  }
  $("region-status").textContent = !r ? "" :
    `Region: ${describeRegion(r)}${pending ? " (press Enter to search)" : ""}`;
}

function searchRegion() {
  if (lastSearch) run(lastSearch.query, lastSearch.label);
}

function pointAt(event) {
  const rect = $("query-image").getBoundingClientRect();
  return [clamp((event.clientX - rect.left) / rect.width), clamp((event.clientY - rect.top) / rect.height)];
}

let drag = null;  // {from: [x, y], drawn: whether this drag has made a box yet}
frame.addEventListener("pointerdown", (e) => {
  if (e.button !== 0 || !lastSearch || lastSearch.query.positive) return;
  e.preventDefault();
  frame.focus();
  frame.setPointerCapture(e.pointerId);
  drag = { from: pointAt(e), drawn: false };
});
frame.addEventListener("pointermove", (e) => {
  if (!drag) return;
  const [x, y] = pointAt(e);
  const [fx, fy] = drag.from;
  const r = [Math.min(fx, x), Math.min(fy, y), Math.max(fx, x), Math.max(fy, y)];
  if (r[2] - r[0] >= MIN_SIDE && r[3] - r[1] >= MIN_SIDE) {
    setRegion(r, true);
    drag.drawn = true;
  }
});
frame.addEventListener("pointerup", () => {
  const drawn = drag && drag.drawn;
  drag = null;
  if (drawn) {
    setRegion(region);
    searchRegion();
  }
});
frame.addEventListener("pointercancel", () => { drag = null; });

frame.addEventListener("keydown", (e) => {
  if (!lastSearch || lastSearch.query.positive) return;
  const moves = { ArrowLeft: [-STEP, 0], ArrowRight: [STEP, 0], ArrowUp: [0, -STEP], ArrowDown: [0, STEP] };
  if (e.key in moves) {
    e.preventDefault();
    if (!region) { setRegion([0.25, 0.25, 0.75, 0.75], true); return; }  // the first press shows a box
    const [dx, dy] = moves[e.key];
    let [x0, y0, x1, y1] = region;
    if (e.shiftKey) {  // resize: move the right and bottom edges, never past the left and top ones
      x1 = Math.max(x0 + STEP, x1 + dx);
      y1 = Math.max(y0 + STEP, y1 + dy);
    } else {  // move the whole box, kept inside the image
      const sx = Math.min(Math.max(dx, -x0), 1 - x1);
      const sy = Math.min(Math.max(dy, -y0), 1 - y1);
      [x0, x1, y0, y1] = [x0 + sx, x1 + sx, y0 + sy, y1 + sy];
    }
    setRegion([clamp(x0), clamp(y0), clamp(x1), clamp(y1)], true);
  } else if (e.key === "Enter" && region) {
    e.preventDefault();
    setRegion(region);
    searchRegion();
  } else if (e.key === "Escape" && region) {
    e.preventDefault();
    setRegion(null);
    if (lastSearch.region) searchRegion();  // the whole image again
  }
});

const textForm = $("text-form");  // absent unless the index's encoder has a text tower
if (textForm) {
  textForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text-input").value.trim();
    if (text) searchText(text);
  });
}

const urlForm = $("url-form");  // absent unless the server fetches query images from URLs
if (urlForm) {
  urlForm.addEventListener("submit", (e) => {
    e.preventDefault();
    searchUrl($("url-input").value.trim());
  });
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

// whether the current query holds words: its scores are of text against images, where no band was measured
function hasWords(query) {
  const examples = query ? [query, ...(query.positive || []), ...(query.negative || [])] : [];
  return examples.some((e) => e.text !== undefined);
}

function render(results) {
  const noBand = hasWords(current);
  resultsEl.replaceChildren(...results.map((hit) => {
    const li = document.createElement("li");
    const named = { ...hit, name: baseName(hit.path) };
    li.append(card(hit, { action: "More like", noBand, onClick: () => searchId(named) }), hitActions(named));
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
  if (lastSearch) run(lastSearch.query, lastSearch.label);
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
$("file-input").addEventListener("change", (e) => {
  searchFile(e.target.files[0]);
  e.target.value = "";  // choosing the same file again is a change too: it searches again
});
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


// ---------------------------------------------------------------- panels opened on demand
// Each toggle shows one panel (filters, teach, the score legend) between the search bar and the results.
function panelToggle(button, panel, onToggle) {
  button.addEventListener("click", () => {
    const open = panel.hidden;
    panel.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (onToggle) onToggle(open);
  });
}
panelToggle($("filters-toggle"), $("filters-panel"));
panelToggle($("legend-toggle"), $("score-legend"));

// the filters in force, on their toggle, so a closed panel still says it is filtering
function markFilters() {
  const filter = currentFilter();
  const n = filter ? Object.keys(filter).length : 0;
  $("filters-toggle").textContent = n ? `Filters (${n})` : "Filters";
  $("filters-toggle").classList.toggle("active", n > 0);
}
$("filters").addEventListener("change", markFilters);
$("filter-clear").addEventListener("click", markFilters);

// /?id=N opens the page on a search by that indexed image (make demo prints such an address); the page's
// server looked the id up (web/pages.py): its path and label, or what is wrong with it
function openingSearch() {
  const view = $("search-view");
  if (!view.dataset.open) return;
  const opening = JSON.parse(view.dataset.open);
  if (opening.error) {
    setStatus(opening.error, true);
    return;
  }
  searchId({ ...opening, thumbnail_url: `/api/images/${opening.id}?size=${view.dataset.thumbnailSize}` });
}
window.addEventListener("DOMContentLoaded", openingSearch);  // after every script has set up its listeners
