"""Optional dependencies: import one, or say in one line which extra installs it.

Every optional import (nibabel, pydicom, fastapi, uvicorn, ...) goes through :func:`require`,
so a missing package always reads the same way::

    reading NIfTI needs nibabel: pip install 'confseg[medical]'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from confseg.errors import MissingExtraError


def missing_extra_message(module: str, extra: str | None, *, purpose: str) -> str:
    """The one-line message for a missing optional module (``extra=None``: a core dependency)."""
    install = f"pip install 'confseg[{extra}]'" if extra else "pip install confseg"
    return f"{purpose} needs {module}: {install}"


def require(module: str, extra: str | None, *, purpose: str) -> ModuleType:
    """Import ``module``, or raise a one-line error naming the extra that installs it.

    Args:
        module: Dotted module name, e.g. ``"nibabel"``.
        extra: The confseg extra that installs it (``"medical"``), or None for a core
            dependency (the message then says to reinstall confseg).
        purpose: What needs the module, leading the message (e.g. ``"x.nii: reading NIfTI"``).

    Returns:
        The imported module.

    Raises:
        MissingExtraError: the module (or one it needs) cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(missing_extra_message(module, extra, purpose=purpose)) from exc
