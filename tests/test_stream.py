"""Streaming video prediction: overlapped decode / infer / encode, chunks, overlay, bundles."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from confseg.errors import MediaError
from confseg.inference.stream import predict_video, read_probs
from confseg.inference.video import segment_video
from confseg.io.video import probe_video

from conftest import random_predictor, write_clip


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("s") / "clip.mp4", frames=30, shape=(72, 96),
                      start=40, step=4)


@pytest.fixture(scope="module")
def predictor():
    return random_predictor()


def test_predict_video_chunks_and_overlay(video, predictor, tmp_path):
    seen = []
    meta = predict_video(predictor, video, tmp_path, batch_size=8, overlay=True,
                         progress=lambda d, fps: seen.append((d, fps)))
    dest = tmp_path / "clip"
    assert meta["frames"] == 30 and seen[-1][0] == 30 and seen[-1][1] > 0
    assert json.loads((dest / "video.json").read_text())["chunks"] == meta["chunks"]
    assert np.load(dest / meta["chunks"][0])["prob"].dtype == np.uint8  # 8 bits by default
    assert meta["prob_scale"] == 255
    with pytest.raises(MediaError, match="not a complete predict output"):
        read_probs(tmp_path)  # no video.json
    index, prob = read_probs(dest)
    assert index.tolist() == list(range(30))
    ref = np.stack([f.prob for f in segment_video(predictor, video)])
    np.testing.assert_allclose(prob, ref, atol=0.5 / 255 + 1e-6)  # half a step of 1/255
    assert np.abs(prob - ref).max() > 1e-4  # really stored in 8 bits
    info = probe_video(dest / "overlay.mp4")
    assert (info.width, info.height) == (64, 48)  # the canvas image, aspect kept
    assert not list(dest.glob(".*tmp*"))


def test_predict_video_16_bits(video, predictor, tmp_path):
    meta = predict_video(predictor, video, tmp_path, batch_size=7, prob_bits=16)
    assert meta["prob_scale"] == 65535
    assert np.load(tmp_path / "clip" / meta["chunks"][0])["prob"].dtype == np.uint16
    ref = np.stack([f.prob for f in segment_video(predictor, video)])
    np.testing.assert_allclose(read_probs(tmp_path / "clip")[1], ref, atol=1e-5)  # 1.5e-5 steps
    with pytest.raises(ValueError, match="8 or 16 bits"):
        predict_video(predictor, video, tmp_path / "x", prob_bits=12)
    assert not (tmp_path / "x").exists()
    # a chunk in another dtype is refused, not misread
    first = tmp_path / "clip" / meta["chunks"][0]
    with np.load(first) as z:
        stored, index = z["prob"], z["index"]
    np.savez(first, prob=stored.astype(np.float32), index=index)
    with pytest.raises(MediaError, match="stored as float32"):
        read_probs(tmp_path / "clip")


def test_frames_at_the_model_size_are_not_resized(tmp_path, predictor):
    # a 48x64 clip fills the 64-px canvas: the frame itself is the image, and the batched
    # fast path gives the per-image Predictor's probabilities
    from confseg.io.video import iter_frames

    clip = write_clip(tmp_path / "fit.mp4", frames=5, shape=(48, 64), start=30, step=9)
    got = list(segment_video(predictor, clip, batch_size=4))
    frames = [f for _, f in iter_frames(clip)]
    for fr, frame in zip(got, frames, strict=True):
        assert fr.image.shape == (48, 64) and np.array_equal(fr.image, frame)
        np.testing.assert_allclose(fr.prob, predictor.predict(frame), atol=1e-4)


def test_predict_video_cli_every_and_errors(video, tmp_path, capsys):
    from confseg.cli import main
    from confseg.config import TrainConfig
    from confseg.training import train

    from conftest import write_tiny_dataset

    ds = write_tiny_dataset(tmp_path / "ds", patients=4, per_patient=1, size=(32, 32))
    run = train(TrainConfig(data=str(ds), out=str(tmp_path / "run"), model="unet-resnet18",
                            size=32, epochs=1, batch_size=4, k=2, val="none", patience=0),
                quiet=True)
    assert main(["predict", str(run), str(video), "--out", str(tmp_path / "o"), "--every", "3",
                 "--quiet"]) == 0
    assert "10 frames" in capsys.readouterr().out
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert main(["predict", str(run), str(bad), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    assert "bad.mp4" in capsys.readouterr().err
    # a run folder runs on torch; other backends need a bundle
    assert main(["predict", str(run), str(video), "--out", str(tmp_path / "o3"), "--backend",
                 "openvino", "--quiet"]) == 2
    assert "export it first" in capsys.readouterr().err
    bundle = tmp_path / "bundle"
    assert main(["export", str(run), "--out", str(bundle), "--format", "onnx"]) == 0
    capsys.readouterr()
    backends = ["onnxruntime", "fast"]  # fast: measured here, within 0.01 of fp32
    if importlib.util.find_spec("openvino"):
        backends.append("openvino")
    for backend in backends:  # the bundle's fast path: the same probabilities as the run's
        assert main(["predict", str(bundle), str(video), "--out", str(tmp_path / backend),
                     "--backend", backend, "--every", "3", "--quiet"]) == 0
        got = read_probs(tmp_path / backend / "clip")[1]
        ref = read_probs(tmp_path / "o" / "clip")[1]
        assert got.shape == ref.shape and np.abs(got - ref).max() < 0.02, backend
    assert main(["predict", str(bundle), str(video), "--out", str(tmp_path / "o4"), "--backend",
                 "torch", "--quiet"]) == 2
    assert main(["predict", str(bundle), str(video), "--out", str(tmp_path / "o5"),
                 "--prob-bits", "12", "--quiet"]) == 2
    assert "--prob-bits 12" in capsys.readouterr().err and not (tmp_path / "o5").exists()
    assert main(["predict", str(bundle), str(video), "--out", str(tmp_path / "o6"),
                 "--prob-bits", "16", "--every", "3", "--quiet"]) == 0
    assert json.loads((tmp_path / "o6" / "clip" / "video.json").read_text())[
        "prob_scale"] == 65535
    capsys.readouterr()
    # a multi-frame DICOM is a video; the bar shows the running frames/s (not --quiet)
    from test_video_io import _dicom

    frames = np.stack([np.full((24, 32), 20 * i, np.uint8) for i in range(6)])
    cine = _dicom(tmp_path / "cine.dcm", frames)
    assert main(["predict", str(bundle), str(cine), "--out", str(tmp_path / "d"), "--backend",
                 "onnxruntime", "--precision", "int8"]) == 0
    out, err = capsys.readouterr()
    assert "6 frames" in out and "frames/s" in err and "6/6" in err
    # --live on a finished stream: read as it comes, every frame kept or counted as dropped
    from test_live import _write_ts

    _write_ts(tmp_path / "feed.ts", 12, fps=25, pace=False)
    assert main(["predict", str(bundle), str(tmp_path / "feed.ts"), "--out",
                 str(tmp_path / "live"), "--live", "--idle", "0.3", "--quiet"]) == 0
    live = json.loads((tmp_path / "live" / "feed" / "video.json").read_text())["live"]
    assert live["received"] == 12 and "of 12 received" in capsys.readouterr().out
    assert main(["predict", str(bundle), str(tmp_path / "feed.ts"), "--out",
                 str(tmp_path / "live2"), "--live", "--every", "2", "--quiet"]) == 2


MEMORY = """
import resource, sys
sys.path.insert(0, sys.argv[3])
import torch
torch.set_num_threads(1)
from conftest import random_predictor
from confseg.inference.stream import predict_video
model = random_predictor(size=32, model="segresnet")
meta = predict_video(model, sys.argv[1], sys.argv[2], batch_size=8)
print(meta["frames"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_memory_is_flat_in_video_length(tmp_path):
    # 2,000 frames peak within a small margin of 100: one batch in memory, chunks on disk
    import subprocess
    import sys
    from pathlib import Path

    from confseg.synth.video import write_mp4

    # smooth frames (a drifting gradient): cheap to encode and decode, unlike noise; a light
    # network, so the model is not the slowest stage and the threads' allocations churn
    ramp = np.add.outer(np.arange(192), np.arange(256)) // 4
    peaks = {}
    for n in (100, 2000):
        clip = tmp_path / f"c{n}.mp4"
        write_mp4(clip, [((ramp + i) % 200 + 20).astype(np.uint8) for i in range(n)])
        proc = subprocess.run([sys.executable, "-c", MEMORY, str(clip), str(tmp_path / f"o{n}"),
                               str(Path(__file__).parent)], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        frames, peak_kb = map(int, proc.stdout.split()[-2:])
        assert frames == n
        peaks[n] = peak_kb / 1024
    # MiB; the 2,000 decoded frames alone would hold 94 MiB
    # measured: 438 and 438 MiB; 438 and 514 before the heap was trimmed (glibc arenas)
    assert peaks[2000] - peaks[100] < 25, peaks
