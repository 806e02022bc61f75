"""Segment a dataset's videos once per segmenter and cache per-frame features, not images.

A segmenter is a run folder, or every strategy of a study folder. When the study (or run)
was trained on the same dataset, each patient's videos are segmented by the model of the fold
that held that patient out (seed 0), so no feature comes from a model that saw the patient;
on other data the fold-0, seed-0 model serves every patient. A single run trained on the same
dataset can only serve its own test patients honestly: the others are marked
``seen_in_training`` in ``videos.csv``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confseg.data import Dataset, Item, load_dataset, read_splits
from confseg.downstream.aggregate import patient_day_features, video_features
from confseg.downstream.features import acquisition_features, frame_features, raw_image_features
from confseg.downstream.folder import (
    ACQUISITION,
    ANNOTATION,
    RAW,
    DownstreamFolder,
    read_table,
    write_table,
)
from confseg.errors import ConfsegError, DatasetError, MediaError
from confseg.inference import Predictor
from confseg.inference.video import segment_video
from confseg.io.outputs import check_output_folder
from confseg.runs import FINISHED, RunFolder, StudyFolder, strategy_slug

ProgressFn = Callable[[int, int], None]


@dataclass
class Segmenter:
    """A named source of models: which run folder segments each patient's videos."""

    name: str
    source: str
    default: RunFolder
    per_patient: dict[str, RunFolder] = field(default_factory=dict)
    trained_on: set[str] = field(default_factory=set)  # patients the default model saw

    def run_for(self, patient: str) -> RunFolder:
        """The run folder whose model segments ``patient``."""
        return self.per_patient.get(patient, self.default)


def segmenters_from(path: str | os.PathLike[str], ds: Dataset) -> list[Segmenter]:
    """The segmenters of a run folder (one) or a study folder (one per strategy).

    Raises:
        ConfsegError: not a run or study folder, or a study whose cells are not finished.
    """
    p = Path(path)
    study = StudyFolder(p)
    if study.is_study():
        spec = study.read_spec()
        same = Path(spec["data"]).resolve() == Path(ds.root).resolve()
        splits = read_splits(study.splits_path) if same else None
        out = []
        for strategy in spec["strategies"]:
            cells = {f: study.strategy_cell(strategy, f, 0) for f in range(int(spec["k"]))}
            missing = [c for c in cells.values() if c.status != FINISHED]
            if missing and (same or cells[0] in missing):
                raise DatasetError(f"{missing[0].root}: not finished; finish the study "
                                   f"(`confseg study run` on {p}) before segmenting videos")
            seg = Segmenter(name=strategy_slug(strategy), source=f"{p}:{strategy}",
                            default=cells[0])
            if splits is not None:
                for f in range(splits.k):
                    for patient in splits.partition(f, val="none")[2]:
                        seg.per_patient[patient] = cells[f]
            out.append(seg)
        return out
    run = RunFolder(p).require()
    seg = Segmenter(name=p.name, source=str(p), default=run)
    if run.is_training_data(ds):
        part = run.partition()
        seg.trained_on = part["train"] | part["val"]
    return [seg]


def _video_items(ds: Dataset) -> list[Item]:
    items = [it for it in ds.items if it.video]
    if not items:
        raise DatasetError(f"{ds.root}: no item has a video; segment-videos needs videos "
                           "(e.g. `confseg synth --videos`, `confseg import covid-blues`)")
    return items


def segment_videos(segmenter: str | os.PathLike[str], data: str | os.PathLike[str], out:
                   str | os.PathLike[str], *, every: int = 1, max_frames: int | None = None,
                   skip_bad: bool = False, batch_size: int = 16, overwrite: bool = False,
                   progress: ProgressFn | None = None) -> dict[str, Any]:
    """Segment every video of ``data`` with each segmenter; cache and aggregate its features.

    Returns:
        The ``segment.json`` object.

    Raises:
        MediaError: a video that cannot be read (unless ``skip_bad``).
        ConfsegError: bad segmenter, dataset or output folder.
    """
    if every < 1 or (max_frames is not None and max_frames < 1):
        raise ConfsegError(f"--every {every} / --max-frames {max_frames}: give numbers >= 1")
    ds = load_dataset(data)
    items = _video_items(ds)
    segs = segmenters_from(segmenter, ds)
    folder = DownstreamFolder(out)
    sampling = {"every": every, "max_frames": max_frames}
    old = folder.read_segment() if folder.segment_path.is_file() else {}
    if old and not overwrite and (old.get("sampling") != sampling
                                  or old.get("dataset") != str(Path(ds.root).resolve())):
        raise ConfsegError(f"{out}: segmented with other settings ({old.get('sampling')} on "
                           f"{old.get('dataset')}); pass --overwrite or pick another --out")
    if not old or overwrite:
        check_output_folder(out, overwrite=overwrite, kind="downstream folder",
                            looks_like=lambda q: (q / "segment.json").is_file(),
                            inputs=[ds.root, segmenter])
        if overwrite and folder.root.exists():
            import shutil

            shutil.rmtree(folder.root)
    folder.root.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = dict(old.get("skipped", {})) if not overwrite else {}
    seconds: dict[str, float] = {}
    done = 0
    sources: list[tuple[str, Segmenter | None]] = [(RAW, None)]
    if any(it.confidence for it in items):
        sources.append((ANNOTATION, None))
    sources += [(s.name, s) for s in segs]
    total = len(items) * len(sources)
    for name, seg in sources:
        t0 = time.perf_counter()
        predictors: dict[Path, Predictor] = {}
        for it in items:
            dest = folder.frames_csv(name, it.id)
            if not dest.is_file() and it.id not in skipped:
                try:
                    rows = (_annotation(ds, it) if name == ANNOTATION else
                            _frames(ds, it, seg, predictors, every=every, max_frames=max_frames,
                                    batch_size=batch_size))
                except MediaError as exc:
                    if not skip_bad:
                        raise
                    skipped[it.id] = str(exc)
                    rows = None
                if rows is not None:
                    write_table(dest, rows)
            done += 1
            if progress:
                progress(done, total)
        seconds[name] = round(time.perf_counter() - t0, 2)
        _aggregate(folder, ds, items, name, seg, skipped)
    _acquisition(folder, ds, items, skipped)
    info = {"dataset": str(Path(ds.root).resolve()), "segmenter": str(segmenter),
            "sampling": sampling, "videos": len(items),
            "segmenters": {s.name: {"source": s.source, "default_model": str(s.default.root),
                                    "out_of_fold": bool(s.per_patient),
                                    "seen_in_training": sorted(s.trained_on)} for s in segs},
            "skipped": skipped, "seconds": {**old.get("seconds", {}), **seconds}}
    folder.write_segment(info)
    return info


