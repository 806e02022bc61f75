"""Folder owners: run, study and downstream folders; each module names its folder's files.

- :mod:`confseg.runs.run`: :class:`EvalFolder`, :class:`RunFolder` (``runs/<name>/``),
- :mod:`confseg.runs.study`: :class:`StudyFolder` (``studies/<name>/``),
- :mod:`confseg.runs.downstream`: :class:`DownstreamFolder` (``downstream/<name>/``).
"""

from confseg.runs._base import (
    FAILED,
    FINISHED,
    INTERRUPTED,
    RUNNING,
    SPLITS,
    TEXT_COLUMNS,
    TRAINED,
    read_rows,
    strategy_slug,
)
from confseg.runs.downstream import (
    ACQUISITION,
    ANNOTATION,
    CLINICAL,
    PLUS_ACQ,
    RAW,
    DownstreamFolder,
    read_table,
    write_table,
)
from confseg.runs.run import EvalFolder, RunFolder
from confseg.runs.study import StudyFolder

__all__ = ["ACQUISITION", "ANNOTATION", "CLINICAL", "FAILED", "FINISHED", "INTERRUPTED",
           "PLUS_ACQ", "RAW", "RUNNING", "SPLITS", "TEXT_COLUMNS", "TRAINED", "DownstreamFolder",
           "EvalFolder", "RunFolder",
           "StudyFolder", "read_rows", "read_table", "strategy_slug", "write_table"]
