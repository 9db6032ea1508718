// The Duplicates view (#duplicates): groups of near-duplicates and exact copies, found by a job on the server
// (POST /api/duplicates/jobs, polled for its stage and counts, cancellable), a page at a time, shown with the
// page's one card (cards.js); a click on one searches by it (app.js). Each member shows width x height and file
// size (the keeper rule "largest" is checkable) and its evidence in words; the kept image outlines the region
// the member covers (the member pointed at or focused, else the group's first).
// After the groups are drawn: document event "imgsearch:duplicates-rendered" {detail: {container}}; each group
// element has class "dup-group" and data-keeper="ID", each member element data-id="ID" (review.js uses them).
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
const dup = { offset: 0, total: 0, loaded: false, request: 0, job: null, jobKey: "" };
const dupThreshold = $("dup-threshold");
const dupStatus = $("dup-status");
const POLL_MS = 300;
const STAGE_WORDS = {
  queued: "Waiting for another search of duplicates to finish",
  pairs: "Finding similar pairs: images searched",
  verifying: "Verifying pairs by their pixels: pairs checked",
  grouping: "Grouping: components grouped",
};
const KEEP_WORDS = {
  largest: "most pixels, then largest file", smallest: "fewest pixels, then smallest file",
  oldest: "indexed first", newest: "indexed last",
};

function dupLimit() {
  return Number($("dup-limit").value);
}

function setDupStatus(text, isError = false) {
  dupStatus.textContent = text;
  dupStatus.classList.toggle("error", isError);
}

function errorOf(response, body) {
  return new Error(body && body.error ? body.error.message : `HTTP ${response.status}`);
}

function showProgress(job) {
  const box = $("dup-progress");
  const bar = $("dup-progress-bar");
  box.hidden = !job;
  if (!job) return;
  const words = STAGE_WORDS[job.stage] || "Finding duplicates";
  if (job.total > 0) {
    bar.max = job.total;
    bar.value = job.done;
    $("dup-progress-label").textContent = `${words} ${job.done.toLocaleString()} of ${job.total.toLocaleString()}`;
  } else {
    bar.removeAttribute("value");  // indeterminate until the stage knows its total
    $("dup-progress-label").textContent = `${words}…`;
  }
  bar.dataset.stage = job.stage || "";
}

