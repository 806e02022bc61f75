// confseg annotator: state, items, saving. Painting is in paint.js, drawing in view.js,
// input handling in input.js, side panels in panels.js.
import { ApiError, decodeMap, encodeMap, getJSON, itemUrl, loadImage, postJSON } from "./io.js";
import { History } from "./paint.js";
import { Overlay, View, hexToRgb } from "./view.js";
import { bindInput } from "./input.js";
import * as panels from "./panels.js";

const $ = (id) => document.getElementById(id);

export const S = {
  info: null, items: [], index: -1, item: null, w: 0, h: 0,
  layers: {}, base: {}, versions: {}, visible: {},
  cls: null, level: 0, tool: "brush", size: 8, opacity: 0.65,
  ref: { key: "", maps: null, visible: true }, model: null,
  history: new History(), stroke: null, poly: [],
  dirty: false, saving: null, saveAgain: false, autosaveTimer: null, loading: false,
};

let view, own, refOverlay;

// ----- helpers -------------------------------------------------------------------------------
export function classRgb(name) {
  return hexToRgb(S.info.classes.find((c) => c.name === name).colour);
}

export function levelValue() { return S.info.scale[S.level].value; }

export function toast(text, ms = 2500) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, ms);
}

function setSaveState(state, text) {
  document.body.dataset.saveState = state;
  $("save-state").textContent = text;
  $("save-state").className = `save-state ${state}`;
}

function ownClasses() {
  return S.info.classes.map((c) => ({
    rgb: hexToRgb(c.colour), visible: S.visible[c.name], arr: S.layers[c.name],
  }));
}

/** Redraw the user's layer (a rectangle of it, or all). */
export function redrawOwn(rect = null) {
  if (!own) return;
  own.update(ownClasses(), "fill", rect);
  view.requestRender();
}

/** Redraw the read-only reference layer. */
export function redrawRef() {
  if (!refOverlay) return;
  refOverlay.clear();
  if (S.ref.maps) {
    const style = S.ref.key === "model" ? "heat" : "outline";
    refOverlay.update(S.info.classes.map((c) => ({
      rgb: hexToRgb(c.colour), visible: S.visible[c.name], arr: S.ref.maps[c.name],
    })), style);
  }
  view.layers[1].visible = S.ref.visible && !!S.ref.maps;
  view.requestRender();
}

export function setOpacity(v) {
  S.opacity = v;
  if (view.layers[0]) view.layers[0].alpha = v;
  view.requestRender();
}

/** Called after every edit: mark unsaved and restart the autosave timer. */
export function edited() {
  S.dirty = true;
  setSaveState("dirty", "unsaved changes");
  panels.updateUndo();
  scheduleAutosave();
}

export function scheduleAutosave() {
  clearTimeout(S.autosaveTimer);
  S.autosaveTimer = setTimeout(() => {
    if (S.stroke || S.poly.length) scheduleAutosave();
    else save();
  }, (S.info.autosave_seconds || 3) * 1000);
}

