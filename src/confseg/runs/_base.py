"""What every folder owner shares: a root, JSON status files merged atomically, row tables."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

from confseg.errors import RunError
from confseg.io.atomic import atomic_write_text

SPLITS = ("test", "val", "train", "all")
RUNNING, TRAINED, FINISHED, FAILED = "running", "trained", "finished", "failed"
INTERRUPTED = "interrupted"
#: Columns of the per-case tables that stay text (ids may look like numbers).
TEXT_COLUMNS = ("id", "patient", "view", "day", "class", "strategy", "cell")


def strategy_slug(strategy: str) -> str:
    """A strategy's folder name under ``cells/``: ``threshold:0.6`` -> ``threshold-0.6``."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", strategy).strip("-")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A per-case CSV as rows: :data:`TEXT_COLUMNS` as text, the rest as floats (or text).

    Raises:
        RunError: when the file is missing.
    """
    try:
        f = path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise RunError(f"{path}: missing; evaluate the run first") from None
    out = []
    with f:
        for r in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in r.items():
                if k in TEXT_COLUMNS:
                    row[k] = v
                    continue
                try:
                    row[k] = float(v)
                except (TypeError, ValueError):
                    row[k] = v
            out.append(row)
    return out



class _Folder:
    """A folder with a root and JSON status files that are merged atomically."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    @staticmethod
    def _read_dict(path: Path) -> dict[str, Any]:
        """A JSON object file ({} when absent or unreadable)."""
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return {}
        return obj if isinstance(obj, dict) else {}

    @classmethod
    def _merge(cls, path: Path, fields: dict[str, Any]) -> None:
        """Merge ``fields`` into a JSON object file (atomic)."""
        obj = cls._read_dict(path)
        obj.update(fields)
        atomic_write_text(path, json.dumps(obj, indent=1, default=str) + "\n")


