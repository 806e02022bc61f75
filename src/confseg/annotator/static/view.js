// The canvas: zoom/pan transform, the image, the class overlays and the tool previews.

export function hexToRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function makeCanvas(w, h) {
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  return c;
}

/** An RGBA rendering of per-class maps at image resolution, updated by rectangles. */
export class Overlay {
  constructor(w, h) {
    this.w = w;
    this.h = h;
    this.canvas = makeCanvas(w, h);
    this.ctx = this.canvas.getContext("2d");
    this.img = this.ctx.createImageData(w, h);
  }

  /**
   * Recompute a rectangle. `classes`: [{rgb, visible, arr}]; `style`: "fill" (own layer:
   * alpha grows with confidence), "heat" (model probability) or "outline" (read-only layer).
   */
  update(classes, style, rect = null) {
    const { w, h } = this;
    let [x0, y0, rw, rh] = rect || [0, 0, w, h];
    x0 = Math.max(0, x0); y0 = Math.max(0, y0);
    const x1 = Math.min(w, x0 + rw), y1 = Math.min(h, y0 + rh);
    if (x1 <= x0 || y1 <= y0) return;
    const d = this.img.data;
    const shown = classes.filter((c) => c.visible && c.arr);
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        const i = y * w + x;
        let r = 0, g = 0, b = 0, a = 0;
        for (const c of shown) {
          const v = c.arr[i];
          if (!v) continue;
          let ca;
          if (style === "heat") ca = 0.85 * v / 100;
          else if (style === "outline") {
            const edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 ||
              !c.arr[i - 1] || !c.arr[i + 1] || !c.arr[i - w] || !c.arr[i + w];
            // dashed outline (read-only), faint inside: distinct from the user's own fill
            ca = edge ? ((x + y) % 4 < 2 ? 1 : 0.25) : 0.06 + 0.1 * v / 100;
          } else ca = 0.3 + 0.7 * v / 100;
          // "over" compositing, later classes on top
          const na = ca + a * (1 - ca);
          r = (c.rgb[0] * ca + r * a * (1 - ca)) / na;
          g = (c.rgb[1] * ca + g * a * (1 - ca)) / na;
          b = (c.rgb[2] * ca + b * a * (1 - ca)) / na;
          a = na;
        }
        const o = 4 * i;
        d[o] = r; d[o + 1] = g; d[o + 2] = b; d[o + 3] = Math.round(a * 255);
      }
    }
    // outlines depend on neighbours: callers pass rectangles grown by one pixel
    this.ctx.putImageData(this.img, 0, 0, x0, y0, x1 - x0, y1 - y0);
  }

  clear() {
    this.img.data.fill(0);
    this.ctx.clearRect(0, 0, this.w, this.h);
  }
}

/** Screen <-> image transform and drawing. Coordinates are CSS pixels of the canvas. */
export class View {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.s = 1; this.tx = 0; this.ty = 0;
    this.image = null; this.w = 0; this.h = 0;
    this.layers = [];       // [{canvas, alpha, visible}] drawn over the image in order
    this.cursor = null;     // {x, y, r} in canvas px
    this.polygon = null;    // {pts: [[x,y]] image coords, mouse: [x,y] image coords}
    this._queued = false;
    new ResizeObserver(() => this.resize()).observe(canvas.parentElement);
    this.resize();
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const { clientWidth: cw, clientHeight: ch } = this.canvas.parentElement;
    this.cw = cw; this.ch = ch;
    this.canvas.width = Math.max(1, Math.round(cw * dpr));
    this.canvas.height = Math.max(1, Math.round(ch * dpr));
    this.canvas.style.width = `${cw}px`;
    this.canvas.style.height = `${ch}px`;
    this.dpr = dpr;
    this.render();
  }

  setImage(image, w, h) {
    this.image = image; this.w = w; this.h = h;
    this.fit();
  }

  fit() {
    if (!this.w) return;
    this.s = Math.min(this.cw / this.w, this.ch / this.h) * 0.96;
    this.tx = (this.cw - this.w * this.s) / 2;
    this.ty = (this.ch - this.h * this.s) / 2;
    this.requestRender();
  }

  /** Canvas CSS pixel -> image coordinates (continuous; pixel (i,j) spans [i, i+1)). */
  toImage(cx, cy) { return [(cx - this.tx) / this.s, (cy - this.ty) / this.s]; }

  toScreen(x, y) { return [x * this.s + this.tx, y * this.s + this.ty]; }

  zoomAt(cx, cy, factor) {
    const s = Math.min(64, Math.max(0.05, this.s * factor));
    const [x, y] = this.toImage(cx, cy);
    this.s = s;
    this.tx = cx - x * s;
    this.ty = cy - y * s;
    this.requestRender();
  }

  panBy(dx, dy) { this.tx += dx; this.ty += dy; this.requestRender(); }

  requestRender() {
    if (this._queued) return;
    this._queued = true;
    requestAnimationFrame(() => { this._queued = false; this.render(); });
  }

  render() {
    const { ctx } = this;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.fillStyle = "#101214";
    ctx.fillRect(0, 0, this.cw, this.ch);
    if (!this.image) return;
    ctx.save();
    ctx.translate(this.tx, this.ty);
    ctx.scale(this.s, this.s);
    ctx.imageSmoothingEnabled = this.s < 1;
    ctx.drawImage(this.image, 0, 0);
    ctx.imageSmoothingEnabled = false;
    for (const l of this.layers) {
      if (!l.visible) continue;
      ctx.globalAlpha = l.alpha;
      ctx.drawImage(l.canvas, 0, 0);
    }
    ctx.globalAlpha = 1;
    ctx.restore();
    ctx.strokeStyle = "rgba(255,255,255,0.25)";
    ctx.lineWidth = 1;
    ctx.strokeRect(this.tx - 0.5, this.ty - 0.5, this.w * this.s + 1, this.h * this.s + 1);
    this._drawPolygon();
    if (this.cursor) {
      const { x, y, r, colour } = this.cursor;
      ctx.beginPath();
      ctx.arc(x, y, Math.max(1, r), 0, 2 * Math.PI);
      ctx.strokeStyle = "rgba(0,0,0,0.8)";
      ctx.lineWidth = 3;
      ctx.stroke();
      ctx.strokeStyle = colour || "#fff";
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
  }

  _drawPolygon() {
    const p = this.polygon;
    if (!p || !p.pts.length) return;
    const { ctx } = this;
    ctx.beginPath();
    p.pts.forEach(([x, y], k) => {
      const [sx, sy] = this.toScreen(x, y);
      if (k === 0) ctx.moveTo(sx, sy); else ctx.lineTo(sx, sy);
    });
    if (p.mouse) ctx.lineTo(...this.toScreen(...p.mouse));
    ctx.strokeStyle = p.colour || "#fff";
    ctx.setLineDash([6, 4]);
    ctx.lineWidth = 1.5;
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = "#fff";
    for (const [x, y] of p.pts) {
      const [sx, sy] = this.toScreen(x, y);
      ctx.fillRect(sx - 3, sy - 3, 6, 6);
    }
  }
}
