// Painting on per-class Uint8Array layers (one byte per pixel, percent 0..100).
// A stroke overwrites: where a pixel is painted twice, the later stroke wins.

/** Record the value a pixel had before the current stroke first touched it. */
function touch(arr, i, value, changes) {
  if (arr[i] === value) return;
  if (!changes.has(i)) changes.set(i, arr[i]);
  arr[i] = value;
}

/**
 * Paint every pixel whose centre lies within `r` of the segment (x0,y0)-(x1,y1)
 * (image coordinates, pixel (px,py) has centre (px+0.5, py+0.5)).
 * Returns the touched rectangle [x, y, w, h] or null.
 */
export function stampSegment(arr, w, h, x0, y0, x1, y1, r, value, changes) {
  const xa = Math.max(0, Math.floor(Math.min(x0, x1) - r - 1));
  const xb = Math.min(w - 1, Math.ceil(Math.max(x0, x1) + r + 1));
  const ya = Math.max(0, Math.floor(Math.min(y0, y1) - r - 1));
  const yb = Math.min(h - 1, Math.ceil(Math.max(y0, y1) + r + 1));
  if (xa > xb || ya > yb) return null;
  const dx = x1 - x0, dy = y1 - y0;
  const len2 = dx * dx + dy * dy;
  const r2 = r * r;
  for (let py = ya; py <= yb; py++) {
    const cy = py + 0.5;
    for (let px = xa; px <= xb; px++) {
      const cx = px + 0.5;
      let t = len2 > 0 ? ((cx - x0) * dx + (cy - y0) * dy) / len2 : 0;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const ex = cx - (x0 + t * dx), ey = cy - (y0 + t * dy);
      if (ex * ex + ey * ey <= r2) touch(arr, py * w + px, value, changes);
    }
  }
  return [xa, ya, xb - xa + 1, yb - ya + 1];
}

/**
 * Fill a polygon (image coordinates, even-odd rule, pixel centres) with `value`.
 * Returns the touched rectangle or null.
 */
export function fillPolygon(arr, w, h, pts, value, changes) {
  if (pts.length < 3) return null;
  const ys = pts.map((p) => p[1]);
  const ya = Math.max(0, Math.floor(Math.min(...ys)));
  const yb = Math.min(h - 1, Math.ceil(Math.max(...ys)));
  let xmin = w, xmax = -1;
  for (let py = ya; py <= yb; py++) {
    const cy = py + 0.5;
    const xs = [];
    for (let k = 0; k < pts.length; k++) {
      const [ax, ay] = pts[k];
      const [bx, by] = pts[(k + 1) % pts.length];
      if ((ay <= cy && by > cy) || (by <= cy && ay > cy)) {
        xs.push(ax + ((cy - ay) / (by - ay)) * (bx - ax));
      }
    }
    xs.sort((a, b) => a - b);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      // pixels whose centre x lies in [xs[k], xs[k+1])
      const pa = Math.max(0, Math.ceil(xs[k] - 0.5));
      const pb = Math.min(w - 1, Math.ceil(xs[k + 1] - 0.5) - 1);
      for (let px = pa; px <= pb; px++) touch(arr, py * w + px, value, changes);
      if (pa <= pb) { xmin = Math.min(xmin, pa); xmax = Math.max(xmax, pb); }
    }
  }
  return xmax < 0 ? null : [xmin, ya, xmax - xmin + 1, yb - ya + 1];
}

/** Turn a stroke's change map into an undo entry (null when nothing changed). */
export function makeEntry(cls, arr, changes) {
  if (!changes.size) return null;
  const idx = Int32Array.from(changes.keys());
  const before = Uint8Array.from(changes.values());
  const after = new Uint8Array(idx.length);
  for (let k = 0; k < idx.length; k++) after[k] = arr[idx[k]];
  return { cls, idx, before, after };
}

/** Undo/redo stack of pixel changes; entries hold {cls, idx, before, after} or a list. */
export class History {
  constructor(limit = 200) { this.limit = limit; this.clear(); }

  clear() { this.done = []; this.undone = []; }

  push(entry) {
    if (!entry) return;
    this.done.push(entry);
    if (this.done.length > this.limit) this.done.shift();
    this.undone = [];
  }

  /** Apply the previous entry's `before` values; returns the classes touched. */
  undo(layers) { return this._move(this.done, this.undone, layers, "before"); }

  /** Re-apply the last undone entry; returns the classes touched. */
  redo(layers) { return this._move(this.undone, this.done, layers, "after"); }

  _move(from, to, layers, key) {
    const entry = from.pop();
    if (!entry) return [];
    const parts = Array.isArray(entry) ? entry : [entry];
    for (const p of parts) {
      const arr = layers[p.cls];
      const vals = p[key];
      for (let k = 0; k < p.idx.length; k++) arr[p.idx[k]] = vals[k];
    }
    to.push(entry);
    return parts.map((p) => p.cls);
  }
}
