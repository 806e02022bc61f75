"""The per-epoch ``metrics.csv`` kept whole across a resume.

Lightning's ``CSVLogger`` deletes the ``metrics.csv`` of a log folder when it starts, so before
resuming, the rows of finished epochs go to a stash (which also survives a crash of the resumed
run) and are merged back when fitting ends. Rows of epochs the resumed run will redo are
dropped.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from confseg.io.atomic import atomic_write_text

STASH = ".metrics_before_resume.csv"


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file ([] when absent)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """Write rows atomically; the header is the union of their keys in first-seen order."""
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def stash_metrics(metrics_csv: Path, next_epoch: int) -> None:
    """Keep the rows of epochs before ``next_epoch`` in the stash beside ``metrics_csv``."""
    stash = metrics_csv.with_name(STASH)
    rows = read_rows(stash) + read_rows(metrics_csv)
    keep = [r for r in rows if r.get("epoch") and int(float(r["epoch"])) < next_epoch]
    write_rows(stash, keep)


def merge_metrics(metrics_csv: Path) -> None:
    """Put the stashed rows back in front of the resumed run's rows."""
    stash = metrics_csv.with_name(STASH)
    if stash.exists():
        write_rows(metrics_csv, read_rows(stash) + read_rows(metrics_csv))
        stash.unlink()
