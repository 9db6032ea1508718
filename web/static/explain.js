// "why?": with the toggle on, hovering or focusing a result draws the score's split over the feature map's
// cells (POST /api/explain) on the query and on that result: red where the similarity comes from, blue where
// it is held back, opacity by the share's size on one scale for both images.  The cells cover the centred
// square of each image, which is what the model sees.  app.js announces each query with "imgsearch:query".
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const toggle = $("why-toggle");
  if (!toggle) return;
  const resultsEl = $("results");
  const queryImg = $("query-image");
  const statusEl = $("why-status");
  const POSITIVE = "220, 38, 38";
  const NEGATIVE = "37, 99, 235";
  let query = null;
  let answers = new Map();  // "id|head" -> promise of the explanation, for the current query
  let ticket = 0;  // a slower answer for an earlier hover is dropped

  const host = document.createElement("span");  // the query's canvas sits over the query image
  host.className = "heat-host";
  queryImg.replaceWith(host);
  host.append(queryImg);
  const queryCanvas = newCanvas();
  host.append(queryCanvas);

  function newCanvas() {
    const canvas = document.createElement("canvas");
    canvas.className = "heat";
    canvas.hidden = true;
    canvas.setAttribute("aria-hidden", "true");
    return canvas;
  }

  const on = () => toggle.getAttribute("aria-pressed") === "true";

  function setStatus(text, isError = false) {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", isError);
  }

  function clear() {
    for (const canvas of document.querySelectorAll("canvas.heat")) {
      canvas.hidden = true;
      delete canvas.dataset.drawn;
    }
    for (const hit of resultsEl.querySelectorAll(".hit.explained")) hit.classList.remove("explained");
  }

  function headField() {
    const select = $("head-select");
    const aware = $("head-aware");
    return select && aware && aware.checked ? select.value : null;
  }

  async function request(id, head) {
    let init;
    if (query.file) {
      const form = new FormData();
      form.append("image", query.file, query.file.name || "pasted.png");
      form.append("id", String(id));
      if (head) form.append("head", head);
      if (query.box) form.append("box", query.box.join(","));
      init = { method: "POST", body: form };
    } else {
      const body = { query: { id: query.id }, id, ...(head ? { head } : {}), ...(query.box ? { box: query.box } : {}) };
      init = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    }
    const response = await apiFetch("/api/explain", init);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
    return body;
  }

  function explanation(id) {
    const head = headField();
    const key = `${id}|${head || ""}`;
    if (!answers.has(key)) {
      const mine = answers;
      answers.set(key, request(id, head).catch((err) => { mine.delete(key); throw err; }));
    }
    return answers.get(key);
  }

  function maxAbs(grid) {
    return Math.max(...grid.map((row) => Math.max(...row.map(Math.abs))));
  }

  // Draw a grid of shares over the centred square of ``img`` (shown whole: object-fit contain, or its own size),
  // or of its ``region`` [x0, y0, x1, y1] (fractions) when the query was a region of it.
  function draw(canvas, img, grid, scale, region = [0, 0, 1, 1]) {
    const width = img.clientWidth;
    const height = img.clientHeight;
    if (!width || !height || !img.naturalWidth) return;
    canvas.width = width;
    canvas.height = height;
    canvas.style.left = `${img.offsetLeft + img.clientLeft}px`;  // CSSOM, which the CSP allows
    canvas.style.top = `${img.offsetTop + img.clientTop}px`;
    const fit = Math.min(width / img.naturalWidth, height / img.naturalHeight);
    const shownW = img.naturalWidth * fit;
    const shownH = img.naturalHeight * fit;
    const [rx0, ry0, rx1, ry1] = region;
    const w = (rx1 - rx0) * shownW;
    const h = (ry1 - ry0) * shownH;
    const side = Math.min(w, h);
    const x0 = (width - shownW) / 2 + rx0 * shownW + (w - side) / 2;
    const y0 = (height - shownH) / 2 + ry0 * shownH + (h - side) / 2;
    const rows = grid.length;
    const cols = grid[0].length;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    grid.forEach((row, r) => row.forEach((share, c) => {
      const alpha = 0.75 * Math.min(1, Math.abs(share) / scale);
      ctx.fillStyle = `rgba(${share >= 0 ? POSITIVE : NEGATIVE}, ${alpha.toFixed(3)})`;
      ctx.fillRect(x0 + (c * side) / cols, y0 + (r * side) / rows, side / cols, side / rows);
    }));
    canvas.hidden = false;
    canvas.dataset.drawn = "true";
  }

  async function show(button) {
    if (!on() || !query) return;
    const id = Number(button.dataset.id);
    const mine = ++ticket;
    setStatus(`Explaining image ${id}…`);
    try {
      const why = await explanation(id);
      if (mine !== ticket || !on()) return;
      clear();
      const scale = Math.max(maxAbs(why.query_shares), maxAbs(why.result_shares)) || 1;
      let canvas = button.querySelector("canvas.heat");
      if (!canvas) {
        canvas = newCanvas();
        button.append(canvas);
      }
      draw(queryCanvas, queryImg, why.query_shares, scale, why.box || undefined);
      draw(canvas, button.querySelector("img"), why.result_shares, scale);
      button.classList.add("explained");
      const head = why.head ? ` + head ${why.head_share.toFixed(3)}` : "";
      setStatus(`Image ${id}: score ${why.score.toFixed(3)} = query cells ` +
                `${(why.query_sum - why.head_share).toFixed(3)}${head} = its cells ` +
                `${(why.result_sum - why.head_share).toFixed(3)}${head}`);
    } catch (err) {
      if (mine === ticket) setStatus(`Why? failed: ${err.message}`, true);
    }
  }

  toggle.addEventListener("click", () => {
    const pressed = !on();
    toggle.setAttribute("aria-pressed", String(pressed));
    $("why-legend").hidden = !pressed;
    if (!pressed) {
      ++ticket;
      clear();
      setStatus("");
      return;
    }
    const current = resultsEl.querySelector(".hit:focus, .hit:hover");
    if (current) show(current);
  });
  for (const type of ["mouseover", "focusin"]) {
    resultsEl.addEventListener(type, (e) => {
      const button = e.target.closest(".hit");
      if (button && !button.classList.contains("explained")) show(button);
    });
  }
  document.addEventListener("imgsearch:query", (e) => {
    // one image or one id is explained; a search by several examples has no one query to split
    const single = e.detail && (e.detail.file || e.detail.id !== undefined);
    query = single ? e.detail : null;
    answers = new Map();
    ++ticket;
    clear();
    setStatus("");
    $("why-bar").hidden = !single;
  });
})();
