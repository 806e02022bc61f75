// Mouse and keyboard: painting, polygons, zoom, pan, shortcuts.
import {
  edited, levelValue, redo, redrawOwn, redrawRef, save, setDone, step, undo,
} from "./app.js";
import { fillPolygon, makeEntry, stampSegment } from "./paint.js";
import { cycleClass, setLevel, setSize, setTool, toggleVisible } from "./panels.js";

export function bindInput({ S, view, canvas }) {
  let pan = null;
  let space = false;

  const pos = (e) => {
    const r = canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };

  function paintTo(x, y) {
    const st = S.stroke;
    const rect = stampSegment(S.layers[st.cls], S.w, S.h, st.last[0], st.last[1], x, y,
      S.size / 2, st.value, st.changes);
    st.last = [x, y];
    if (rect) redrawOwn(rect);
  }

  function finishStroke() {
    const st = S.stroke;
    if (!st) return;
    S.stroke = null;
    const entry = makeEntry(st.cls, S.layers[st.cls], st.changes);
    if (entry) {
      S.history.push(entry);
      edited();
    }
  }

  function updatePolygonPreview(mouse = null) {
    view.polygon = S.poly.length ? { pts: S.poly, mouse, colour: S.cursorColour } : null;
    view.requestRender();
  }

  function closePolygon() {
    if (S.poly.length >= 3) {
      const changes = new Map();
      const rect = fillPolygon(S.layers[S.cls], S.w, S.h, S.poly, levelValue(), changes);
      const entry = makeEntry(S.cls, S.layers[S.cls], changes);
      if (rect) redrawOwn(rect);
      if (entry) {
        S.history.push(entry);
        edited();
      }
    }
    S.poly = [];
    updatePolygonPreview();
  }

  function polygonClick(x, y, cx, cy, clicks) {
    if (clicks >= 2) return; // the second click of a double-click closes (dblclick)
    if (S.poly.length >= 3) {
      const [fx, fy] = view.toScreen(...S.poly[0]);
      if (Math.hypot(fx - cx, fy - cy) < 8) {
        closePolygon();
        return;
      }
    }
    S.poly.push([x, y]);
    updatePolygonPreview([x, y]);
  }

  canvas.addEventListener("pointerdown", (e) => {
    if (!S.item || S.loading) return;
    const [cx, cy] = pos(e);
    if (e.button === 1 || (e.button === 0 && space)) {
      pan = { x: e.clientX, y: e.clientY };
      canvas.setPointerCapture(e.pointerId);
      canvas.classList.add("panning");
      e.preventDefault();
      return;
    }
    if (e.button !== 0) return;
    const [x, y] = view.toImage(cx, cy);
    if (S.tool === "polygon") {
      polygonClick(x, y, cx, cy, e.detail);
      return;
    }
    canvas.setPointerCapture(e.pointerId);
    S.stroke = { cls: S.cls, value: S.tool === "eraser" ? 0 : levelValue(),
      changes: new Map(), last: [x, y] };
    paintTo(x, y);
  });

  canvas.addEventListener("pointermove", (e) => {
    const [cx, cy] = pos(e);
    if (pan) {
      view.panBy(e.clientX - pan.x, e.clientY - pan.y);
      pan = { x: e.clientX, y: e.clientY };
      return;
    }
    const [x, y] = view.toImage(cx, cy);
    if (S.stroke) paintTo(x, y);
    if (S.tool === "polygon") updatePolygonPreview([x, y]);
    view.cursor = S.tool === "polygon" ? null
      : { x: cx, y: cy, r: (S.size / 2) * view.s, colour: S.tool === "eraser" ? "#fff" : S.cursorColour };
    showHud(x, y);
    view.requestRender();
  });

  const end = (e) => {
    if (pan) {
      pan = null;
      canvas.classList.remove("panning");
      return;
    }
    if (S.stroke && e.type === "pointerup") paintTo(...view.toImage(...pos(e)));
    finishStroke();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("lostpointercapture", () => finishStroke());
  canvas.addEventListener("pointerleave", () => { view.cursor = null; view.requestRender(); });
  canvas.addEventListener("dblclick", () => { if (S.tool === "polygon") closePolygon(); });
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("mousedown", (e) => { if (e.button === 1) e.preventDefault(); });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [cx, cy] = pos(e);
    view.zoomAt(cx, cy, Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)));
    if (view.cursor) view.cursor.r = (S.size / 2) * view.s;
  }, { passive: false });

  function showHud(x, y) {
    const hud = document.getElementById("hud");
    const px = Math.floor(x), py = Math.floor(y);
    const zoom = `zoom ${Math.round(view.s * 100)} %`;
    if (px < 0 || py < 0 || px >= S.w || py >= S.h) {
      hud.textContent = zoom;
      return;
    }
    const i = py * S.w + px;
    const vals = S.info.classes.map((c) => `${c.name} ${S.layers[c.name][i]}`).join(" · ");
    hud.textContent = `x ${px}, y ${py} · ${vals} · ${zoom}`;
  }

  window.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t instanceof Element &&
      t.matches("input[type=number], input[type=text], select, textarea");
    const mod = e.ctrlKey || e.metaKey;
    const k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (mod && k === "s") { e.preventDefault(); save(); return; }
    if (typing) return;
    if (mod && k === "z") { e.preventDefault(); if (e.shiftKey) redo(); else undo(); return; }
    if (mod && k === "y") { e.preventDefault(); redo(); return; }
    if (mod || e.altKey) return;
    if (k === " ") { space = true; canvas.classList.add("grab"); e.preventDefault(); return; }
    if (/^[1-9]$/.test(k)) { setLevel(Number(k) - 1); return; }
    const busy = S.stroke || S.poly.length;
    const actions = {
      b: () => setTool("brush"), g: () => setTool("polygon"), e: () => setTool("eraser"),
      "[": () => setSize(S.size > 10 ? S.size - 2 : S.size - 1),
      "]": () => setSize(S.size >= 10 ? S.size + 2 : S.size + 1),
      c: () => cycleClass(e.shiftKey ? -1 : 1),
      v: () => toggleVisible(S.cls),
      r: () => {
        S.ref.visible = !S.ref.visible;
        document.getElementById("ref-visible").checked = S.ref.visible;
        redrawRef();
      },
      f: () => view.fit(), 0: () => view.fit(),
      n: () => step(1), ArrowRight: () => step(1), ArrowDown: () => step(1),
      p: () => step(-1), ArrowLeft: () => step(-1), ArrowUp: () => step(-1),
      d: () => { if (!busy && S.item) setDone(!S.item.done); },
      Enter: () => closePolygon(),
      Escape: () => { S.poly = []; updatePolygonPreview(); },
      Backspace: () => { S.poly.pop(); updatePolygonPreview(); },
    };
    if (actions[k]) {
      e.preventDefault();
      actions[k]();
    }
  });
  window.addEventListener("keyup", (e) => {
    if (e.key === " ") { space = false; canvas.classList.remove("grab"); }
  });
  window.addEventListener("blur", () => { space = false; canvas.classList.remove("grab"); });
}
