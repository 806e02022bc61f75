"""Small helpers shared by the benchmark scripts (timing, environment, JSON output)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader


def log(msg: str) -> None:
    """Progress/info line on stderr (stdout is reserved for the JSON result)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """Print the result as ONE JSON object on stdout."""
    sys.stdout.write(json.dumps(result, indent=1, sort_keys=False) + "\n")
    sys.stdout.flush()


def pick_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so a wall-clock reading covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def rnd(x: float, digits: int = 3) -> float:
    """Round for display (keeps 3 significant-ish decimals)."""
    return round(float(x), digits)


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and machine facts recorded next to every timing."""
    import pytorch_lightning as pl

    env: dict[str, Any] = {
        "device": device.type if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch_version": torch.__version__,
        "lightning_version": pl.__version__,
        "python_version": platform.python_version(),
        "machine": platform.machine(),
    }
    return env


def bench_loader(*, size: int, batch_size: int, patients: int, workers_default: int
                 ) -> dict[str, Any]:
    """Images/s of SegmentationDataset + ultrasound augmentation through a DataLoader.

    The dataset is ``confseg.synth.generate(patients=patients, views=4, days=2, size=size)``
    with strategy ``threshold:0.6``; the loader is built as ``SegmentationDataModule`` builds
    it, for ``workers_default`` workers, 2 workers, and 2 persistent workers. Each gets a fresh
    dataset (empty cache); epoch 1 decodes the PNGs, epoch 2 reads the in-memory cache (unless
    the workers were restarted, which drops their cache).
    """
    from confseg.data import load_dataset
    from confseg.synth import generate
    from confseg.training.augment import ultrasound_augment
    from confseg.training.torchdata import SegmentationDataset

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="confseg-bench-data-") as tmp:
        t0 = time.perf_counter()
        root = generate(Path(tmp) / "synth", patients=patients, views=4, days=2,
                        size=size, seed=0)
        ds = load_dataset(root)
        out["dataset"] = {"source": "confseg.synth.generate", "items": len(ds.image_items()),
                          "image_size": size, "strategy": "threshold:0.6",
                          "transform": "ultrasound_augment(label_keys=('conf', 'valid'))",
                          "generate_seconds": rnd(time.perf_counter() - t0, 2)}
        configs = {f"workers_{workers_default}": (workers_default, False),
                   "workers_2": (2, False), "workers_2_persistent": (2, True)}
        for name, (workers, persistent) in configs.items():
            sds = SegmentationDataset(ds, size=size, channels=1, strategy="threshold:0.6",
                                      transform=ultrasound_augment(label_keys=("conf", "valid")),
                                      seed=0)
            # As SegmentationDataModule._loader builds it (persistent_workers=False there).
            dl = DataLoader(sds, batch_size=batch_size, shuffle=True, num_workers=workers,
                            drop_last=False, persistent_workers=persistent)
            rates = []
            for epoch in range(2):
                sds.epoch = epoch
                t0, seen = time.perf_counter(), 0
                for b in dl:
                    seen += int(b["image"].shape[0])
                rates.append(seen / (time.perf_counter() - t0))
            out[name] = {"num_workers": workers, "persistent_workers": persistent,
                         "epoch1_uncached_images_per_s": rnd(rates[0], 1),
                         "epoch2_cached_images_per_s": rnd(rates[1], 1)}
            log(f"loader {name}: epoch1 {rates[0]:.1f} img/s, epoch2 {rates[1]:.1f} img/s")
            del dl, sds
    return out


def read_per_case(path: Path) -> list[dict[str, Any]]:
    """A ``per_case.csv`` as rows, metric columns as floats (ids and class names stay text)."""
    from confseg.runs import read_rows

    return read_rows(Path(path))
