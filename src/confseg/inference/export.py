"""Export a run as a deployable bundle with MONAI's verified converters (TorchScript, ONNX).

The bundle's layout and its torch-free predictor are in :mod:`confseg.inference.bundle`. Both
converters run with ``verify=True``: MONAI compares the exported model's output with the
eager model's on a test input and refuses a mismatch; confseg then checks the ONNX model
under onnxruntime at a second input and records the largest difference in metadata.json.

Reduced precision: ``int8`` is onnxruntime's static QDQ quantisation (per-channel int8
weights, uint8 activations) calibrated on up to 64 of the run's training images, letterboxed
as at inference; ``bf16`` is a runtime setting of OpenVINO and needs no file. The Dice cost of
every setting that runs here is measured on the run's test split and written into
metadata.json (``precision_cost``), where ``--backend fast`` reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from confseg.errors import ConfsegError
from confseg.inference.bundle import (
    METADATA,
    ONNX,
    ONNX_INT8,
    OPENVINO_IR,
    PRECISIONS,
    SUMMARY,
    TORCHSCRIPT,
    BundlePredictor,
    settings,
)
from confseg.inference.predictor import Predictor
from confseg.io.outputs import check_output_folder
from confseg.models.registry import model_info
from confseg.runs import RunFolder

FORMATS = ("torchscript", "onnx", "openvino")
#: Training images the int8 model is calibrated on (evenly spaced over the run's train split).
CALIBRATION_IMAGES = 64
NORMALISATION = ("uint8 / 255; other integers / their maximum; floats as they are when in "
                 "[0, 1], else min-max scaled; grey repeated or RGB averaged to the channels")
LETTERBOX = ("scale so the longer side is `size` (bilinear, antialiased), keep the aspect "
             "ratio, pad bottom and right with 0; to invert, crop the image region of the "
             "output and resize it back (bilinear)")


def default_formats() -> list[str]:
    """Every format whose converter is installed here (``openvino`` needs its package)."""
    import importlib.util

    return [f for f in FORMATS if f != "openvino" or importlib.util.find_spec("openvino")]


def export_run(run: str | os.PathLike[str] | RunFolder, out: str | os.PathLike[str], *,
               formats: Sequence[str] | None = None, precisions: Sequence[str] = PRECISIONS,
               checkpoint: str = "best", overwrite: bool = False,
               measure: bool = True) -> Path:
    """Write ``out`` as a bundle of ``run``'s model (atomic: a temp folder, then rename).

    Args:
        run: Run folder.
        out: Bundle folder.
        formats: ``torchscript``, ``onnx`` and/or ``openvino`` (the IR; needs ``onnx``);
            None: :func:`default_formats`.
        precisions: ``fp32`` (always written), ``bf16`` (measured only: a runtime setting),
            ``int8`` (writes ``models/model.int8.onnx``; needs ``onnx``).
        checkpoint: ``best`` or ``last``.
        overwrite: Replace an existing bundle.
        measure: Measure each setting's Dice on the run's test split into metadata.json.

    Raises:
        ConfsegError: an unknown format or precision, int8 or openvino without onnx, an
            output folder that may not be replaced, or a converter whose exported model does
            not match the eager one.
    """
    formats = default_formats() if formats is None else list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfsegError(f"--format {bad[0] if bad else '(none)'}; choose from "
                           f"{', '.join(FORMATS)}")
    bad = [q for q in precisions if q not in PRECISIONS]
    if bad:
        raise ConfsegError(f"--precision {bad[0]}; choose from {', '.join(PRECISIONS)}")
    needs_onnx = [n for n in ("openvino", "int8") if n in (*formats, *precisions)]
    if needs_onnx and "onnx" not in formats:
        raise ConfsegError(f"{needs_onnx[0]} is made from the ONNX model; add --format onnx")
    folder = (run if isinstance(run, RunFolder) else RunFolder(run)).require()
    out = Path(out)
    check_output_folder(out, overwrite=overwrite, kind="bundle folder",
                        looks_like=lambda p: (p / METADATA).is_file(), inputs=[folder.root])
    predictor = Predictor.from_run(folder, checkpoint=checkpoint)
    model, spec = predictor.model.eval(), predictor.spec
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (tmp / "models").mkdir()
        (tmp / "configs").mkdir()
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(1, spec.in_channels, spec.size, spec.size, generator=gen)
        files: dict[str, str] = {}
        checks: dict[str, Any] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if "torchscript" in formats:
                # an instance may not script where its registered name does (dynunet with
                # deep-supervision heads): it says so itself
                trace = "trace" in (model_info(spec.name).torchscript,
                                    getattr(model, "torchscript", "script"))
                write_torchscript(model, x, tmp / TORCHSCRIPT, trace=trace)
                files["torchscript"] = str(TORCHSCRIPT)
            if "onnx" in formats:
                write_onnx(model, x, tmp / ONNX)
                files["onnx"] = str(ONNX)
        if "openvino" in formats:
            _openvino_ir(tmp / ONNX, tmp / OPENVINO_IR)
            files["openvino"] = str(OPENVINO_IR)
        if folder.has_summary():
            shutil.copyfile(folder.summary_path, tmp / SUMMARY)
        meta = _metadata(folder, predictor, files)
        (tmp / METADATA).write_text(json.dumps(meta, indent=1) + "\n")
        if "int8" in precisions:
            meta["int8"] = _int8(tmp, folder)
            files["onnx-int8"] = str(ONNX_INT8)
        if "onnx" in formats:
            checks["onnx_vs_eager_max_abs_prob"] = _check_onnx(tmp, predictor)
        meta["checks"] = checks
        if measure and "onnx" in formats:
            meta["precision_cost"] = precision_cost(tmp, folder, predictor,
                                                    precisions=precisions)
        (tmp / METADATA).write_text(json.dumps(meta, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_torchscript(model: torch.nn.Module, x: torch.Tensor, path: Path, *, trace: bool
                      ) -> None:
    """Save ``model`` as TorchScript with MONAI's verified converter (outputs checked on ``x``).

    Args:
        model: The network in eval mode.
        x: An input batch (the bundle's canvas size).
        path: The ``.ts`` file.
        trace: Trace rather than script (``ModelInfo.torchscript == "trace"``).

    Raises:
        ConfsegError: the conversion fails or its outputs differ (rtol 1e-4, atol 1e-5).
    """
    from monai.networks.utils import convert_to_torchscript

    try:
        convert_to_torchscript(model, filename_or_obj=str(path), verify=True, inputs=[x],
                               use_trace=trace, rtol=1e-4, atol=1e-5)
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise ConfsegError(f"TorchScript export failed verification: {str(exc)[:200]}"
                           ) from None


def write_onnx(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    """Save ``model`` as ONNX (opset 17, dynamic batch) with MONAI's verified converter.

    onnxruntime's outputs on ``x`` are checked against the eager model's (rtol 1e-3,
    atol 1e-4); the height and width are fixed at ``x``'s, the bundle's canvas.

    Raises:
        ConfsegError: the conversion fails or the outputs differ.
    """
    from monai.networks.utils import convert_to_onnx

    try:
        convert_to_onnx(model, [x], input_names=["image"], output_names=["logits"],
                        opset_version=17, filename=str(path), verify=True, use_ort=True,
                        rtol=1e-3, atol=1e-4, use_trace=True, dynamo=False,
                        dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}})
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise ConfsegError(f"ONNX export failed verification: {str(exc)[:200]}") from None


def _openvino_ir(onnx_path: Path, xml: Path) -> None:
    from confseg.io.optional import require

    ov = require("openvino", "openvino", purpose="--format openvino")
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)


def _spaced(items: Sequence[Any], n: int) -> list[Any]:
    """At most ``n`` items, evenly spaced (deterministic)."""
    if len(items) <= n:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n)]


def _int8(bundle: Path, folder: RunFolder) -> dict[str, Any]:
    """Write the int8 QDQ model, calibrated on the run's training images; what was done."""
    from confseg.data import load_dataset
    from confseg.io.optional import require

    require("onnxruntime", "onnx", purpose="--precision int8")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ds = load_dataset(folder.config.data)
    items = _spaced(folder.items(ds, "train"), CALIBRATION_IMAGES)
    if not items:
        raise ConfsegError(f"{folder.root}: no training images to calibrate int8 on")
    fp32 = BundlePredictor(bundle)
    canvases = [fp32.canvas(ds.read_image(it))[0][None] for it in items]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(canvases)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {fp32.input_name: x}

    t0 = time.perf_counter()
    pre = bundle / "models" / ".pre.onnx"
    try:
        with warnings.catch_warnings(), _quiet_logging():
            warnings.simplefilter("ignore")
            quant_pre_process(str(bundle / ONNX), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(bundle / ONNX_INT8), Reader(),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    finally:
        pre.unlink(missing_ok=True)
    return {"file": str(ONNX_INT8), "method": "onnxruntime static QDQ, MinMax calibration",
            "weights": "int8 per channel", "activations": "uint8 per tensor",
            "calibration_images": len(items), "calibration_split": "train",
            "seconds": round(time.perf_counter() - t0, 1)}


@contextlib.contextmanager
def _quiet_logging() -> Any:
    """Silence onnxruntime.quantization's per-tensor warnings (root logger) for a block."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def precision_cost(bundle: str | os.PathLike[str], folder: RunFolder, predictor: Predictor, *,
                   precisions: Sequence[str] = PRECISIONS, level: float = 0.5
                   ) -> dict[str, Any]:
    """Dice of every setting that runs here on the run's test split, against eager fp32.

    Each setting's masks (probability > ``level``) are scored against the reference (the
    confidence at ``level``, as ``dice@0.5`` in evaluation), with overlaps pooled over the
    test images; ``dice_cost`` is the largest drop from eager fp32 over the classes (negative
    when it gains), ``mean_abs_prob_diff`` the mean probability difference from eager.
    """
    from confseg.data import load_dataset
    from confseg.metrics.segmentation import reference_mask

    ds = load_dataset(folder.config.data)
    items = folder.items(ds, "test")
    if not items:
        return {"note": "the run has no test images; nothing measured"}
    images = [ds.read_image(it) for it in items]
    refs = [reference_mask(ds.read_confidence_stack(it), level) for it in items]
    ignores = [ds.read_ignore(it) for it in items]
    classes = list(predictor.classes)

    def dice(probs: Sequence[np.ndarray]) -> np.ndarray:
        tp, fp, fn = (np.zeros(len(classes)) for _ in range(3))
        for p, r, ig in zip(probs, refs, ignores, strict=True):
            keep = np.ones(r.shape[1:], bool) if ig is None else ~ig
            m, r = (p > level) & keep, r & keep
            tp += (m & r).sum((1, 2))
            fp += (m & ~r).sum((1, 2))
            fn += (~m & r).sum((1, 2))
        den = 2 * tp + fp + fn
        return np.where(den > 0, 2 * tp / np.maximum(den, 1), 1.0)

    eager = predictor.predict_many(images)
    ref = dice(eager)
    out: dict[str, Any] = {
        "split": "test", "images": len(items), "level": level,
        "reference": f"confidence >= {level} (dice pooled over the test images)",
        "settings": {"torch-fp32": {"dice": dict(zip(classes, ref.round(5).tolist(),
                                                     strict=True))}}}
    for backend, precision in settings(bundle):
        if precision not in precisions:
            continue
        probs = BundlePredictor(bundle, backend=backend, precision=precision).predict_many(
            images)
        d = dice(probs)
        diff = float(np.mean([np.abs(a - b).mean() for a, b in zip(probs, eager,
                                                                   strict=True)]))
        out["settings"][f"{backend}-{precision}"] = {
            "dice": dict(zip(classes, d.round(5).tolist(), strict=True)),
            "dice_cost": round(float((ref - d).max()), 5),
            "mean_abs_prob_diff": round(diff, 6)}
    return out


def _check_onnx(bundle: Path, predictor: Predictor) -> float:
    """Largest probability difference, bundle (onnxruntime) vs eager, on a test image."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (predictor.size + 17, predictor.size - 9), dtype=np.uint8)
    got = BundlePredictor(bundle).predict(image)
    ref = predictor.predict(image)
    return float(np.abs(got - ref).max())


def _metadata(folder: RunFolder, predictor: Predictor, files: dict[str, str]
              ) -> dict[str, Any]:
    import confseg

    spec = predictor.spec
    versions = {"confseg": confseg.__version__, "torch": torch.__version__,
                "python": platform.python_version()}
    for mod in ("monai", "onnx", "onnxruntime", "openvino"):
        with contextlib.suppress(ImportError, AttributeError):
            versions[mod] = __import__(mod).__version__
    cfg = folder.config
    return {
        "name": folder.root.name, "task": "segmentation", "modality": "US",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "output": "per-class probabilities: sigmoid(logits / temperature), one per class",
        "classes": list(spec.class_names), "model": spec.name,
        "model_options": dict(spec.options), "strategy": cfg.strategy,
        "temperature": float(predictor.temperature),
        "input": {"channels": spec.in_channels, "size": spec.size, "dtype": "float32",
                  "range": [0.0, 1.0], "layout": "NCHW", "normalisation": NORMALISATION,
                  "letterbox": LETTERBOX},
        "formats": files, "source_run": str(folder.root.resolve()), "versions": versions,
    }
