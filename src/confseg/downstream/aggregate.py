"""Frame features up to videos, videos up to patient-days (NaN-tolerant, warning-free).

A frame feature ``f`` becomes ``f.<stat>`` per video (:data:`VIDEO_STATS`); a video feature
``g`` becomes ``view.<view>.g`` per patient-day plus ``all.mean.g`` and ``all.max.g`` across
its views. NaN is a missing value: it is left out of every statistic, and a statistic with no
value left is NaN (quietly: no RuntimeWarning). :data:`AGGREGATE_DOCS` defines the names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

NAN = float("nan")
VIDEO_STATS: tuple[str, ...] = ("mean", "max", "std", "p10", "p50", "p90")

AGGREGATE_DOCS: dict[str, str] = {
    "<feature>.mean": "per video: mean of the frame feature over the frames that have a value",
    "<feature>.max": "per video: largest value of the frame feature",
    "<feature>.std": "per video: standard deviation (population, ddof 0) over frames",
    "<feature>.p10": "per video: 10th percentile over frames (linear interpolation)",
    "<feature>.p50": "per video: median over frames",
    "<feature>.p90": "per video: 90th percentile over frames",
    "n_frames": "per video: number of frames",
    "view.<view>.<feature>": "per patient-day: the video feature of that view (mean of the "
    "view's videos when it was recorded more than once); absent when the view is missing",
    "all.mean.<feature>": "per patient-day: mean of the video feature over the views present",
    "all.max.<feature>": "per patient-day: largest value of the video feature over the views",
    "n_views": "per patient-day: number of distinct views present",
}

_Reducer = Callable[[np.ndarray], np.ndarray]
_REDUCERS: dict[str, _Reducer] = {
    "mean": lambda a: np.nanmean(a, axis=0),
    "max": lambda a: np.nanmax(a, axis=0),
    "std": lambda a: np.nanstd(a, axis=0),
    "p10": lambda a: np.nanpercentile(a, 10, axis=0),
    "p50": lambda a: np.nanpercentile(a, 50, axis=0),
    "p90": lambda a: np.nanpercentile(a, 90, axis=0),
}


def _table(rows: Sequence[Mapping[str, float]]) -> tuple[list[str], np.ndarray]:
    """The union of the rows' keys (first-seen order) and an (n_rows, n_keys) array, NaN-filled."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    values = np.array([[r.get(k, NAN) for k in names] for r in rows], dtype=np.float64)
    return names, values.reshape(len(rows), len(names))


def _reduce(values: np.ndarray, stats: Sequence[str]) -> dict[str, np.ndarray]:
    """Column statistics ignoring NaN; NaN (without a warning) where a column is all NaN."""
    ok = ~np.isnan(values).all(axis=0)
    out = {}
    for stat in stats:
        col = np.full(values.shape[1], NAN)
        if ok.any():
            with np.errstate(invalid="ignore"):
                col[ok] = _REDUCERS[stat](values[:, ok])
        out[stat] = col
    return out


def video_features(frames: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Per-video statistics of frame features.

    Args:
        frames: one feature dict per frame (from ``frame_features`` or ``raw_image_features``);
            a key missing from some frames counts as NaN there.

    Returns:
        ``<feature>.<stat>`` for every feature and each of :data:`VIDEO_STATS`, and
        ``n_frames``.
    """
    rows = list(frames)
    names, values = _table(rows)
    stats = _reduce(values, VIDEO_STATS)
    out = {f"{name}.{stat}": float(stats[stat][j])
           for j, name in enumerate(names) for stat in VIDEO_STATS}
    out["n_frames"] = float(len(rows))
    return out


def patient_day_features(videos: Sequence[tuple[str, Mapping[str, float]]]) -> dict[str, float]:
    """Per-patient-day features from the videos of its views.

    Args:
        videos: ``(view name, video features)`` per video. Videos of the same view are
            averaged (NaN ignored); a missing view contributes nothing.

    Returns:
        ``view.<view>.<feature>`` per view present, ``all.mean.<feature>`` and
        ``all.max.<feature>`` across them, and ``n_views``.

    Raises:
        ValueError: a view name is empty or contains a dot (it would make names ambiguous).
    """
    by_view: dict[str, list[Mapping[str, float]]] = {}
    for view, feats in videos:
        if not view or "." in view:
            raise ValueError(f"view name {view!r} must be non-empty and contain no '.'")
        by_view.setdefault(view, []).append(feats)
    out: dict[str, float] = {}
    per_view: list[dict[str, float]] = []
    for view, vids in by_view.items():
        names, values = _table(vids)
        means = _reduce(values, ["mean"])["mean"]
        per_view.append({name: float(v) for name, v in zip(names, means, strict=True)})
        out.update({f"view.{view}.{name}": v for name, v in per_view[-1].items()})
    names, values = _table(per_view)
    across = _reduce(values, ["mean", "max"])
    for stat in ("mean", "max"):
        out.update({f"all.{stat}.{name}": float(v)
                    for name, v in zip(names, across[stat], strict=True)})
    out["n_views"] = float(len(by_view))
    return out
