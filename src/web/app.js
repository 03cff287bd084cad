// The page of `mmsearch serve`: plain JavaScript, no framework, nothing loaded from elsewhere.
// It only talks to the server it came from (docs/API.md).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// A token given in the URL is kept for this tab and taken out of the address bar.
const token = params.get("token") || sessionStorage.getItem("mmsearch-token") || "";
if (params.get("token")) {
  sessionStorage.setItem("mmsearch-token", token);
  params.delete("token");
  history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
}

let weightTimer = 0;  // the slider searches once it rests for 250 ms
const state = {
  image: null,      // File of the query image
  imageUrl: "",     // its object URL, for the chip
  similar: null,    // {path, name, thumbnail} for "more like this"
  offset: 0,
  results: [],
  lastQuery: null,
  busy: false,
  seq: 0,
};

function withToken(url) {
  if (!token) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const reason = body && body.error ? body.error : response.status + " " + response.statusText;
    throw new Error(reason);
  }
  return body;
}

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function option(select, value, label) {
  select.append(element("option", { value, textContent: label }));
}

async function loadChoices() {
  try {
    const [models, folders] = await Promise.all([api("/api/models"), api("/api/folders")]);
    for (const m of models.models) {
      if (m.indexed) option($("model"), m.name, m.name + (m.itm ? "" : " (no ITM)"));
    }
    $("translate-box").hidden = !models.translate;
    const categories = new Set();
    for (const f of folders.folders) {
      option($("folder"), f.path, `${f.name} (${f.files})`);
      option($("matrix-folder"), f.path, `${f.name} (${f.files})`);
      for (const s of f.subfolders) {
        option($("folder"), s.path, `  ${f.name}/${s.name} (${s.files})`);
        option($("matrix-folder"), s.path, `  ${f.name}/${s.name} (${s.files})`);
      }
      for (const c of f.categories) if (c.name) categories.add(c.name);
    }
    for (const c of [...categories].sort()) option($("category"), c, c);
    const total = folders.folders.reduce((n, f) => n + f.files, 0);
    setStatus(`${total} photos indexed. Type what you are looking for, or drop a photo.`);
  } catch (e) {
    setStatus("Could not reach the server: " + e.message, true);
  }
}

function textWeight() {
  return Number($("weight").value) / 100;  // share of the text when an image is given too
}

function buildQuery(offset) {
  const text = $("q").value.trim();
  const terms = [];
  if (state.similar) {
    terms.push({ similar: state.similar.path });
  } else {
    if (text) terms.push({ text, weight: state.image ? 1 - textWeight() : 1 });
    if (state.image) terms.push({ upload: "image", weight: state.image && text ? textWeight() : 1 });
  }
  if (!terms.length) return null;
  const query = { terms, k: Number($("k").value), offset, against: $("against").value };
  if ($("folder").value) query.folder = $("folder").value;
  if ($("category").value) query.categories = [$("category").value];
  if ($("model").value) query.model = $("model").value;
  if ($("rerank").checked && !state.similar && text) query.rerank = Math.max(20, query.k);
  if ($("translate").checked && text && !state.similar) query.translate = "it";
  return query;
}

async function search(offset = 0) {
  const query = buildQuery(offset);
  if (!query) {
    setStatus("Type some words, drop an image, or click a photo.");
    return;
  }
  if (query.rerank && query.against !== "image") delete query.rerank;
  clearTimeout(weightTimer);  // a slider move still waiting would redo this search later
  state.busy = true;
  const seq = ++state.seq;  // only the latest search may fill the grid
  setStatus("Searching…");
  let options;
  if (query.terms.some((t) => t.upload)) {
    const form = new FormData();
    form.append("query", new Blob([JSON.stringify(query)], { type: "application/json" }), "query.json");
    form.append("image", state.image, state.image.name || "image");
    options = { method: "POST", body: form };
  } else {
    options = { method: "POST", body: JSON.stringify(query), headers: { "Content-Type": "application/json" } };
  }
  try {
    const answer = await api("/api/query", options);
    if (seq !== state.seq) return;
    if (offset === 0) {
      state.results = [];
      $("grid").replaceChildren();
    }
    state.offset = offset + answer.results.length;
    state.lastQuery = query;
    for (const hit of answer.results) addCard(hit);
    $("more").hidden = !answer.more;
    const ms = answer.phases_ms.total.toFixed(0);
    const terms = answer.terms.map((t) => t.text ? `“${t.text}”` + (t.original ? ` (from “${t.original}”)` : "")
      : t.similar ? "like " + t.similar.split("/").pop() : "the image").join(" + ");
    setStatus(answer.results.length || offset
      ? `${state.results.length} of ${answer.searched} searched for ${terms} · ${answer.model} · ${ms} ms`
      : `No results for ${terms} (${answer.searched} searched).`);
    if (offset === 0 && state.results.length) window.scrollTo({ top: 0 });
  } catch (e) {
    if (seq === state.seq) setStatus(e.message, true);
  } finally {
    if (seq === state.seq) state.busy = false;
  }
}

