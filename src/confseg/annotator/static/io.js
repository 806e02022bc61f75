// Talking to the server: JSON requests and the PNG transport of confidence maps.

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function check(res) {
  if (res.ok) return res;
  let msg = `${res.status} ${res.statusText}`;
  try { msg = (await res.json()).detail || msg; } catch (e) { /* not JSON */ }
  throw new ApiError(res.status, msg);
}

export async function getJSON(url) {
  return (await check(await fetch(url, { cache: "no-store" }))).json();
}

export async function postJSON(url, body) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return (await check(res)).json();
}

export function itemUrl(id, suffix = "") {
  return `api/items/${encodeURIComponent(id)}${suffix}`;
}

function scratch(w, h) {
  const c = document.createElement("canvas");
  c.width = w;
  c.height = h;
  return [c, c.getContext("2d", { willReadFrequently: true })];
}

function b64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function bytesToB64(bytes) {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/** Load the image of an item for display (an ImageBitmap). */
export async function loadImage(url) {
  const res = await check(await fetch(url, { cache: "no-store" }));
  return createImageBitmap(await res.blob());
}

/** Base64 grey PNG -> Uint8Array of w*h percent values (exact: no colour management). */
export async function decodeMap(b64, w, h) {
  const blob = new Blob([b64ToBytes(b64)], { type: "image/png" });
  const bmp = await createImageBitmap(blob, {
    colorSpaceConversion: "none", premultiplyAlpha: "none",
  });
  if (bmp.width !== w || bmp.height !== h) {
    throw new Error(`map is ${bmp.width}x${bmp.height}, image is ${w}x${h}`);
  }
  const [, ctx] = scratch(w, h);
  ctx.drawImage(bmp, 0, 0);
  bmp.close();
  const d = ctx.getImageData(0, 0, w, h).data;
  const out = new Uint8Array(w * h);
  for (let i = 0; i < out.length; i++) out[i] = d[4 * i];
  return out;
}

// ----- PNG encoder (grey 8-bit). Written here rather than canvas.toBlob, which Chrome
// may delay by up to a second while the page is busy, and which would encode RGBA.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let k = 0; k < 4; k++) out[4 + k] = type.charCodeAt(k);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

async function zlibDeflate(raw) {
  const stream = new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Uint8Array of w*h percent values -> base64 of a grey 8-bit PNG (lossless). */
export async function encodeMap(arr, w, h) {
  const raw = new Uint8Array((w + 1) * h); // each row: filter type 0, then the row
  for (let y = 0; y < h; y++) raw.set(arr.subarray(y * w, (y + 1) * w), y * (w + 1) + 1);
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, w);
  dv.setUint32(4, h);
  ihdr[8] = 8; // bit depth; colour type 0 (grey), deflate, no filter set, no interlace
  const parts = [Uint8Array.of(137, 80, 78, 71, 13, 10, 26, 10), chunk("IHDR", ihdr),
    chunk("IDAT", await zlibDeflate(raw)), chunk("IEND", new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return bytesToB64(out);
}
