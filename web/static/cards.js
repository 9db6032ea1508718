// The one result card of the page: search results, duplicate groups and teach mode all show images with it.
// A card is a button (click, Enter or Space: its action) holding the thumbnail, the file name, the folder
// label and the score with its band (the measured bands of the "Scores" panel).
"use strict";

// Score bands, highest first: [lowest score, class, words]; the "Scores" panel says where they come from.
const BANDS = [
  [0.985, "same", "same picture"],
  [0.85, "near", "near-duplicate"],
  [0.45, "kind", "same kind"],
  [0.35, "weak", "weak"],
  [-Infinity, "unrelated", "unrelated"],
];

// null where the bands were not measured: another encoder (the page says so), or words against images
function bandOf(score, opts = {}) {
  if (document.body.dataset.bands !== "on" || opts.noBand) return null;
  return BANDS.find(([low]) => score >= low);
}

// "1280×960 · 245 KB" from a hit's width, height and file size as indexed; "" when the index has neither.
function sizeText(hit) {
  const parts = [];
  if (hit.width && hit.height) parts.push(`${hit.width}\u00d7${hit.height}`);
  if (hit.file_size != null) {
    const units = [["GB", 1e9], ["MB", 1e6], ["KB", 1e3]];
    const [unit, scale] = units.find(([, s]) => hit.file_size >= s) || ["bytes", 1];
    const value = hit.file_size / scale;
    parts.push(`${scale === 1 ? value : value.toFixed(value < 10 ? 1 : 0)} ${unit}`);
  }
  return parts.join(" \u00b7 ");
}

function baseName(path) {
  return String(path || "").split(/[\\/]/).pop() || String(path || "");
}

// A card for ``hit`` ({id, path, label, score, thumbnail_url, width, height, file_size}); ``opts``: {classes, action (the verb of the
// card's accessible name), badge (a word shown instead of the label, e.g. "keep"), noBand (a score of words
// against an image: no band), onClick}.
function card(hit, opts = {}) {
  const name = baseName(hit.path) || `image ${hit.id}`;
  const button = document.createElement("button");
  button.type = "button";
  button.className = ["hit", ...(opts.classes || [])].join(" ");
  button.dataset.id = hit.id;
  button.title = hit.path;
  const img = document.createElement("img");
  apiImage(img, hit.thumbnail_url);
  img.alt = "";  // the caption names the image
  button.dataset.label = hit.label;
  img.loading = "lazy";
  img.addEventListener("error", () => button.classList.add("no-image"));
  const caption = document.createElement("span");
  caption.className = "caption";
  const file = document.createElement("span");
  file.className = "file";
  file.textContent = name;
  const meta = document.createElement("span");
  meta.className = "meta-row";
  const score = document.createElement("strong");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  const [, band, words] = bandOf(hit.score, opts) || [null, null, null];
  meta.append(score);
  if (opts.badge || band) {
    const pill = document.createElement("span");
    pill.className = band ? `band ${band}` : "band";
    pill.textContent = opts.badge || words;
    if (opts.badge) pill.classList.add("badge");
    meta.append(pill);
  }
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = hit.label || "(no label)";
  caption.append(file, label);
  const size = sizeText(hit);
  if (size) {
    const facts = document.createElement("span");
    facts.className = "size";
    facts.textContent = size;
    caption.append(facts);
  }
  caption.append(meta);
  button.append(img, caption);
  const action = document.createElement("span");  // the card's name: this verb, then what it shows
  action.className = "visually-hidden";
  action.textContent = `${opts.action || "Search by"} `;
  button.prepend(action);
  if (opts.onClick) button.addEventListener("click", opts.onClick);
  return button;
}
