"""Every error a user can cause, one name one meaning.

The CLI prints their message on one line, with no traceback, and exits with status 2. A
message names the file or value at fault and says what to do.
"""

from __future__ import annotations


class ConfsegError(Exception):
    """Base class for every error a user can cause (bad input, bad option, bad file)."""


# ----- data -------------------------------------------------------------------------------
class DatasetError(ConfsegError):
    """A dataset folder or its dataset.json is invalid."""


class SplitError(ConfsegError):
    """A split file or fold request is invalid."""


class ImportLayoutError(ConfsegError):
    """A source folder does not match the layout an importer expects."""


class MediaError(ConfsegError):
    """An image or video file cannot be read or written."""


class ImageTooLargeError(MediaError):
    """An image (or an array an export asks for) is above the pixel limit.

    The limit is ``confseg.io.images.max_image_pixels()``: 50 million pixels unless the
    environment variable ``CONFSEG_MAX_IMAGE_PIXELS`` says otherwise.
    """


# ----- recipes and models -------------------------------------------------------------------
class StrategyError(ConfsegError):
    """A label strategy string cannot be parsed or applied."""


class ConfigError(ConfsegError):
    """A training configuration value is invalid."""


class ModelError(ConfsegError):
    """A model cannot be built: unknown name, missing optional package, bad weights file."""




class MissingExtraError(ConfsegError):
    """An optional dependency is not installed; the message names the extra to install."""


# ----- run folders and what reads them ------------------------------------------------------
class RunError(ConfsegError):
    """A run folder is missing, inconsistent or in a state that forbids the action."""


class Interrupted(ConfsegError):
    """The user pressed Ctrl-C; the message says where the work stands (exit status 130)."""

    exit_code = 130


class CheckpointError(ConfsegError):
    """A checkpoint is missing, unreadable or does not match its run."""


class EvaluationError(ConfsegError):
    """An evaluation request cannot be served."""


class StudyError(ConfsegError):
    """A study folder, spec or executor cannot do what was asked."""




# ----- annotator (each with the HTTP status its route answers with) ---------------------------
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


class PreannotationError(AnnotatorError):
    """The pre-annotation model is missing or returned something unusable (500)."""

    status = 500
