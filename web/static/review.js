// Reviewing duplicate groups (web/review_api.py): per group "Not duplicates" (a mark of the whole group) and
// "Remove others…" (a confirmation dialog listing exactly the files the index forgets, then
// POST /api/duplicates/remove), per member "Not a duplicate" (a mark of it and the group's keeper), and a
// download of the groups (JSON or CSV) at the view's settings. duplicates.js renders the groups and
// dispatches "imgsearch:duplicates-rendered" ({container}); each group is a .dup-group with data-keeper,
// each member an element with data-id. Writes need write permission (web/auth.py): keys.js sends the key.
// A button's accessible name starts with its visible text (axe: label-content-name-mismatch).
"use strict";

const review = { dialog: $("review-dialog"), status: $("review-status"), pending: null };

function setReviewStatus(text, isError = false) {
  review.status.textContent = text;
  review.status.classList.toggle("error", isError);
}

// the groups again, as the view asks for them (duplicates.js), so a mark or a removal shows at once
function reloadGroups() {
  if (typeof loadDuplicates === "function") loadDuplicates();
}

async function reviewCall(method, url, body) {
  const response = await apiFetch(url, {
    method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error ? answer.error.message : `HTTP ${response.status}`);
  return answer;
}

async function markNotDuplicates(ids, what) {
  setReviewStatus(`Marking ${what}…`);
  try {
    const answer = await reviewCall("POST", "/api/duplicates/marks", { ids });
    setReviewStatus(`Marked ${what} as not duplicates (${answer.changed} new of ${answer.pairs} pairs); ` +
                    "they are not grouped again.");
    reloadGroups();
  } catch (err) {
    setReviewStatus(`Marking failed: ${err.message}`, true);
  }
}

function reviewButton(text, label, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "button quiet";
  button.textContent = text;
  if (label) button.setAttribute("aria-label", label);
  button.addEventListener("click", onClick);
  return button;
}

function memberPath(member) {
  const titled = member.querySelector("[title]");
  return titled ? titled.title : `image ${member.dataset.id}`;
}

function addReviewControls(group) {
  if (group.querySelector(".review-actions")) return;
  const keeper = Number(group.dataset.keeper);
  const members = [...group.querySelectorAll("[data-id]")].filter((el) => el.tagName === "LI");
  const ids = members.map((el) => Number(el.dataset.id));
  const others = members.filter((el) => Number(el.dataset.id) !== keeper);
  if (!others.length) return;  // exact copies: one indexed image, nothing to mark or remove
  const number = group.dataset.group;
  const actions = document.createElement("div");
  actions.className = "review-actions";
  actions.append(
    reviewButton("Not duplicates", `Not duplicates (group ${number}: mark every pair)`,
                 () => markNotDuplicates(ids, `group ${number}`)),
    reviewButton("Remove others…", `Remove others… (group ${number}: from the index, not the disk)`,
                 () => confirmRemoval(keeper, others.map((el) => [Number(el.dataset.id), memberPath(el)]))),
  );
  group.querySelector("h3").after(actions);
  for (const member of others) {
    const id = Number(member.dataset.id);
    member.append(reviewButton("Not a duplicate", `Not a duplicate: ${memberPath(member)} (of the kept image)`,
                               () => markNotDuplicates([keeper, id], `image ${id}`)));
  }
}

// the confirmation: a modal <dialog> (focus kept inside, Escape cancels) listing every path to be removed,
// with the exact copies (the same bytes, recorded with the indexed image) that leave the index with it
async function confirmRemoval(keeper, others) {
  const copies = new Map();
  try {
    for (const g of (await allGroups()).groups) if (g.exact) copies.set(g.keep, g.paths.slice(1));
  } catch (err) { /* listed without them; the removal is still the server's to refuse */ }
  review.pending = { keeper, ids: others.map(([id]) => id) };
  $("review-dialog-text").textContent =
    `These ${others.length} images leave the index (image ${keeper} is kept). Their files stay on disk.`;
  $("review-dialog-list").replaceChildren(...others.map(([id, path]) => {
    const li = document.createElement("li");
    li.textContent = `${path} (id ${id})`;
    const same = copies.get(id) || [];
    if (same.length) {
      const sub = document.createElement("ul");
      sub.replaceChildren(...same.map((copy) => {
        const item = document.createElement("li");
        item.textContent = `its exact copy ${copy}`;
        return item;
      }));
      li.append(sub);
    }
    return li;
  }));
  review.dialog.returnValue = "";
  review.dialog.showModal();
  $("review-cancel").focus();
}

review.dialog.addEventListener("close", async () => {
  const pending = review.pending;
  review.pending = null;
  if (review.dialog.returnValue !== "remove" || !pending) return;
  setReviewStatus(`Removing ${pending.ids.length} images from the index…`);
  try {
    const answer = await reviewCall("POST", "/api/duplicates/remove", { keep: pending.keeper, remove: pending.ids });
    setReviewStatus(`Removed ${answer.removed.length} images from the index (${answer.count} left); ` +
                    "their files are still on disk.");
    reloadGroups();
  } catch (err) {
    setReviewStatus(`Removing failed: ${err.message}`, true);
  }
});

document.addEventListener("imgsearch:duplicates-rendered", (event) => {
  for (const group of event.detail.container.querySelectorAll(".dup-group")) addReviewControls(group);
  loadMarks();
});

// ---------------------------------------------------------------- the marks: listed, each can be undone
async function loadMarks() {
  try {
    const response = await apiFetch("/api/duplicates/marks");
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    // who may write (web/auth.py): said up front; the buttons stay, so a key can still be asked for and given
    $("review-permission").hidden = body.writing.allowed;
    $("review-permission").textContent = body.writing.allowed ? "" :
      `Marking and removing need write permission: ${body.writing.why}.`;
    $("review-marks-count").textContent = body.total;
    $("review-marks-list").replaceChildren(...body.marks.map((mark) => {
      const li = document.createElement("li");
      const ids = mark.ids.every((id) => id !== null) ? mark.ids : mark.marked_ids;
      li.append(`${mark.paths[0]} · ${mark.paths[1]} (ids ${ids[0]}, ${ids[1]}) `,
                reviewButton("Unmark", `Unmark ${mark.paths[0]} and ${mark.paths[1]}`, () => unmarkPair(ids)));
      return li;
    }));
  } catch (err) {
    setReviewStatus(`Listing the marks failed: ${err.message}`, true);
  }
}

async function unmarkPair(ids) {
  try {
    await reviewCall("DELETE", "/api/duplicates/marks", { ids });
    setReviewStatus(`Unmarked images ${ids[0]} and ${ids[1]}: they may be grouped again.`);
    reloadGroups();
  } catch (err) {
    setReviewStatus(`Unmarking failed: ${err.message}`, true);
  }
}

// ---------------------------------------------------------------- download: every group at the view's settings
async function allGroups() {
  const groups = [];
  let body = null;
  do {
    const params = new URLSearchParams({
      threshold: $("dup-threshold").value, keep: $("dup-keep").value, keypoints: $("dup-keypoints").checked,
      offset: groups.length, limit: 1000,
    });
    const response = await apiFetch(`/api/duplicates?${params}`);
    body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    groups.push(...body.groups);
  } while (body.groups.length && groups.length < body.total);
  return { threshold: body.threshold, keep: body.keep, keypoints: body.keypoints, generation: body.generation,
           total: body.total, groups };
}

const EVIDENCE = ["decided_by", "via", "check", "inliers", "coverage", "agreement", "correlation", "scale", "rotation",
                  "region", "occluded", "detail"];  // the columns imgsearch duplicates --csv writes

function csvCell(value) {
  const text = Array.isArray(value) ? value.join(" ") : String(value ?? "");
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function groupsCsv(report) {
  const rows = [["group", "id", "path", "score", "keeper", "exact", ...EVIDENCE]];
  for (const g of report.groups) {
    g.ids.forEach((id, i) => {
      const found = (g.evidence || [])[i] || {};
      rows.push([g.group, id, g.paths[i], g.scores[i].toFixed(6), i === 0 ? "True" : "False",
                 g.exact ? "True" : "False", ...EVIDENCE.map((k) => found[k])]);
    });
  }
  return rows.map((row) => row.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

async function downloadGroups(kind) {
  setReviewStatus("Preparing the download…");
  try {
    const report = await allGroups();
    const text = kind === "csv" ? groupsCsv(report) : JSON.stringify(report, null, 1);
    const blob = new Blob([text], { type: kind === "csv" ? "text/csv" : "application/json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `duplicates-${report.threshold.toFixed(2)}-${report.keep}.${kind}`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    setReviewStatus(`Downloaded ${report.groups.length} groups as ${kind.toUpperCase()}.`);
  } catch (err) {
    setReviewStatus(`Download failed: ${err.message}`, true);
  }
}

$("dup-download-json").addEventListener("click", () => downloadGroups("json"));
$("dup-download-csv").addEventListener("click", () => downloadGroups("csv"));
