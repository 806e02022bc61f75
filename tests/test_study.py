"""The study: spec -> cells, a real local pool, kill-and-rerun, a failed cell, local Ray."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from confseg.cli import main
from confseg.errors import ConfsegError, StudyError
from confseg.runs import StudyFolder, read_rows
from confseg.study import StudySpec, run_study, slug, study_status
from confseg.study.spec import Cell

from conftest import write_tiny_dataset

BASE = {"model": "segresnet", "size": 32, "batch_size": 4, "epochs": 1, "patience": 0,
        "val": "none", "precision": "32-true"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("s") / "ds", patients=4, per_patient=2,
                              size=(32, 32), raters=2)


def _spec(data: Path, **kw) -> StudySpec:
    opts = {"data": str(data), "strategies": ("threshold:0", "soft"), "k": 2, "seeds": 1,
            "base": BASE, "n_boot": 50, **kw}
    return StudySpec(**opts)


def test_spec_cells_and_yaml_round_trip(data):
    spec = _spec(data, strategies=("threshold:0", "threshold:60%", "ignore:0.2-0.6"), seeds=2)
    assert spec.strategies == ("threshold:0", "threshold:0.6", "ignore:0.2-0.6")
    cells = spec.cells()
    assert len(cells) == 3 * 2 * 2 and len(set(cells)) == len(cells)
    assert cells[0] == Cell("threshold:0", 0, 0) and cells[-1] == Cell("ignore:0.2-0.6", 1, 1)
    assert Cell("threshold:0.6", 1, 0).key == "threshold-0.6/fold_1/seed_0"
    assert slug("rater:r1") == "rater-r1"
    again = StudySpec.from_dict(spec.to_dict())
    assert again == spec and not spec.differences(again)
    assert spec.differences(_spec(data, strategies=spec.strategies, seeds=3)) == ["seeds"]
    cfg = spec.cell_config(Cell("soft", 1, 1), Path("/s"))
    assert (cfg.strategy, cfg.fold, cfg.seed, cfg.k, cfg.model) == ("soft", 1, 1, 2,
                                                                  "segresnet")
    assert cfg.out == "/s/cells/soft/fold_1/seed_1"


@pytest.mark.parametrize("kw,match", [
    ({"strategies": ("soft", "nonsense")}, "unknown label strategy 'nonsense'"),
    ({"strategies": ("soft", "soft")}, "given twice"),
    ({"strategies": ()}, "at least one strategy"),
    ({"k": 1}, "--folds 1"),
    ({"seeds": 0}, "--seeds 0"),
    ({"references": ("0.7",)}, "reference level '0.7'"),
    ({"base": {**BASE, "fold": 3}}, "fold is set by the study"),
    ({"base": {**BASE, "lr": -1}}, "lr=-1"),
    ({"base": {**BASE, "modle": "x"}}, "unknown option 'modle'"),
])
def test_spec_refuses_bad_options(data, kw, match):
    with pytest.raises(ConfsegError, match=match):
        _spec(data, **kw)


def test_study_runs_collects_and_skips_finished_cells_on_rerun(data, tmp_path):
    out = tmp_path / "st"
    summary = run_study(_spec(data), out, jobs=2, quiet=True)
    assert summary["finished_cells"] == summary["n_cells"] == 4 and not summary["missing"]
    folder = StudyFolder(out)
    rows = read_rows(folder.per_case_path)
    assert {r["strategy"] for r in rows} == {"threshold:0", "soft"}
    for strategy in ("threshold:0", "soft"):  # every patient tested once per seed
        mine = [r for r in rows if r["strategy"] == strategy and r["class"] == "a"]
        assert sorted(r["id"] for r in mine) == sorted(
            f"p{p}_{k}" for p in range(4) for k in range(2))
        by_patient = {}
        for r in mine:
            by_patient.setdefault(r["patient"], set()).add(r["fold"])
        assert all(len(f) == 1 for f in by_patient.values())
    paired = json.loads(folder.paired_path.read_text())
    assert paired["references"] == ["threshold:0"]  # threshold:0.5 is not in this study
    d = paired["comparisons"]["threshold:0"]["soft"]["a"]["dice@0.6"]
    assert {"mean", "lo", "hi", "wilcoxon_p", "p_holm", "effect_size"} <= set(d)
    assert summary["table"]["soft"]["a"]["qubiq"]["n_patients"] == 4
    assert set(summary["levels"]["soft"]["a"]) >= {"any", "0.6", "1.0"}
    assert summary["examples"] and all(folder.example_png(e["id"], "image").is_file()
                                       for e in summary["examples"])
    finished = {c.key: folder.cell(c.slug, c.fold, c.seed).read_status()["finished"]
                for c in _spec(data).cells()}
    for c in _spec(data).cells():  # a finished cell keeps its weights, not the optimizer
        run = folder.cell(c.slug, c.fold, c.seed)
        assert run.checkpoint("best").is_file() and not run.checkpoint("last").exists()
    again = run_study(_spec(data), out, jobs=2, quiet=True)  # nothing left to run
    assert again["table"] == summary["table"]
    for c in _spec(data).cells():
        assert folder.cell(c.slug, c.fold, c.seed).read_status()["finished"] == finished[c.key]
    with pytest.raises(StudyError, match="another seeds"):
        run_study(_spec(data, seeds=2), out, quiet=True)
    st = study_status(out)
    assert st["counts"] == {"finished": 4} and st["state"] == "finished"


def test_failed_cell_is_marked_and_the_others_go_on(tmp_path, capsys):
    ds = write_tiny_dataset(tmp_path / "noraters", patients=4, per_patient=2, size=(32, 32))
    out = tmp_path / "st"
    code = main(["study", "run", str(ds), "--strategies", "threshold:0", "rater", "--folds", "2",
                 "--set", "model=segresnet", "--set", "size=32", "--set", "epochs=1",
                 "--set", "val=none", "--set", "batch_size=4", "--n-boot", "20", "--out",
                 str(out), "--jobs", "2", "--quiet", "--no-report"])
    err = capsys.readouterr().err
    assert code == 1
    assert "2 of 4 cells are missing" in err and "rater/fold_0/seed_0: failed" in err
    st = study_status(out)
    assert st["counts"] == {"finished": 2, "failed": 2}
    failed = [c for c in st["cells"] if c["status"] == "failed"]
    assert all("rater" in c["cell"] and "rater" in c["error"] for c in failed)
    assert main(["study", "status", str(out)]) == 0
    assert "failed" in capsys.readouterr().err
    assert main(["study", "summary", str(out), "--metric", "qubiq"]) == 0
    assert "threshold:0" in capsys.readouterr().err
    assert main(["study", "summary", str(out), "--metric", "nope"]) == 2
    assert "--metric 'nope'" in capsys.readouterr().err


def test_sigkilled_study_reruns_only_what_was_missing(data, tmp_path):
    spec = _spec(data, strategies=("soft",), base={**BASE, "epochs": 5, "batch_size": 2})
    out = tmp_path / "killed"

    def study(to: Path) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "confseg", "study", "run", str(data), "--strategies",
               "soft", "--folds", "2", "--n-boot", "50", "--out", str(to),
               "--jobs", "1", "--threads", "1", "--quiet", "--no-report"]
        cmd += [x for k, v in spec.base.items() for x in ("--set", f"{k}={v}")]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    ref = study(tmp_path / "ref")  # the uninterrupted study, on the other core meanwhile
    proc = study(out)
    folder = StudyFolder(out)
    second = folder.cell("soft", 1, 0)  # the second cell in order
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if second.checkpoint("last").exists() and second.status == "running":
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # the worker follows its parent (PR_SET_PDEATHSIG)
    first = folder.cell("soft", 0, 0)
    assert first.status == "finished"
    finished_at = first.read_status()["finished"]
    st = study_status(out)
    assert st["state"] == "interrupted"
    assert st["counts"] == {"finished": 1, "interrupted": 1}
    again = run_study(StudySpec.load(folder), out, jobs=1, threads=1, quiet=True, examples=0)
    assert first.read_status()["finished"] == finished_at  # not retrained
    assert "resumed" in second.read_status()  # continued from its last checkpoint
    assert again["finished_cells"] == 2
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()[-2000:]
    tables = [json.loads(StudyFolder(d).summary_path.read_text())["table"]
              for d in (tmp_path / "ref", out)]
    assert tables[0] == tables[1]  # the same final table as an uninterrupted study


def test_two_cell_study_on_local_ray(data, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    summary = run_study(_spec(data, strategies=("soft",)), out, executor="ray", jobs=2,
                        threads=1, quiet=True, examples=0)
    assert summary["finished_cells"] == 2 and not summary["missing"]
    assert StudyFolder(out).read_status()["executor"] == "ray"


def test_study_cli_errors_are_one_line(data, tmp_path, capsys):
    assert main(["study", "run", str(data), "--strategies", "soft", "bogus:1", "--out",
                 str(tmp_path / "x")]) == 2
    assert "unknown label strategy 'bogus:1'" in capsys.readouterr().err
    assert main(["study", "status", str(tmp_path / "none")]) == 2
    assert "study folder not found" in capsys.readouterr().err
    assert main(["study", "run", str(data), "--executor", "dask", "--out",
                 str(tmp_path / "y")]) == 2
    assert "--executor 'dask'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
