import json

from typer.testing import CliRunner

from confseg.cli import app

runner = CliRunner()


def test_info_json(tiny_dataset):
    r = runner.invoke(app, ["info", str(tiny_dataset), "--json"])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert obj["items"] == 8 and obj["patients"] == 4
    assert set(obj["classes"]) == {"a", "b"}
    levels = obj["classes"]["a"]["levels"]
    assert levels[0] == 0 and set(levels) <= {0, 20, 40, 60, 80, 100} and len(levels) >= 2
    assert sum(obj["classes"]["a"]["histogram"].values()) > 0


def test_info_table(tiny_dataset):
    r = runner.invoke(app, ["info", str(tiny_dataset), "--quiet"])
    assert r.exit_code == 0 and "patients 4" in r.stdout and "pixels marked" in r.stdout


def test_user_error_is_one_line_no_traceback(tmp_path):
    r = runner.invoke(app, ["info", str(tmp_path / "missing")])
    assert r.exit_code == 2
    assert "error:" in r.output and "dataset folder not found" in r.output
    assert "Traceback" not in r.output


def test_annotate_without_its_extra_names_it(tiny_dataset, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ImportError
    r = runner.invoke(app, ["annotate", str(tiny_dataset)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "the annotator needs uvicorn: pip install 'confseg[annotator]'" in r.output


def test_split_writes_json(tiny_dataset):
    r = runner.invoke(app, ["split", str(tiny_dataset), "--k", "4"])
    assert r.exit_code == 0, r.output
    s = json.loads((tiny_dataset / "splits.json").read_text())
    assert sorted(p for f in s["folds"] for p in f) == ["p0", "p1", "p2", "p3"]
    r = runner.invoke(app, ["split", str(tiny_dataset), "--k", "9"])
    assert r.exit_code == 2 and "only 4 patients" in r.output


def test_synth_then_info(tmp_path):
    out = tmp_path / "s"
    r = runner.invoke(app, ["synth", str(out), "--patients", "2", "--views", "2", "--days", "2",
                            "--size", "64", "--raters", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    obj = json.loads(runner.invoke(app, ["info", str(out), "--json"]).stdout)
    assert (obj["items"], obj["patients"], obj["days"]) == (8, 2, [0, 1])
    assert obj["raters"] == ["r1", "r2"] and obj["has_clinical"] and obj["has_truth"]
    assert set(obj["classes"]) == {"pleural_line", "b_line", "a_line"}
    r = runner.invoke(app, ["synth", str(out), "--patients", "2", "--quiet"])
    assert r.exit_code == 2 and "--overwrite" in r.output


def test_import_unknown_layout_lists_known(tmp_path):
    r = runner.invoke(app, ["import", "dicomweb", str(tmp_path), str(tmp_path / "o")])
    assert r.exit_code == 2 and "lus-cs541" in r.output and "Traceback" not in r.output


def test_threads_default_is_one_on_a_busy_machine(monkeypatch):
    import os

    from confseg.cli import set_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "0")  # so the undo restores the original state
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    set_threads(None)
    assert "OMP_NUM_THREADS" not in os.environ  # idle: torch's default
    monkeypatch.setattr(os, "getloadavg", lambda: (1.8, 1.0, 1.0))
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)
    set_threads(None)
    assert os.environ["OMP_NUM_THREADS"] == "1"  # busy: one thread
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    set_threads(None)
    assert os.environ["OMP_NUM_THREADS"] == "2"  # the user's choice wins
