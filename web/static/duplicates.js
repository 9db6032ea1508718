// The Duplicates view (#duplicates): groups of near-duplicates and exact copies, a page at a time, from
// GET /api/duplicates, shown with the page's one card (cards.js); a click on one searches by it (app.js).
"use strict";

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
    const response = await apiFetch(`/api/duplicates?${params}`);
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

function renderGroups(groups) {
  $("dup-groups").replaceChildren(...groups.map((group) => {
    const li = document.createElement("li");
    li.className = "dup-group";
    li.dataset.group = group.group;
    li.dataset.keeper = group.keep;
    const title = document.createElement("h3");
    title.textContent = `Group ${group.group} · ${group.exact ? "exact copies" : "near-duplicates"} · ` +
                        `${group.ids.length} files`;
    const row = document.createElement("ol");
    row.className = "grid dup-row";
    row.replaceChildren(...group.ids.map((id, i) => {
      const item = document.createElement("li");
      item.dataset.id = id;
      const kept = i === 0;  // the group's kept image comes first
      const hit = { id, path: group.paths[i], label: dirLabel(group.paths[i]),
                    score: group.scores[i], thumbnail_url: group.thumbnail_urls[i] };
      item.append(card(hit, {
        classes: ["dup-hit", ...(kept ? ["keeper"] : [])], badge: kept ? "keep" : null,
        onClick: () => {
          location.hash = "#search";
          searchId(hit);
        },
      }));
      return item;
    }));
    li.append(title, row);
    return li;
  }));
  // review.js (and anything else) adds its controls to the groups now shown
  document.dispatchEvent(new CustomEvent("imgsearch:duplicates-rendered", { detail: { container: $("dup-groups") } }));
}

// the folder a file is in, as a card's second line (the duplicates API gives paths, not labels)
function dirLabel(path) {
  const parts = String(path).split(/[\\/]/);
  return parts.length > 1 ? parts[parts.length - 2] : "";
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
