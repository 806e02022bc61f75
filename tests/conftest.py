"""Shared tiny fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from confseg.data import DatasetWriter

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(name: str) -> Path:
    """Path of a shared real dataset, skipping the test when it is absent."""
    p = SHARED_DATA / name
    if not p.is_dir():
        pytest.skip(f"real dataset {p} not present")
    return p


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width x height`` (a decompression bomb's header).

    A real 1x1 PNG with the IHDR width/height rewritten (and its CRC recomputed): PIL reads
    the claimed size from the header, decoding would fail (or allocate the claimed size).
    """
    import io
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    b = bytearray(buf.getvalue())
    assert b[12:16] == b"IHDR"
    b[16:24] = struct.pack(">II", width, height)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    path.write_bytes(bytes(b))
    return path


def write_tiny_dataset(root: Path, *, patients: int = 4, per_patient: int = 2, size=(32, 40),
                       classes=("a", "b"), raters: int = 0, seed: int = 0, ignore: bool = False,
                       rgb: bool = False) -> Path:
    """A small native dataset with random images and level-valued confidence."""
    rng = np.random.default_rng(seed)
    h, w = size
    with DatasetWriter(root, name="tiny", classes=classes) as wr:
        for p in range(patients):
            for k in range(per_patient):
                shape = (h, w, 3) if rgb else (h, w)
                img = rng.integers(0, 256, shape, dtype=np.uint8)
                conf = {}
                for c in classes:
                    m = np.zeros((h, w), np.float32)
                    y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
                    m[y0:y0 + h // 3, x0:x0 + w // 3] = rng.choice([0.2, 0.4, 0.6, 0.8, 1.0])
                    conf[c] = m
                rat = {}
                for r in range(raters):
                    rat[f"r{r + 1}"] = {c: conf[c] >= rng.choice([0.2, 0.6]) for c in classes}
                ign = None
                if ignore:
                    ign = np.zeros((h, w), bool)
                    ign[:, :2] = True
                wr.add(item_id=f"p{p}_{k}", patient=f"p{p}", view=f"v{k}", day=0, image=img,
                       confidence=conf, raters=rat or None, ignore=ign)
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A 4-patient, 2-class tiny dataset folder."""
    return write_tiny_dataset(tmp_path / "ds")


@pytest.fixture(autouse=True)
def _fixed_threads(monkeypatch):
    """In-process CLI calls must not retune this process's torch threads (the busy-machine
    default of `confseg.cli.set_threads`): tests that compare runs need one thread count."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))


def random_predictor(classes=("a", "b"), size: int = 64, model: str = "unet-resnet18"):
    """A Predictor around a seeded, untrained network (no training needed)."""
    import torch

    from confseg.inference import Predictor
    from confseg.models import create_model
    from confseg.models.spec import ModelSpec

    torch.manual_seed(0)
    spec = ModelSpec(name=model, in_channels=1, class_names=tuple(classes), size=size)
    return Predictor(create_model(model, in_channels=1, classes=len(classes), size=size), spec)


def write_clip(path: Path, *, frames: int, shape=(90, 120), start: float = 60.0,
               step: float = 8.0) -> Path:
    """A grey MP4 whose frames brighten by ``step`` per frame (seeded noise)."""
    from confseg.synth.video import write_mp4

    rng = np.random.default_rng(0)
    write_mp4(path, [np.clip(rng.normal(start + step * i, 20, shape), 0, 255).astype(np.uint8)
                     for i in range(frames)])
    return path
