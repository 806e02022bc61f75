"""Run folders: the only module that names their files.

A run folder (written by training, evaluation and the report; read by everything after)::

    runs/<name>/
      config.yaml                everything needed to rerun it (a TrainConfig)
      splits.json                patients per fold
      run.json                   status (running / trained / finished / failed), versions, timings
      checkpoints/best.ckpt       the selected epoch's weights (what evaluate, predict, export read)
      checkpoints/last.ckpt       weights and optimizer state (what --resume reads): after the
                                 first and final epoch, at most every checkpoint_every s between
      metrics.csv                per-epoch log
      progress.png               loss and Dice curves
      summary.json               test metrics with patient-bootstrap intervals
      per_case.csv               one row per test image and class
      per_case_calibrated.csv    the same after temperature scaling (``--calibrate``)
      calibration.json           the fitted temperature (``--calibrate``)
      reliability_<class>.png    reliability diagrams
      reliability.json           their bins (counts and sums per class), for pooling across runs
      examples/                  a few test images: label and prediction overlays
      report.html                one self-contained page
      eval-<split>-<dataset>/    evaluations of other splits or datasets (same file names)
      eval-ensemble-<n>runs[-tta-<tta>]-<split>-<dataset>/, eval-tta-<tta>-<split>-<dataset>/
                                 evaluations of an ensemble led by this run, or of this run
                                 with test-time augmentation (with their own calibration.json)

Statuses: ``running`` while fitting, ``trained`` once fitting ended, ``finished`` once the
run was evaluated, ``interrupted`` after Ctrl-C, ``failed`` (with ``error``) when fitting
raised.
"""


from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

from confseg.config import TrainConfig
from confseg.data import Dataset, Item, Splits, read_splits, write_splits
from confseg.errors import ConfsegError, EvaluationError, RunError
from confseg.io.atomic import atomic_write_text
from confseg.io.outputs import check_output_folder
from confseg.runs._base import FAILED, FINISHED, INTERRUPTED, SPLITS, _Folder, read_rows


