"""Simulated readers: an annotator who paints confidence levels, and binary raters.

Both judge each structure segment by its *visibility*: the grey-level contrast
between the structure's true pixels and a band of background beside it, measured on
the rendered image, divided by a contrast that counts as plainly visible. The
annotator perceives it with noise and maps it to a level of the confidence scale
(20..100), lowers the level at the structure's uncertain edges, sometimes paints a
halo or an over-extension beyond the truth at low confidence, misses faint
structures, and now and then marks a decoy. A rater instead draws one binary mask
with a personal bias (threshold, width, boundary noise).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from confseg.data.schema import DEFAULT_SCALE
from confseg.synth.structures import Structure

LEVELS = np.array([0] + [lv.value for lv in DEFAULT_SCALE], dtype=np.float32) / 100.0


@dataclass(frozen=True, kw_only=True)
class AnnotatorModel:
    """Parameters of the simulated confidence annotator.

    Attributes:
        thresholds: Perceived visibility at which levels 20, 40, 60, 80, 100 start.
        contrast_full: Grey-level contrast (fraction of 255) perceived as fully visible.
        noise: Std of the per-segment perception noise.
        edge: Outer fraction of the painted half-width marked one level lower.
        width_error: Log-std of the painted width relative to the true width.
        jitter: Log-std of the hand's wobble of boundaries.
        halo_prob: Chance to paint a halo around a structure (at most level 40).
        halo_width: Range of the halo's width, in true half-widths.
        over_prob: Chance to over-extend a structure along its length (at most level 40).
        miss_faint: Chance to skip a structure whose best level is 40 or less.
        phantom_prob: Chance to mark a decoy (at level 20 or 40).
    """

    thresholds: tuple[float, ...] = (0.15, 0.3, 0.45, 0.6, 0.75)
    contrast_full: float = 0.6
    noise: float = 0.08
    edge: float = 0.35
    width_error: float = 0.15
    jitter: float = 0.12
    halo_prob: float = 0.4
    halo_width: tuple[float, float] = (0.3, 1.0)
    over_prob: float = 0.35
    miss_faint: float = 0.5
    phantom_prob: float = 0.3


@dataclass(frozen=True, kw_only=True)
class RaterModel:
    """A binary rater with a personal bias.

    Attributes:
        name: Rater id (``r1``...).
        style: Short description ("generous", "strict", "noisy boundary", "mixed").
        threshold: Marks a segment whose perceived visibility reaches this value.
        width: Marks pixels with ``z <= width`` (1 = the true boundary).
        jitter: Log-std of boundary wobble.
        over_prob: Chance to over-extend a structure along its length.
        phantom_prob: Chance to mark a decoy.
        noise: Std of the perception noise.
    """

    name: str
    style: str
    threshold: float
    width: float
    jitter: float
    over_prob: float
    phantom_prob: float
    noise: float = 0.08

    def to_json(self) -> dict[str, float | str]:
        """The parameters as a JSON-able dict."""
        return asdict(self)


RATER_PRESETS = (
    dict(style="generous", threshold=0.12, width=1.5, jitter=0.12, over_prob=0.5,
         phantom_prob=0.4),
    dict(style="strict", threshold=0.45, width=0.7, jitter=0.08, over_prob=0.05,
         phantom_prob=0.02),
    dict(style="noisy boundary", threshold=0.28, width=1.0, jitter=0.45, over_prob=0.25,
         phantom_prob=0.15),
)


def rater_models(n: int, seed: int) -> list[RaterModel]:
    """``n`` raters: the three presets first, then random mixtures drawn from ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(999_983,)))
    out = []
    for i in range(n):
        if i < len(RATER_PRESETS):
            out.append(RaterModel(name=f"r{i + 1}", **RATER_PRESETS[i]))
        else:
            out.append(RaterModel(
                name=f"r{i + 1}", style="mixed", threshold=float(rng.uniform(0.12, 0.45)),
                width=float(rng.uniform(0.7, 1.5)), jitter=float(rng.uniform(0.08, 0.4)),
                over_prob=float(rng.uniform(0.05, 0.5)),
                phantom_prob=float(rng.uniform(0.02, 0.4))))
    return out


