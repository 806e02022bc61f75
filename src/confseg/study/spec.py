"""StudySpec: what a study trains (strategies x folds x seeds on one base recipe), as YAML.

A study is identified by its spec: rerunning ``confseg study run`` with the same spec on the
same folder continues it; a different spec is refused (start another folder, or
``--overwrite``). How it runs (jobs, threads, executor) is not part of the spec.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confseg.config import TrainConfig
from confseg.errors import ConfigError, ConfsegError
from confseg.metrics.segmentation import LEVELS
from confseg.runs import StudyFolder, strategy_slug
from confseg.targets import parse_strategy

#: The study sets these per cell; the base recipe may not.
CELL_KEYS = ("data", "out", "strategy", "fold", "seed", "splits", "k", "split_seed")
#: Default paired references and evaluation references.
DEFAULT_COMPARE = ("threshold:0", "threshold:0.5")
DEFAULT_REFERENCES = ("any", "0.6")
DEFAULT_STRATEGIES = ("threshold:0", "threshold:0.5", "threshold:0.6", "threshold:0.8",
                      "threshold:1", "soft", "ignore:0.2-0.6", "weighted", "rater")


def reference_metric(level: str) -> str:
    """``any`` -> ``dice@any``; ``0.6`` -> ``dice@0.6`` (the level spelled as evaluated).

    Raises:
        ValueError: a level the evaluation does not measure.
    """
    if level == "any":
        return "dice@any"
    try:
        value = float(level)
    except ValueError:
        value = math.nan
    for name, v in LEVELS:
        if name != "any" and math.isclose(v, value):
            return f"dice@{name}"
    raise ValueError(f"reference level {level!r}; choose any or one of "
                     f"{', '.join(n for n, _ in LEVELS if n != 'any')}")


def slug(strategy: str) -> str:
    """Folder name of a strategy: ``threshold:0.6`` -> ``threshold-0.6``."""
    return strategy_slug(strategy)


@dataclass(frozen=True)
class Cell:
    """One training run of a study: a strategy on one fold with one seed."""

    strategy: str
    fold: int
    seed: int

    @property
    def slug(self) -> str:
        """The strategy's folder name."""
        return slug(self.strategy)

    @property
    def key(self) -> str:
        """``<slug>/fold_<f>/seed_<s>``: the cell's path under ``cells/``."""
        return f"{self.slug}/fold_{self.fold}/seed_{self.seed}"


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """A study: every strategy trained on every fold with every seed, on one base recipe.

    Args:
        data: The dataset folder.
        strategies: Label strategies (canonical spelling; duplicates refused).
        k: Patient-level folds; every patient is tested once per seed.
        seeds: Number of seeds (``0 .. seeds-1``).
        split_seed: Seed of the patient split shared by every cell.
        base: TrainConfig options for every cell (not those in :data:`CELL_KEYS`).
        references: Confidence levels the headline Dice is measured against (``any`` = every
            marked pixel), plus the synthetic truth where the dataset has it.
        compare: Reference strategies of the paired comparisons (those in ``strategies``).
        n_boot: Bootstrap replicates of every interval.
    """

    data: str
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    k: int = 5
    seeds: int = 1
    split_seed: int = 0
    base: dict[str, Any] = field(default_factory=dict)
    references: tuple[str, ...] = DEFAULT_REFERENCES
    compare: tuple[str, ...] = DEFAULT_COMPARE
    n_boot: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", str(Path(self.data).resolve()))
        canon = []
        for s in self.strategies:
            c = str(parse_strategy(s))
            if c in canon:
                raise ConfigError(f"strategy {s!r} is given twice; give each strategy once")
            canon.append(c)
        if not canon:
            raise ConfigError("give at least one strategy (--strategies soft threshold:0.6 ...)")
        slugs = [slug(c) for c in canon]
        if len(set(slugs)) != len(slugs):
            raise ConfigError(f"strategies {canon} map to the same folder name; rename one")
        object.__setattr__(self, "strategies", tuple(canon))
        object.__setattr__(self, "compare", tuple(str(parse_strategy(s)) for s in self.compare))
        object.__setattr__(self, "references", tuple(str(r) for r in self.references))
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 2:
            raise ConfigError(f"--folds {self.k!r}: give a number of folds >= 2")
        if not isinstance(self.seeds, int) or isinstance(self.seeds, bool) or self.seeds < 1:
            raise ConfigError(f"--seeds {self.seeds!r}: give a number >= 1")
        if self.n_boot < 10:
            raise ConfigError(f"n_boot={self.n_boot}; use at least 10 bootstrap replicates")
        for r in self.references:
            try:
                reference_metric(r)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        clash = sorted(set(self.base) & set(CELL_KEYS))
        if clash:
            raise ConfigError(f"{clash[0]} is set by the study for each cell; do not give it in "
                              "the base recipe (--set / --config)")
        self.cell_config(Cell(self.strategies[0], 0, 0), Path("."))  # a bad option fails now

    # ----- cells ----------------------------------------------------------------------------
    def cells(self) -> list[Cell]:
        """Every cell, seed-major then fold then strategy (early results cover all strategies)."""
        return [Cell(s, f, seed) for seed in range(self.seeds) for f in range(self.k)
                for s in self.strategies]

    def cell_config(self, cell: Cell, root: Path) -> TrainConfig:
        """The TrainConfig of one cell of the study in ``root``."""
        folder = StudyFolder(root)
        opts = {**self.base, "data": self.data, "out": str(folder.cell(cell.slug, cell.fold,
                                                                       cell.seed).root),
                "strategy": cell.strategy, "fold": cell.fold, "seed": cell.seed, "k": self.k,
                "split_seed": self.split_seed}
        if folder.splits_path.is_file():
            opts["splits"] = str(folder.splits_path)
        return TrainConfig.from_dict(opts, where="study base recipe")

    # ----- YAML -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict for ``study.yaml``."""
        d = dataclasses.asdict(self)
        for key in ("strategies", "references", "compare"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, obj: dict[str, Any], *, where: str = "study.yaml") -> StudySpec:
        """Build from a dict, naming unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        spec = {k: v for k, v in obj.items() if k in names}
        unknown = sorted(set(obj) - names - {"run"})
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known: {sorted(names)}")
        for key in ("strategies", "references", "compare"):
            if key in spec:
                spec[key] = tuple(spec[key])
        try:
            return cls(**spec)
        except ConfsegError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @classmethod
    def load(cls, folder: StudyFolder) -> StudySpec:
        """The spec of a study folder."""
        return cls.from_dict(folder.read_spec(), where=str(folder.spec_path))

    def differences(self, other: StudySpec) -> list[str]:
        """The keys where ``other`` differs from this spec."""
        a, b = self.to_dict(), other.to_dict()
        return [k for k in a if a[k] != b.get(k)]
