"""The downstream folder, re-exported: :mod:`confseg.runs` owns its layout and tables.

``DownstreamFolder`` lives in :mod:`confseg.runs` (floor 3, the module that names every
folder's files) so that the report, a sibling of ``confseg.downstream``, can read it too.
"""

from confseg.runs import (
    ACQUISITION,
    ANNOTATION,
    CLINICAL,
    PLUS_ACQ,
    RAW,
    DownstreamFolder,
    read_table,
    write_table,
)

__all__ = ["ACQUISITION", "ANNOTATION", "CLINICAL", "PLUS_ACQ", "RAW", "DownstreamFolder",
           "read_table", "write_table"]
