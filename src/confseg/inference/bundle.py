"""A deployable model bundle, and its predictor: numpy, Pillow and onnxruntime or OpenVINO.

::

    <bundle>/
      configs/metadata.json   classes, input (channels, size, normalisation, letterbox rule),
                              temperature, strategy, model, versions, formats, checks
      models/model.onnx       logits (N, K, S, S) for input (N, C, S, S) float32 in [0, 1]
      models/model.ts         the same network as TorchScript
      summary.json            the run's test metrics

:class:`BundlePredictor` imports no torch: a point-of-care machine runs the bundle with
``pip install numpy pillow onnxruntime`` (or ``openvino``; ``import confseg.inference.bundle``
loads neither torch nor Lightning).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from confseg.errors import CheckpointError, ConfsegError
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


BACKENDS = ("onnxruntime", "openvino")  # and "fast" in the CLI: :func:`fastest` picks
PRECISIONS = ("fp32", "bf16")


def cpu_bf16(core: Any) -> bool:
    """Whether OpenVINO's CPU plugin computes in bf16 here (AVX-512 BF16 or AMX)."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class BundlePredictor:
    """Per-class probabilities from a bundle's ONNX model (numpy + onnxruntime or OpenVINO).

    Args:
        bundle: The bundle folder.
        backend: ``onnxruntime`` (fp32) or ``openvino`` (reads the same ONNX file; fp32, or
            bf16 where the CPU has AVX-512 BF16 or AMX).
        precision: ``fp32`` or ``bf16`` (OpenVINO only).
        providers: onnxruntime execution providers (default CPU).
        threads: Intra-op threads (None: the backend's default).

    Raises:
        CheckpointError: not a bundle, no ONNX model in it.
        ConfsegError: an unknown backend or precision, bf16 without OpenVINO or on a CPU
            without bf16, or the backend's package missing.
    """

    def __init__(self, bundle: str | os.PathLike[str], *, backend: str = "onnxruntime",
                 precision: str = "fp32",
                 providers: Sequence[str] = ("CPUExecutionProvider",),
                 threads: int | None = None) -> None:
        self.root = Path(bundle)
        self.metadata = read_metadata(bundle)
        if backend not in BACKENDS:
            raise ConfsegError(f"--backend {backend!r}; choose {' or '.join(BACKENDS)}")
        if precision not in PRECISIONS:
            raise ConfsegError(f"--precision {precision!r}; choose {' or '.join(PRECISIONS)}")
        if not (self.root / ONNX).is_file():
            raise CheckpointError(f"{self.root / ONNX}: missing; export with --format onnx")
        self.backend, self.precision = backend, precision
        if backend == "openvino":
            self._run = self._openvino(threads)
        else:
            if precision != "fp32":
                raise ConfsegError("--precision bf16 needs --backend openvino (onnxruntime "
                                   "runs the fp32 model)")
            self._run = self._onnxruntime(providers, threads)

    def logits_canvas(self, x: np.ndarray) -> np.ndarray:
        """The backend's logits ``(N, K, S, S)`` for a canvas batch ``(N, C, S, S)`` float32."""
        return self._run(x)

    def _sigmoid(self, z: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-z / self.temperature))).astype(np.float32)

    def _onnxruntime(self, providers: Sequence[str], threads: int | None
                     ) -> Callable[[np.ndarray], np.ndarray]:
        ort = require("onnxruntime", "onnx", purpose=f"{self.root}: running the ONNX model")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.root / ONNX), opts,
                                            providers=list(providers))
        self.input_name = self.session.get_inputs()[0].name
        return lambda x: self.session.run(None, {self.input_name: x})[0]

    def _openvino(self, threads: int | None) -> Callable[[np.ndarray], np.ndarray]:
        ov = require("openvino", "openvino", purpose="--backend openvino")
        core = ov.Core()
        if self.precision == "bf16" and not cpu_bf16(core):
            raise ConfsegError("--precision bf16: this CPU has neither AVX-512 BF16 nor AMX; "
                               "use fp32")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT":
                                  "bf16" if self.precision == "bf16" else "f32",
                                  "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = core.compile_model(str(self.root / ONNX), "CPU", config)
        request = compiled.create_infer_request()
        return lambda x: np.asarray(request.infer([x])[0])

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
            z = self._run(np.stack([p[0] for p in prepared]))
            for zj, (_, (h, w, nh, nw)) in zip(z, prepared, strict=True):
                out.append(_resize(np.ascontiguousarray(zj[:, :nh, :nw]), h, w))
        return out

    def predict_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                     ) -> list[np.ndarray]:
        """Probabilities ``(K, H, W)`` float32 at each image's size."""
        return [self._sigmoid(z) for z in self.logits_many(images, batch_size=batch_size)]

    def probs_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                   ) -> list[np.ndarray]:
        """The same as :meth:`predict_many` (the name an ensemble shares)."""
        return self.predict_many(images, batch_size=batch_size)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Probabilities ``(K, H, W)`` of one image."""
        return self.predict_many([image])[0]

    def canvas_probs(self, frames: Sequence[np.ndarray]
                     ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The video fast path: frames of one size, letterboxed once, probabilities on the canvas.

        Args:
            frames: ``(H, W)`` uint8 grey frames, all of the same size.

        Returns:
            ``(prob, small)``: probabilities ``(N, K, h, w)`` float32 at the frame's scale on
            the canvas (longer side = the model size), and the frames at that scale (uint8).
        """
        from PIL import Image

        h, w = frames[0].shape[:2]
        s = self.size / max(h, w)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        small = [f if (h, w) == (nh, nw) else np.asarray(
            Image.fromarray(f).resize((nw, nh), Image.BILINEAR)) for f in frames]
        x = np.zeros((len(frames), self.channels, self.size, self.size), np.float32)
        x[:, :, :nh, :nw] = np.stack(small)[:, None].astype(np.float32) / 255.0
        return self._sigmoid(self._run(x)[:, :, :nh, :nw]), small