// An element with its properties (className, textContent, title, ...) and children.
function element(tag, properties = {}, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

function addCard(hit) {
  state.results.push(hit);
  const label = hit.caption_en || hit.caption || hit.name;
  const li = element("li", { className: "card", tabIndex: 0 });
  li.dataset.path = hit.path;
  li.dataset.name = hit.name;
  li.setAttribute("aria-label", `${hit.rank}. ${label}, score ${hit.score.toFixed(3)}`);
  const reranked = hit.itm !== undefined;
  const thumb = element("div", { className: "thumb" },
    element("img", { loading: "lazy", alt: label, src: withToken(hit.thumbnail) }),
    element("span", {
      className: "score",
      textContent: hit.score.toFixed(3) + (reranked ? " ITM" : ""),
      title: reranked ? `ITM ${hit.itm.toFixed(3)} + ITC ${hit.itc.toFixed(3)}` : "similarity",
    }),
    element("span", { className: "rank", textContent: "#" + hit.rank }));
  const body = element("div", { className: "body" });
  if (hit.caption_en || hit.caption) {
    body.append(element("div", { className: "caption", textContent: hit.caption_en || hit.caption }));
    if (hit.caption_en && hit.caption) {
      body.append(element("div", { className: "original", textContent: hit.caption }));
    }
  }
  const meta = element("div", { className: "meta" });
  if (hit.category) meta.append(element("span", { className: "category", textContent: hit.category }));
  meta.append(element("span", { className: "path", textContent: hit.relative || hit.path, title: hit.path }));
  const open = element("a", { href: withToken(hit.file), target: "_blank", rel: "noopener", textContent: "Open" });
  open.addEventListener("click", (e) => e.stopPropagation());
  body.append(meta, element("div", { className: "actions" },
    element("button", { type: "button", className: "like", textContent: "More like this" }), open));
  li.append(thumb, body);
  li.addEventListener("click", () => moreLikeThis(hit));
  $("grid").appendChild(li);
}

function moreLikeThis(hit) {
  state.similar = { path: hit.path, name: hit.name, thumbnail: hit.thumbnail };
  $("similar-name").textContent = hit.name;
  $("similar-preview").src = withToken(hit.thumbnail);
  showChips();
  search(0);
}

function showChips() {
  $("similar-chip").hidden = !state.similar;
  $("image-chip").hidden = !state.image || !!state.similar;
  $("chips").hidden = $("similar-chip").hidden && $("image-chip").hidden;
}

function setImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    setStatus("That is not an image file.", true);
    return;
  }
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.image = file;
  state.imageUrl = URL.createObjectURL(file);
  state.similar = null;
  $("image-preview").src = state.imageUrl;
  $("image-name").textContent = file.name || "image";
  showChips();
  search(0);
}

function clearImage() {
  if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
  state.image = null;
  state.imageUrl = "";
  $("file").value = "";
  showChips();
}

// --- keyboard: the grid is navigated like a spreadsheet ---
function cards() { return [...document.querySelectorAll("#grid .card")]; }
function columns() {
  const all = cards();
  if (all.length < 2) return 1;
  const top = all[0].offsetTop;
  const n = all.findIndex((c) => c.offsetTop !== top);
  return n < 0 ? all.length : n;
}
document.addEventListener("keydown", (e) => {
  const active = document.activeElement;
  const typing = active && (active.tagName === "INPUT" || active.tagName === "SELECT" || active.tagName === "TEXTAREA");
  if (e.key === "/" && !typing) {
    e.preventDefault();
    $("q").focus();
    $("q").select();
    return;
  }
  if (e.key === "Escape") {
    if (state.similar) {
      state.similar = null;
      showChips();
      search(0);
    } else if (typing) {
      active.blur();
    }
    return;
  }
  const all = cards();
  const index = all.indexOf(active);
  if (e.key === "ArrowDown" && active === $("q") && all.length) {
    e.preventDefault();
    all[0].focus();
    return;
  }
  if (index < 0) return;
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() }[e.key];
  if (step !== undefined) {
    e.preventDefault();
    const next = index + step;
    if (next < 0 && e.key === "ArrowUp") $("q").focus();
    else if (all[Math.max(0, Math.min(all.length - 1, next))]) all[Math.max(0, Math.min(all.length - 1, next))].focus();
  } else if (e.key === "Enter") {
    e.preventDefault();
    moreLikeThis(state.results[index]);
  } else if (e.key === "o") {
    window.open(withToken(state.results[index].file), "_blank", "noopener");
  }
});

