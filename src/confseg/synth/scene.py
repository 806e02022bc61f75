"""The hidden scene of one synthetic lung-ultrasound frame, drawn at random.

A scene holds what is "really there" in beam coordinates (see
:mod:`confseg.synth.geometry`): the pleura, the ribs and their shadows, the A-line
reverberations, the B-lines and the soft-tissue layers, plus the acquisition settings
(attenuation, TGC, gain). Every lateral profile is tabulated over ``U_TABLE`` and read
per pixel through the geometry's ``u_index``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from confseg.synth.geometry import U_TABLE, Geometry

F32 = np.float32


@dataclass(kw_only=True)
class BLine:
    """One B-line (vertical comet-tail artifact) from the pleura to the bottom.

    Attributes:
        u: Lateral position.
        sigma: Gaussian half-width of its profile, in ``u`` units.
        amp: Peak amplitude (linear echo units; soft tissue is ~0.25).
        fade: Exponential fading rate with depth below the pleura.
        phase: Phase of its flicker in videos.
        faint: Drawn deliberately faint.
    """

    u: float
    sigma: float
    amp: float
    fade: float
    phase: float
    faint: bool = False

    def profile(self) -> np.ndarray:
        """Lateral profile over ``U_TABLE`` (peak 1)."""
        return np.exp(-0.5 * ((U_TABLE - self.u) / self.sigma) ** 2).astype(F32)


@dataclass(kw_only=True)
class Rib:
    """A rib in cross-section at one side of the field of view.

    Attributes:
        side: -1 (left) or +1 (right).
        edge: ``u`` where the rib (and its shadow) ends towards the intercostal space.
        width: Lateral extent of the rib in ``u``.
        lift: How far above the pleura its surface lies at its centre (``s`` units).
        amp: Amplitude of its bright surface.
        depth: Surface depth over ``U_TABLE`` (a low arch).
        weight: Lateral weight over ``U_TABLE`` (1 under the rib, 0 beside it).
    """

    side: int
    edge: float
    width: float
    lift: float
    amp: float
    depth: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, F32))
    weight: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, F32))


@dataclass(kw_only=True)
class Layer:
    """A bright soft-tissue interface (skin, fascia) roughly parallel to the skin.

    Attributes:
        sigma: Thickness (Gaussian sigma, ``s`` units).
        depth: Depth over ``U_TABLE``.
        amp: Amplitude over ``U_TABLE`` (broken up: zero in places).
    """

    sigma: float
    depth: np.ndarray
    amp: np.ndarray


@dataclass(kw_only=True)
class Scene:
    """Everything drawn for one frame (lateral profiles are tables over ``U_TABLE``)."""

    lung_water: float
    s_pleura: np.ndarray
    pleura_vis: np.ndarray
    pleura_grain: np.ndarray
    window: np.ndarray
    contact: np.ndarray
    erase: np.ndarray
    u_lo: float
    u_hi: float
    pleura_amp: float
    sigma_p: float
    ribs: list[Rib]
    blines: list[BLine]
    decoy_blines: list[float]
    aline_amps: list[float]
    aline_decoy: int | None
    layers: list[Layer]
    fat_depth: float
    tissue_amp: float
    lung_amp: float
    attenuation: float
    tgc_db: np.ndarray
    gain_db: float
    slide: float
    flicker: float

    @property
    def aline_k(self) -> list[int]:
        """Reverberation orders (2, 3, ...) of the A-lines that are really there."""
        return list(range(2, 2 + len(self.aline_amps)))


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    """Logistic function, float32."""
    return (0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=F32)))).astype(F32)


def _smooth(rng: np.random.Generator, var: float, fmax: float = 12.0) -> np.ndarray:
    """A smooth positive random lateral profile with mean ~1 over ``U_TABLE``."""
    x = np.zeros_like(U_TABLE)
    for _ in range(6):
        x += rng.normal(0.0, 0.4) * np.sin(rng.uniform(2.0, fmax) * U_TABLE + rng.uniform(0, 6.3))
    return np.clip(1.0 + var * x, 0.05, None).astype(F32)


def _dips(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """Product of ``n`` Gaussian dips over ``U_TABLE`` (1 = no dip): faint stretches."""
    out = np.ones_like(U_TABLE)
    for _ in range(n):
        c, w, d = rng.uniform(lo, hi), rng.uniform(0.05, 0.16), rng.uniform(0.5, 0.9)
        out *= 1.0 - d * np.exp(-0.5 * ((U_TABLE - c) / w) ** 2)
    return out.astype(F32)


def _place_ribs(rng: np.random.Generator, sc: Scene) -> None:
    """Ribs on one or both sides (the "bat sign"); sets the intercostal window."""
    sides = [(-1, 1), (-1,), (1,)][int(rng.choice(3, p=[0.6, 0.2, 0.2]))]
    for sd in sides:
        rib = Rib(side=sd, edge=sd * rng.uniform(0.45, 0.8), width=rng.uniform(0.35, 0.6),
                  lift=rng.uniform(0.03, 0.06), amp=rng.uniform(1.2, 2.2))
        centre = rib.edge + sd * 0.5 * rib.width
        x = np.clip((U_TABLE - centre) / (0.5 * rib.width), -1.5, 1.5)
        rib.depth = (sc.s_pleura - rib.lift * (1.0 - 0.5 * x * x)).astype(F32)
        rib.weight = sigmoid(sd * (U_TABLE - rib.edge) / 0.025)
        sc.window *= 1.0 - rib.weight
        if sd < 0:
            sc.u_lo = rib.edge
        else:
            sc.u_hi = rib.edge
        sc.ribs.append(rib)


def _place_blines(rng: np.random.Generator, sc: Scene, geom: Geometry) -> None:
    """B-lines: count ~ Poisson(7 L^1.3), width and brightness grow with lung water."""
    lw = sc.lung_water
    n_b = int(rng.poisson(7.0 * lw ** 1.3))
    s_axis = float(sc.s_pleura[U_TABLE.size // 2])
    sig_min = 0.9 / float(geom.lateral_px(s_axis))
    placed: list[tuple[float, float]] = []
    for _ in range(n_b * 8):
        if len(sc.blines) >= n_b:
            break
        sigma = max(sig_min, rng.uniform(0.012, 0.035) * (1.0 + 0.8 * lw))
        if rng.random() < 0.35 * lw:  # confluent: a broad bright band ("white lung")
            sigma *= rng.uniform(2.0, 3.5)
        x = rng.uniform(sc.u_lo + 0.06, sc.u_hi - 0.06)
        if any(abs(x - p) < 2.5 * (sigma + s) + 0.02 for p, s in placed):
            continue
        faint = bool(rng.random() < 0.25)
        amp = rng.uniform(0.6, 1.2) * (0.7 + 0.6 * lw) * (rng.uniform(0.15, 0.35) if faint else 1)
        sc.blines.append(BLine(u=x, sigma=sigma, amp=amp, fade=rng.uniform(0.0, 1.2),
                               phase=rng.uniform(0, 2 * np.pi), faint=faint))
        placed.append((x, sigma))
    for bl in sc.blines:
        sc.erase *= 1.0 - np.exp(-0.5 * ((U_TABLE - bl.u) / (1.4 * bl.sigma)) ** 2)
    # Places where a careless reader might see a B-line that is not there.
    for _ in range(20):
        if len(sc.decoy_blines) >= 2:
            break
        x = rng.uniform(sc.u_lo + 0.06, sc.u_hi - 0.06)
        if all(abs(x - p) > 0.1 + 2.5 * s for p, s in placed):
            sc.decoy_blines.append(x)
            placed.append((x, 0.025))


def sample_scene(rng: np.random.Generator, geom: Geometry, *, lung_water: float,
                 pleura_depth: float) -> Scene:
    """Draw a scene.

    Args:
        rng: Random generator (the only source of randomness).
        geom: Probe geometry (for the shape of flat interfaces and pixel sizes).
        lung_water: Hidden lung-water level in [0, 1] of this view and day.
        pleura_depth: Depth of the pleura on the beam axis, in [0.25, 0.40].
    """
    lw = float(np.clip(lung_water, 0.0, 1.0))
    u = U_TABLE
    wobble = sum(rng.uniform(0.0, 0.003) * np.sin(rng.uniform(2, 9) * u + rng.uniform(0, 6.3))
                 for _ in range(3))
    s_pleura = geom.flat_depth(pleura_depth, u) + rng.normal(0.0, 0.015) * u + wobble
    ones = np.ones_like(u)
    sc = Scene(lung_water=lw, s_pleura=s_pleura.astype(F32), pleura_vis=ones.copy(),
               pleura_grain=_smooth(rng, 0.35, fmax=60.0), window=ones.copy(),
               contact=ones.copy(), erase=ones.copy(), u_lo=-1.0, u_hi=1.0,
               pleura_amp=rng.uniform(1.6, 2.6), sigma_p=max(0.0065, 0.6 / geom.depth_px),
               ribs=[], blines=[], decoy_blines=[], aline_amps=[], aline_decoy=None, layers=[],
               fat_depth=rng.uniform(0.03, 0.09), tissue_amp=rng.uniform(0.15, 0.25),
               lung_amp=rng.uniform(0.06, 0.09) * (1.0 + 0.5 * lw),
               attenuation=rng.uniform(1.0, 1.8), tgc_db=rng.normal(0.0, 1.5, size=5),
               gain_db=rng.normal(0.0, 1.5), slide=rng.uniform(0.015, 0.04) * (1.0 - 0.5 * lw),
               flicker=rng.uniform(0.15, 0.35))
    _place_ribs(rng, sc)
    # Faint stretches of pleura, and now and then a poor-contact shadow from the surface.
    n_dips = int(rng.choice(4, p=[0.3, 0.4, 0.2, 0.1]))
    sc.pleura_vis = _dips(rng, n_dips, sc.u_lo + 0.1, sc.u_hi - 0.1)
    if rng.random() < 0.2:
        c, w = rng.uniform(sc.u_lo, sc.u_hi), rng.uniform(0.04, 0.12)
        box = sigmoid((u - c + w) / 0.02) * sigmoid((c + w - u) / 0.02)
        sc.contact = (1.0 - (1.0 - rng.uniform(0.3, 0.55)) * box).astype(F32)
    _place_blines(rng, sc, geom)
    # A-lines: reverberations at multiples of the pleural depth, weaker with more lung water.
    a0 = rng.uniform(0.6, 1.2) * (1.0 - lw) ** 1.5
    decay = rng.uniform(0.5, 0.7)
    k = 2
    while k * pleura_depth <= 0.95:
        amp = a0 * decay ** (k - 2)
        if amp < 0.12:  # too faint to be there: a reader may still "see" the next repeat
            sc.aline_decoy = k
            break
        sc.aline_amps.append(amp)
        k += 1
    # Soft tissue: skin line and broken fascia lines.
    sc.layers.append(Layer(sigma=0.006, depth=geom.flat_depth(0.012, u).astype(F32),
                           amp=0.8 * _smooth(rng, 0.3)))
    for _ in range(int(rng.integers(2, 5))):
        d = rng.uniform(0.05, max(0.06, pleura_depth - 0.06))
        depth = geom.flat_depth(d, u) + 0.006 * (_smooth(rng, 1.0) - 1.0)
        amp = rng.uniform(0.12, 0.4) * np.clip(_smooth(rng, 1.2, fmax=5.0) - 0.5, 0.0, None)
        sc.layers.append(Layer(sigma=max(rng.uniform(0.004, 0.008), 0.5 / geom.depth_px),
                               depth=depth.astype(F32), amp=amp.astype(F32)))
    return sc
