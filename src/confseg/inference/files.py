"""Predict image files to disk: probability maps, binarised masks and overlays."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from confseg.errors import ConfsegError
from confseg.inference.predictor import Predictor
from confseg.io.atomic import atomic_write_bytes
from confseg.io.images import image_shape, read_image, write_png
from confseg.preprocess import to_display
from confseg.viz.overlay import overlay_confidence

FORMATS = ("png", "npz")


def predict_files(run: str | Path, images: Sequence[str | Path], out: str | Path, *,
                  level: float = 0.5, fmt: str = "png", checkpoint: str = "best",
                  calibrated: bool = True,
                  progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Predict image files and write the results, per input image ``<stem>``.

    - ``<stem>_prob_<class>.png`` (16-bit, probability x 65535) or ``<stem>_prob.npz``
      (float16 array ``prob`` of shape (K, H, W) plus ``classes``);
    - ``<stem>_mask_<class>.png`` (0/255, probability > ``level``);
    - ``<stem>_overlay.png`` (the image with coloured probabilities).

    Returns:
        The written paths.
    """
    if fmt not in FORMATS:
        raise ConfsegError(f"format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not 0.0 < level < 1.0:
        raise ConfsegError(f"level={level}; give a probability strictly between 0 and 1")
    paths = [Path(p) for p in images]
    stems = [p.name.split(".")[0] for p in paths]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise ConfsegError(f"two inputs share the name {dup!r}; outputs would collide: rename "
                           "or predict them into different folders")
    for path in paths:  # every input checked (header read) before any model work
        image_shape(path)
    predictor = Predictor.from_run(run, checkpoint=checkpoint, calibrated=calibrated)
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


def _predict_into(folder: Path, predictor: Predictor, paths: Sequence[Path],
                  stems: Sequence[str], *, level: float, fmt: str,
                  progress: Callable[[int, int], None] | None) -> list[str]:
    """Write every image's outputs into ``folder``; returns the file names."""
    written: list[str] = []
    for n, (path, stem) in enumerate(zip(paths, stems, strict=True)):
        img = read_image(path)
        prob = predictor.predict(img)
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