class EvalFolder(_Folder):
    """Where one evaluation writes: summary, per-case table, reliability plots, examples.

    A run folder is the evaluation folder of its own test split; evaluations of another split
    or dataset go to :meth:`RunFolder.eval_folder`.

    Args:
        root: The folder.
    """

    @property
    def summary_path(self) -> Path:
        """``summary.json``."""
        return self.root / "summary.json"

    def per_case_path(self, *, calibrated: bool = False) -> Path:
        """``per_case.csv`` (or ``per_case_calibrated.csv``)."""
        return self.root / ("per_case_calibrated.csv" if calibrated else "per_case.csv")

    def per_case_rows(self, *, calibrated: bool = False) -> list[dict[str, Any]]:
        """``per_case.csv`` as rows: metric columns as floats, :data:`TEXT_COLUMNS` as text.

        Raises:
            RunError: when it is missing.
        """
        return read_rows(self.per_case_path(calibrated=calibrated))

    def reliability_png(self, cls: str) -> Path:
        """``reliability_<class>.png``."""
        return self.root / f"reliability_{cls}.png"

    @property
    def reliability_path(self) -> Path:
        """``reliability.json``: per class ``{"count", "sum_p", "sum_c"}`` bin lists."""
        return self.root / "reliability.json"

    def write_reliability(self, bins: dict[str, dict[str, list[float]]]) -> None:
        """Write ``reliability.json`` atomically."""
        atomic_write_text(self.reliability_path, json.dumps(bins) + "\n")

    def reliability(self) -> dict[str, dict[str, list[float]]]:
        """The parsed ``reliability.json`` ({} when absent or unreadable)."""
        return self._read_dict(self.reliability_path)

    @property
    def examples_dir(self) -> Path:
        """``examples/``: overlays of a few images (see :meth:`example_png`)."""
        return self.root / "examples"

    def example_png(self, item_id: str, kind: str) -> Path:
        """``examples/<id>_<kind>.png`` (``kind`` is ``label`` or ``pred``)."""
        return self.examples_dir / f"{item_id}_{kind}.png"

    def has_summary(self) -> bool:
        """Whether an evaluation has written ``summary.json`` here."""
        return self.summary_path.is_file()

    def summary(self) -> dict[str, Any]:
        """The parsed ``summary.json``.

        Raises:
            RunError: when it is missing or not valid JSON.
        """
        try:
            return json.loads(self.summary_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"{self.summary_path}: missing; evaluate the run first "
                           f"(`confseg evaluate {self.root}`)") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RunError(f"{self.summary_path}: not valid JSON; evaluate the run again") from None

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """Write ``summary.json`` atomically."""
        atomic_write_text(self.summary_path, json.dumps(summary, indent=1, default=float) + "\n")
        return self.summary_path

    @property
    def calibration_path(self) -> Path:
        """``calibration.json``: the temperature fitted on the validation split.

        A run folder's holds its own model's temperature; an ensemble (or test-time
        augmentation) evaluation folder holds the temperature of that combined output.
        """
        return self.root / "calibration.json"

    def temperature(self) -> float | None:
        """The fitted temperature from ``calibration.json``, or None."""
        if not self.calibration_path.is_file():
            return None
        try:
            return float(json.loads(self.calibration_path.read_text())["temperature"])
        except (ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
            raise RunError(f"{self.calibration_path}: unreadable; run "
                           f"`confseg evaluate {self._evaluate_args()} --calibrate` again"
                           ) from None

    def _evaluate_args(self) -> str:
        """How ``confseg evaluate`` is called to rewrite this folder (for messages)."""
        return "RUN --ensemble RUN2 ... [--tta flip] --out " + str(self.root)

    def write_temperature(self, temperature: float, **info: Any) -> None:
        """Write ``calibration.json``."""
        atomic_write_text(self.calibration_path, json.dumps(
            {"temperature": float(temperature), **info}, indent=1) + "\n")


class RunFolder(EvalFolder):
    """A training run's folder: paths, status, config, splits, summary, items of a split.

    The config is parsed once per object (:attr:`config`), so pass the object along rather
    than the path.

    Args:
        root: The run folder.
    """

    # ----- paths ----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        """``config.yaml``."""
        return self.root / "config.yaml"

    @property
    def splits_path(self) -> Path:
        """``splits.json``."""
        return self.root / "splits.json"

    @property
    def status_path(self) -> Path:
        """``run.json``."""
        return self.root / "run.json"

    @property
    def checkpoints_dir(self) -> Path:
        """``checkpoints/``."""
        return self.root / "checkpoints"

    def checkpoint(self, which: str = "best") -> Path:
        """``checkpoints/<which>.ckpt`` (``best`` or ``last``)."""
        if which not in ("best", "last"):
            raise RunError(f"checkpoint {which!r}; choose best or last")
        return self.checkpoints_dir / f"{which}.ckpt"

    @property
    def metrics_csv(self) -> Path:
        """``metrics.csv``: the per-epoch log."""
        return self.root / "metrics.csv"

    @property
    def progress_png(self) -> Path:
        """``progress.png``: loss and Dice curves."""
        return self.root / "progress.png"

    @property
    def report_path(self) -> Path:
        """``report.html``."""
        return self.root / "report.html"

    def eval_folder(self, split: str, dataset_name: str) -> EvalFolder:
        """Where an evaluation of another split or dataset writes (``eval-<split>-<name>/``)."""
        return EvalFolder(self.root / f"eval-{split}-{dataset_name}")

    def ensemble_folder(self, n_runs: int, split: str, dataset_name: str, *,
                        tta: str | None = None) -> EvalFolder:
        """Default folder of an evaluation of an ensemble led by this run (or of its TTA).

        ``eval-ensemble-<n>runs[-tta-<tta>]-<split>-<name>/`` for ``n_runs`` > 1, else
        ``eval-tta-<tta>-<split>-<name>/``: never the run folder itself, so the run's own
        summary and calibration stay those of its single model.
        """
        if n_runs < 1 or (n_runs == 1 and not tta):
            raise ValueError("an ensemble folder needs more than one run or a tta")
        parts = ["eval"] + ([f"ensemble-{n_runs}runs"] if n_runs > 1 else [])
        parts += [f"tta-{tta}"] if tta else []
        return EvalFolder(self.root / "-".join([*parts, split, dataset_name]))

    # ----- state ----------------------------------------------------------------------------
    def is_run(self) -> bool:
        """Whether the folder holds a run (its ``config.yaml``)."""
        return self.config_path.is_file()

    def require(self) -> RunFolder:
        """Return self, or raise RunError when this is not a run folder."""
        if not self.root.is_dir():
            raise RunError(f"{self.root}: run folder not found")
        if not self.is_run():
            raise RunError(f"{self.root}: no config.yaml; not a confseg run folder")
        return self

    @cached_property
    def config(self) -> TrainConfig:
        """The run's :class:`~confseg.config.TrainConfig` (parsed once)."""
        self.require()
        return TrainConfig.load(self.config_path)

    def write_config(self, cfg: TrainConfig) -> None:
        """Save ``config.yaml`` and remember it."""
        cfg.save(self.config_path)
        self.__dict__["config"] = cfg

    def splits(self) -> Splits:
        """The run's ``splits.json``."""
        return read_splits(self.splits_path)

    def write_splits(self, splits: Splits) -> None:
        """Save ``splits.json``."""
        write_splits(self.splits_path, splits)

    def read_status(self) -> dict[str, Any]:
        """``run.json`` ({} when absent or unreadable)."""
        return self._read_dict(self.status_path)

    @property
    def status(self) -> str | None:
        """``run.json``'s status, or None."""
        return self.read_status().get("status")

    def update_status(self, **fields: Any) -> None:
        """Merge ``fields`` into ``run.json`` (atomic)."""
        self._merge(self.status_path, fields)

    def _evaluate_args(self) -> str:
        return str(self.root)

    def looks_like_run(self) -> bool:
        """Whether an existing folder is recognisably a run folder (config.yaml or run.json)."""
        return self.config_path.is_file() or self.status_path.is_file()

    def prepare(self, *, overwrite: bool, inputs: Iterable[str | os.PathLike[str] | None] = ()
                ) -> None:
        """Make an empty folder for a new run.

        ``overwrite`` replaces only a folder that is a run folder, never one of ``inputs`` (the
        dataset, a splits file, encoder weights), a folder holding them, the working directory
        or home.

        Raises:
            RunError: the folder holds something that may not be replaced.
        """
        run = self.root
        state = self.status
        if state in (FAILED, INTERRUPTED) and not self.checkpoint("last").exists():
            overwrite = True  # it stopped before its first epoch ended: nothing to keep
        if state == FINISHED:
            hint = f"{run}: already holds a finished run; pick another --out or pass --overwrite"
        else:
            hint = (f"{run}: not empty (run status: {state or 'unknown'}); continue it with "
                    f"`confseg train --resume {run}` or pass --overwrite")
        try:
            replace = check_output_folder(run, overwrite=overwrite, kind="run folder",
                                          looks_like=lambda _: self.looks_like_run(),
                                          inputs=inputs, not_empty=hint)
        except ConfsegError as exc:
            raise RunError(str(exc)) from None
        if replace:
            shutil.rmtree(run)
        run.mkdir(parents=True, exist_ok=True)
        self.__dict__.pop("config", None)

    # ----- items ----------------------------------------------------------------------------
    def items(self, ds: Dataset, split: str) -> list[Item]:
        """Image items of ``split`` (``test``, ``val``, ``train`` or ``all``) for the run's fold.

        Raises:
            EvaluationError: an unknown split, or a split other than ``all`` on a dataset that
                is not the run's training data.
        """
        if split not in SPLITS:
            raise EvaluationError(f"split {split!r}; choose one of {', '.join(SPLITS)}")
        if split == "all":
            return ds.image_items()
        if not self.is_training_data(ds):
            raise EvaluationError(f"{ds.root} is not the run's training data; only --split all "
                                  "makes sense on other data")
        train_p, val_p, test_p = self.config.partition(self.splits())
        pats = set({"train": train_p, "val": val_p, "test": test_p}[split])
        return [it for it in ds.image_items() if it.patient in pats]

    def partition(self) -> dict[str, set[str]]:
        """The patients of the run's ``train``, ``val`` and ``test`` splits (as :meth:`items`)."""
        train_p, val_p, test_p = self.config.partition(self.splits())
        return {"train": set(train_p), "val": set(val_p), "test": set(test_p)}

    def is_training_data(self, ds: Dataset) -> bool:
        """Whether ``ds`` is the dataset this run was trained on."""
        return Path(ds.root).resolve() == Path(self.config.data).resolve()


