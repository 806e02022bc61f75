"""B-mode rendering of a scene: echo amplitudes, speckle, attenuation, TGC, log compression.

The echo amplitude of every pixel is the sum of a diffuse part (soft tissue above the
pleura, aerated lung below it) and specular/artifact parts (skin and fascia, pleura,
rib surfaces, A-lines, B-lines). Both are multiplied by speckle (a smoothed complex
Gaussian field on the beam grid, whose magnitude is Rayleigh distributed), shadowed
below the ribs, attenuated with depth and partly compensated by a time-gain curve,
then log-compressed to 8 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from confseg.synth.geometry import U_TABLE, Geometry
from confseg.synth.scene import Scene, sigmoid

DYNAMIC_RANGE_DB = 45.0
TOP_DB = 7.0
GAMMA = 1.5
SPECKLE_SIGMA = (0.8, 1.8)  # beam-grid pixels: axial, lateral (grid is half-res laterally)


@dataclass(kw_only=True)
class Speckle:
    """Complex speckle fields on the beam grid (one static, one per-frame source)."""

    base: np.ndarray
    rng: np.random.Generator

    @classmethod
    def draw(cls, rng: np.random.Generator, geom: Geometry) -> Speckle:
        """Draw the static field of one item."""
        return cls(base=_complex_field(rng, geom.grid_shape), rng=rng)

    def magnitude(self, decorrelate: float = 0.0) -> np.ndarray:
        """Rayleigh-distributed speckle (mean 1) on the grid, optionally partly renewed."""
        g = self.base
        if decorrelate > 0:
            g = np.sqrt(1 - decorrelate ** 2) * g + decorrelate * _complex_field(
                self.rng, g.shape)
        mag = np.abs(g)
        return (mag / mag.mean()).astype(np.float32)


def _complex_field(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    z = rng.standard_normal((2, *shape), dtype=np.float32)
    z = ndimage.gaussian_filter(z, (0, *SPECKLE_SIGMA), mode="wrap", truncate=3.0)
    return z[0] + 1j * z[1]


def _sample(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return ndimage.map_coordinates(grid, [rows, cols], order=1, mode="nearest")


def aline_width(k: int) -> float:
    """Thickness of the A-line of order ``k`` relative to the pleura's."""
    return 1.6 + 0.4 * (k - 1)


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(np.float32(-0.5 / sigma ** 2) * x * x)


def bline_tables(scene: Scene, phase: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Lateral B-line amplitude and fading-rate tables (B-lines flicker in videos)."""
    amp = np.zeros_like(U_TABLE)
    fade = np.zeros_like(U_TABLE)
    total = np.zeros_like(U_TABLE)
    for bl in scene.blines:
        a = bl.amp
        if phase is not None:
            a *= 1.0 + scene.flicker * np.sin(2 * np.pi * 2 * phase + bl.phase)
        prof = bl.profile()
        amp += a * prof
        fade += bl.fade * prof
        total += prof
    fade /= np.maximum(total, 1e-6)
    return amp.astype(np.float32), fade.astype(np.float32)


def render(scene: Scene, geom: Geometry, speckle: Speckle, *, phase: float | None = None
           ) -> np.ndarray:
    """Render one B-mode frame.

    Args:
        scene: What is there.
        geom: Probe geometry.
        speckle: The item's speckle fields.
        phase: For video frames, the breathing phase in [0, 1): the lung below the pleura
            slides laterally, B-lines flicker and speckle partly decorrelates. None for
            the still image.

    Returns:
        ``(size, size)`` uint8 grey image, black outside the field of view.
    """
    u, s, inside, idx = geom.u, geom.s, geom.inside, geom.u_index
    shift = 0.0 if phase is None else scene.slide * float(np.sin(2 * np.pi * phase))
    mag = 0.25 + 0.75 * speckle.magnitude(0.0 if phase is None else 0.25)
    sp = scene.s_pleura[idx]
    below = sigmoid((s - sp) / 0.004)
    rows, cols = geom.grid_coords(0.0)
    spk_t = _sample(mag, rows, cols)
    if shift:
        idx_l = geom.table_index(shift * below)  # the lung slides under the pleura
        spk = spk_t + (_sample(mag, rows, geom.grid_coords(shift)[1]) - spk_t) * below
    else:
        idx_l, spk = idx, spk_t
    # Diffuse echoes: layered soft tissue above the pleura, dark aerated lung below.
    fat = 1.0 - 0.45 * sigmoid((scene.fat_depth - s) / 0.01) * sigmoid((s - 0.02) / 0.005)
    tissue = scene.tissue_amp * (1.0 + 0.25 * np.sin(9.0 * s + 6.0 * scene.tissue_amp)) * fat
    diffuse = tissue + (scene.lung_amp - tissue) * below
    # Specular echoes and artifacts.
    spec = np.zeros_like(s)
    for layer in scene.layers:
        spec += layer.amp[idx] * _gauss(s - layer.depth[idx], layer.sigma)
    win = scene.window[idx]
    pvis = scene.pleura_vis[idx_l]
    spec += (scene.pleura_amp * pvis * scene.pleura_grain[idx_l] * win) * _gauss(s - sp,
                                                                                 scene.sigma_p)
    if scene.aline_amps:
        a_w = scene.erase[idx_l] * win * (0.4 + 0.6 * pvis)
        for k, amp in zip(scene.aline_k, scene.aline_amps, strict=True):
            sig = scene.sigma_p * aline_width(k)
            spec += amp * a_w * _gauss(s - k * sp, sig)
    if scene.blines:
        b_amp, b_fade = bline_tables(scene, phase)
        depth = np.maximum(s - sp, 0.0)
        spec += (b_amp[idx_l] * below * np.exp(-b_fade[idx_l] * depth)
                 * (1.0 + 0.8 * _gauss(s - sp, 2.5 * scene.sigma_p)))
    amp_map = diffuse * spk + spec * (0.45 + 0.55 * spk)
    # Ribs: bright curved surface, near-total acoustic shadow below it.
    shadow = np.ones_like(s)
    for rib in scene.ribs:
        rd, rw = rib.depth[idx], rib.weight[idx]
        amp_map += rib.amp * rw * _gauss(s - rd, 1.6 * scene.sigma_p) * (0.5 + 0.5 * spk_t)
        shadow *= 1.0 - 0.93 * rw * sigmoid((s - rd - scene.sigma_p) / 0.006)
    edge = 1.0 - 0.35 * np.minimum(np.abs(u), 1.0) ** 6  # weaker beams at the sides
    amp_map *= shadow * scene.contact[idx] * edge
    # Attenuation, TGC (partial compensation with slider knobs), log compression.
    knots = np.linspace(0.0, 1.0, scene.tgc_db.size)
    tgc = np.interp(np.linspace(0.0, 1.0, 256), knots, scene.tgc_db).astype(np.float32)
    gain_db = (tgc[np.clip((s * 255).astype(np.int32), 0, 255)] + scene.gain_db
               - 20 * np.log10(np.e) * scene.attenuation * 0.3 * s - 4.0 * np.exp(-s / 0.04))
    db = 20.0 * np.log10(amp_map + 0.004 * spk_t + 1e-6) + gain_db
    grey = np.clip((db - (TOP_DB - DYNAMIC_RANGE_DB)) / DYNAMIC_RANGE_DB, 0.0, 1.0) ** GAMMA
    out = np.rint(grey * 255.0).astype(np.uint8)
    out[~inside] = 0
    return out
