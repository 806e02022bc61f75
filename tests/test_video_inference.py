"""Segmenting a video: batched, one letterbox per video, same numbers as frame by frame."""

from __future__ import annotations

import numpy as np
import pytest

from confseg.inference.video import segment_video
from confseg.io.video import read_frames

from conftest import random_predictor, write_clip


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("v") / "clip.mp4", frames=10)


@pytest.fixture(scope="module")
def predictor():
    return random_predictor()


def test_sampled_frames_at_canvas_resolution(video, predictor):
    out = list(segment_video(predictor, video, every=2, batch_size=3))
    assert [f.index for f in out] == [0, 2, 4, 6, 8]
    for f in out:  # 120x90 letterboxed into 64: 64 wide, 48 high, aspect kept
        assert f.prob.shape == (2, 48, 64) and f.image.shape == (48, 64)
        assert f.prob.dtype == np.float32 and f.prob.min() >= 0 and f.prob.max() <= 1
    assert out[-1].image.mean() > out[0].image.mean()  # the frames brighten over the clip
    assert len(list(segment_video(predictor, video, max_frames=4))) == 4


def test_full_size_matches_frame_by_frame_prediction(video, predictor):
    frames = read_frames(video, [0, 5, 9])
    got = {f.index: f for f in segment_video(predictor, video, full_size=True, batch_size=4)}
    for i, frame in zip([0, 5, 9], frames, strict=True):
        assert got[i].prob.shape == (2, 90, 120)
        np.testing.assert_allclose(got[i].prob, predictor.predict(frame), atol=1e-4)
