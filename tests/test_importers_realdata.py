"""Importers on the real shared datasets (opt-in: skipped when /work/shared/data is absent)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from confseg.data import load_dataset
from confseg.importers import run_import
from confseg.io.images import read_percent_map

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data

pytestmark = pytest.mark.realdata


def data(name: str) -> Path:
    """The shared dataset folder, or skip the test when it is absent."""
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path


def _timed(layout: str, src: Path, dst: Path, **opts) -> tuple[Path, float]:
    t0 = time.perf_counter()
    out = run_import(layout, src, dst, **opts)
    secs = time.perf_counter() - t0
    print(f"\n{layout}: imported in {secs:.1f} s")
    return out, secs


def test_lus_cs541_real(tmp_path):
    src = data("lus-cs541")
    out, _ = _timed("lus-cs541", src, tmp_path / "lus", classes="pleural_line,rib_shadow,rib_line")
    ds = load_dataset(out)
    assert len(ds.items) == 208
    assert ds.patients() == ["din-01", "din-02", "din-03", "man-01"]
    assert Counter(it.view for it in ds.items) == {"L-1": 52, "L-2": 52, "R-1": 52, "R-2": 52}
    counts = Counter(c for it in ds.items for c in it.confidence)
    assert counts == {"pleural_line": 208, "rib_shadow": 200, "rib_line": 178}
    print(f"confidence entries per class: {dict(counts)}")
    it = ds.item("din-01-L-1-V-frame0")
    assert ds.path(it.image).read_bytes() == (src / "image" / f"{it.id}.jpg").read_bytes()
    assert ds.read_image(it).shape == (820, 1124, 3)
    assert set(np.unique(read_percent_map(ds.path(it.confidence["pleural_line"])))) == {0, 100}


def test_qubiq_brain_growth_real(tmp_path):
    out, _ = _timed("multirater", data("qubiq-brain-growth"), tmp_path / "q", class_name="brain")
    ds = load_dataset(out)
    assert len(ds.items) == 31 and len(ds.raters()) == 7
    levels: set[int] = set()
    for it in ds.items:
        levels |= set(np.unique(read_percent_map(ds.path(it.confidence["brain"]))).tolist())
    print(f"confidence levels: {sorted(levels)}")
    assert sorted(levels) == [0, 14, 29, 43, 57, 71, 86, 100]


def test_covid_blues_real(tmp_path):
    out, secs = _timed("covid-blues", data("covid-blues"), tmp_path / "cb")
    ds = load_dataset(out)
    assert len(ds.items) == 362 and len(ds.patients()) == 63
    assert all(it.image is None and it.video for it in ds.items)
    rows = ds.read_clinical()
    assert len(rows) == 63 and {r["patient"] for r in rows} == set(ds.patients())
    with_spo2 = [r for r in rows if r["spo2"]]
    for r in with_spo2:
        assert float(r["sf_ratio"]) == round(float(r["spo2"]) / 0.21, 1)
        assert r["fio2"] == "0.21"
    assert all(r["sf_ratio"] == "" for r in rows if not r["spo2"])
    sev = Counter(it.extra["severity"] for it in ds.items)
    print(
        f"patients with SpO2: {len(with_spo2)}/63; severity counts: {dict(sev)}; "
        f"{secs:.1f} s for 362 videos"
    )
    assert len(with_spo2) == 56
