"""The annotatable structures of a scene, as pixel maps, and their true masks.

Each structure (the pleural line, one B-line, one A-line) is described on the image
grid by a normalised distance ``z`` across it (``z <= 1`` is the true mask), a
coordinate ``t`` along it (0..1 over its true extent, used to split it into segments
that an annotator judges separately) and the pixels it could extend over. Decoys are
places where a reader may see a structure that is not there (a rib surface taken for
the pleura, a bright column taken for a B-line, a reverberation one order too far).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from confseg.synth.geometry import Geometry
from confseg.synth.image import aline_width
from confseg.synth.scene import Scene

CLASSES = ("pleural_line", "b_line", "a_line")
LINE_HALF_WIDTH = 1.8  # true half-thickness of pleura / A-lines, in rendered sigmas
BLINE_HALF_WIDTH = 1.6  # true half-width of B-lines, in rendered sigmas


@dataclass(kw_only=True)
class Structure:
    """One structure (or decoy) on the image grid.

    Attributes:
        cls: Class name.
        zs: ``(H, W)`` signed distance across the structure divided by its true half-width
            (``z = |zs|``; the sign tells the two sides apart).
        t: ``(H, W)`` position along it, 0..1 over its true extent.
        extent: ``(H, W)`` bool, pixels within its along-extent (inside the field of view).
        over: ``(H, W)`` bool, where a reader who over-extends it would continue it.
        nseg: Number of segments a reader judges separately.
        decoy: True when nothing is really there.
        z: ``|zs|`` (computed).
    """

    cls: str
    zs: np.ndarray
    t: np.ndarray
    extent: np.ndarray
    over: np.ndarray
    nseg: int
    decoy: bool = False
    z: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.z = np.abs(self.zs)

    @property
    def truth(self) -> np.ndarray:
        """The true mask (empty for a decoy)."""
        if self.decoy:
            return np.zeros(self.z.shape, dtype=bool)
        return self.extent & (self.z <= 1.0)

    def segments(self) -> np.ndarray:
        """``(H, W)`` segment index in ``0..nseg-1`` (clipped outside the extent)."""
        return np.clip((self.t * self.nseg).astype(np.int64), 0, self.nseg - 1)


def build_structures(scene: Scene, geom: Geometry, classes: tuple[str, ...] = CLASSES
                     ) -> list[Structure]:
    """All structures and decoys of ``scene`` for the requested classes."""
    u, s, inside, idx = geom.u, geom.s, geom.inside, geom.u_index
    sp = scene.s_pleura[idx]
    lo, hi = max(scene.u_lo, -1.0), min(scene.u_hi, 1.0)
    t_lat = ((u - lo) / (hi - lo)).astype(np.float32)
    lateral = inside & (t_lat >= 0) & (t_lat <= 1)
    out: list[Structure] = []
    h_p = LINE_HALF_WIDTH * scene.sigma_p
    if "pleural_line" in classes:
        reach = 0.12 / (hi - lo)
        over = inside & (((t_lat < 0) & (t_lat >= -reach)) | ((t_lat > 1) & (t_lat <= 1 + reach)))
        out.append(Structure(cls="pleural_line", zs=(s - sp) / h_p, t=t_lat,
                             extent=lateral, over=over, nseg=6))
        for rib in scene.ribs:
            centre = rib.edge + rib.side * 0.5 * rib.width
            x = (u - centre) / (0.5 * rib.width)
            ext = inside & (np.abs(x) <= 0.9) & (rib.weight[idx] > 0.5)
            if ext.any():
                out.append(Structure(cls="pleural_line", decoy=True, nseg=1,
                                     zs=(s - rib.depth[idx]) / (1.6 * h_p),
                                     t=np.clip(0.5 * (x + 1), 0, 1), extent=ext,
                                     over=np.zeros_like(ext)))
    if "b_line" in classes:
        below = inside & (s >= sp)
        t_depth = np.clip((s - sp) / np.maximum(1.0 - sp, 1e-3), 0, 1).astype(np.float32)
        above = inside & (s < sp) & (s >= sp - 0.05)
        lines = [(bl.u, bl.sigma, False) for bl in scene.blines]
        lines += [(x, 0.025, True) for x in scene.decoy_blines]
        for x, sigma, decoy in lines:
            zs = (u - x) / (BLINE_HALF_WIDTH * sigma)
            out.append(Structure(cls="b_line", zs=zs, t=t_depth, extent=below, over=above,
                                 nseg=2, decoy=decoy))
    if "a_line" in classes:
        erase = scene.erase[idx]
        orders = [(k, False) for k in scene.aline_k]
        if scene.aline_decoy is not None:
            orders.append((scene.aline_decoy, True))
        for k, decoy in orders:
            h = LINE_HALF_WIDTH * scene.sigma_p * aline_width(k)
            zs = (s - k * sp) / h
            out.append(Structure(cls="a_line", zs=zs, t=t_lat, extent=lateral & (erase >= 0.5),
                                 over=lateral & (erase < 0.5), nseg=3, decoy=decoy))
    return out


def truth_masks(structures: list[Structure], classes: tuple[str, ...], shape: tuple[int, int]
                ) -> dict[str, np.ndarray]:
    """Class -> true mask (union of the class's real structures)."""
    out = {c: np.zeros(shape, dtype=bool) for c in classes}
    for st in structures:
        if not st.decoy and st.cls in out:
            out[st.cls] |= st.truth
    return out
