"""Pre-annotation: model probabilities shown as a layer and turned into scale levels."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from confseg.annotator.maps import encode_png_b64, quantize_to_scale
from confseg.errors import ConfsegError, PreannotationError
from confseg.io.optional import require

PredictFn = Callable[[np.ndarray], np.ndarray]
"""Image ``(H, W)`` or ``(H, W, C)`` -> ``(K, H, W)`` probabilities in [0, 1], K = classes."""


def load_run_predictor(model_run: str | os.PathLike[str], classes: Sequence[str]) -> PredictFn:
    """A predict function for a training run folder (its best checkpoint).

    Args:
        model_run: A run folder written by ``confseg train``.
        classes: The dataset's classes; the model's channels are reordered to match.

    Raises:
        ConfsegError: the folder is missing or not a run, or the model lacks a class
            (MissingExtraError when torch cannot be imported).
    """
    p = Path(model_run)
    if not p.is_dir():
        raise ConfsegError(
            f"{p}: model run folder not found; pass a folder written by "
            "`confseg train`, or start the annotator without --model"
        )
    # torch is a core dependency; only a broken install lacks it (MissingExtraError, a
    # ConfsegError, names the fix).
    require("torch", None, purpose=f"{p}: pre-annotation")
    from confseg.inference import Predictor

    predictor = Predictor.from_run(p)
    names = list(predictor.classes)
    missing = [c for c in classes if c not in names]
    if missing:
        raise ConfsegError(
            f"{p}: the model predicts {names} but not {missing} of this dataset; "
            "pick a run trained on the dataset's classes"
        )
    order = [names.index(c) for c in classes]

    def predict(image: np.ndarray) -> np.ndarray:
        return np.asarray(predictor.predict(image))[order]

    return predict


class PreAnnotator:
    """Runs a predict function per item (cached) and converts its output for the page.

    Args:
        predict_fn: The model (see :data:`PredictFn`).
        classes: Dataset classes, in the order of the model's channels.
        levels: Confidence scale values (percent).
        cache_size: Items whose probabilities are kept in memory.
    """

    def __init__(
        self,
        predict_fn: PredictFn,
        *,
        classes: Sequence[str],
        levels: Sequence[int],
        cache_size: int = 8,
    ) -> None:
        self.predict_fn = predict_fn
        self.classes = tuple(classes)
        self.levels = tuple(levels)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def probabilities(self, item_id: str, image: np.ndarray) -> np.ndarray:
        """``(K, H, W)`` float32 probabilities of the item (validated, cached)."""
        with self._lock:
            if item_id in self._cache:
                self._cache.move_to_end(item_id)
                return self._cache[item_id]
            try:
                out = np.asarray(self.predict_fn(image), dtype=np.float32)
            except ConfsegError:
                raise
            except Exception as exc:
                raise PreannotationError(
                    f"pre-annotation model failed on item {item_id!r}: {type(exc).__name__}: {exc}"
                ) from exc
            want = (len(self.classes), *image.shape[:2])
            if out.shape != want:
                raise PreannotationError(
                    f"pre-annotation model returned shape {out.shape} for item "
                    f"{item_id!r}; expected {want} (classes x height x width)"
                )
            if not np.all(np.isfinite(out)) or out.min() < -1e-4 or out.max() > 1 + 1e-4:
                raise PreannotationError(
                    f"pre-annotation model returned values outside [0, 1] for item "
                    f"{item_id!r}; it must output probabilities"
                )
            out = np.clip(out, 0.0, 1.0)
            self._cache[item_id] = out
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return out

    def payload(self, item_id: str, image: np.ndarray, minimum: float) -> dict[str, Any]:
        """Probabilities (uint8 percent PNG) and their nearest scale levels, per class."""
        prob = self.probabilities(item_id, image)
        pct = np.rint(prob * 100).astype(np.uint8)
        return {
            "minimum": minimum,
            "probability": {c: encode_png_b64(pct[k]) for k, c in enumerate(self.classes)},
            "levels": {
                c: encode_png_b64(quantize_to_scale(prob[k], self.levels, minimum))
                for k, c in enumerate(self.classes)
            },
        }