def fastest(bundle: str | os.PathLike[str], *, threads: int | None = None,
            batch_size: int = 8, seconds: float = 0.5, tolerance: float = 0.01
            ) -> tuple[BundlePredictor, dict[str, Any]]:
    """Pick the bundle's fastest backend and precision by measuring them here (``--backend fast``).

    Every available setting (onnxruntime fp32, OpenVINO fp32, OpenVINO bf16 where the CPU
    has it) runs ``batch_size`` random frames for about ``seconds``; a setting whose
    probabilities differ from onnxruntime fp32 by more than ``tolerance`` on average is not
    chosen (the largest difference is reported too: bf16 reaches about 0.01 on random
    input, and cost 0.0002 Dice on real frames, docs/results.md).

    Returns:
        The chosen predictor, and what was measured (model frames/s, mean and largest
        probability difference from onnxruntime fp32 of each setting, the choice).
    """
    first = BundlePredictor(bundle, threads=threads)
    candidates = [first]
    try:
        ov = require("openvino", "openvino", purpose="--backend fast")
        candidates.append(BundlePredictor(bundle, backend="openvino", threads=threads))
        if cpu_bf16(ov.Core()):
            candidates.append(BundlePredictor(bundle, backend="openvino", precision="bf16",
                                              threads=threads))
    except ConfsegError:  # OpenVINO absent: onnxruntime is the only choice
        pass
    x = np.random.default_rng(0).random((batch_size, first.channels, first.size, first.size),
                                        dtype=np.float32)
    ref = first._sigmoid(first.logits_canvas(x))
    table: dict[str, Any] = {}
    best, best_fps = first, -1.0
    for p in candidates:
        prob = p._sigmoid(p.logits_canvas(x))  # also the warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n == 0:
            p.logits_canvas(x)
            n += batch_size
        fps = n / (time.perf_counter() - t0)
        diff = np.abs(prob - ref)
        table[f"{p.backend}-{p.precision}"] = {"model_fps": round(fps, 1),
                                                "mean_abs_prob_diff": round(float(diff.mean()), 6),
                                                "max_abs_prob_diff": round(float(diff.max()), 5)}
        if diff.mean() <= tolerance and fps > best_fps:
            best, best_fps = p, fps
    return best, {"measured": table, "chosen": f"{best.backend}-{best.precision}",
                  "tolerance": tolerance}
