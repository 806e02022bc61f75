"""Predict image files to disk: probability maps, binarised masks and overlays."""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from confseg.errors import ConfsegError
from confseg.inference.ensemble import Ensemble, ProbabilityModel, check_tta, load_predictor
from confseg.io.atomic import atomic_write_bytes
from confseg.io.images import image_shape, read_image, write_png
from confseg.preprocess import to_display
from confseg.runs import EvalFolder, RunFolder
from confseg.viz.overlay import overlay_confidence

FORMATS = ("png", "npz")
log = logging.getLogger(__name__)


def predict_files(run: str | Path, images: Sequence[str | Path], out: str | Path, *,
                  level: float = 0.5, fmt: str = "png", checkpoint: str = "best",
                  calibrated: bool = True, ensemble: Sequence[str | Path] = (),
                  tta: str | None = None, calibration: str | Path | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Predict image files and write the results, per input image ``<stem>``.

    - ``<stem>_prob_<class>.png`` (16-bit, probability x 65535) or ``<stem>_prob.npz``
      (float16 array ``prob`` of shape (K, H, W) plus ``classes``);
    - ``<stem>_mask_<class>.png`` (0/255, probability > ``level``);
    - ``<stem>_overlay.png`` (the image with coloured probabilities).

    Args:
        run: Run folder (the first member of an ensemble).
        images: Image files.
        out: Output folder.
        level: Probability threshold of the masks.
        fmt: ``png`` or ``npz``.
        checkpoint: ``best`` or ``last`` (of every run).
        calibrated: One run without TTA: apply its ``calibration.json`` when present.
        ensemble: More run folders: average their probabilities with ``run``'s
            (:class:`~confseg.inference.Ensemble`).
        tta: ``"flip"``: also average each image's left-right mirror.
        calibration: A folder holding ``calibration.json`` (or the file): its temperature
            applies to the output. For an ensemble or TTA, give the folder that
            ``confseg evaluate RUN --ensemble ... --tta ... --calibrate`` wrote; without it
            their output is uncalibrated.
        progress: Called with (done, total).

    Returns:
        The written paths.
    """
    if fmt not in FORMATS:
        raise ConfsegError(f"format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not 0.0 < level < 1.0:
        raise ConfsegError(f"level={level}; give a probability strictly between 0 and 1")
    tta = check_tta(tta)
    runs = [run, *ensemble]
    temperature = None if calibration is None else _calibration_temperature(calibration)
    paths = [Path(p) for p in images]
    stems = [p.name.split(".")[0] for p in paths]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise ConfsegError(f"two inputs share the name {dup!r}; outputs would collide: rename "
                           "or predict them into different folders")
    for path in paths:  # every input checked (header read) before any model work
        image_shape(path)
    predictor = load_predictor(runs, checkpoint=checkpoint, tta=tta, calibrated=calibrated,
                               temperature=temperature)
    if isinstance(predictor, Ensemble) and temperature is None and calibrated and any(
            RunFolder(r).calibration_path.is_file() for r in runs):
        log.warning("the ensemble/TTA output is uncalibrated: a run's calibration.json "
                    "describes its model alone; pass --calibration with the folder of "
                    "`confseg evaluate ... --calibrate` for this ensemble")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfsegError(f"{out}: exists and is not a folder; give an output folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Results go to a temp folder beside `out` and move in only when every image succeeded,
    # so a bad image among many leaves no partial output.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        names = _predict_into(tmp, predictor, paths, stems, level=level, fmt=fmt,
                              progress=progress)
        out.mkdir(exist_ok=True)
        for name in names:
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [out / name for name in names]


def _calibration_temperature(where: str | Path) -> float:
    """The temperature of ``where`` (a folder holding calibration.json, or the file)."""
    path = Path(where)
    folder = EvalFolder(path.parent if path.name == "calibration.json" else path)
    temperature = folder.temperature()
    if temperature is None:
        raise ConfsegError(f"{folder.calibration_path}: not found; fit it with `confseg evaluate "
                           "RUN [--ensemble RUN2 ...] [--tta flip] --calibrate`")
    return temperature


def _predict_into(folder: Path, predictor: ProbabilityModel, paths: Sequence[Path],
                  stems: Sequence[str], *, level: float, fmt: str,
                  progress: Callable[[int, int], None] | None) -> list[str]:
    """Write every image's outputs into ``folder``; returns the file names."""
    written: list[str] = []
    for n, (path, stem) in enumerate(zip(paths, stems, strict=True)):
        img = read_image(path)
        prob = predictor.probs_many([img])[0]
        if fmt == "npz":
            buf = io.BytesIO()
            np.savez_compressed(buf, prob=prob.astype(np.float16),
                                classes=np.array(predictor.classes))
            atomic_write_bytes(folder / f"{stem}_prob.npz", buf.getvalue())
            written.append(f"{stem}_prob.npz")
        for k, cls in enumerate(predictor.classes):
            if fmt == "png":
                write_png(folder / f"{stem}_prob_{cls}.png",
                          np.rint(prob[k] * 65535).astype(np.uint16))
                written.append(f"{stem}_prob_{cls}.png")
            write_png(folder / f"{stem}_mask_{cls}.png", prob[k] > level)
            written.append(f"{stem}_mask_{cls}.png")
        write_png(folder / f"{stem}_overlay.png",
                  overlay_confidence(to_display(img, grey=True), prob))
        written.append(f"{stem}_overlay.png")
        if progress:
            progress(n + 1, len(paths))
    return written
