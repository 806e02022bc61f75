"""confseg export: MONAI-verified TorchScript + ONNX bundle; the bundle predicts without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from confseg.cli import main
from confseg.config import TrainConfig
from confseg.inference import Predictor
from confseg.training import train

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from conftest import write_tiny_dataset

    ds = write_tiny_dataset(tmp_path_factory.mktemp("e") / "ds", patients=4, per_patient=2,
                            size=(40, 52))
    cfg = TrainConfig(data=str(ds), out=str(tmp_path_factory.mktemp("r") / "run"),
                      model="fpn-resnet18", size=64, epochs=1, batch_size=4, k=2, val="none",
                      patience=0)
    return train(cfg, quiet=True)


def test_export_bundle_round_trip(run, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["export", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ONNX vs eager" in printed and "onnxruntime-int8: test Dice" in printed
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert meta["classes"] == ["a", "b"] and meta["input"]["size"] == 64
    assert meta["modality"] == "US"
    assert set(meta["formats"]) == {"torchscript", "onnx", "openvino", "onnx-int8"}
    assert (out / "models" / "model.xml").is_file() and (out / "models" / "model.bin").is_file()
    assert meta["checks"]["onnx_vs_eager_max_abs_prob"] < 1e-2
    # int8: calibrated on the run's training images (4 patients, k=2, val none: 2 train)
    assert meta["int8"]["calibration_images"] == 4 and meta["int8"]["calibration_split"] == "train"
    cost = meta["precision_cost"]
    assert cost["split"] == "test" and cost["images"] == 4
    assert {"torch-fp32", "onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32",
            "openvino-int8"} <= set(cost["settings"])
    for name, row in cost["settings"].items():
        assert set(row["dice"]) == {"a", "b"}
        assert all(0 <= v <= 1 for v in row["dice"].values())
        if name != "torch-fp32":
            assert -1 <= row["dice_cost"] <= 1 and row["mean_abs_prob_diff"] >= 0
    # the same network: only the letterbox resize differs (Pillow here, torch in eager)
    assert cost["settings"]["onnxruntime-fp32"]["mean_abs_prob_diff"] < 1e-3
    eager = Predictor.from_run(run)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((2, 1, 64, 64), dtype=np.float32))
    ts = torch.jit.load(str(out / "models" / "model.ts"))
    with torch.no_grad():
        torch.testing.assert_close(ts(x), eager.model(x), rtol=1e-4, atol=1e-4)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / "models" / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    (z,) = sess.run(None, {"image": x.numpy()})
    np.testing.assert_allclose(z, eager.model(x).detach().numpy(), rtol=1e-3, atol=1e-4)
    image = rng.integers(0, 256, (40, 52), dtype=np.uint8)  # end to end, with the letterbox
    got = Predictor.from_bundle(out).predict(image)
    assert got.shape == (2, 40, 52)
    np.testing.assert_allclose(got, eager.predict(image), atol=2e-2)
    assert main(["export", str(run), "--out", str(out)]) == 2  # exists: needs --overwrite
    assert main(["export", str(run), "--out", str(tmp_path / "b2"), "--format", "tflite"]) == 2
    assert main(["export", str(run), "--out", str(tmp_path / "b2"), "--precision", "fp8"]) == 2
    assert main(["export", str(run), "--out", str(tmp_path / "b2"), "--format", "torchscript",
                 "--precision", "int8"]) == 2
    assert "int8 is made from the ONNX model" in capsys.readouterr().err
    assert not (tmp_path / "b2").exists()


def test_bundle_predicts_without_torch(run, tmp_path):
    out = tmp_path / "bundle"
    main(["export", str(run), "--out", str(out), "--format", "onnx"])
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "lightning", "pytorch_lightning", "monai"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        from confseg.inference.bundle import BundlePredictor
        for precision in ("fp32", "int8"):
            p = BundlePredictor({str(out)!r}, precision=precision)
            prob = p.predict(np.full((30, 50), 128, np.uint8))
            assert prob.shape == (2, 30, 50) and 0 <= prob.min() <= prob.max() <= 1
        print("ok", sorted(m for m in sys.modules if m.startswith("torch")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok []"


@pytest.fixture(scope="module")
def bundle(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "bundle"
    assert main(["export", str(run), "--out", str(out), "--format", "onnx,openvino"]) == 0
    return out


def test_bundle_backends_agree_and_the_video_fast_path_matches(bundle):
    from confseg.errors import ConfsegError
    from confseg.inference.bundle import BundlePredictor

    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (48, 64), dtype=np.uint8) for _ in range(3)]
    ort = BundlePredictor(bundle, threads=1)
    ref = np.stack([ort.predict(f) for f in frames])
    prob, small = ort.canvas_probs(frames)  # one letterbox for the video, canvas resolution
    assert prob.shape == (3, 2, 48, 64) and small[0].shape == (48, 64)  # longer side 64
    np.testing.assert_allclose(prob, ref, atol=1e-5)
    with pytest.raises(ConfsegError, match="needs --backend openvino"):
        BundlePredictor(bundle, precision="bf16")
    int8 = BundlePredictor(bundle, precision="int8", threads=1)  # quantised, close to fp32
    assert int8.model_file.name == "model.int8.onnx"
    assert np.abs(int8.canvas_probs(frames)[0] - prob).mean() < 0.05
    with pytest.raises(ConfsegError, match="--backend 'tensorrt'"):
        BundlePredictor(bundle, backend="tensorrt")
    pytest.importorskip("openvino")
    ov = BundlePredictor(bundle, backend="openvino", threads=1)
    assert ov.model_file.name == "model.xml"  # the IR, when the bundle has one
    np.testing.assert_allclose(ov.canvas_probs(frames)[0], prob, atol=1e-4)
    ov8 = BundlePredictor(bundle, backend="openvino", precision="int8", threads=1)
    assert np.abs(ov8.canvas_probs(frames)[0] - int8.canvas_probs(frames)[0]).mean() < 0.02
    import openvino

    from confseg.inference.bundle import cpu_bf16

    if cpu_bf16(openvino.Core()):
        bf = BundlePredictor(bundle, backend="openvino", precision="bf16", threads=1)
        assert np.abs(bf.canvas_probs(frames)[0] - prob).max() < 0.05


def test_default_formats_leave_out_openvino_when_it_is_not_installed(monkeypatch):
    import importlib.util

    from confseg.inference.export import FORMATS, default_formats

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real(name, *a))
    assert default_formats() == ["torchscript", "onnx"]
    monkeypatch.setattr(importlib.util, "find_spec", real)
    if real("openvino"):
        assert default_formats() == list(FORMATS)