def _annotation(ds: Dataset, it: Item) -> list[dict[str, Any]] | None:
    """The oracle: features of the item's own annotation (confidence as probability)."""
    if not it.confidence or not it.image:
        return None
    return [{"frame": 0, **frame_features(ds.read_confidence_stack(it), ds.classes,
                                          image=ds.read_image(it))}]


def _frames(ds: Dataset, it: Item, seg: Segmenter | None, predictors: dict[Path, Predictor], *,
            every: int, max_frames: int | None, batch_size: int) -> list[dict[str, Any]]:
    path = ds.path(it.video or "")
    if seg is None:
        from confseg.io.video import iter_frames

        rows = [{"frame": i, **raw_image_features(f)}
                for i, f in iter_frames(path, every=every, max_frames=max_frames)]
    else:
        run = seg.run_for(it.patient)
        if run.root not in predictors:
            predictors.clear()  # one model in memory at a time
            predictors[run.root] = Predictor.from_run(run)
        model = predictors[run.root]
        rows = [{"frame": fr.index, **frame_features(fr.prob, model.classes, image=fr.image)}
                for fr in segment_video(model, path, every=every, max_frames=max_frames,
                                        batch_size=batch_size)]
    if not rows:
        raise MediaError(f"{path}: no frame decoded; check the video")
    return rows


def _acquisition(folder: DownstreamFolder, ds: Dataset, items: list[Item],
                 skipped: dict[str, str]) -> None:
    """The acquisition-only control: what each video's header says, no pixels."""
    from confseg.io.video import probe_video

    videos = []
    for it in items:
        if it.id in skipped:
            continue
        info = probe_video(ds.path(it.video or ""))
        videos.append({"video": it.id, "patient": it.patient, "day": it.day,
                       "view": it.view or "", **acquisition_features(
                           frames=info.frames, fps=info.fps, width=info.width,
                           height=info.height, seconds=info.duration_s)})
    _write_videos_and_days(folder, ACQUISITION, videos)


def _aggregate(folder: DownstreamFolder, ds: Dataset, items: list[Item], name: str,
               seg: Segmenter | None, skipped: dict[str, str]) -> None:
    videos = []
    for it in items:
        if it.id in skipped or not folder.frames_csv(name, it.id).is_file():
            continue
        frames = read_table(folder.frames_csv(name, it.id))
        feats = video_features([{k: v for k, v in f.items() if k != "frame"} for f in frames])
        row: dict[str, Any] = {"video": it.id, "patient": it.patient, "day": it.day,
                               "view": it.view or ""}
        if seg is not None:
            row["seen_in_training"] = int(it.patient in seg.trained_on)
        videos.append({**row, **feats})
    _write_videos_and_days(folder, name, videos)


def _write_videos_and_days(folder: DownstreamFolder, name: str,
                           videos: list[dict[str, Any]]) -> None:
    write_table(folder.videos_csv(name), videos)
    days: dict[tuple[str, int], list[tuple[str, dict[str, float]]]] = {}
    for v in videos:
        feats = {k: float(x) for k, x in v.items()
                 if k not in ("video", "patient", "day", "view", "seen_in_training")}
        days.setdefault((v["patient"], int(v["day"] or 0)), []).append(
            (v["view"] or v["video"], feats))
    rows = [{"patient": p, "day": d, **patient_day_features(vs)}
            for (p, d), vs in sorted(days.items())]
    write_table(folder.patient_days_csv(name), rows)
