"""A deployable model bundle, and its predictor: numpy, Pillow and onnxruntime or OpenVINO.

::

    <bundle>/
      configs/metadata.json   classes, input (channels, size, normalisation, letterbox rule),
                              temperature, strategy, model, versions, formats, checks
      models/model.onnx       logits (N, K, S, S) for input (N, C, S, S) float32 in [0, 1]
      models/model.int8.onnx  the same, int8 (QDQ, calibrated on the run's training images)
      models/model.xml, .bin  the fp32 network as OpenVINO IR (``--format openvino``)
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
ONNX_INT8 = Path("models") / "model.int8.onnx"
OPENVINO_IR = Path("models") / "model.xml"
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
PRECISIONS = ("fp32", "bf16", "int8")


def cpu_bf16(core: Any) -> bool:
    """Whether OpenVINO's CPU plugin computes in bf16 here (AVX-512 BF16 or AMX)."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class BundlePredictor:
    """Per-class probabilities from a bundle's ONNX model (numpy + onnxruntime or OpenVINO).

    Args:
        bundle: The bundle folder.
        backend: ``onnxruntime`` or ``openvino`` (the IR when the bundle has one, else the
            same ONNX file).
        precision: ``fp32``; ``bf16`` (OpenVINO, where the CPU has AVX-512 BF16 or AMX);
            ``int8`` (either backend; the bundle's ``model.int8.onnx``).
        providers: onnxruntime execution providers (default CPU).
        threads: Intra-op threads (None: the backend's default).

    Raises:
        CheckpointError: not a bundle, no ONNX model in it (or no int8 model for ``int8``).
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
        if precision == "int8" and not (self.root / ONNX_INT8).is_file():
            raise CheckpointError(f"{self.root / ONNX_INT8}: missing; export with "
                                  "--precision int8")
        self.backend, self.precision = backend, precision
        if backend == "openvino":
            self._run = self._openvino(threads)
        else:
            if precision == "bf16":
                raise ConfsegError("--precision bf16 needs --backend openvino (onnxruntime "
                                   "runs fp32 or int8)")
            self._run = self._onnxruntime(providers, threads)

    def logits_canvas(self, x: np.ndarray) -> np.ndarray:
        """The backend's logits ``(N, K, S, S)`` for a canvas batch ``(N, C, S, S)`` float32."""
        return self._run(x)

    def _sigmoid(self, z: np.ndarray) -> np.ndarray:
        """``sigmoid(z / temperature)`` as float32, in place on one new array (views welcome)."""
        out = np.multiply(z, np.float32(-1.0 / self.temperature), dtype=np.float32)
        np.exp(out, out=out)
        out += np.float32(1.0)
        return np.reciprocal(out, out=out)

    def _onnxruntime(self, providers: Sequence[str], threads: int | None
                     ) -> Callable[[np.ndarray], np.ndarray]:
        ort = require("onnxruntime", "onnx", purpose=f"{self.root}: running the ONNX model")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.model_file), opts,
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
        compiled = core.compile_model(str(self.model_file), "CPU", config)
        request = compiled.create_infer_request()
        return lambda x: np.asarray(request.infer([x])[0])

    @property
    def model_file(self) -> Path:
        """The model file this backend and precision run."""
        if self.precision == "int8":
            return self.root / ONNX_INT8
        if self.backend == "openvino" and (self.root / OPENVINO_IR).is_file():
            return self.root / OPENVINO_IR
        return self.root / ONNX

    @property
    def setting(self) -> str:
        """``backend-precision``, the key of metadata.json's ``precision_cost``."""
        return f"{self.backend}-{self.precision}"

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

    def canvas(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """One image letterboxed onto the model's canvas ``(C, S, S)`` float32, and its box."""
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
            prepared = [self.canvas(im) for im in images[i:i + batch_size]]
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
        np.multiply(np.stack(small)[:, None], np.float32(1.0 / 255.0), out=x[:, :, :nh, :nw])
        return self._sigmoid(self._run(x)[:, :, :nh, :nw]), small


def settings(bundle: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """The ``(backend, precision)`` pairs that can run ``bundle`` on this machine."""
    root = Path(bundle)
    out = [("onnxruntime", "fp32")]
    int8 = (root / ONNX_INT8).is_file()
    if int8:
        out.append(("onnxruntime", "int8"))
    try:
        ov = require("openvino", "openvino", purpose="--backend fast")
    except ConfsegError:  # OpenVINO absent: onnxruntime only
        return out
    out.append(("openvino", "fp32"))
    if cpu_bf16(ov.Core()):
        out.append(("openvino", "bf16"))
    if int8:
        out.append(("openvino", "int8"))
    return out


def fastest(bundle: str | os.PathLike[str], *, threads: int | None = None,
            batch_size: int = 8, seconds: float = 0.5, tolerance: float = 0.01,
            max_dice_cost: float = 0.01) -> tuple[BundlePredictor, dict[str, Any]]:
    """Pick the bundle's fastest backend and precision by measuring them here (``--backend fast``).

    Every setting of :func:`settings` runs ``batch_size`` random frames for about
    ``seconds``. A setting is not chosen when its probabilities differ from onnxruntime fp32
    by more than ``tolerance`` on average, or when metadata.json's ``precision_cost`` (the
    Dice on the run's test split, measured at export) says it costs more than
    ``max_dice_cost`` Dice in some class.

    Returns:
        The chosen predictor, and what was measured (model frames/s, mean and largest
        probability difference from onnxruntime fp32, the Dice cost from export, the choice).
    """
    first = BundlePredictor(bundle, threads=threads)
    candidates = [first] + [BundlePredictor(bundle, backend=b, precision=q, threads=threads)
                            for b, q in settings(bundle)[1:]]
    costs = first.metadata.get("precision_cost", {}).get("settings", {})
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
        cost = costs.get(p.setting, {}).get("dice_cost")
        table[p.setting] = {"model_fps": round(fps, 1),
                            "mean_abs_prob_diff": round(float(diff.mean()), 6),
                            "max_abs_prob_diff": round(float(diff.max()), 5),
                            "dice_cost": cost}
        ok = diff.mean() <= tolerance and (cost is None or cost <= max_dice_cost)
        if ok and fps > best_fps:
            best, best_fps = p, fps
    return best, {"measured": table, "chosen": best.setting, "tolerance": tolerance,
                  "max_dice_cost": max_dice_cost}
