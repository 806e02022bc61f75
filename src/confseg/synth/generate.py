"""Generate a synthetic lung-ultrasound dataset (the ``confseg synth`` command)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from confseg.data import DatasetWriter
from confseg.errors import ConfsegError
from confseg.synth.annotator import (
    AnnotatorModel,
    RaterModel,
    annotate,
    rate,
    rater_models,
    segment_visibility,
)
from confseg.synth.clinical import (
    CLINICAL_SCHEMA,
    PatientCourse,
    clinical_rows,
    sample_course,
    view_lung_water,
)
from confseg.synth.geometry import make_geometry
from confseg.synth.image import Speckle, render
from confseg.synth.scene import sample_scene
from confseg.synth.structures import CLASSES, build_structures, truth_masks
from confseg.synth.video import FRAMES, render_clip, write_mp4

VIEW_NAMES = ("R1", "L1", "R2", "L2", "R3", "L3", "R4", "L4", "R5", "L5", "R6", "L6")
PROBE_CHOICES = ("convex", "linear", "mixed")
GENERATOR_VERSION = 1

# Purposes of the independent random streams of one item (spawn keys).
_SCENE, _SPECKLE, _ANNOTATOR, _VIDEO, _VIEW, _COURSE, _RATER = 0, 1, 2, 3, 4, 5, 10


def _check(patients: int, views: int, days: int, size: int, raters: int, probe: str,
           classes: Iterable[str]) -> tuple[str, ...]:
    if patients < 1:
        raise ConfsegError(f"--patients {patients}: need at least 1 patient")
    if not 1 <= views <= len(VIEW_NAMES):
        raise ConfsegError(f"--views {views}: choose 1..{len(VIEW_NAMES)} "
                           f"(views {', '.join(VIEW_NAMES)})")
    if days < 1:
        raise ConfsegError(f"--days {days}: need at least 1 day")
    if not 32 <= size <= 2048:
        raise ConfsegError(f"--size {size}: choose an image size between 32 and 2048 pixels")
    if not 0 <= raters <= 20:
        raise ConfsegError(f"--raters {raters}: choose 0..20 raters")
    if probe not in PROBE_CHOICES:
        raise ConfsegError(f"--probe {probe!r}: choose one of {', '.join(PROBE_CHOICES)}")
    cls = tuple(classes)
    unknown = [c for c in cls if c not in CLASSES]
    if not cls or unknown or len(set(cls)) != len(cls):
        raise ConfsegError(f"classes {list(cls)}: choose distinct classes among {list(CLASSES)}")
    return cls


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def generate(out: str | os.PathLike[str], *, patients: int = 40, views: int = 4, days: int = 2,
             size: int = 256, seed: int = 0, raters: int = 0, videos: bool = False,
             probe: str = "mixed", classes: Iterable[str] = CLASSES, overwrite: bool = False,
             progress: Callable[[int, int], None] | None = None) -> Path:
    """Write a synthetic lung-ultrasound dataset.

    One item per patient x view x day (id ``p003_v1_d0``): a B-mode image, the
    simulated annotator's confidence per class, the true masks, optionally ``raters``
    binary rater masks and a short MP4 clip; plus clinical.csv (one row per
    patient-day). The same arguments always give byte-identical images and maps.

    Args:
        out: Dataset folder to create.
        patients: Number of patients.
        views: Views (scan positions) per patient and day, 1..12.
        days: Study days per patient.
        size: Image side in pixels.
        seed: Random seed.
        raters: Number of simulated binary raters (0 = none).
        videos: Also write a 16-frame clip per item.
        probe: ``"convex"``, ``"linear"`` or ``"mixed"`` (chosen per patient).
        classes: Subset of ``("pleural_line", "b_line", "a_line")``.
        overwrite: Replace an existing non-empty ``out``.
        progress: Called as ``progress(done, total)`` after each item.

    Returns:
        The dataset folder.

    Raises:
        ConfsegError: an argument is out of range or ``out`` exists (without overwrite).
    """
    cls = _check(patients, views, days, size, raters, probe, classes)
    width = max(3, len(str(patients)))
    courses = [sample_course(_rng(seed, p, 0, 0, _COURSE), f"p{p + 1:0{width}d}", days, probe)
               for p in range(patients)]
    rows = clinical_rows(courses, _rng(seed, 1_000_003))
    rater_list = rater_models(raters, seed)
    model = AnnotatorModel()
    params: dict[str, Any] = {"patients": patients, "views": views, "days": days, "size": size,
                              "raters": raters, "videos": videos, "probe": probe,
                              "classes": list(cls)}
    meta = {"generator": "confseg.synth", "generator_version": GENERATOR_VERSION, "seed": seed,
            "params": params, "annotator": asdict(model),
            "raters": {r.name: r.to_json() for r in rater_list}}
    total, done = patients * views * days, 0
    row_of = {(r["patient"], r["day"]): r for r in rows}
    with DatasetWriter(out, name=f"synthetic-lus-seed{seed}", classes=cls, meta=meta,
                       overwrite=overwrite) as writer, \
            tempfile.TemporaryDirectory(prefix="confseg-synth-") as tmpdir:
        for p, course in enumerate(courses):
            for day in range(days):
                for v in range(views):
                    item_id = f"{course.patient}_v{v + 1}_d{day}"
                    video_file = Path(tmpdir) / f"{item_id}.mp4" if videos else None
                    item = _make_item(seed, (p, v, day), course, size, cls, model, rater_list,
                                      video_file)
                    row_of[(course.patient, day)]["b_lines"] += item["synth"]["b_lines"]
                    writer.add(item_id=item_id, patient=course.patient, view=VIEW_NAMES[v],
                               day=day, video_file=video_file, **item)
                    if video_file is not None:
                        video_file.unlink()
                    done += 1
                    if progress is not None:
                        progress(done, total)
        writer.write_clinical(rows, CLINICAL_SCHEMA)
    return Path(out)


def _make_item(seed: int, key: tuple[int, int, int], course: PatientCourse, size: int,
               cls: tuple[str, ...], model: AnnotatorModel, rater_list: list[RaterModel],
               video_file: Path | None) -> dict[str, Any]:
    """Draw, render and annotate one item; returns DatasetWriter.add keyword arguments."""
    geom = make_geometry(course.probe, size)
    lw = view_lung_water(course.lung_water[key[2]], key[1], _rng(seed, *key, _VIEW))
    scene = sample_scene(_rng(seed, *key, _SCENE), geom, lung_water=lw,
                         pleura_depth=course.pleura_depth)
    speckle = Speckle.draw(_rng(seed, *key, _SPECKLE), geom)
    image = render(scene, geom, speckle)
    structs = build_structures(scene, geom, cls)
    vis = [segment_visibility(image, st, model.contrast_full) for st in structs]
    conf = annotate(structs, vis, cls, image.shape, _rng(seed, *key, _ANNOTATOR), model)
    raters = {r.name: rate(structs, vis, cls, image.shape, _rng(seed, *key, _RATER + i), r)
              for i, r in enumerate(rater_list)}
    if video_file is not None:
        clip_speckle = Speckle(base=speckle.base, rng=_rng(seed, *key, _VIDEO))
        write_mp4(video_file, render_clip(scene, geom, clip_speckle, FRAMES))
    return {"image": image, "confidence": conf, "truth": truth_masks(structs, cls, image.shape),
            "raters": raters or None,
            "synth": {"lung_water": round(lw, 4), "b_lines": len(scene.blines),
                      "a_lines": len(scene.aline_amps), "probe": course.probe}}
