"""Export a run as a deployable bundle with MONAI's verified converters (TorchScript, ONNX).

The bundle's layout and its torch-free predictor are in :mod:`confseg.inference.bundle`. Both
converters run with ``verify=True``: MONAI compares the exported model's output with the
eager model's on a test input and refuses a mismatch; confseg then checks the ONNX model
under onnxruntime at a second input and records the largest difference in metadata.json.
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
from confseg.inference.bundle import METADATA, ONNX, SUMMARY, TORCHSCRIPT, BundlePredictor
from confseg.inference.predictor import Predictor
from confseg.io.outputs import check_output_folder
from confseg.models.registry import model_info
from confseg.runs import RunFolder

FORMATS = ("torchscript", "onnx")
NORMALISATION = ("uint8 / 255; other integers / their maximum; floats as they are when in "
                 "[0, 1], else min-max scaled; grey repeated or RGB averaged to the channels")
LETTERBOX = ("scale so the longer side is `size` (bilinear, antialiased), keep the aspect "
             "ratio, pad bottom and right with 0; to invert, crop the image region of the "
             "output and resize it back (bilinear)")


def export_run(run: str | os.PathLike[str] | RunFolder, out: str | os.PathLike[str], *,
               formats: Sequence[str] = FORMATS, checkpoint: str = "best",
               overwrite: bool = False) -> Path:
    """Write ``out`` as a bundle of ``run``'s model (atomic: a temp folder, then rename).

    Raises:
        ConfsegError: an unknown format, an output folder that may not be replaced, or a
            converter whose exported model does not match the eager one.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfsegError(f"--format {bad[0] if bad else '(none)'}; choose from "
                           f"{', '.join(FORMATS)}")
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
                _torchscript(model, x, tmp / TORCHSCRIPT, trace=model_info(spec.name)
                             .torchscript == "trace")
                files["torchscript"] = str(TORCHSCRIPT)
            if "onnx" in formats:
                _onnx(model, x, tmp / ONNX)
                files["onnx"] = str(ONNX)
        if folder.has_summary():
            shutil.copyfile(folder.summary_path, tmp / SUMMARY)
        meta = _metadata(folder, predictor, files)
        (tmp / METADATA).write_text(json.dumps(meta, indent=1) + "\n")
        if "onnx" in formats:
            checks["onnx_vs_eager_max_abs_prob"] = _check_onnx(tmp, predictor)
        meta["checks"] = checks
        (tmp / METADATA).write_text(json.dumps(meta, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _torchscript(model: torch.nn.Module, x: torch.Tensor, path: Path, *, trace: bool) -> None:
    from monai.networks.utils import convert_to_torchscript

    try:
        convert_to_torchscript(model, filename_or_obj=str(path), verify=True, inputs=[x],
                               use_trace=trace, rtol=1e-4, atol=1e-5)
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise ConfsegError(f"TorchScript export failed verification: {str(exc)[:200]}"
                           ) from None


def _onnx(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    from monai.networks.utils import convert_to_onnx

    try:
        convert_to_onnx(model, [x], input_names=["image"], output_names=["logits"],
                        opset_version=17, filename=str(path), verify=True, use_ort=True,
                        rtol=1e-3, atol=1e-4, use_trace=True, dynamo=False,
                        dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}})
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise ConfsegError(f"ONNX export failed verification: {str(exc)[:200]}") from None


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
    for mod in ("monai", "onnx", "onnxruntime"):
        with contextlib.suppress(ImportError):
            versions[mod] = __import__(mod).__version__
    cfg = folder.config
    return {
        "name": folder.root.name, "task": "segmentation", "modality": "US",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "output": "per-class probabilities: sigmoid(logits / temperature), one per class",
        "classes": list(spec.class_names), "model": spec.name, "strategy": cfg.strategy,
        "temperature": float(predictor.temperature),
        "input": {"channels": spec.in_channels, "size": spec.size, "dtype": "float32",
                  "range": [0.0, 1.0], "layout": "NCHW", "normalisation": NORMALISATION,
                  "letterbox": LETTERBOX},
        "formats": files, "source_run": str(folder.root.resolve()), "versions": versions,
    }
