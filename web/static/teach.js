// Teach mode: a head from a handful of examples, without leaving the page (POST /api/heads).
// Name the classes, choose the one to add to, click results (Enter or Space on a focused
// result does the same) or drop images on a class; Train. The new head is then chosen in
// the head switch, the query is classified with it, and "head-aware search" can use it.
// Loaded after app.js, whose run(), current, headSelect and headAware it uses.
"use strict";

const teach = {
  on: false,
  active: 0,
  classes: [],  // [{name, examples: [{id, src} | {image: base64, src}]}]
};
const teachPanel = $("teach-panel");
const teachToggle = $("teach-toggle");
const teachList = $("teach-classes");
const teachStatusEl = $("teach-status");

function teachStatus(text, isError = false) {
  teachStatusEl.textContent = text;
  teachStatusEl.classList.toggle("error", isError);
}

function addClass(name) {
  teach.classes.push({ name, examples: [] });
  teach.active = teach.classes.length - 1;
  renderClasses();
}

function renderClasses() {
  teachList.replaceChildren(...teach.classes.map((cls, i) => {
    const li = document.createElement("li");
    li.className = "teach-class" + (i === teach.active ? " active" : "");
    const pick = document.createElement("input");
    pick.type = "radio";
    pick.name = "teach-active";
    pick.checked = i === teach.active;
    pick.setAttribute("aria-label", `Add clicked results to class ${i + 1}`);
    pick.addEventListener("change", () => { teach.active = i; renderClasses(); });
    const name = document.createElement("input");
    name.type = "text";
    name.value = cls.name;
    name.className = "teach-class-name";
    name.setAttribute("aria-label", `Name of class ${i + 1}`);
    name.addEventListener("input", () => { cls.name = name.value; });
    name.addEventListener("focus", () => { if (teach.active !== i) { teach.active = i; markActive(); } });
    const count = document.createElement("span");
    count.className = "teach-count";
    count.textContent = `${cls.examples.length} example${cls.examples.length === 1 ? "" : "s"}`;
    const chips = document.createElement("ol");
    chips.className = "teach-examples";
    chips.append(...cls.examples.map((ex, j) => {
      const item = document.createElement("li");
      const remove = document.createElement("button");
      remove.type = "button";
      remove.title = "Remove this example";
      remove.setAttribute("aria-label", `Remove example ${j + 1} of ${cls.name || "class " + (i + 1)}`);
      const img = document.createElement("img");
      apiImage(img, ex.src);
      img.alt = "";
      remove.append(img);
      remove.addEventListener("click", () => { cls.examples.splice(j, 1); renderClasses(); });
      item.append(remove);
      return item;
    }));
    const upload = document.createElement("input");
    upload.type = "file";
    upload.accept = "image/*";
    upload.multiple = true;
    upload.setAttribute("aria-label", `Add image files to ${cls.name || "class " + (i + 1)}`);
    upload.addEventListener("change", () => addFiles(i, upload.files));
    ["dragenter", "dragover"].forEach((type) => li.addEventListener(type, (e) => {
      e.preventDefault();
      li.classList.add("over");
    }));
    ["dragleave", "drop"].forEach((type) => li.addEventListener(type, () => li.classList.remove("over")));
    li.addEventListener("drop", (e) => {
      e.preventDefault();
      e.stopPropagation();
      addFiles(i, e.dataTransfer.files);
    });
    li.append(pick, name, count, chips, upload);
    return li;
  }));
}

function markActive() {
  [...teachList.children].forEach((li, i) => {
    li.classList.toggle("active", i === teach.active);
    li.querySelector("input[type=radio]").checked = i === teach.active;
  });
}

function addFiles(i, files) {
  for (const file of files) {
    if (file.type && !file.type.startsWith("image/")) {
      teachStatus(`${file.name} is not an image`, true);
      continue;
    }
    const reader = new FileReader();
    reader.addEventListener("load", () => {
      const url = String(reader.result);  // data:image/...;base64,XXXX
      teach.classes[i].examples.push({ image: url.slice(url.indexOf(",") + 1), src: URL.createObjectURL(file) });
      renderClasses();
    });
    reader.readAsDataURL(file);
  }
}

function addResult(button) {
  const cls = teach.classes[teach.active];
  const id = Number(button.dataset.id);
  if (!cls) return;
  if (teach.classes.some((c) => c.examples.some((ex) => ex.id === id))) {
    teachStatus(`image ${id} is already an example`, true);
    return;
  }
  cls.examples.push({ id, src: button.querySelector("img").src });
  teachStatus(`added image ${id} to ${cls.name || "class " + (teach.active + 1)}`);
  renderClasses();
}

// In teach mode a click on a result adds it to the chosen class instead of searching by it.
resultsEl.addEventListener("click", (e) => {
  const button = teach.on && e.target.closest(".hit");
  if (!button) return;
  e.stopPropagation();
  e.preventDefault();
  addResult(button);
}, true);