function sameArr(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// ----- items ---------------------------------------------------------------------------------
async function refreshList() {
  const r = await getJSON("api/items");
  S.items = r.items;
  panels.renderItems(r.progress);
}

export async function openItem(index) {
  if (index < 0 || index >= S.items.length || S.loading || S.stroke) return;
  while (S.saving) await S.saving;
  if (S.dirty) await save();
  if (S.dirty) { toast("not saved; fix the problem shown top right before leaving"); return; }
  S.loading = true;
  setSaveState("loading", "loading…");
  try {
    const id = S.items[index].id;
    const [st, image] = await Promise.all([getJSON(itemUrl(id)), loadImage(itemUrl(id, "/image"))]);
    const maps = {};
    for (const c of S.info.classes) maps[c.name] = await decodeMap(st.maps[c.name], st.width, st.height);
    S.index = index; S.item = st; S.w = st.width; S.h = st.height;
    S.base = maps; S.versions = { ...st.versions };
    S.layers = {};
    for (const k in maps) S.layers[k] = maps[k].slice();
    S.history.clear(); S.poly = []; S.dirty = false;
    own = new Overlay(S.w, S.h);
    refOverlay = new Overlay(S.w, S.h);
    view.layers = [{ canvas: own.canvas, alpha: S.opacity, visible: true },
      { canvas: refOverlay.canvas, alpha: 0.9, visible: false }];
    view.setImage(image, S.w, S.h);
    redrawOwn();
    panels.renderItemPanel(st);
    await loadReference(S.ref.key);
    history.replaceState(null, "", `#${encodeURIComponent(id)}`);
    setSaveState("saved", st.status === "not started" ? "not started" : "saved");
    panels.renderItems();
  } catch (e) {
    setSaveState("error", `cannot open item: ${e.message}`);
  } finally {
    S.loading = false;
  }
}

export function step(delta) {
  if (S.stroke || S.poly.length) return;
  openItem(S.index + delta);
}

/** Show a read-only layer: "" none, "model", "confidence" or "raters/NAME". */
export async function loadReference(key) {
  S.ref.key = key;
  S.ref.maps = null;
  $("model-tools").hidden = key !== "model";
  if (key && S.item) {
    const available = key === "model" ? S.info.model : S.item.references.some((r) => r.key === key);
    if (!available) { S.ref.key = ""; }
    else {
      try {
        const id = S.item.id;
        const url = key === "model"
          ? itemUrl(id, `/prediction?minimum=${encodeURIComponent($("model-min").value || 0)}`)
          : itemUrl(id, `/layers/${key.split("/").map(encodeURIComponent).join("/")}`);
        const r = await getJSON(url);
        const src = key === "model" ? r.probability : r.maps;
        const maps = {};
        for (const c of S.info.classes) maps[c.name] = await decodeMap(src[c.name], S.w, S.h);
        if (S.item.id !== id) return;
        S.ref.maps = maps;
        if (key === "model") S.model = r;
      } catch (e) {
        toast(`cannot load reference layer: ${e.message}`);
        S.ref.key = "";
      }
    }
  }
  $("reference").value = S.ref.key;
  redrawRef();
}

/** Copy the model's levels (probability -> nearest level, below minimum -> 0) into my layer. */
export async function copyModel() {
  const minimum = Number($("model-min").value || 0);
  const r = await getJSON(itemUrl(S.item.id, `/prediction?minimum=${minimum}`));
  const parts = [];
  for (const c of S.info.classes) {
    const lv = await decodeMap(r.levels[c.name], S.w, S.h);
    const arr = S.layers[c.name];
    const idx = [], before = [], after = [];
    for (let i = 0; i < arr.length; i++) {
      if (arr[i] !== lv[i]) { idx.push(i); before.push(arr[i]); after.push(lv[i]); arr[i] = lv[i]; }
    }
    if (idx.length) {
      parts.push({ cls: c.name, idx: Int32Array.from(idx), before: Uint8Array.from(before),
        after: Uint8Array.from(after) });
    }
  }
  if (!parts.length) { toast("my layer already equals the model's levels"); return; }
  S.history.push(parts);
  redrawOwn();
  edited();
  toast(`copied model levels (minimum ${minimum} %); Ctrl+Z undoes`);
}

// ----- saving ------------------------------------------------------------------------------
/**
 * Save changed classes (and the done flag). The server merges over anything saved
 * meanwhile by another tab and answers with the merged maps; strokes painted while the
 * request was in flight are kept on top.
 */
export function save(opts = {}) {
  if (S.saving) {
    S.saveAgain = true;
    return S.saving;
  }
  S.saving = doSave(opts).finally(() => {
    S.saving = null;
    if (S.saveAgain) { S.saveAgain = false; save(); }
  });
  return S.saving;
}

async function doSave(opts) {
  if (!S.item) return;
  clearTimeout(S.autosaveTimer);
  const names = S.info.classes.map((c) => c.name);
  const changed = names.filter((c) => !sameArr(S.layers[c], S.base[c]));
  if (!changed.length && opts.done === undefined) {
    S.dirty = false;
    setSaveState("saved", "saved");
    return;
  }
  const id = S.item.id;
  const { w, h } = S;
  const snapshot = {};
  for (const c of names) snapshot[c] = S.layers[c].slice();
  setSaveState("saving", "saving…");
  try {
    const body = { maps: {} };
    for (const c of changed) {
      body.maps[c] = { base_version: S.versions[c], base: await encodeMap(S.base[c], w, h),
        map: await encodeMap(snapshot[c], w, h) };
    }
    if (opts.done !== undefined) body.done = opts.done;
    const res = await postJSON(itemUrl(id, "/save"), body);
    if (S.item && S.item.id === id) await applyServerState(res, snapshot);
    const row = S.items.find((r) => r.id === id);
    if (row) row.status = res.status;
    await refreshList();
    const still = names.some((c) => !sameArr(S.layers[c], S.base[c]));
    S.dirty = still;
    if (still) { setSaveState("dirty", "unsaved changes"); scheduleAutosave(); }
    else setSaveState("saved", res.merged ? "saved (merged with another tab)" : "saved");
  } catch (e) {
    S.dirty = true;
    const why = e instanceof ApiError ? e.message : `network error: ${e.message}`;
    setSaveState("error", `save failed: ${why}`);
  }
}

/** Take the server's maps; keep local strokes made since `snapshot` on top. */
async function applyServerState(res, snapshot) {
  for (const c of S.info.classes.map((k) => k.name)) {
    const server = await decodeMap(res.maps[c], S.w, S.h);
    const local = S.layers[c];
    const snap = snapshot[c];
    for (let i = 0; i < local.length; i++) if (local[i] === snap[i]) local[i] = server[i];
    S.base[c] = server;
    S.versions[c] = res.versions[c];
  }
  S.item = { ...S.item, ...res, maps: undefined };
  panels.renderItemPanel(S.item);
  redrawOwn();
}

export async function setDone(done) {
  await save({ done });
}

export async function restoreVersion(version) {
  if (!version) return;
  if (S.dirty) await save();
  try {
    const res = await postJSON(itemUrl(S.item.id, "/restore"), { version });
    const snap = {};
    for (const c of S.info.classes) snap[c.name] = S.layers[c.name].slice();
    await applyServerState(res, snap);
    S.history.clear();
    panels.updateUndo();
    setSaveState("saved", "restored");
    toast("earlier version restored; the replaced maps were kept as a version too");
  } catch (e) {
    setSaveState("error", `restore failed: ${e.message}`);
  }
}

export function undo() { applyHistory(S.history.undo(S.layers)); }
export function redo() { applyHistory(S.history.redo(S.layers)); }

function applyHistory(classes) {
  if (!classes.length) return;
  redrawOwn();
  edited();
}

// ----- start ---------------------------------------------------------------------------------
async function main() {
  view = new View($("view"));
  S.info = await getJSON("api/info");
  S.level = Math.floor(S.info.scale.length / 2);
  S.cls = S.info.classes[0].name;
  for (const c of S.info.classes) S.visible[c.name] = true;
  panels.init({ S, view });
  bindInput({ S, view, canvas: $("view") });
  await refreshList();
  const want = decodeURIComponent(location.hash.slice(1));
  const at = S.items.findIndex((r) => r.id === want);
  if (S.items.length) await openItem(at >= 0 ? at : 0);
  else setSaveState("saved", "no items with images");
  window.addEventListener("beforeunload", (e) => {
    if (S.dirty || S.saving) { save(); e.preventDefault(); e.returnValue = ""; }
  });
  // hooks for tests and scripting
  window.annotator = { S, view, save, undo, redo, openItem };
}

main().catch((e) => setSaveState("error", `failed to start: ${e.message}`));
