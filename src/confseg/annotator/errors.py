"""Errors of the annotator's routes, each with the HTTP status it maps to."""

from __future__ import annotations

from confseg.errors import ConfsegError


class AnnotatorError(ConfsegError):
    """A request the annotator refuses; ``status`` is the HTTP status code to answer with."""

    status: int = 400


class NotFoundError(AnnotatorError):
    """An unknown item, class, rater or history version (404)."""

    status = 404


class ConflictError(AnnotatorError):
    """A save whose base version is stale and that cannot be merged (409)."""

    status = 409


class PayloadTooLargeError(AnnotatorError):
    """A request body above the upload cap (413)."""

    status = 413


class InvalidMapError(AnnotatorError):
    """A malformed payload: not PNG, wrong size, values off the scale (422)."""

    status = 422


class ModelError(AnnotatorError):
    """The pre-annotation model is missing or returned something unusable (500/409)."""

    status = 500