function setTeaching(on) {
  teach.on = on;
  teachPanel.hidden = !on;
  teachToggle.setAttribute("aria-expanded", String(on));
  teachToggle.textContent = on ? "Stop teaching" : "Teach a head";
  document.body.classList.toggle("teaching", on);
  if (on && !teach.classes.length) { addClass("class 1"); addClass("class 2"); teach.active = 0; renderClasses(); }
  if (on) checkPermission();
}

async function checkPermission() {
  try {
    const response = await apiFetch("/api/heads");
    const body = await response.json();
    $("teach-train").disabled = !body.training.allowed;
    if (!body.training.allowed) teachStatus(`Training is off on this server: ${body.training.why}`, true);
    $("teach-model").value = body.default_model;
  } catch (err) {
    teachStatus(`Cannot reach the server: ${err.message}`, true);
  }
}

function percent(x) { return `${(100 * x).toFixed(0)} %`; }

function renderReport(head) {
  const m = head.metrics;
  const report = $("teach-report");
  const title = document.createElement("p");
  const v = m.validation;
  title.textContent = v
    ? `${head.name} (${head.model}): ${percent(v.accuracy)} right on ${m.measured_examples} held-out examples ` +
      `(${m.folds}-fold cross-validation; kNN vote ${percent(m.knn_validation.accuracy)})`
    : `${head.name} (${head.model}): trained, not measured (no class has 2 examples to hold one out)`;
  const counts = document.createElement("ul");
  counts.append(...Object.entries(m.examples_per_class).map(([name, n]) => {
    const li = document.createElement("li");
    li.textContent = `${name}: ${n} example${n === 1 ? "" : "s"}`;
    return li;
  }), ...m.warnings.map((w) => {
    const li = document.createElement("li");
    li.className = "warning";
    li.textContent = `warning: ${w}`;
    return li;
  }));
  report.replaceChildren(title, counts);
  report.hidden = false;
}

function useHead(name) {
  if (![...headSelect.options].some((o) => o.value === name)) headSelect.append(new Option(name, name));
  headSelect.value = name;
  $("heads-bar").hidden = false;
  if (lastSearch) run(lastSearch.query, lastSearch.label);  // the same search, now head-aware
}

async function train() {
  const examples = {};
  for (const cls of teach.classes) {
    const name = cls.name.trim();
    if (!name) { teachStatus("every class needs a name", true); return; }
    if (examples[name]) { teachStatus(`two classes are named ${name}`, true); return; }
    examples[name] = cls.examples.map((ex) => (ex.image ? { image: ex.image } : ex.id));
  }
  const body = { name: $("teach-name").value.trim(), model: $("teach-model").value, examples };
  teachStatus("Training…");
  $("teach-train").disabled = true;
  try {
    const response = await apiFetch("/api/heads", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error ? answer.error.message : `HTTP ${response.status}`);
    const head = answer.head;
    teachStatus(`Trained ${head.name} in ${head.metrics.train_seconds.toFixed(2)} s`);
    renderReport(head);
    useHead(head.name);
  } catch (err) {
    teachStatus(`Training failed: ${err.message}`, true);
  } finally {
    $("teach-train").disabled = false;
  }
}

// A zero-shot head: the classes' names alone, read by the index's text tower (the button shows only where it has one)
async function zeroShot() {
  const names = teach.classes.map((cls) => cls.name.trim());
  if (names.length < 2 || names.some((n) => !n)) { teachStatus("name at least 2 classes", true); return; }
  if (new Set(names).size < names.length) { teachStatus("two classes have the same name", true); return; }
  teachStatus("Reading the names…");
  try {
    const response = await apiFetch("/api/heads", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: $("teach-name").value.trim(), zero_shot: names }),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error ? answer.error.message : `HTTP ${response.status}`);
    const head = answer.head;
    const v = head.metrics.validation;
    teachStatus(`Made ${head.name} from ${names.length} class names (zero-shot)`);
    const report = $("teach-report");
    const line = document.createElement("p");
    line.textContent = v
      ? `${head.name} (zero-shot): ${percent(v.accuracy)} right on the ${head.metrics.val_images} images labelled ` +
        "with a class name (nothing was trained on them; a kNN vote on the same images, leave-one-out: " +
        `${percent(head.metrics.knn_validation.accuracy)})`
      : `${head.name} (zero-shot): not measured (no indexed image is labelled with a class name)`;
    report.replaceChildren(line);
    report.hidden = false;
    useHead(head.name);
  } catch (err) {
    teachStatus(`Zero-shot head failed: ${err.message}`, true);
  }
}

teachToggle.addEventListener("click", () => setTeaching(!teach.on));
if ($("teach-zero-shot")) $("teach-zero-shot").addEventListener("click", zeroShot);
$("teach-add-class").addEventListener("click", () => addClass(`class ${teach.classes.length + 1}`));
$("teach-train").addEventListener("click", train);
