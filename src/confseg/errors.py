"""Errors a user can cause. The CLI prints their message on one line, no traceback."""

from __future__ import annotations


class ConfsegError(Exception):
    """Base class for every error a user can cause (bad input, bad option, bad file)."""


class DatasetError(ConfsegError):
    """A dataset folder or its dataset.json is invalid."""


class StrategyError(ConfsegError):
    """A label strategy string cannot be parsed or applied."""


class SplitError(ConfsegError):
    """A split file or fold request is invalid."""


class ImportLayoutError(ConfsegError):
    """A source folder does not match the layout an importer expects."""


class MediaError(ConfsegError):
    """An image or video file cannot be read or written."""