async function loadDuplicates() {
  dup.loaded = true;
  const ticket = ++dup.request;  // a slower answer to an earlier request is dropped
  const options = { threshold: Number(dupThreshold.value), keep: $("dup-keep").value,
                    keypoints: $("dup-keypoints").checked };
  const key = JSON.stringify(options);
  if (dup.job && dup.job.state === "running" && dup.jobKey !== key) cancelJob(dup.job.id);  // other options now
  const page = new URLSearchParams({ offset: dup.offset, limit: dupLimit() });
  $("dup-restart").hidden = true;
  setDupStatus("Finding duplicates…");
  $("dup-groups").setAttribute("aria-busy", "true");
  try {
    let response = await apiFetch(`/api/duplicates/jobs?${page}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(options),
    });
    let job = await response.json();
    if (ticket !== dup.request) return;
    if (!response.ok) throw errorOf(response, job);
    dup.job = job;
    dup.jobKey = key;
    let stage = null;
    while (job.state === "running") {
      showProgress(job);
      if (job.stage !== stage) {  // the live region speaks once per stage, not on every count
        stage = job.stage;
        setDupStatus(`Finding duplicates: ${(STAGE_WORDS[stage] || "working").split(":")[0].toLowerCase()}…`);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      if (ticket !== dup.request) return;
      response = await apiFetch(`/api/duplicates/jobs/${encodeURIComponent(job.id)}?${page}`);
      job = await response.json();
      if (ticket !== dup.request) return;
      if (!response.ok) throw errorOf(response, job);
      dup.job = job;
    }
    showProgress(null);
    if (job.state === "cancelled") {
      setDupStatus("Cancelled: no groups were kept. Change a setting or press “Find duplicates” to start again.");
      $("dup-restart").hidden = false;
      return;
    }
    if (job.state === "failed") throw new Error(job.error ? job.error.message : "the server could not finish");
    showResult(job.result);
  } catch (err) {
    if (ticket === dup.request) {
      showProgress(null);
      setDupStatus(`Finding duplicates failed: ${err.message}`, true);
      $("dup-restart").hidden = false;
    }
  } finally {
    if (ticket === dup.request) $("dup-groups").removeAttribute("aria-busy");
  }
}

function cancelJob(id) {
  return apiFetch(`/api/duplicates/jobs/${encodeURIComponent(id)}`, { method: "DELETE" }).catch(() => null);
}

function showResult(body) {
  dup.total = body.total;
  renderGroups(body.groups, body.keep);
  const first = body.total ? body.offset + 1 : 0;
  const last = body.offset + body.groups.length;
  $("dup-page").textContent = `${first}–${last} of ${body.total}`;
  $("dup-prev").disabled = body.offset === 0;
  $("dup-next").disabled = last >= body.total;
  setDupStatus(`${body.total} groups at threshold ${body.threshold.toFixed(2)} (keep ${body.keep}` +
               `${body.keypoints ? ", keypoints checked" : ", scores only"}) among ${body.images} images`);
}

// ---------------------------------------------------------------- a member's size and evidence, in words
function fileSize(bytes) {
  if (bytes === null || bytes === undefined) return "size unknown";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function sizeWords(size) {
  if (!size) return "";
  return `${size.width} × ${size.height} px · ${fileSize(size.file_size)}`;
}

function percent(x) {
  return `${Math.round(100 * x)}%`;
}

// the member a check was made against, when it is not the kept image (the keeper's own check left it out and
// a member already in the group matched it): null otherwise
function viaOf(found, group) {
  if (!found || found.via == null || found.via === group.keep || found.decided_by === "sha256") return null;
  const i = group.ids.indexOf(found.via);
  return (i >= 0 && baseName(group.paths[i])) || `image ${found.via}`;
}

// [strong words, the rest] of why a member is in its group (the keeper: why it is kept)
function evidenceWords(found, keep, via) {
  if (!found) return ["", ""];
  if (found.decided_by === "keeper") return ["kept", `: ${KEEP_WORDS[keep] || keep}`];
  if (found.decided_by === "sha256") return ["exact copy", ": the same bytes"];
  const cosine = `cosine ${Number(found.cosine).toFixed(3)}`;
  const parts = [];
  if (found.check === "keypoints") parts.push(`${found.inliers} matching keypoints covering ${percent(found.coverage)}`);
  else if (found.check === "dense") {
    parts.push(`${found.match === false ? "laid" : "aligned pixels agree"} over ${percent(found.coverage)} of the kept image`);
  }
  if (found.check === "keypoints" || found.check === "dense") {
    if (found.agreement) parts.push(`${percent(found.agreement)} of its detail agrees`);
    if (found.occluded > 0) parts.push(`a sticker or box over ${percent(found.occluded)} of it left out`);
    if (found.match === false && found.detail > 0) parts.push(`a part of ${found.detail} thumbnail pixels drawn otherwise`);
    const turn = Math.abs(found.rotation) >= 0.5 ? `, turned ${Math.round(found.rotation)}°` : "";
    parts.push(`scaled ×${Number(found.scale).toFixed(2)}${turn}`);
  }
  if (via) parts.push(`checked against ${via}, not the kept image`);
  const numbers = parts.length ? `: ${parts.join(", ")}` : "";
  if (found.decided_by === "cosine") {
    // in by its score though the check did not confirm it (above 0.99 only a keypoint alignment that finds the two
    // different separates them; a picture too poor in corners that no check could align): say so, not just the numbers
    if (found.match === false) return [cosine, ` ≥ threshold; the ${found.check} check did not confirm it${numbers}`];
    return [cosine, ` ≥ threshold${numbers ? ` (${found.check} check${numbers})` : ""}`];
  }
  return [`${found.decided_by} check`, ` matched (${cosine}, below the threshold)${numbers}`];
}

function regionOf(found, group) {
  const r = found && found.region;
  if (!r || r.length !== 4 || found.decided_by === "keeper" || found.decided_by === "sha256") return null;
  if (viaOf(found, group)) return null;  // a region of the member it was checked against, not of the kept image
  if (found.check !== "keypoints" && found.check !== "dense") return null;
  if (found.match === false) return null;  // the check did not confirm it: its alignment covers nothing
  return r;
}

// ---------------------------------------------------------------- the outline on the kept image
function placeRegion(box, img, size, region) {
  // the thumbnail is a square showing the whole image (object-fit: contain): fractions of the square
  const w = img.naturalWidth || (size && size.width) || 1;
  const h = img.naturalHeight || (size && size.height) || 1;
  const fw = w >= h ? 1 : w / h;
  const fh = h >= w ? 1 : h / w;
  const [x0, y0, x1, y1] = region.map((v) => Math.min(1, Math.max(0, v)));
  const left = (1 - fw) / 2 + x0 * fw;
  const top = (1 - fh) / 2 + y0 * fh;
  const width = (x1 - x0) * fw;
  box.style.left = `${100 * left}%`;
  box.style.top = `${100 * top}%`;
  box.style.width = `${100 * width}%`;
  box.style.height = `${100 * (y1 - y0) * fh}%`;
  box.classList.toggle("inside", top < 0.1);  // no room for the label above it
  // the label may reach past the region, not past the picture (a percentage of the region's width)
  box.querySelector(".dup-region-label").style.maxWidth = `${100 * (1 - left) / Math.max(width, 0.01)}%`;
}

function outline(groupEl, member) {
  const keeper = groupEl.querySelector(".dup-member.keeper");
  const box = keeper && keeper.querySelector(".dup-region");
  if (!box) return;
  const target = member || groupEl.querySelector(".dup-member[data-region]");
  groupEl.querySelectorAll(".dup-member.showing").forEach((el) => el.classList.remove("showing"));
  if (!target || !target.dataset.region) {
    box.hidden = true;
    return;
  }
  const img = keeper.querySelector("img");
  placeRegion(box, img, JSON.parse(keeper.dataset.size || "null"), JSON.parse(target.dataset.region));
  const label = box.querySelector(".dup-region-label");
  label.textContent = `covered by ${target.dataset.name}`;
  label.title = label.textContent;  // the whole name where the picture is too narrow for it
  box.dataset.member = target.dataset.id;
  box.hidden = false;
  target.classList.add("showing");
}

// ---------------------------------------------------------------- the groups
// the pill of a member a check put in the group: what it is, not the band of its cosine ("same kind" under
// a verified edit read as a contradiction); a member in by its cosine keeps the band
function verdictWord(found) {
  if (!found) return null;
  if (found.decided_by === "sha256") return "exact copy";
  if (found.decided_by === "keypoints" || found.decided_by === "dense") return "edited copy";
  return null;
}

function memberElement(group, i, keep) {
  const id = group.ids[i];
  const kept = i === 0;  // the group's kept image comes first
  const found = (group.evidence || [])[i];
  const size = (group.sizes || [])[i];
  const item = document.createElement("li");
  item.className = `dup-member${kept ? " keeper" : ""}`;
  item.dataset.id = id;
  const hit = { id, path: group.paths[i], label: dirLabel(group.paths[i]),
                score: group.scores[i], thumbnail_url: group.thumbnail_urls[i] };
  const button = card(hit, {
    classes: ["dup-hit", ...(kept ? ["keeper"] : [])], badge: kept ? "keep" : verdictWord(found),
    onClick: () => {
      location.hash = "#search";
      searchId(hit);
    },
  });
  button.removeAttribute("data-id");  // the member element (the list item) carries it: one per member
  const img = button.querySelector("img");
  const frame = document.createElement("span");
  frame.className = "dup-thumb";
  img.replaceWith(frame);
  frame.append(img);
  item.dataset.name = baseName(hit.path) || `image ${id}`;
  if (kept && !group.exact) {
    const box = document.createElement("span");
    box.className = "dup-region";
    box.setAttribute("aria-hidden", "true");  // a picture of what each member's words say
    box.hidden = true;
    const label = document.createElement("span");
    label.className = "dup-region-label";
    box.append(label);
    frame.append(box);
    if (size) item.dataset.size = JSON.stringify(size);
  }
  const region = regionOf(found, group);
  if (region) item.dataset.region = JSON.stringify(region);
  const facts = document.createElement("p");
  facts.className = "dup-facts";
  facts.textContent = sizeWords(size);
  const evidence = document.createElement("p");
  evidence.className = "dup-evidence";
  const [strong, rest] = evidenceWords(found, keep, viaOf(found, group));
  const head = document.createElement("strong");
  head.textContent = strong;
  evidence.append(head, rest);
  item.append(button, facts, evidence);
  return item;
}

function renderGroups(groups, keep) {
  const container = $("dup-groups");
  container.replaceChildren(...groups.map((group) => {
    const li = document.createElement("li");
    li.className = "dup-group";
    li.dataset.group = group.group;
    li.dataset.keeper = group.keep;
    const title = document.createElement("h3");
    title.textContent = `Group ${group.group} · ${group.exact ? "exact copies" : "near-duplicates"} · ` +
                        `${group.ids.length} files`;
    const row = document.createElement("ol");
    row.className = "grid dup-row";
    row.replaceChildren(...group.ids.map((_, i) => memberElement(group, i, keep)));
    li.append(title, row);
    for (const member of row.querySelectorAll(".dup-member[data-region]")) {
      member.addEventListener("mouseenter", () => outline(li, member));
      member.addEventListener("focusin", () => outline(li, member));
      member.addEventListener("mouseleave", () => outline(li, null));
      member.addEventListener("focusout", () => outline(li, null));
    }
    const keeperImg = row.querySelector(".dup-member.keeper img");
    if (keeperImg) keeperImg.addEventListener("load", () => outline(li, row.querySelector(".dup-member.showing")));
    return li;
  }));
  for (const li of container.querySelectorAll(".dup-group")) outline(li, null);  // the first member's region
  document.dispatchEvent(new CustomEvent("imgsearch:duplicates-rendered", { detail: { container } }));
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
$("dup-restart").addEventListener("click", () => loadDuplicates());
$("dup-cancel").addEventListener("click", async () => {
  const job = dup.job;
  if (!job || job.state !== "running") return;
  $("dup-cancel").disabled = true;
  try {
    await cancelJob(job.id);  // the next poll says cancelled
  } finally {
    $("dup-cancel").disabled = false;
  }
});
showView(viewOfHash());
