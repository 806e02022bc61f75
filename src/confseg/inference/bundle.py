"""A deployable model bundle, and its predictor that needs only numpy, Pillow and onnxruntime.

::

    <bundle>/
      configs/metadata.json   classes, input (channels, size, normalisation, letterbox rule),
                              temperature, strategy, model, versions, formats, checks
      models/model.onnx       logits (N, K, S, S) for input (N, C, S, S) float32 in [0, 1]
      models/model.ts         the same network as TorchScript
      summary.json            the run's test metrics

:class:`BundlePredictor` imports no torch: a point-of-care machine runs the bundle with
``pip install numpy pillow onnxruntime`` (``import confseg.inference.bundle`` loads neither
torch nor Lightning).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from confseg.errors import CheckpointError
from confseg.io.optional import require
from confseg.preprocess import to_channels

METADATA = Path("configs") / "metadata.json"
ONNX = Path("models") / "model.onnx"
TORCHSCRIPT = Path("models") / "model.ts"
SUMMARY = Path("summary.json")


def read_metadata(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    """A bundle's ``configs/metadata.json``.

    Raises:
        CheckpointError: not a bundle folder, or unreadable metadata.
    """
    path = Path(bundle) / METADATA
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{bundle}: no {METADATA}; not a confseg bundle (write one with "
                              "`confseg export RUN --out BUNDLE`)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: unreadable; export the bundle again") from None


def _resize(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of ``(C, H, W)`` float32 channel by channel (Pillow, antialiased down)."""
    from PIL import Image

    if x.shape[1:] == (h, w):
        return x
    return np.stack([np.asarray(Image.fromarray(c).resize((w, h), Image.BILINEAR))
                     for c in x.astype(np.float32)])


class BundlePredictor:
    """Per-class probabilities from a bundle's ONNX model (numpy + onnxruntime).

    Args:
        bundle: The bundle folder.
        providers: onnxruntime execution providers (default CPU).
        threads: onnxruntime intra-op threads (None: its default).
    """

    def __init__(self, bundle: str | os.PathLike[str], *,
                 providers: Sequence[str] = ("CPUExecutionProvider",),
                 threads: int | None = None) -> None:
        self.root = Path(bundle)
        self.metadata = read_metadata(bundle)
        ort = require("onnxruntime", "onnx", purpose=f"{bundle}: running the ONNX model")
        if not (self.root / ONNX).is_file():
            raise CheckpointError(f"{self.root / ONNX}: missing; export with --format onnx")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.root / ONNX), opts,
                                            providers=list(providers))
        self.input_name = self.session.get_inputs()[0].name

    @property
    def classes(self) -> list[str]:
        """Class names, in output-channel order."""
        return list(self.metadata["classes"])

    @property
    def size(self) -> int:
        """Square input side."""
        return int(self.metadata["input"]["size"])

    @property
    def channels(self) -> int:
        """Model input channels."""
        return int(self.metadata["input"]["channels"])

    @property
    def temperature(self) -> float:
        """Logits are divided by it before the sigmoid."""
        return float(self.metadata.get("temperature", 1.0))

    def _canvas(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        x = to_channels(image, self.channels)
        h, w = x.shape[1:]
        s = self.size / max(h, w)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        canvas = np.zeros((self.channels, self.size, self.size), np.float32)
        canvas[:, :nh, :nw] = _resize(x, nh, nw)
        return canvas, (h, w, nh, nw)

    def logits_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                    ) -> list[np.ndarray]:
        """Logits ``(K, H, W)`` at each image's size (before the temperature)."""
        out: list[np.ndarray] = []
        for i in range(0, len(images), batch_size):
            prepared = [self._canvas(im) for im in images[i:i + batch_size]]
            x = np.stack([p[0] for p in prepared])
            (z,) = self.session.run(None, {self.input_name: x})
            for zj, (_, (h, w, nh, nw)) in zip(z, prepared, strict=True):
                out.append(_resize(np.ascontiguousarray(zj[:, :nh, :nw]), h, w))
        return out

    def predict_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                     ) -> list[np.ndarray]:
        """Probabilities ``(K, H, W)`` float32 at each image's size."""
        return [(1.0 / (1.0 + np.exp(-z / self.temperature))).astype(np.float32)
                for z in self.logits_many(images, batch_size=batch_size)]

    def probs_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                   ) -> list[np.ndarray]:
        """The same as :meth:`predict_many` (the name an ensemble shares)."""
        return self.predict_many(images, batch_size=batch_size)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Probabilities ``(K, H, W)`` of one image."""
        return self.predict_many([image])[0]
