"""End-to-end video segmentation frames/s per backend and precision, against an eager loop.

One process, one machine state, every figure next to the reference measured in the same run:

1. a run folder: ``--run RUN`` (its test split also gives the Dice cost of each precision),
   else a fresh ``--model`` trained for one epoch on tiny synthetic data (speed does not
   depend on the weights);
2. its bundle (ONNX, ``confseg.inference.export``);
3. a synthetic grey H.264 clip of ``--frames`` frames at ``--size`` x ``--size``;
4. the **reference**: a plain eager per-frame PyTorch loop (decode, resize into the canvas,
   forward at batch 1, sigmoid, probabilities kept in memory);
5. ``predict_video`` (decode and npz writing in threads, batches of ``--batch-size``,
   probabilities stored in ``--prob-bits``) for torch and every bundle setting that runs here
   (onnxruntime fp32 / int8, OpenVINO fp32 / bf16 where the CPU has it / int8), with the
   overlay encoder off; the torch path once more with the overlay on; and the **pipeline
   alone**: the torch path with the network swapped for a stand-in that costs nothing and
   returns realistic logits (the ceiling that decoding, letterboxing and writing leave);
6. the model alone per backend (batch 1 and ``--batch-size``, random input), its GFLOPs per
   frame (``torch.utils.flop_counter``) and the machine's fp32 matmul GFLOP/s
   (utilisation = frames/s x GFLOPs / matmul GFLOP/s);
7. what ``--backend fast`` picks here; with ``--run``: Dice on the run's test split per
   backend and precision (measured by ``confseg export``, from metadata.json).

Threads: ``--threads`` (default 2) is given to torch, onnxruntime and OpenVINO alike, with
``OMP_WAIT_POLICY=PASSIVE`` set before torch loads.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/video_fps.py --run runs/cs541 > fps.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, environment, log, rnd


def cpu_flags() -> dict[str, bool]:
    """The CPU features that decide the fast paths (from /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")}


def matmul_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    """Measured fp32 matmul GFLOP/s with ``threads`` threads (best of ``reps``)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def model_gflops(model: torch.nn.Module, channels: int, size: int) -> float:
    """GFLOPs of one forward pass on one frame."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, channels, size, size))
    return fc.get_total_flops() / 1e9


def make_run(work: Path, *, model: str, size: int, options: dict[str, Any]) -> Path:
    """A one-epoch run on tiny synthetic data (weights do not change the speed)."""
    from confseg.config import TrainConfig
    from confseg.synth import generate
    from confseg.training import train

    data = generate(work / "syn", patients=4, views=1, days=1, size=size, seed=0)
    cfg = TrainConfig(data=str(data), out=str(work / "run"), model=model, size=size, epochs=1,
                      model_options=options, batch_size=2, k=2, val="none", patience=0,
                      precision="32-true")
    return Path(train(cfg, quiet=True))


def make_clip(path: Path, *, frames: int, size: int) -> Path:
    """A grey H.264 clip: a bright band drifting down over noise."""
    from confseg.io.video_writer import VideoWriter

    rng = np.random.default_rng(0)
    rows = np.arange(size)[:, None]
    with VideoWriter(path, fps=25) as w:
        for i in range(frames):
            band = 120 * np.exp(-((rows - (i * 3) % size) / 6.0) ** 2)
            w.write(np.clip(rng.normal(50, 15, (size, size)) + band, 0, 255).astype(np.uint8))
    return path


def eager_loop(predictor: Any, clip: Path) -> dict[str, Any]:
    """The reference: decode, letterbox, forward at batch 1, sigmoid, one frame at a time."""
    from confseg.io.video import iter_frames

    net, size, n = predictor.model, predictor.size, 0
    t = time.perf_counter()
    with torch.inference_mode():
        for _, frame in iter_frames(clip):
            x = torch.from_numpy(frame).float()[None, None] / 255.0
            h, w = frame.shape
            s = size / max(h, w)
            nh, nw = round(h * s), round(w * s)
            if (nh, nw) != (h, w):
                x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
            x = F.pad(x, (0, size - nw, 0, size - nh)).repeat(1, predictor.channels, 1, 1)
            torch.sigmoid(net(x)[:, :, :nh, :nw]).numpy()
            n += 1
    wall = time.perf_counter() - t
    return {"frames": n, "wall_s": rnd(wall), "fps": rnd(n / wall, 1)}


class FixedLogits(torch.nn.Module):
    """A network stand-in with no compute: the same realistic logits for every frame.

    Two blobs in a near-zero background with logit noise 0.5 (``prob_writer.probabilities``),
    so the writer compresses what a trained model would give it.
    """

    def __init__(self, classes: int, size: int) -> None:
        super().__init__()
        from prob_writer import probabilities

        p = torch.from_numpy(probabilities(1, size, 0.5)[0, :1]).repeat(classes, 1, 1)
        self.register_buffer("z", torch.logit(p, eps=1e-6)[None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The stored logits for each image of ``x``."""
        return self.z.expand(x.shape[0], -1, -1, -1)[..., :x.shape[-2], :x.shape[-1]]


def pipeline(model: Any, clip: Path, out: Path, *, batch_size: int, overlay: bool,
             prob_bits: int) -> dict[str, Any]:
    """``predict_video`` end to end (probabilities written as npz chunks)."""
    from confseg.inference.stream import predict_video

    t = time.perf_counter()
    meta = predict_video(model, clip, out, batch_size=batch_size, overlay=overlay,
                         prob_bits=prob_bits)
    wall = time.perf_counter() - t
    return {"frames": meta["frames"], "wall_s": rnd(wall), "fps": rnd(meta["frames"] / wall, 1)}


def model_alone(infer: Any, channels: int, size: int, batch: int, reps: int) -> float:
    """Frames/s of the bare model call on random input."""
    x = np.random.default_rng(0).random((batch, channels, size, size), dtype=np.float32)
    infer(x)
    t = time.perf_counter()
    for _ in range(reps):
        infer(x)
    return batch * reps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a trained run (gives the Dice costs)")
    ap.add_argument("--model", default="fpn-resnet18")
    ap.add_argument("--model-options", type=json.loads, default={},
                    help='architecture options as JSON, e.g. \'{"features": [8,8,16,32,64,8]}\'')
    ap.add_argument("--size", type=int, default=256, help="clip side and model input side")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prob-bits", type=int, default=8, choices=(8, 16),
                    help="bits per stored probability (predict --prob-bits)")
    ap.add_argument("--reps", type=int, default=10, help="model-alone calls per setting")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()

    from confseg.inference import Predictor
    from confseg.inference.bundle import BundlePredictor, fastest, read_metadata, settings
    from confseg.inference.export import export_run

    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="video_fps_"))
    work.mkdir(parents=True, exist_ok=True)
    run = args.run or make_run(work, model=args.model, size=args.size,
                                 options=args.model_options)
    log(f"run {run}")
    bundle = work / "bundle"
    if not (bundle / "configs" / "metadata.json").is_file():
        log("export: onnx, openvino IR, int8 (Dice cost per setting with --run)")
        export_run(run, bundle, formats=("onnx", "openvino"), measure=args.run is not None)
    clip = make_clip(work / "clip.mp4", frames=args.frames, size=args.size)
    eager = Predictor.from_run(run)
    backends: dict[str, Any] = {"torch": eager}
    for backend, precision in settings(bundle):  # every setting that runs on this machine
        backends[f"{backend}-{precision}"] = BundlePredictor(
            bundle, backend=backend, precision=precision, threads=args.threads)
    log("reference: eager per-frame loop")
    reference = eager_loop(eager, clip)
    rows = []
    for name, model in backends.items():
        log(f"pipeline: {name}")
        end = pipeline(model, clip, work / f"out-{name}", batch_size=args.batch_size,
                       overlay=False, prob_bits=args.prob_bits)
        if name == "torch":
            def infer(x: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return eager.model(torch.from_numpy(x)).numpy()
        else:
            infer = model.logits_canvas
        alone = {f"model_alone_fps_batch{b}": rnd(model_alone(infer, eager.channels, eager.size,
                                                              b, args.reps), 1)
                 for b in sorted({1, args.batch_size})}
        rows.append({"backend": name, **end, "ratio_to_eager_loop": rnd(end["fps"] /
                                                                         reference["fps"], 2),
                     **alone})
    log("pipeline: torch with the overlay encoder")
    overlay = pipeline(eager, clip, work / "out-overlay", batch_size=args.batch_size,
                       overlay=True, prob_bits=args.prob_bits)
    log("pipeline alone: a stand-in network that costs nothing")
    stand_in = copy.copy(eager)
    stand_in.model = FixedLogits(len(eager.classes), eager.size).eval()
    alone_pipeline = pipeline(stand_in, clip, work / "out-alone", batch_size=args.batch_size,
                              overlay=False, prob_bits=args.prob_bits)
    gflops = model_gflops(eager.model, eager.channels, eager.size)
    peak = matmul_gflops(args.threads)
    for r in rows:
        r["utilisation"] = rnd(r["fps"] * gflops / peak, 3)
    result: dict[str, Any] = {
        "benchmark": "video_fps", "run": str(run), "model": eager.spec.name,
        "model_options": eager.spec.options,
        "size": eager.size, "frames": args.frames,
        "batch_size": args.batch_size, "threads": args.threads, "prob_bits": args.prob_bits,
        "cpu_flags": cpu_flags(),
        "gflops_per_frame": rnd(gflops, 2), "matmul_gflops_fp32": rnd(peak, 1),
        "reference_eager_loop": reference, "rows": rows, "torch_with_overlay": overlay,
        "pipeline_alone": {**alone_pipeline, "ratio_to_eager_loop": rnd(
            alone_pipeline["fps"] / reference["fps"], 2)},
        "environment": environment(torch.device("cpu")),
    }
    _, result["fast"] = fastest(bundle, threads=args.threads, batch_size=args.batch_size)
    if args.run:  # measured at export, on the run's test split
        result["precision_cost"] = read_metadata(bundle).get("precision_cost")
    emit(result)


if __name__ == "__main__":
    main()
