"""Tests of confseg.io.video: probing and lazy reading of tiny synthetic MP4/AVI/TS clips and a
DICOM cine, the sampling rule, and one-line MediaErrors for missing, empty, fake and truncated
files."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from confseg.errors import ImageTooLargeError, MediaError
from confseg.io.video import iter_frames, probe_video, read_frames, sample_indices
from confseg.synth.video import read_frames as synth_read_frames

N, W, H, FPS = 20, 64, 48, 10
H264 = "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _write(path: Path, codec: str, fmt: str, *, faststart: bool = False,
           noise: bool = False) -> Path:
    """Frame i is flat grey 10 + 12 i (plus strong seeded noise: packets large enough that
    a cut at 60 % falls in the frame data, past the header)."""
    rng = np.random.default_rng(0)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format=fmt, options=options) as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if codec == "libx264":
            stream.options = {"threads": "1", "preset": "veryfast"}
        for i in range(N):
            g = np.full((H, W), 10 + 12 * i, np.int16)
            if noise:
                g = g + rng.integers(-60, 61, (H, W))
            frame = av.VideoFrame.from_ndarray(np.clip(g, 0, 255).astype(np.uint8), "gray")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _truncate(path: Path, frac: float = 0.6) -> Path:
    data = path.read_bytes()
    out = path.with_name("cut_" + path.name)
    out.write_bytes(data[: int(len(data) * frac)])
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("video")
    return {
        "mp4": _write(d / "a.mp4", H264, "mp4"),
        "avi": _write(d / "a.avi", "mpeg4", "avi"),
    }


@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_probe_and_iterate(clips: dict[str, Path], kind: str) -> None:
    p = clips[kind]
    info = probe_video(p)
    assert (info.frames, info.fps, info.width, info.height) == (N, FPS, W, H)
    assert info.path == str(p) and info.channels == 3 and info.codec
    assert info.duration_s == pytest.approx(N / FPS, abs=0.15)
    got = list(iter_frames(p))
    assert [i for i, _ in got] == list(range(N))
    assert all(f.shape == (H, W) and f.dtype == np.uint8 for _, f in got)
    means = [float(f.mean()) for _, f in got]
    assert all(b > a for a, b in itertools.pairwise(means))
    assert abs(means[0] - 10) < 4 and abs(means[-1] - (10 + 12 * (N - 1))) < 4
    _, rgb = next(iter(iter_frames(p, grey=False)))
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8


@pytest.mark.parametrize(("pix_fmt", "color_range", "shape"), [
    ("yuv420p", None, (48, 64)), ("yuv420p", 1, (50, 70)), ("yuv422p", None, (48, 64)),
    ("yuv444p", None, (49, 71)), ("yuvj420p", None, (48, 64)), ("yuv420p", 2, (48, 64))])
def test_grey_frames_equal_ffmpegs_conversion(tmp_path: Path, pix_fmt: str,
                                              color_range: int | None,
                                              shape: tuple[int, int]) -> None:
    """The luma fast path (a lookup table on the Y plane) is FFmpeg's yuv->gray, bit for bit;
    full-range and other formats go through FFmpeg."""
    from confseg.io.video import _av_frame

    rng = np.random.default_rng(0)
    path = tmp_path / "c.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1" if pix_fmt != "yuvj420p" else "mjpeg", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = shape[1], shape[0], pix_fmt
        if color_range is not None:
            stream.codec_context.color_range = color_range
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (*shape, 3), np.uint8),
                                               "rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            fast = frame.format.name == pix_fmt and int(frame.color_range) in (0, 1)
            assert fast == (pix_fmt != "yuvj420p" and color_range != 2)  # the path taken
            np.testing.assert_array_equal(_av_frame(frame, True),
                                          frame.to_ndarray(format="gray"))


def test_every_and_max_frames(clips: dict[str, Path]) -> None:
    p = clips["mp4"]
    assert [i for i, _ in iter_frames(p, every=3)] == list(range(0, N, 3))
    four = [i for i, _ in iter_frames(p, max_frames=4)]
    assert four == sample_indices(N, max_frames=4) == [0, 6, 13, 19]
    assert [i for i, _ in iter_frames(p, every=3, max_frames=3)] == [0, 9, 18]
    assert list(iter_frames(p, max_frames=0)) == []


def test_read_frames(clips: dict[str, Path]) -> None:
    p = clips["mp4"]
    frames = read_frames(p, [19, 0, 5, 5])
    assert [f.shape for f in frames] == [(H, W)] * 4
    means = [float(f.mean()) for f in frames]
    assert means[1] < means[2] == means[3] < means[0]
    assert read_frames(p, []) == []
    with pytest.raises(MediaError, match=r"a\.mp4.*no frame 25"):
        read_frames(p, [3, 25])
    # the synthetic-data reader is the same reader
    assert len(synth_read_frames(p)) == N


def test_sample_indices_rule() -> None:
    assert sample_indices(10) == list(range(10))
    assert sample_indices(10, every=4) == [0, 4, 8]
    assert sample_indices(10, max_frames=1) == [0]
    assert sample_indices(10, max_frames=2) == [0, 9]
    assert sample_indices(3, max_frames=5) == [0, 1, 2]
    assert sample_indices(0, every=2, max_frames=3) == []
    spread = sample_indices(1000, every=7, max_frames=50)
    assert len(set(spread)) == 50 and spread[0] == 0 and spread[-1] == 994
    assert all(i % 7 == 0 for i in spread)
    with pytest.raises(ValueError, match="every"):
        sample_indices(10, every=0)


def test_unknown_count_takes_the_first(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.ts", H264, "mpegts")
    info = probe_video(p)
    assert info.frames is None and (info.width, info.height) == (W, H)
    assert [i for i, _ in iter_frames(p, every=2, max_frames=3)] == [0, 2, 4]
    assert len(list(iter_frames(p))) == N


@pytest.mark.parametrize(("name", "codec", "fmt", "declared"),
                         [("a.ts", H264, "mpegts", None), ("a.avi", "mpeg4", "avi", N)])
def test_truncated_stream_stops_early(tmp_path: Path, name: str, codec: str, fmt: str,
                                      declared: int | None) -> None:
    """MPEG-TS and AVI: a cut file opens and ends early, without an error (an AVI header
    still declares all frames)."""
    cut = _truncate(_write(tmp_path / name, codec, fmt, noise=True))
    got = [i for i, _ in iter_frames(cut)]
    assert 0 < len(got) < N and got == list(range(len(got)))
    assert probe_video(cut).frames == declared
    # spread over the declared count (what exists of it), or the first ones when unknown
    spread = [i for i in sample_indices(N, max_frames=4) if i < len(got)]
    expected = spread if declared else [0, 1, 2, 3]
    assert [i for i, _ in iter_frames(cut, max_frames=4)] == expected


@pytest.mark.parametrize(("codec", "raises"), [(H264, H264 == "libx264"), ("mpeg4", False)])
def test_truncated_mp4_with_header(tmp_path: Path, codec: str, raises: bool) -> None:
    """Faststart MP4 cut mid-data: probe still reads the declared count; decoding yields the
    intact frames, then (FFmpeg's H.264 decoder chokes on the cut packet) a MediaError that
    counts them, or (MPEG-4 part 2) a clean early stop."""
    cut = _truncate(_write(tmp_path / "fs.mp4", codec, "mp4", faststart=True, noise=True))
    assert probe_video(cut).frames == N  # what the header declares
    got: list[int] = []
    error: MediaError | None = None
    try:
        got.extend(i for i, _ in iter_frames(cut))
    except MediaError as exc:
        error = exc
    assert 0 < len(got) < N and got == list(range(len(got)))
    assert (error is not None) == raises
    if error is not None:
        message = str(error)
        assert "cut_fs.mp4" in message and "\n" not in message
        assert f"after {len(got)} frames" in message and "truncated" in message
        with pytest.raises(MediaError, match="after"):
            read_frames(cut, [N - 1])


def test_truncated_mp4_without_index(tmp_path: Path) -> None:
    """MP4 with its index (moov) at the end: cut, it cannot be opened at all."""
    cut = _truncate(_write(tmp_path / "end.mp4", H264, "mp4", noise=True))
    for call in (probe_video, lambda q: list(iter_frames(q))):
        with pytest.raises(MediaError, match=r"cut_end\.mp4"):
            call(cut)


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [("empty.mp4", b"", "empty"), ("fake.mp4", b"not a video\n" * 50, "not a video")],
)
def test_bad_files(tmp_path: Path, name: str, content: bytes, pattern: str) -> None:
    p = tmp_path / name
    p.write_bytes(content)
    for call in (probe_video, lambda q: list(iter_frames(q)), lambda q: read_frames(q, [0])):
        with pytest.raises(MediaError, match=rf"{name}.*{pattern}") as info:
            call(p)
        assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"nope\.mp4: file not found"):
        probe_video(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="not found"):
        next(iter_frames(tmp_path / "nope.mp4"))


def test_pixel_limit(clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFSEG_MAX_IMAGE_PIXELS", str(W * H - 1))
    with pytest.raises(ImageTooLargeError, match=r"a\.avi"):
        probe_video(clips["avi"])
    with pytest.raises(ImageTooLargeError):
        next(iter_frames(clips["avi"]))


def _dicom(path: Path, frames: np.ndarray, *, photometric: str = "MONOCHROME2") -> Path:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.NumberOfFrames = frames.shape[0]
    ds.Rows, ds.Columns = frames.shape[1:3]
    ds.SamplesPerPixel = 1 if frames.ndim == 3 else 3
    ds.PhotometricInterpretation = photometric
    if frames.ndim == 4:
        ds.PlanarConfiguration = 0
    bits = frames.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.FrameTime = 40.0  # ms: 25 fps
    ds.PixelData = frames.tobytes()
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    return path


def test_dicom_cine(tmp_path: Path) -> None:
    frames = np.stack([np.full((12, 16), 40 * i, np.uint8) for i in range(5)])
    p = _dicom(tmp_path / "cine.dcm", frames)
    info = probe_video(p)
    assert (info.frames, info.width, info.height, info.channels) == (5, 16, 12, 1)
    assert info.fps == pytest.approx(25.0) and info.duration_s == pytest.approx(0.2)
    assert info.codec.startswith("dicom")
    got = list(iter_frames(p))
    assert [i for i, _ in got] == list(range(5))
    assert all(f.dtype == np.uint8 and f.shape == (12, 16) for _, f in got)
    assert [int(f[0, 0]) for _, f in got] == [0, 40, 80, 120, 160]
    assert [i for i, _ in iter_frames(p, max_frames=3)] == sample_indices(5, max_frames=3)
    _, rgb = next(iter(iter_frames(p, grey=False)))
    assert rgb.shape == (12, 16, 3)
    assert [int(f[0, 0]) for f in read_frames(p, [4, 1])] == [160, 40]
    p.rename(tmp_path / "cine")  # found by its DICM preamble, without the suffix
    assert probe_video(tmp_path / "cine").frames == 5


def test_dicom_16bit_and_rgb(tmp_path: Path) -> None:
    deep = np.stack([np.full((4, 6), v, np.uint16) for v in (0, 32768, 65535)])
    got = [f for _, f in iter_frames(_dicom(tmp_path / "deep.dcm", deep))]
    assert [int(f[0, 0]) for f in got] == [0, 128, 255]
    rgb = np.zeros((2, 4, 6, 3), np.uint8)
    rgb[1, ..., 0] = 200
    p = _dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB")
    assert probe_video(p).channels == 3
    colour = [f for _, f in iter_frames(p, grey=False)]
    assert colour[1].shape == (4, 6, 3) and int(colour[1][0, 0, 0]) == 200
    grey = [f for _, f in iter_frames(p)]
    assert grey[1].shape == (4, 6) and int(grey[1][0, 0]) == round(200 * 0.299)


def test_dicom_truncated(tmp_path: Path) -> None:
    frames = np.stack([np.full((12, 16), 40 * i, np.uint8) for i in range(5)])
    cut = _truncate(_dicom(tmp_path / "cine.dcm", frames))
    assert probe_video(cut).frames == 5  # the header is intact
    got: list[int] = []
    with pytest.raises(MediaError, match=r"cut_cine\.dcm: decoding DICOM failed after") as info:
        got.extend(i for i, _ in iter_frames(cut))
    assert f"after {len(got)} frame" in str(info.value) and len(got) < 5


def test_not_dicom_with_dcm_suffix(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    p = tmp_path / "bad.dcm"
    p.write_bytes(b"garbage" * 40)
    with pytest.raises(MediaError, match=r"bad\.dcm: cannot read DICOM"):
        probe_video(p)
