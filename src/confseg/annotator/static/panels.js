// Side panels: item list, tools, confidence levels, classes, reference layer, item status.
import {
  S, copyModel, loadReference, openItem, redo, redrawOwn, redrawRef, restoreVersion, save,
  setDone, setOpacity, step, toast, undo,
} from "./app.js";

const $ = (id) => document.getElementById(id);
const STATUS_MARK = { "not started": "○", "in progress": "◐", done: "●" };
let view;
let lastProgress = null;

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (k === "style") Object.assign(e.style, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

export function init(ctx) {
  view = ctx.view;
  const { info } = S;
  $("dataset-name").textContent = info.name;
  $("layer-name").textContent = info.rater ? `rater ${info.rater}` : "single-rater confidence";
  $("level-max").textContent = String(Math.min(9, info.scale.length));
  info.scale.forEach((lv, k) => {
    const li = el("li", { title: lv.description, dataset: { k: String(k) } },
      el("kbd", { textContent: k < 9 ? String(k + 1) : "" }),
      el("span", { className: "lv-value", textContent: `${lv.value} %` }),
      el("span", { className: "lv-name", textContent: lv.name }));
    li.addEventListener("click", () => setLevel(k));
    $("levels").append(li);
  });
  for (const c of info.classes) {
    const eye = el("input", { type: "checkbox", checked: true, title: "show (V)" });
    eye.addEventListener("change", () => toggleVisible(c.name, eye.checked));
    const li = el("li", { dataset: { cls: c.name } },
      el("span", { className: "swatch", style: { background: c.colour } }),
      el("span", { className: "cls-name", textContent: c.name }), eye);
    li.addEventListener("click", (e) => { if (e.target !== eye) setClass(c.name); });
    $("classes").append(li);
  }
  for (const b of document.querySelectorAll("#tools button")) {
    b.addEventListener("click", () => setTool(b.dataset.tool));
  }
  $("size").addEventListener("input", () => setSize(Number($("size").value)));
  $("opacity").addEventListener("input", () => {
    $("opacity-val").textContent = $("opacity").value;
    setOpacity(Number($("opacity").value) / 100);
  });
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("save").addEventListener("click", () => save());
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("done").addEventListener("change", () => setDone($("done").checked));
  $("reference").addEventListener("change", () => loadReference($("reference").value));
  $("ref-visible").addEventListener("change", () => {
    S.ref.visible = $("ref-visible").checked;
    redrawRef();
  });
  $("model-min").addEventListener("change", () => loadReference("model"));
  $("model-copy").addEventListener("click", () => copyModel().catch((e) => toast(e.message)));
  $("restore").addEventListener("click", () => {
    const v = $("history").value;
    if (v && window.confirm("Restore this earlier version? The current maps are kept too.")) {
      restoreVersion(v);
    }
  });
  // keep keyboard shortcuts working after using a control
  document.addEventListener("change", (e) => {
    if (e.target.matches("select, input[type=number]")) e.target.blur();
  });
  document.addEventListener("click", (e) => {
    const b = e.target.closest("button, input[type=checkbox], input[type=range]");
    if (b) b.blur();
  });
  setTool(S.tool);
  setSize(S.size);
  setLevel(S.level, false);
  setClass(S.cls);
}

export function setLevel(k, announce = true) {
  const lv = S.info.scale[k];
  if (!lv) return;
  S.level = k;
  for (const li of $("levels").children) li.classList.toggle("active", Number(li.dataset.k) === k);
  const desc = $("level-desc");
  desc.replaceChildren(el("strong", { textContent: `${lv.value} % · ${lv.name}` }),
    document.createTextNode(lv.description ? ` — ${lv.description}` : ""));
  if (S.tool === "eraser") setTool("brush");
  if (announce) toast(`${lv.value} % ${lv.name}${lv.description ? ": " + lv.description : ""}`);
  updateCursorColour();
}

export function setClass(name) {
  if (!S.info.classes.some((c) => c.name === name)) return;
  S.cls = name;
  for (const li of $("classes").children) li.classList.toggle("active", li.dataset.cls === name);
  if (!S.visible[name]) toggleVisible(name, true);
  updateCursorColour();
}

export function cycleClass(delta) {
  const names = S.info.classes.map((c) => c.name);
  const k = (names.indexOf(S.cls) + delta + names.length) % names.length;
  setClass(names[k]);
  toast(`class: ${names[k]}`, 1200);
}

export function toggleVisible(name, on = !S.visible[name]) {
  S.visible[name] = on;
  for (const li of $("classes").children) {
    if (li.dataset.cls === name) li.querySelector("input").checked = on;
  }
  redrawOwn();
  redrawRef();
}

export function setTool(t) {
  S.tool = t;
  S.poly = [];
  view.polygon = null;
  for (const b of document.querySelectorAll("#tools button")) {
    b.classList.toggle("active", b.dataset.tool === t);
  }
  document.body.dataset.tool = t;
  view.requestRender();
}

export function setSize(n) {
  S.size = Math.max(1, Math.min(100, Math.round(n)));
  $("size").value = String(S.size);
  $("size-val").textContent = String(S.size);
}

function updateCursorColour() {
  const c = S.info.classes.find((k) => k.name === S.cls);
  S.cursorColour = c ? c.colour : "#fff";
}

export function renderItems(progress = lastProgress) {
  if (progress) lastProgress = progress;
  const list = $("items");
  list.replaceChildren(...S.items.map((r, k) => {
    const li = el("li", { className: k === S.index ? "current" : "", title: r.status,
      dataset: { status: r.status } },
    el("span", { className: "mark", textContent: STATUS_MARK[r.status] || "?" }),
    el("span", { className: "item-id", textContent: r.id }),
    el("small", { textContent: [r.patient, r.view].filter(Boolean).join(" · ") }));
    li.addEventListener("click", () => openItem(k));
    return li;
  }));
  const cur = list.children[S.index];
  if (cur) cur.scrollIntoView({ block: "nearest" });
  const p = lastProgress;
  if (p) {
    const total = Math.max(1, p.total);
    $("progress-done").style.width = `${(100 * p.done) / total}%`;
    $("progress-wip").style.width = `${(100 * p["in progress"]) / total}%`;
    $("progress-text").textContent =
      `${p.done} / ${p.total} done · ${p["in progress"]} in progress · ${p["not started"]} not started`;
  }
}

function localTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

export function renderItemPanel(st) {
  $("item-title").textContent = `${st.id} (${S.index + 1} / ${S.items.length})`;
  $("done").checked = !!st.done;
  const hist = $("history");
  hist.replaceChildren(el("option", { value: "", textContent:
    st.history.length ? `${st.history.length} earlier version(s)…` : "no earlier versions" }),
  ...st.history.map((h) => el("option", { value: h.id, title: h.classes.join(", "),
    textContent: `${h.kind === "restore" ? "before restore" : "before save"} · ${localTime(h.saved_at)}` })));
  if (st.history.length) hist.value = st.history[0].id;
  $("restore").disabled = !st.history.length;
  const ref = $("reference");
  const opts = [el("option", { value: "", textContent: "none" })];
  if (S.info.model) opts.push(el("option", { value: "model", textContent: "model probabilities" }));
  for (const r of st.references) opts.push(el("option", { value: r.key, textContent: r.label }));
  ref.replaceChildren(...opts);
  ref.value = S.ref.key;
  updateUndo();
}

export function updateUndo() {
  $("undo").disabled = !S.history.done.length;
  $("redo").disabled = !S.history.undone.length;
}
