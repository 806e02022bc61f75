"""segment-videos: features cached per video and segmenter, rerun skips, bad videos."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from confseg.cli import main
from confseg.config import TrainConfig
from confseg.data import load_dataset
from confseg.downstream.folder import DownstreamFolder, read_table, write_table
from confseg.downstream.segment import segment_videos, segmenters_from
from confseg.runs import StudyFolder
from confseg.synth import generate
from confseg.training import train


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("sv") / "syn", patients=8, views=2, days=2,
                    size=64, seed=0, videos=True)


@pytest.fixture(scope="module")
def run(syn, tmp_path_factory):
    cfg = TrainConfig(data=str(syn), out=str(tmp_path_factory.mktemp("r") / "run"),
                      model="unet-resnet18", size=32, epochs=1, batch_size=4, k=3,
                      val="none", patience=0)
    return train(cfg, quiet=True)


def test_segment_caches_features_and_rerun_skips(syn, run, tmp_path):
    out = tmp_path / "ds"
    info = segment_videos(run, syn, out, every=2, max_frames=3)
    assert set(info["segmenters"]) == {"run"}
    folder = DownstreamFolder(out)
    assert info["videos"] == 32 and not info["skipped"]
    first = load_dataset(syn).items[0]
    frames = read_table(folder.frames_csv("run", first.id))
    assert len(frames) == 3 and [int(f["frame"]) % 2 for f in frames] == [0, 0, 0]
    assert {"b_line.area", "pleural_line.continuity", "a_line.count"} <= set(frames[0])
    raw = read_table(folder.frames_csv("raw", first.id))
    assert len(raw) == len(frames) and "raw.mean" in raw[0]
    videos = read_table(folder.videos_csv("run"))
    assert len(videos) == 32 and "b_line.count.mean" in videos[0]
    # the run was trained on this dataset: its training patients are flagged
    seen = {v["patient"]: v["seen_in_training"] for v in videos}
    assert sorted(p for p, s in seen.items() if s == 1) == info["segmenters"]["run"][
        "seen_in_training"]
    days = read_table(folder.patient_days_csv("run"))
    assert len(days) == 16 and days[0]["n_views"] == 2
    assert f"view.{first.view}.b_line.area.mean" in days[0]
    assert "all.mean.b_line.count.mean" in days[0]
    mtime = folder.frames_csv("run", first.id).stat().st_mtime_ns
    segment_videos(run, syn, out, every=2, max_frames=3)  # cached: nothing re-segmented
    assert folder.frames_csv("run", first.id).stat().st_mtime_ns == mtime
    with pytest.raises(Exception, match="segmented with other settings"):
        segment_videos(run, syn, out, every=3)


def test_bad_video_is_one_line_or_skipped(syn, run, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(syn, bad)
    ds = load_dataset(bad)
    victim = ds.path(ds.items[0].video)
    victim.write_bytes(victim.read_bytes()[:200])  # truncated: header only
    out = tmp_path / "o"
    assert main(["segment-videos", str(run), str(bad), "--out", str(out), "--max-frames", "2",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert ds.items[0].video.split("/")[-1] in err and len(err.strip().splitlines()) == 1
    assert main(["segment-videos", str(run), str(bad), "--out", str(out), "--max-frames", "2",
                 "--skip-bad", "--quiet"]) == 0
    info = json.loads((out / "segment.json").read_text())
    assert list(info["skipped"]) == [ds.items[0].id]
    assert len(read_table(DownstreamFolder(out).videos_csv("run"))) == 31


def test_study_segmenters_are_out_of_fold(syn, tmp_path):
    from confseg.data.splits import make_splits, write_splits

    ds = load_dataset(syn)
    study = StudyFolder(tmp_path / "st")
    study.root.mkdir()
    splits = make_splits(ds, k=3, seed=0)
    write_splits(study.splits_path, splits)
    study.write_spec({"data": str(syn), "strategies": ["soft", "threshold:0.6"], "k": 3,
                      "seeds": 1})
    for s in ("soft", "threshold:0.6"):
        for f in range(3):
            cell = study.strategy_cell(s, f, 0)
            cell.root.mkdir(parents=True)
            cell.update_status(status="finished")
    segs = segmenters_from(study.root, ds)
    assert [s.name for s in segs] == ["soft", "threshold-0.6"]
    for f in range(3):
        for patient in splits.partition(f, val="none")[2]:
            assert segs[1].run_for(patient).root == study.strategy_cell("threshold:0.6", f,
                                                                        0).root
    study.strategy_cell("soft", 2, 0).update_status(status="running")
    with pytest.raises(Exception, match="not finished"):
        segmenters_from(study.root, ds)


@pytest.mark.parametrize("task", ["sf", "sf-change", "outcome"])
def test_downstream_task_on_every_source(syn, run, tmp_path_factory, task):
    from confseg.downstream.run import run_downstream

    out = tmp_path_factory.getbasetemp() / "down"
    s = run_downstream(syn, out, task=task, segmenters=[run], repeats=1, folds=3,
                       max_frames=2, n_boot=50)
    # every synthetic clip is recorded alike: acquisition is a source, but adds nothing to one
    assert s["sources"] == ["raw", "annotation", "acquisition", "run"]
    head = s["headline"]
    for name in s["sources"]:
        m = s["results"][name]["metrics"][head]
        assert m["n_patients"] == 8 and math.isfinite(m["mean"])
    assert set(s["paired"]["raw"]) == {"annotation", "acquisition", "run"}
    assert not s["paired"].get("acquisition")
    assert DownstreamFolder(out).task_predictions(task).is_file()


def test_sources_plus_acquisition_when_videos_were_recorded_differently(syn, run,
                                                                        tmp_path_factory,
                                                                        tmp_path):
    from confseg.downstream.run import run_downstream

    base = tmp_path_factory.getbasetemp() / "down"
    if not DownstreamFolder(base).segment_path.is_file():
        segment_videos(run, syn, base, max_frames=2)
    out = tmp_path / "down"
    shutil.copytree(base, out, ignore=shutil.ignore_patterns("tasks"))
    folder = DownstreamFolder(out)  # as if each patient's clips had another length
    days = read_table(folder.patient_days_csv("acquisition"))
    for i, row in enumerate(days):
        row["all.mean.acq.frames"] = 16 + 3 * (i % 5)
    write_table(folder.patient_days_csv("acquisition"), days)
    s = run_downstream(syn, out, task="sf", repeats=1, folds=3, n_boot=50)
    assert s["sources"][-2:] == ["raw+acquisition", "run+acquisition"]
    assert set(s["paired"]["acquisition"]) == {"raw+acquisition", "run+acquisition"}
    assert "raw+acquisition" not in s["paired"]["raw"]
    res = s["results"]
    assert res["run+acquisition"]["n_features"] == (res["run"]["n_features"]
                                                    + res["acquisition"]["n_features"])


def test_clinical_covariates_and_a_category_outcome(syn, run, tmp_path_factory, tmp_path):
    from confseg.downstream.run import run_downstream
    from confseg.errors import DatasetError

    out = tmp_path_factory.getbasetemp() / "down"
    if not DownstreamFolder(out).segment_path.is_file():
        segment_videos(run, syn, out, max_frames=2)
    data = tmp_path / "syn"  # the same dataset, lung water marked as a covariate
    shutil.copytree(syn, data)
    meta = json.loads((data / "dataset.json").read_text())
    for col in meta["clinical_schema"]:
        col["covariate"] = col["name"] == "lung_water"
    (data / "dataset.json").write_text(json.dumps(meta))
    s = run_downstream(data, out, task="sf", repeats=1, folds=3, n_boot=50)
    assert "clinical" in s["sources"] and s["results"]["clinical"]["n_features"] == 1
    # S/F is simulated from the lung water: the covariate alone predicts it closely
    assert s["results"]["clinical"]["metrics"]["pearson_r"]["mean"] > 0.8
    o = run_downstream(data, out, task="outcome", target="probe", positive=["convex"],
                       repeats=1, folds=3, n_boot=50)
    assert o["name"] == "outcome-probe" and o["positive"] == ["convex"]
    assert DownstreamFolder(out).task_summary("outcome-probe").is_file()
    with pytest.raises(DatasetError, match="say which levels count as positive"):
        run_downstream(data, out, task="outcome", target="probe", repeats=1, folds=3)
    with pytest.raises(DatasetError, match="'cardiac' is not a level of probe"):
        run_downstream(data, out, task="outcome", target="probe", positive=["cardiac"],
                       repeats=1, folds=3)
    with pytest.raises(DatasetError, match="--positive is for --task outcome"):
        run_downstream(data, out, task="sf", positive=["1"], repeats=1, folds=3)
    with pytest.raises(DatasetError, match="--positive needs a category target"):
        run_downstream(data, out, task="outcome", positive=["1"], repeats=1, folds=3)


def test_demo_downstream_runs_end_to_end_on_a_tiny_study(syn, tmp_path, capsys):
    # make demo-downstream: a study's strategies segment fresh synthetic clips, three tasks
    from confseg import demo_downstream
    from confseg.study import StudySpec, run_study

    assert demo_downstream.main(["--study", str(tmp_path / "none"), "--out",
                                 str(tmp_path / "d0")]) == 2
    assert "run `make demo` first" in " ".join(capsys.readouterr().err.split())
    spec = StudySpec(data=str(syn), strategies=("threshold:0", "soft"), k=2, seeds=1,
                     base={"model": "segresnet", "size": 32, "batch_size": 4, "epochs": 1,
                           "patience": 0, "val": "none", "precision": "32-true"}, n_boot=20)
    run_study(spec, tmp_path / "study", jobs=2, threads=1, quiet=True, examples=0)
    out = tmp_path / "down"
    code = demo_downstream.main(["--study", str(tmp_path / "study"), "--data",
                                 str(tmp_path / "videos"), "--out", str(out), "--patients", "6",
                                 "--views", "1", "--max-frames", "1", "--repeats", "1",
                                 "--folds", "3", "--quiet"])
    cap = capsys.readouterr()
    text = " ".join((cap.out + cap.err).split())
    assert code == 0, text
    folder = DownstreamFolder(out)
    assert set(folder.evaluated_tasks()) == {"sf", "sf-change", "outcome"}
    assert folder.report_path.is_file() and "chosen by inner CV" in text
