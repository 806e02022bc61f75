"""Live mode: a file still being written is followed; a feed faster than the model drops frames."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from confseg.errors import MediaError
from confseg.inference.stream import predict_live
from confseg.io.live import LiveFeed

from conftest import random_predictor


def _write_ts(path: Path, frames: int, *, fps: float, pace: bool, shape=(96, 128)) -> None:
    """An MPEG-TS clip of noise frames; with ``pace`` one frame every 1/fps s, flushed."""
    rng = np.random.default_rng(0)
    with open(path, "wb") as fh, av.open(fh, mode="w", format="mpegts") as out:
        stream = out.add_stream("mpeg2video", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = shape[1], shape[0], "yuv420p"
        stream.gop_size = 1  # every frame decodable on its own: bytes appear per frame
        for _ in range(frames):
            img = rng.integers(0, 256, shape, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="gray")):
                out.mux(packet)
            fh.flush()
            if pace:
                time.sleep(1 / fps)
        for packet in stream.encode():
            out.mux(packet)


class _Slow:
    """A real predictor on a slow machine: each batch takes at least ``seconds`` longer."""

    def __init__(self, inner, seconds: float) -> None:
        self.inner, self.seconds, self.classes = inner, seconds, inner.classes

    def probs_many(self, images, *, batch_size: int = 8):
        time.sleep(self.seconds)
        return self.inner.probs_many(images, batch_size=batch_size)


@pytest.fixture
def one_thread():
    """The decoder and the writer share the cores: torch's spinning OpenMP pool on both of a
    busy 2-core machine made a 64-px batch take 1.4 s here (`confseg predict --threads 1`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_growing_file_is_followed_to_its_end_without_drops(tmp_path, one_thread):
    src = tmp_path / "feed.ts"
    src.touch()  # the scanner has opened the file; frames follow at 10/s
    writer = threading.Thread(target=_write_ts, args=(src, 30), kwargs={"fps": 10, "pace": True})
    writer.start()
    seen = []
    meta = predict_live(random_predictor(), src, tmp_path / "out", batch_size=4, idle=1.5,
                        progress=lambda d, fps: seen.append(d))
    writer.join()
    live = meta["live"]
    assert live["received"] == 30 and live["dropped"] == 0 and not live["interrupted"]
    assert meta["frames"] == 30 and seen[-1] == 30
    assert meta["video"]["width"] == 128 and meta["video"]["height"] == 96
    dest = tmp_path / "out" / "feed"
    assert json.loads((dest / "video.json").read_text())["live"] == live
    index = np.concatenate([np.load(dest / c)["index"] for c in meta["chunks"]])
    assert index.tolist() == list(range(30))
    # it kept pace: done about when the writer was (30 frames at 10/s = 3 s, + idle 1.5 s)
    assert meta["seconds"] < 3 + 1.5 + 3


def test_a_feed_faster_than_the_model_drops_the_oldest_frames(tmp_path, one_thread):
    src = tmp_path / "fast.ts"
    _write_ts(src, 60, fps=25, pace=False)  # all there already: decoding outruns the model
    slow = _Slow(random_predictor(), 0.05)
    meta = predict_live(slow, src, tmp_path / "out", batch_size=4, idle=0.3)
    live = meta["live"]
    assert live["received"] == 60 and live["dropped"] > 0
    assert meta["frames"] + live["dropped"] == 60
    index = np.concatenate([np.load(tmp_path / "out" / "fast" / c)["index"]
                            for c in meta["chunks"]])
    assert np.all(np.diff(index) > 0) and index[-1] == 59  # in order, the newest kept


def test_live_errors(tmp_path):
    with pytest.raises(MediaError, match="file not found"):
        LiveFeed(tmp_path / "nope.ts")
    bad = tmp_path / "bad.ts"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(MediaError, match=r"bad\.ts"):
        predict_live(random_predictor(), bad, tmp_path / "out", idle=0.2)
    assert not (tmp_path / "out" / "bad" / "video.json").exists()