def segment_visibility(image: np.ndarray, st: Structure, contrast_full: float) -> np.ndarray:
    """Visibility in [0, 1] of each segment of ``st`` measured on the rendered image.

    Contrast = mean grey of the structure's core (``|z| <= 0.7``, or all true pixels if
    the core is empty) minus the local background, as a fraction of 255. The background
    is the 25th percentile of the grey in the band ``1.5 <= |z| <= 4`` on each side,
    the darker side counting: a reader compares a line with the dark gaps beside it, so
    a bright neighbour does not hide it.
    """
    img = image.astype(np.float32) / 255.0
    seg = st.segments()
    vis = np.zeros(st.nseg, dtype=np.float64)
    near = st.extent & (st.z <= 4.0)
    if not near.any():
        return vis
    g, z, zs, sg = img[near], st.z[near], st.zs[near], seg[near]
    for k in range(st.nseg):
        in_seg = sg == k
        fg = g[in_seg & (z <= 0.7)]
        if fg.size == 0:
            fg = g[in_seg & (z <= 1.0)]
        band = in_seg & (z >= 1.5)
        sides = [g[band & (zs > 0)], g[band & (zs < 0)]]
        bgs = [float(np.partition(b, b.size // 4)[b.size // 4]) for b in sides if b.size >= 3]
        if fg.size and bgs:
            vis[k] = np.clip((float(fg.mean()) - min(bgs)) / contrast_full, 0.0, 1.0)
    return vis


def wobble(rng: np.random.Generator, shape: tuple[int, int], amount: float) -> np.ndarray:
    """A smooth multiplicative field ``exp(amount * f)``, ``f`` ~ unit-variance waves.

    Used for the hand's wobble of boundaries; a sum of three separable cosine products
    with random frequencies (1-4 periods per image) and phases.
    """
    h, w = shape
    y = np.linspace(0.0, 2 * np.pi, h, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 2 * np.pi, w, dtype=np.float32)[None, :]
    f = np.zeros(shape, dtype=np.float32)
    for _ in range(3):
        fy, fx, py, px = rng.uniform(0.5, 4.0, 2).tolist() + rng.uniform(0, 2 * np.pi, 2).tolist()
        f += np.cos(fy * y + py) * np.cos(fx * x + px)
    return np.exp(np.float32(amount * 2.0 / np.sqrt(3.0)) * f)


def annotate(structures: list[Structure], visibility: list[np.ndarray],
             classes: tuple[str, ...], shape: tuple[int, int], rng: np.random.Generator,
             model: AnnotatorModel = AnnotatorModel()) -> dict[str, np.ndarray]:
    """Paint confidence maps.

    Args:
        structures: Structures and decoys of the frame.
        visibility: Per structure, its per-segment visibility.
        classes: Classes to paint.
        shape: Image shape.
        rng: Random generator of the annotator.
        model: Annotator parameters.

    Returns:
        Class -> ``(H, W)`` float32 confidence in {0, 0.2, ..., 1.0}.
    """
    levels = {c: np.zeros(shape, dtype=np.int8) for c in classes}
    hand = wobble(rng, shape, model.jitter)
    th = np.asarray(model.thresholds)
    for st, vis in zip(structures, visibility, strict=True):
        if st.cls not in levels:
            continue
        out = levels[st.cls]
        zj = st.z * hand
        if st.decoy:
            if rng.random() < model.phantom_prob:
                lv = 1 if rng.random() < 0.7 else 2
                _paint(out, st.extent & (zj <= 1.0), lv)
            continue
        perceived = vis + rng.normal(0.0, model.noise, vis.shape) + rng.normal(0.0, model.noise / 2)
        idx = np.searchsorted(th, perceived, side="right").astype(np.int8)
        if idx.max() <= 2 and rng.random() < model.miss_faint:
            continue
        if not idx.any():
            continue
        lv = idx[st.segments()]
        marked = st.extent & (lv > 0)
        zj = zj / np.float32(np.exp(rng.normal(0.0, model.width_error)))
        _paint(out, marked & (zj <= 1.0 - model.edge), lv)
        _paint(out, marked & (zj > 1.0 - model.edge) & (zj <= 1.0), np.maximum(lv - 1, 1))
        if rng.random() < model.halo_prob:
            width = 1.0 + rng.uniform(*model.halo_width)
            _paint(out, marked & (zj > 1.0) & (zj <= width), np.clip(lv - 2, 1, 2))
        if rng.random() < model.over_prob:
            _paint(out, st.over & (zj <= 1.0), int(np.clip(idx.max() - 2, 1, 2)))
    return {c: LEVELS[lv] for c, lv in levels.items()}


def _paint(out: np.ndarray, mask: np.ndarray, level: np.ndarray | int) -> None:
    """Raise ``out`` to ``level`` on ``mask`` (overlapping strokes keep the higher level)."""
    if isinstance(level, np.ndarray):
        np.maximum(out, np.where(mask, level, 0).astype(out.dtype), out=out)
    else:
        out[mask & (out < level)] = level


def rate(structures: list[Structure], visibility: list[np.ndarray], classes: tuple[str, ...],
         shape: tuple[int, int], rng: np.random.Generator, rater: RaterModel
         ) -> dict[str, np.ndarray]:
    """One rater's binary masks (class -> ``(H, W)`` bool)."""
    masks = {c: np.zeros(shape, dtype=bool) for c in classes}
    hand = wobble(rng, shape, rater.jitter)
    for st, vis in zip(structures, visibility, strict=True):
        if st.cls not in masks:
            continue
        zj = st.z * hand
        if st.decoy:
            if rng.random() < rater.phantom_prob:
                masks[st.cls] |= st.extent & (zj <= rater.width)
            continue
        seen = vis + rng.normal(0.0, rater.noise, vis.shape) >= rater.threshold
        if not seen.any():
            continue
        masks[st.cls] |= st.extent & seen[st.segments()] & (zj <= rater.width)
        if rng.random() < rater.over_prob:
            masks[st.cls] |= st.over & (zj <= rater.width)
    return masks
