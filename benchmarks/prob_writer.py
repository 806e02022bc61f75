"""What writing a video's probabilities costs per frame: the npz chunk writer against float16 npz.

The reference, measured in the same run, is what ``predict_video`` wrote first: float16 under
``np.savez_compressed`` (deflate level 6). confseg writes ``round(p * 65535)`` as uint16
(``--prob-bits 16``) or, by default, ``round(p * 255)`` as uint8, under deflate level 1
(:func:`confseg.inference.stream._write_chunk`). The probabilities are
two smooth blobs in a near-zero background, with logit noise of ``--noise`` (a trained model's
output is smooth; noise makes deflate's job harder). Single-threaded (the writer thread).

    python benchmarks/prob_writer.py --size 256 > writer.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, environment, rnd


def probabilities(n: int, size: int, noise: float, seed: int = 0) -> np.ndarray:
    """``(n, 2, size, size)`` float32: two moving blobs, logits -10 outside, +4 inside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.empty((n, 2, size, size), np.float32)
    for i in range(n):
        a = np.exp(-((yy - 0.3 - i / 400) ** 2 / 0.003 + (xx - 0.5) ** 2 / 0.05))
        b = np.exp(-((yy - 0.7) ** 2 / 0.015 + (xx - 0.25 - i / 400) ** 2 / 0.005))
        z = -10 + 14 * np.stack([a, b]) + noise * rng.standard_normal((2, size, size))
        out[i] = 1 / (1 + np.exp(-z))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.5])
    args = ap.parse_args()

    from confseg.inference.stream import _write_chunk, read_probs
    from confseg.inference.video import SegmentedFrame

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for noise in args.noise:
            prob = probabilities(args.frames, args.size, noise)
            chunks = [prob[i:i + args.batch_size] for i in range(0, len(prob), args.batch_size)]
            ref_dir, new_dir = Path(tmp, f"ref{noise}"), Path(tmp, f"new{noise}")
            ref_dir.mkdir(), new_dir.mkdir()
            t = time.perf_counter()
            for j, c in enumerate(chunks):
                np.savez_compressed(ref_dir / f"{j}.npz", prob=c.astype(np.float16))
            ref_s = time.perf_counter() - t
            row: dict[str, float] = {
                "logit_noise": noise,
                "float16_level6_ms_per_frame": rnd(1000 * ref_s / args.frames, 3),
                "float16_bytes_per_frame": sum(f.stat().st_size for f in ref_dir.iterdir())
                // args.frames}
            for bits in (16, 8):
                bits_dir = new_dir / str(bits)
                bits_dir.mkdir()
                names = []
                t = time.perf_counter()
                for j, c in enumerate(chunks):
                    frames = [SegmentedFrame(j * args.batch_size + k, np.zeros((1, 1), np.uint8),
                                             p) for k, p in enumerate(c)]
                    names.append(_write_chunk(bits_dir, frames, bits))
                new_s = time.perf_counter() - t
                (bits_dir / "video.json").write_text(json.dumps({"chunks": names}))
                back = read_probs(bits_dir)[1]
                row.update({
                    f"uint{bits}_level1_ms_per_frame": rnd(1000 * new_s / args.frames, 3),
                    f"uint{bits}_speedup": rnd(ref_s / new_s, 2),
                    f"uint{bits}_bytes_per_frame": sum(
                        f.stat().st_size for f in bits_dir.glob("*.npz")) // args.frames,
                    f"uint{bits}_max_abs_error": rnd(float(np.abs(back - prob).max()), 7)})
            rows.append(row)
    emit({"benchmark": "prob_writer", "size": args.size, "frames": args.frames,
          "classes": 2, "rows": rows, "environment": environment(torch.device("cpu"))})


if __name__ == "__main__":
    main()
