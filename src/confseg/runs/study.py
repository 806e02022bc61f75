"""The study folder: the only module that names its files."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from confseg.errors import ConfsegError, RunError
from confseg.io.atomic import atomic_write_text
from confseg.io.outputs import check_output_folder
from confseg.runs._base import _Folder, strategy_slug
from confseg.runs.run import RunFolder


class StudyFolder(_Folder):
    """A study's folder: the spec, the runner's status, the cells and the collected results.

    ::

        studies/<name>/
          study.yaml                  everything needed to rerun the study (a StudySpec)
          status.json                 the runner: pid, host, started, updated, wall seconds
          splits.json                 the patient-level folds every cell shares
          cells/<strategy-slug>/fold_<f>/seed_<s>/   one RunFolder per cell
          results/per_case.csv        every cell's test rows, long format
          results/summary.json        per strategy and metric: mean and patient interval
          results/paired.json         paired differences against the reference strategies
          results/reliability.json    reliability bins per strategy and class
          results/examples/           image, confidence and each strategy's prediction
          logs/<slug>_fold_<f>_seed_<s>.log   each cell worker's output
          report.html                 one self-contained page

    Args:
        root: The study folder.
    """

    # ----- paths ----------------------------------------------------------------------------
    @property
    def spec_path(self) -> Path:
        """``study.yaml``."""
        return self.root / "study.yaml"

    @property
    def status_path(self) -> Path:
        """``status.json``."""
        return self.root / "status.json"

    @property
    def splits_path(self) -> Path:
        """``splits.json``."""
        return self.root / "splits.json"

    @property
    def cells_dir(self) -> Path:
        """``cells/``."""
        return self.root / "cells"

    def cell(self, slug: str, fold: int, seed: int) -> RunFolder:
        """The run folder of one cell: ``cells/<slug>/fold_<f>/seed_<s>/``."""
        return RunFolder(self.cells_dir / slug / f"fold_{fold}" / f"seed_{seed}")

    def strategy_cell(self, strategy: str, fold: int, seed: int) -> RunFolder:
        """The run folder of a strategy's cell (the strategy as written in ``study.yaml``)."""
        return self.cell(strategy_slug(strategy), fold, seed)

    def log_path(self, slug: str, fold: int, seed: int) -> Path:
        """``logs/<slug>_fold_<f>_seed_<s>.log``: the output of the cell's worker."""
        return self.root / "logs" / f"{slug}_fold_{fold}_seed_{seed}.log"

    @property
    def results_dir(self) -> Path:
        """``results/``."""
        return self.root / "results"

    @property
    def per_case_path(self) -> Path:
        """``results/per_case.csv``."""
        return self.results_dir / "per_case.csv"

    @property
    def summary_path(self) -> Path:
        """``results/summary.json``."""
        return self.results_dir / "summary.json"

    @property
    def paired_path(self) -> Path:
        """``results/paired.json``."""
        return self.results_dir / "paired.json"

    @property
    def reliability_path(self) -> Path:
        """``results/reliability.json``."""
        return self.results_dir / "reliability.json"

    @property
    def examples_dir(self) -> Path:
        """``results/examples/``."""
        return self.results_dir / "examples"

    def example_png(self, item_id: str, kind: str) -> Path:
        """``results/examples/<id>_<kind>.png`` (``image``, ``label`` or a strategy slug)."""
        return self.examples_dir / f"{item_id}_{kind}.png"

    @property
    def report_path(self) -> Path:
        """``report.html``."""
        return self.root / "report.html"

    # ----- state ----------------------------------------------------------------------------
    def is_study(self) -> bool:
        """Whether the folder holds a study (its ``study.yaml``)."""
        return self.spec_path.is_file()

    def require(self) -> StudyFolder:
        """Return self, or raise RunError when this is not a study folder."""
        if not self.root.is_dir():
            raise RunError(f"{self.root}: study folder not found")
        if not self.is_study():
            raise RunError(f"{self.root}: no study.yaml; not a confseg study folder "
                           "(start one with `confseg study run`)")
        return self

    def read_spec(self) -> dict[str, Any]:
        """The parsed ``study.yaml``.

        Raises:
            RunError: missing, not YAML or not a mapping.
        """
        import yaml

        self.require()
        try:
            obj = yaml.safe_load(self.spec_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            raise RunError(f"{self.spec_path}: not valid YAML; fix it or start the study "
                           "again with --overwrite") from None
        if not isinstance(obj, dict):
            raise RunError(f"{self.spec_path}: must be a mapping")
        return obj

    def write_spec(self, spec: dict[str, Any]) -> None:
        """Write ``study.yaml`` atomically."""
        import yaml

        atomic_write_text(self.spec_path, yaml.safe_dump(spec, sort_keys=False))

    def read_status(self) -> dict[str, Any]:
        """``status.json`` ({} when absent or unreadable)."""
        return self._read_dict(self.status_path)

    def update_status(self, **fields: Any) -> None:
        """Merge ``fields`` into ``status.json`` (atomic)."""
        self._merge(self.status_path, fields)

    def write_json(self, path: Path, obj: Any) -> Path:
        """Write one of the ``results/*.json`` files atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(obj, indent=1, default=float) + "\n")
        return path

    def read_json(self, path: Path) -> dict[str, Any]:
        """One of the ``results/*.json`` files.

        Raises:
            RunError: missing or unreadable (collect the study first).
        """
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"{path}: missing; no cell has finished yet, or run "
                           f"`confseg study run` on {self.root} again to collect") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RunError(f"{path}: unreadable; rerun `confseg study run` to collect again"
                           ) from None

    def looks_like_study(self) -> bool:
        """Whether an existing folder is recognisably a study folder."""
        return self.spec_path.is_file() or self.status_path.is_file()

    def prepare(self, *, overwrite: bool, inputs: Iterable[str | os.PathLike[str] | None] = ()
                ) -> None:
        """Make an empty folder for a new study (``overwrite`` replaces only a study folder).

        Raises:
            RunError: the folder holds something that may not be replaced.
        """
        try:
            replace = check_output_folder(
                self.root, overwrite=overwrite, kind="study folder",
                looks_like=lambda _: self.looks_like_study(), inputs=inputs,
                not_empty=f"{self.root}: not empty and not this study; pick another --out or "
                          "pass --overwrite")
        except ConfsegError as exc:
            raise RunError(str(exc)) from None
        if replace:
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)


