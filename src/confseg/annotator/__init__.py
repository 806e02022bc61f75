"""The confidence annotator: a local web app in which clinicians paint per-pixel confidence."""

from confseg.annotator.app import create_app
from confseg.annotator.server import serve
from confseg.annotator.store import AnnotationStore

__all__ = ["AnnotationStore", "create_app", "serve"]