// --- drag and drop, anywhere on the page ---
let dragDepth = 0;
document.addEventListener("dragenter", (e) => { e.preventDefault(); dragDepth++; document.body.classList.add("dragging"); });
document.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; document.body.classList.remove("dragging"); } });
document.addEventListener("dragover", (e) => e.preventDefault());
document.addEventListener("drop", (e) => {
  e.preventDefault();
  dragDepth = 0;
  document.body.classList.remove("dragging");
  if (e.dataTransfer.files.length) setImage(e.dataTransfer.files[0]);
});
$("drop").addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); } });
$("file").addEventListener("change", () => { if ($("file").files.length) setImage($("file").files[0]); });
$("image-clear").addEventListener("click", () => { clearImage(); search(0); });
$("similar-clear").addEventListener("click", () => { state.similar = null; showChips(); search(0); });
$("weight").addEventListener("input", () => { clearTimeout(weightTimer); weightTimer = setTimeout(() => search(0), 250); });
$("search").addEventListener("submit", (e) => {
  e.preventDefault();
  state.similar = null;
  showChips();
  search(0);
});
for (const id of ["folder", "category", "model", "against", "k", "rerank", "translate"]) {
  $(id).addEventListener("change", () => { if (state.lastQuery) search(0); });
}
$("more").addEventListener("click", () => search(state.offset));

// --- views ---
function showView(name) {
  for (const tab of document.querySelectorAll(".tabs button")) tab.setAttribute("aria-selected", String(tab.dataset.view === name));
  $("view-results").hidden = name !== "results";
  $("view-matrix").hidden = name !== "matrix";
  $("filters").hidden = name !== "results";
  if (name === "matrix" && !matrix.drawn) drawMatrix();
}
for (const tab of document.querySelectorAll(".tabs button")) tab.addEventListener("click", () => showView(tab.dataset.view));

// --- similarity matrix of a small folder ---
const matrix = { drawn: false, data: null, cell: 8, offset: 0 };

function colour(t) {
  // Dark blue → teal → yellow, readable in both themes.
  const stops = [[38, 24, 95], [33, 145, 140], [253, 231, 37]];
  const x = Math.max(0, Math.min(1, t)) * 2;
  const i = Math.min(1, Math.floor(x));
  const f = x - i;
  return stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
}

async function drawMatrix() {
  const folder = $("matrix-folder").value;
  const kind = $("matrix-kind").value;
  setStatus("Computing the matrix…");
  try {
    const query = new URLSearchParams({ kind });
    if (folder) query.set("folder", folder);
    if ($("model").value) query.set("model", $("model").value);
    const data = await api("/api/simmatrix?" + query);
    matrix.data = data;
    matrix.drawn = true;
    const rows = data.rows.length, cols = data.columns.length;
    // Fits the window both ways; small folders get cells of at most 32 px.
    const width = Math.min(1100, document.querySelector(".matrix-wrap").clientWidth - 16,
                           Math.max(240, window.innerHeight - 220) * cols / Math.max(rows, 1));
    matrix.cell = Math.max(3, Math.min(32, Math.floor(width / Math.max(cols, 1))));
    const canvas = $("matrix-canvas");
    canvas.width = cols * matrix.cell;
    canvas.height = rows * matrix.cell;
    const ctx = canvas.getContext("2d");
    let low = Infinity, high = -Infinity;
    for (const s of data.scores) { low = Math.min(low, s); high = Math.max(high, s); }
    const span = high > low ? high - low : 1;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const [red, green, blue] = colour((data.scores[r * cols + c] - low) / span);
        ctx.fillStyle = `rgb(${red},${green},${blue})`;
        ctx.fillRect(c * matrix.cell, r * matrix.cell, matrix.cell, matrix.cell);
      }
    }
    // Category boundaries, as the study's heatmaps draw them.
    ctx.strokeStyle = "rgba(255,255,255,.8)";
    ctx.lineWidth = 1;
    for (let r = 1; r < rows; r++) if (data.row_categories[r] !== data.row_categories[r - 1]) {
      ctx.beginPath(); ctx.moveTo(0, r * matrix.cell + .5); ctx.lineTo(canvas.width, r * matrix.cell + .5); ctx.stroke();
    }
    for (let c = 1; c < cols; c++) if (data.column_categories[c] !== data.column_categories[c - 1]) {
      ctx.beginPath(); ctx.moveTo(c * matrix.cell + .5, 0); ctx.lineTo(c * matrix.cell + .5, canvas.height); ctx.stroke();
    }
    setStatus(`${data.kind} · ${rows} × ${cols} · ${data.model} · scores ${low.toFixed(3)} to ${high.toFixed(3)}`);
  } catch (e) {
    setStatus(e.message, true);
  }
}
$("matrix-go").addEventListener("click", drawMatrix);
$("matrix-canvas").addEventListener("mousemove", (e) => {
  const data = matrix.data;
  if (!data) return;
  const c = Math.floor(e.offsetX / matrix.cell), r = Math.floor(e.offsetY / matrix.cell);
  const tip = $("matrix-tip");
  if (r < 0 || c < 0 || r >= data.rows.length || c >= data.columns.length) { tip.hidden = true; return; }
  tip.hidden = false;
  tip.textContent = `${data.rows[r]} × ${data.columns[c]}: ${data.scores[r * data.columns.length + c].toFixed(4)}`;
  tip.style.left = e.offsetX + 16 + "px";
  tip.style.top = e.offsetY + 16 + "px";
});
$("matrix-canvas").addEventListener("mouseleave", () => { $("matrix-tip").hidden = true; });

loadChoices();
if (params.get("q")) {
  $("q").value = params.get("q");
  search(0);
}
