"""Probe geometry: map image pixels to beam coordinates (lateral ``u``, depth ``s``).

Every structure of the synthetic scene is described in beam coordinates: ``u`` runs
from -1 (left edge of the field of view) to 1 (right edge) across the beams and ``s``
from 0 (transducer face) to 1 (bottom of the field of view) along each beam. A convex
probe fans its beams out from a virtual apex above the image (so beams are rays and
depth is a radius); a linear probe has parallel vertical beams.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

PROBES = ("convex", "linear")

# Convex: transducer radius as a fraction of the imaged depth, half opening angle.
CONVEX_R0 = 0.5
CONVEX_HALF_ANGLE = math.radians(30.0)
# Fractions of the image size: top margin, imaged depth (convex), lateral margin (linear).
TOP = 0.03
CONVEX_DEPTH = 0.94
LINEAR_MARGIN = 0.06
# Lateral range of the beam grid (wider than the field of view, for lung sliding), and the
# fine table of u on which lateral profiles are tabulated.
GRID_U = 1.3
U_TABLE = np.linspace(-GRID_U, GRID_U, 1301).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class Geometry:
    """Beam coordinates of every pixel of a square image.

    Attributes:
        kind: ``"convex"`` or ``"linear"``.
        size: Image side in pixels.
        u: ``(H, W)`` lateral beam coordinate (-1..1 inside the field of view).
        s: ``(H, W)`` depth along the beam (0..1 inside the field of view).
        inside: ``(H, W)`` bool, pixels inside the field of view.
        depth_px: Pixels per unit of ``s``.
        grid_shape: ``(rows, cols)`` of the beam grid that speckle is generated on.
        u_index: ``(H, W)`` int32 index of each pixel's ``u`` in ``U_TABLE`` (nearest).
    """

    kind: str
    size: int
    u: np.ndarray
    s: np.ndarray
    inside: np.ndarray
    depth_px: float
    grid_shape: tuple[int, int]
    u_index: np.ndarray

    def table_index(self, shift_u: float | np.ndarray) -> np.ndarray:
        """Like ``u_index`` for ``u + shift_u``."""
        return table_index(self.u + shift_u)

    def lateral_px(self, s: float | np.ndarray) -> float | np.ndarray:
        """Pixels per unit of ``u`` at depth ``s``."""
        if self.kind == "linear":
            return 0.5 * self.size * (1.0 - 2.0 * LINEAR_MARGIN) + 0.0 * np.asarray(s)
        return (CONVEX_R0 + np.asarray(s)) * self.depth_px * CONVEX_HALF_ANGLE

    def flat_depth(self, s0: float, u: np.ndarray) -> np.ndarray:
        """Depth along each beam of a physically flat interface at depth ``s0`` on the axis.

        In a convex image a flat interface (skin layers, pleura) is crossed deeper by the
        oblique beams at the sides; in a linear image it is at the same depth everywhere.
        """
        u = np.asarray(u, dtype=np.float64)
        if self.kind == "linear":
            return np.full_like(u, s0)
        return (CONVEX_R0 + s0) / np.cos(u * CONVEX_HALF_ANGLE) - CONVEX_R0

    def grid_coords(self, shift_u: float | np.ndarray = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Fractional ``(row, col)`` of each pixel in the beam grid, for map_coordinates.

        Args:
            shift_u: Lateral shift (in ``u`` units) applied before sampling, scalar or
                ``(H, W)``; used to slide the lung texture in videos.
        """
        rows, cols = self.grid_shape
        r = np.clip(self.s, 0.0, 1.0) * (rows - 1)
        uu = np.clip(self.u + shift_u, -GRID_U, GRID_U)
        c = (uu + GRID_U) / (2.0 * GRID_U) * (cols - 1)
        return r.astype(np.float32), c.astype(np.float32)


@functools.lru_cache(maxsize=8)
def make_geometry(kind: str, size: int) -> Geometry:
    """The (cached, read-only) geometry of a ``kind`` probe on a ``size`` x ``size`` image."""
    if kind not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {kind!r}")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    if kind == "convex":
        depth_px = CONVEX_DEPTH * size
        r0 = CONVEX_R0 * depth_px
        apex_y = TOP * size - r0
        dx, dy = xx - 0.5 * size, yy - apex_y
        radius = np.hypot(dx, dy)
        theta = np.arctan2(dx, dy)
        u = theta / CONVEX_HALF_ANGLE
        s = (radius - r0) / depth_px
        lat_max = (CONVEX_R0 + 1.0) * depth_px * CONVEX_HALF_ANGLE
    else:
        depth_px = (1.0 - TOP) * size
        half = 0.5 * size * (1.0 - 2.0 * LINEAR_MARGIN)
        u = (xx - 0.5 * size) / half
        s = (yy - TOP * size) / depth_px
        lat_max = half
    inside = (np.abs(u) <= 1.0) & (s >= 0.0) & (s <= 1.0)
    # Speckle is drawn at half the lateral pixel resolution (its grains are wider than tall).
    grid = (max(8, round(depth_px)), max(8, round(GRID_U * lat_max)))
    u32, s32 = u.astype(np.float32), s.astype(np.float32)
    idx = table_index(u32)
    for a in (u32, s32, inside, idx):
        a.setflags(write=False)
    return Geometry(kind=kind, size=size, u=u32, s=s32, inside=inside, depth_px=depth_px,
                    grid_shape=grid, u_index=idx)


def table_index(u: np.ndarray) -> np.ndarray:
    """Nearest index of ``u`` in ``U_TABLE`` (clipped to the table)."""
    n = U_TABLE.size - 1
    x = (np.asarray(u, dtype=np.float32) + GRID_U) * (n / (2.0 * GRID_U))
    return np.clip(np.rint(x), 0, n).astype(np.int32)
