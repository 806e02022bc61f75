"""Importers: turn an external dataset layout into a native confseg dataset.

Each importer is ``function(src, dst, *, overwrite=False, progress=None, **opts) -> Path``,
writes through :class:`confseg.data.dataset.DatasetWriter` (nothing appears at ``dst`` on
failure) and leaves a dataset that :func:`confseg.data.dataset.load_dataset` accepts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confseg.data import DATASET_JSON
from confseg.errors import ConfsegError, ImportLayoutError
from confseg.importers._common import PathLike, ProgressFn
from confseg.importers.covid_blues import import_covid_blues
from confseg.importers.cvat import import_cvat
from confseg.importers.labelstudio import import_labelstudio
from confseg.importers.lus_cs541 import import_lus_cs541
from confseg.importers.multirater import import_multirater
from confseg.importers.nnunet import import_nnunet
from confseg.io.outputs import check_output_folder

IMPORTERS: dict[str, Callable[..., Path]] = {
    "lus-cs541": import_lus_cs541,
    "multirater": import_multirater,
    "covid-blues": import_covid_blues,
    "nnunet": import_nnunet,
    "cvat": import_cvat,
    "labelstudio": import_labelstudio,
}

_COMMON = ("src", "dst", "overwrite", "progress")


def importer_options(layout: str) -> list[str]:
    """Names of the layout-specific options (keyword arguments) of an importer."""
    fn = _get(layout)
    return [n for n in inspect.signature(fn).parameters if n not in _COMMON]


def _get(layout: str) -> Callable[..., Path]:
    try:
        return IMPORTERS[layout]
    except KeyError:
        raise ImportLayoutError(
            f"unknown layout {layout!r}; known layouts: {', '.join(sorted(IMPORTERS))}"
        ) from None


def run_import(
    layout: str,
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    **opts: Any,
) -> Path:
    """Import ``src`` (in layout ``layout``) into a new native dataset at ``dst``.

    Args:
        layout: A key of :data:`IMPORTERS`.
        src: Source folder (or file, for cvat/labelstudio).
        dst: Destination dataset folder.
        overwrite: Replace ``dst`` if it exists.
        progress: Called as ``progress(done, total)``.
        **opts: Layout-specific options (see :func:`importer_options`).

    Returns:
        The dataset folder.

    Raises:
        ImportLayoutError: unknown layout or a source that does not match it.
        ConfsegError: an unknown or invalid option.
    """
    fn = _get(layout)
    known = importer_options(layout)
    for key in opts:
        if key not in known:
            raise ConfsegError(
                f"unknown option {key!r} for layout {layout!r}; options: "
                f"{', '.join(known) or 'none'}"
            )
    # before any reading: --overwrite may replace only a dataset folder, never the source
    check_output_folder(dst, overwrite=overwrite, kind="dataset folder",
                        looks_like=lambda p: (p / DATASET_JSON).is_file(),
                        inputs=(src, opts.get("images")))
    return fn(src, dst, overwrite=overwrite, progress=progress, **opts)


__all__ = [
    "IMPORTERS",
    "import_covid_blues",
    "import_cvat",
    "import_labelstudio",
    "import_lus_cs541",
    "import_multirater",
    "import_nnunet",
    "importer_options",
    "run_import",
]
