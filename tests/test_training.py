import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from confseg.config import PRESETS
from confseg.errors import ConfsegError, SplitError
from confseg.runs import RunFolder
from confseg.training import ConfigError, RunError, TrainConfig, resume, train
from confseg.workflows import resume_and_evaluate, train_and_evaluate

from conftest import write_tiny_dataset

FAST = {"model": "fpn-resnet18", "size": 64, "batch_size": 2, "k": 3}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("d") / "ds", patients=4, per_patient=2,
                              size=(48, 64))


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)["state_dict"]


def test_run_folder_is_self_describing(data, tmp_path):
    run = train(TrainConfig(data=str(data), out=str(tmp_path / "r"), epochs=2, **FAST),
                quiet=True)
    for name in ("config.yaml", "splits.json", "metrics.csv", "progress.png", "run.json",
                 "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "trained" and status["epochs"] == 2
    tr, va, te = (set(status["patients"][k]) for k in ("train", "val", "test"))
    assert not (tr & va or tr & te or va & te)  # patient-level split
    again = TrainConfig.load(run / "config.yaml")
    assert again == TrainConfig(data=str(data), out=str(tmp_path / "r"), epochs=2, **FAST)


KILLER = textwrap.dedent("""
    import os, signal, sys
    import pytorch_lightning as pl
    from confseg.training import TrainConfig, train

    class Kill(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.current_epoch == 2 and batch_idx == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    import torch
    torch.set_num_threads(int(sys.argv[3]))  # the parent's count: same kernels, same bits
    cfg = TrainConfig(data=sys.argv[1], out=sys.argv[2], epochs=4, model="fpn-resnet18",
                      size=64, batch_size=1, k=3, patience=0, precision="32-true",
                      checkpoint_every=3600)
    train(cfg, quiet=True, callbacks=[Kill()])
""")


def test_resume_after_sigkill_matches_uninterrupted(data, tmp_path):
    # Batch size 1: the training fold has 2 images, so the kill lands after batch 1 of 2.
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "full"), epochs=4, patience=0,
                      precision="32-true", **{**FAST, "batch_size": 1})
    full = train(cfg, quiet=True)

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(data), str(killed),
                           str(torch.get_num_threads())],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert json.loads((killed / "run.json").read_text())["status"] == "running"
    ck = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # epochs 0 and 1 finished, killed inside epoch 2; the resume checkpoint is written after
    # the first epoch, then not again within checkpoint_every: epoch 1 is trained again
    assert ck["epoch"] == 0

    with pytest.raises(RunError, match=r"not empty .*--resume"):
        train(cfg.replace(out=str(killed)), quiet=True)
    resume(killed, quiet=True)
    a, b = _weights(full), _weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit-identical on CPU with a fixed seed
    epochs = [line.split(",")[0] for line in (killed / "metrics.csv").read_text().splitlines()[1:]]
    assert sorted({int(e) for e in epochs}) == [0, 1, 2, 3]
    assert len(epochs) == len((full / "metrics.csv").read_text().splitlines()[1:])


def test_bad_input_errors(data, tmp_path):
    with pytest.raises(SplitError, match="fold 7 does not exist"):
        train(TrainConfig(data=str(data), out=str(tmp_path / "a"), fold=7, **FAST))
    assert not (tmp_path / "a").exists()  # nothing half-written
    with pytest.raises(ConfsegError, match="every training pixel weight 0"):
        # ignore:0-1 ignores every marked pixel below 100%... and our data has 100% too;
        # use a dataset where nothing reaches the band's top.
        d2 = write_tiny_dataset(tmp_path / "low", patients=4, per_patient=1, size=(32, 32))
        for p in (d2 / "confidence").rglob("*.png"):
            import numpy as np
            from PIL import Image
            Image.fromarray(np.full((32, 32), 40, np.uint8)).save(p)
        train(TrainConfig(data=str(d2), out=str(tmp_path / "b"), strategy="ignore:0-0.6",
                          **FAST))
    with pytest.raises(ConfigError, match="size=50; use a multiple of 32"):
        TrainConfig(data="x", out="y", size=50)
    done = train(TrainConfig(data=str(data), out=str(tmp_path / "c"), epochs=1, **FAST),
                 quiet=True)
    with pytest.raises(RunError, match=r"not empty \(run status: trained\).*--overwrite"):
        train(TrainConfig(data=str(data), out=str(done), epochs=1, **FAST))
    RunFolder(done).update_status(status="finished")
    with pytest.raises(RunError, match=r"already holds a finished run.*--overwrite"):
        train(TrainConfig(data=str(data), out=str(done), epochs=1, **FAST))


def test_empty_class_is_an_error(tmp_path):
    d = write_tiny_dataset(tmp_path / "e", patients=4, per_patient=1, size=(32, 32))
    for p in (d / "confidence" / "b").glob("*.png"):
        import numpy as np
        from PIL import Image
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(p)
    with pytest.raises(ConfsegError, match="class 'b' has no marked pixel"):
        train(TrainConfig(data=str(d), out=str(tmp_path / "r"), **FAST))


def test_checkpoint_from_other_model_is_refused(data, tmp_path):
    run = tmp_path / "r"
    cfg = TrainConfig(data=str(data), out=str(run), epochs=1, **FAST)
    train(cfg, quiet=True)
    (run / "run.json").write_text(json.dumps({"status": "running"}))
    cfg.replace(model="unet-resnet18").save(run / "config.yaml")
    with pytest.raises(RunError, match="checkpoint is from model 'fpn-resnet18'"):
        resume(run, quiet=True)


def test_workflow_chains_train_evaluate_report(data, tmp_path):
    run = train_and_evaluate(TrainConfig(data=str(data), out=str(tmp_path / "w"), epochs=1,
                                         **FAST), quiet=True)
    assert run.status == "finished"
    s = run.summary()
    assert s["out"] == str(run.root) and s["split"] == "test"
    for cls in ("a", "b"):
        assert run.reliability_png(cls).is_file()
    assert s["examples"]["ids"] and "uncalibrated" in s["examples"]["model"]
    for i in s["examples"]["ids"]:
        assert run.example_png(i, "label").is_file() and run.example_png(i, "pred").is_file()
    html = run.report_path.read_text()
    assert "uncalibrated" in html and html.count("data:image/png;base64") >= 4
    # A run whose fit ended but whose evaluation did not happen is only evaluated on resume.
    run.update_status(status="trained")
    run.summary_path.unlink()
    mtime = run.checkpoint("last").stat().st_mtime_ns
    assert resume_and_evaluate(run.root, quiet=True).status == "finished"
    assert run.has_summary() and run.checkpoint("last").stat().st_mtime_ns == mtime


def test_pooled_dice_matches_the_hand_computed_sums():
    from confseg.training.valmetrics import PooledDice

    g = torch.Generator().manual_seed(0)
    batches = [(torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g).round(),
                (torch.rand(2, 3, 8, 8, generator=g) > 0.2).float()) for _ in range(3)]
    hard, soft = PooledDice(soft=False), PooledDice(soft=True)
    inter = total = sinter = stotal = 0.0
    for p, t, w in batches:
        hard.update(p, t, w)
        soft.update(p, t, w)
        h, r = ((p >= 0.5) & (w > 0)).double(), ((t >= 0.5) & (w > 0)).double()
        inter += float((h * r).sum())
        total += float(h.sum() + r.sum())
        sinter += float((p * t * w).double().sum())
        stotal += float((p * w).double().sum() + (t * w).double().sum())
    assert float(hard.compute()) == pytest.approx(2 * inter / total, rel=1e-12)
    assert float(soft.compute()) == pytest.approx(2 * sinter / stotal, rel=1e-6)
    empty = PooledDice(soft=False)
    empty.update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    assert float(empty.compute()) == 1.0


class _Payload:
    """Unpickling this runs code: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_crafted_checkpoint_is_refused_and_runs_nothing(data, tmp_path):
    from confseg.errors import CheckpointError
    from confseg.inference import Predictor

    run = train(TrainConfig(data=str(data), out=str(tmp_path / "r"), epochs=1, **FAST),
                quiet=True)
    marker = tmp_path / "pwned"
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    state["evil"] = _Payload(marker)
    for name in ("last", "best"):
        torch.save(state, run / "checkpoints" / f"{name}.ckpt")
    RunFolder(run).update_status(status="running")
    with pytest.raises(CheckpointError, match=r"last\.ckpt: holds objects a weights-only load "
                                              "refuses"):
        resume(run, quiet=True)
    with pytest.raises(CheckpointError, match=r"best\.ckpt: holds objects"):
        Predictor.from_run(run)
    assert not marker.exists()


def test_overwrite_never_replaces_an_input_or_a_foreign_folder(data, tmp_path, monkeypatch):
    cfg = TrainConfig(data=str(data), out=str(data), epochs=1, **FAST)
    with pytest.raises(RunError, match=r"is \(or holds\) the input"):
        train(cfg, overwrite=True, quiet=True)
    with pytest.raises(RunError, match=r"is \(or holds\) the input"):
        train(cfg.replace(out=str(data.parent)), overwrite=True, quiet=True)
    assert (data / "dataset.json").is_file()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunError, match="working directory, home or an ancestor"):
        train(cfg.replace(out="."), overwrite=True, quiet=True)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.txt").write_text("precious")
    with pytest.raises(RunError, match="not a run folder; --overwrite only replaces a run folder"):
        train(cfg.replace(out=str(other)), overwrite=True, quiet=True)
    assert (other / "thesis.txt").read_text() == "precious"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunError, match="exists and is not a folder"):
        train(cfg.replace(out=str(tmp_path / "afile")), quiet=True)


def test_ctrl_c_says_where_the_run_stands_and_resumes(data, tmp_path):
    import os
    import signal

    import pytorch_lightning as pl

    from confseg.errors import Interrupted

    class CtrlC(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.current_epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    # a shell that starts a job in the background (no job control) hands it SIGINT ignored,
    # and Python then installs no KeyboardInterrupt handler: act as a foreground process
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "r"), epochs=2, **FAST)
    try:
        with pytest.raises(Interrupted, match=r"interrupted in epoch 1; .* `confseg train "
                                              r"--resume"):
            train(cfg, quiet=True, callbacks=[CtrlC()])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert Interrupted.exit_code == 130
    run = RunFolder(cfg.out)
    assert run.status == "interrupted"
    resume(run, quiet=True)
    assert run.status == "trained" and run.read_status()["epochs"] == 2


def test_an_error_inside_fit_is_a_failure_with_its_own_message_not_a_ctrl_c(data, tmp_path):
    # Lightning marks the trainer "interrupted" on any exception: a full disk once read as
    # Ctrl-C in every later run of a suite
    import pytorch_lightning as pl

    class DiskFull(pl.Callback):
        def on_train_epoch_end(self, trainer, module):
            raise OSError(28, "No space left on device")

    cfg = TrainConfig(data=str(data), out=str(tmp_path / "r"), epochs=2, **FAST)
    with pytest.raises(OSError, match="No space left"):
        train(cfg, quiet=True, callbacks=[DiskFull()])
    status = RunFolder(cfg.out).read_status()
    assert status["status"] == "failed" and "No space left" in status["error"]


def test_best_checkpoint_is_weights_only_and_last_resumes(data, tmp_path):
    from confseg.models.spec import load_checkpoint

    run = RunFolder(train(TrainConfig(data=str(data), out=str(tmp_path / "r"), epochs=1,
                                      **FAST), quiet=True))
    best, last = load_checkpoint(run.checkpoint("best")), load_checkpoint(run.checkpoint("last"))
    assert "optimizer_states" not in best and last["optimizer_states"]
    assert run.checkpoint("best").stat().st_size < 0.6 * run.checkpoint("last").stat().st_size


@pytest.mark.parametrize(("every", "seen"), [(3600, [None, 0, 0, 0]), (0, [None, 0, 1, 2])])
def test_resume_checkpoint_is_written_every_so_many_seconds(data, tmp_path, every, seen):
    # what the checkpoint files hold when each epoch starts: last.ckpt after the first epoch
    # and then not within checkpoint_every; without validation, best.ckpt only at the end
    import pytorch_lightning as pl

    from confseg.models.spec import load_checkpoint

    class Peek(pl.Callback):
        def __init__(self) -> None:
            self.last: list[int | None] = []
            self.best: list[bool] = []

        def on_train_epoch_start(self, trainer, module):
            run = RunFolder(cfg.out)
            last = run.checkpoint("last")
            self.last.append(load_checkpoint(last)["epoch"] if last.exists() else None)
            self.best.append(run.checkpoint("best").exists())

    cfg = TrainConfig(data=str(data), out=str(tmp_path / "r"), epochs=4, val="none",
                      checkpoint_every=every, precision="32-true", **FAST)
    peek = Peek()
    run = RunFolder(train(cfg, quiet=True, callbacks=[peek]))
    assert peek.last == seen and peek.best == [False] * 4
    for name in ("last", "best"):  # the final epoch is always written
        assert load_checkpoint(run.checkpoint(name))["epoch"] == 3
    with pytest.raises(ConfigError, match="checkpoint_every=-1"):
        cfg.replace(checkpoint_every=-1)


def test_val_none_trains_on_every_non_test_patient_and_keeps_the_last_epoch(data, tmp_path):
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "r"), epochs=2, val="none", **FAST)
    run = RunFolder(train(cfg, quiet=True))
    status = run.read_status()
    assert status["validation"] == "none" and status["patients"]["val"] == []
    assert len(status["patients"]["train"]) + len(status["patients"]["test"]) == 4
    best = torch.load(run.checkpoint("best"), map_location="cpu", weights_only=True)
    last = torch.load(run.checkpoint("last"), map_location="cpu", weights_only=True)
    assert best["epoch"] == last["epoch"] == 1
    assert "val/dice" not in run.metrics_csv.read_text()
    inner = TrainConfig(data=str(data), out=str(tmp_path / "i"), epochs=1, val="inner:0.34",
                        **FAST)
    status = RunFolder(train(inner, quiet=True)).read_status()
    assert len(status["patients"]["val"]) == 1
    assert len(status["patients"]["train"]) + len(status["patients"]["test"]) == 3
    with pytest.raises(ConfigError, match="validation mode 'folds'"):
        TrainConfig(data="d", out="o", val="folds")


def test_precision_auto_uses_native_cpu_bf16(data, tmp_path):
    from confseg.training.runner import cpu_has_bf16, resolve_precision

    cfg = TrainConfig(data=str(data), out=str(tmp_path / "r"), epochs=1, accelerator="cpu",
                      **FAST)
    assert resolve_precision(cfg) == ("bf16-mixed" if cpu_has_bf16() else "32-true")
    assert resolve_precision(cfg.replace(precision="32-true")) == "32-true"
    run = RunFolder(train(cfg, quiet=True))
    assert run.read_status()["precision"] == resolve_precision(cfg)


def test_cli_set_and_threads(data, tmp_path, capsys):
    from confseg.cli import main

    assert main(["train", str(data), "--out", str(tmp_path / "a"), "--set", "epochs=ten"]) == 2
    assert "epochs='ten': expected int" in capsys.readouterr().err
    assert main(["train", str(data), "--out", str(tmp_path / "a"), "--set", "colour=1"]) == 2
    assert "unknown option 'colour'" in capsys.readouterr().err
    assert main(["train", str(data), "--out", str(tmp_path / "a"), "--threads", "0"]) == 2
    assert "--threads 0" in capsys.readouterr().err


def test_preset_auto_plans_from_fingerprint_and_budget(data, tmp_path, capsys):
    from confseg.cli import main
    from confseg.training.plan import parse_budget, plan_auto

    assert parse_budget("20m") == 1200 and parse_budget("1.5h") == 5400
    assert parse_budget("90") == 90 and parse_budget(None) is None
    with pytest.raises(ConfigError, match="--budget 'soon'"):
        parse_budget("soon")
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "x"), k=3)
    plan = plan_auto(cfg, budget="2h")
    fp = plan["fingerprint"]
    assert fp["image_items"] == 8 and (fp["median_height"], fp["median_width"]) == (48, 64)
    o = plan["overrides"]
    assert o["size"] == 64 and o["model"] == "basicunet" and plan["step_seconds"] > 0
    assert o["schedule"] == "constant"  # the recommended recipe: no cosine annealing
    assert o["dice_form"] == "semimetric"  # ... and a Dice that does not sharpen soft targets
    assert o["batch_size"] == PRESETS["recommended"]["batch_size"]  # 64 px: the preset's batch
    # the budget bounds the planned epochs: epochs x estimated epoch time <= 90 % of it
    assert o["epochs"] * plan["epoch_seconds_estimate"] <= 0.9 * 7200 or o["epochs"] == 300
    with pytest.raises(ConfigError, match="--budget 1s: an epoch takes about"):
        plan_auto(cfg, budget="1s")
    # through the CLI: the plan is recorded in config.yaml
    rc = main(["train", str(data), "--out", str(tmp_path / "r"), "--preset", "auto",
               "--budget", "1s", "--k", "3", "--quiet"])
    assert rc == 2 and "an epoch takes about" in capsys.readouterr().err
    assert main(["train", str(data), "--out", str(tmp_path / "r"), "--preset", "fast"]) == 2
    assert ("--preset 'fast'; choose one of recommended, realtime, fpn-lus, auto"
            in capsys.readouterr().err)
    rc = main(["train", str(data), "--out", str(tmp_path / "p"), "--preset", "fpn-lus",
               "--model", "fpn-resnet18", "--epochs", "1", "--size", "64", "--batch-size", "2",
               "--k", "3", "--quiet"])
    assert rc == 0
    saved = TrainConfig.load(tmp_path / "p" / "config.yaml")
    assert saved.extra == {"preset": "fpn-lus"} and saved.model == "fpn-resnet18"
    assert saved.patience == 10 and saved.epochs == 1  # preset fills, explicit options win
    # realtime: the light FlexUNet, its decoder carried to the checkpoint's ModelSpec
    rc = main(["train", str(data), "--out", str(tmp_path / "rt"), "--preset", "realtime",
               "--epochs", "1", "--size", "64", "--batch-size", "2", "--k", "3", "--quiet"])
    assert rc == 0
    from confseg.inference import Predictor

    spec = Predictor.from_run(tmp_path / "rt").spec
    assert spec.name == "flexunet-efficientnet-b0"
    assert list(spec.options["decoder_channels"]) == [64, 32, 24, 16, 8]


def test_schedule_option() -> None:
    from confseg.training.module import SegmentationModule

    with pytest.raises(ConfigError, match="schedule='linear'; choose one of cosine, constant"):
        TrainConfig(data="x", out="y", schedule="linear")
    for schedule, has_scheduler in (("cosine", True), ("constant", False)):
        cfg = TrainConfig(data="x", out="y", model="unet-resnet18", schedule=schedule,
                          epochs=4)
        got = SegmentationModule(cfg.to_dict(), ["a"]).configure_optimizers()
        assert isinstance(got, dict) == has_scheduler
        if has_scheduler:
            assert got["lr_scheduler"]["scheduler"].T_max == 4


def test_swa_averages_the_final_epochs_into_best_and_resumes(data, tmp_path):
    import pytorch_lightning as pl

    from confseg.models.spec import load_checkpoint
    from confseg.training.averaging import first_averaged_epoch

    class Record(pl.Callback):
        def __init__(self) -> None:
            self.seen: list[dict[str, torch.Tensor]] = []

        def on_train_epoch_end(self, trainer, module):
            self.seen.append({k: v.detach().clone() for k, v in module.state_dict().items()})

    class Stop(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 2:
                raise RuntimeError("stopped for the test")

    assert [first_averaged_epoch(4, f) for f in (0.01, 0.25, 0.5, 0.99)] == [3, 3, 2, 0]
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "full"), epochs=3, val="none", swa=0.6,
                      precision="32-true", **FAST)
    rec = Record()
    run = RunFolder(train(cfg, quiet=True, callbacks=[rec]))
    best = load_checkpoint(run.checkpoint("best"))["state_dict"]
    last = load_checkpoint(run.checkpoint("last"))
    floats = [k for k, v in best.items() if v.is_floating_point()]
    assert floats and best.keys() == rec.seen[2].keys()
    for k in floats:  # epochs 1 and 2 averaged; the current weights kept beside for --resume
        torch.testing.assert_close(best[k], (rec.seen[1][k] + rec.seen[2][k]) / 2)
        assert torch.equal(last["current_model_state"][k], rec.seen[2][k])
    assert not torch.equal(best[floats[0]], rec.seen[2][floats[0]])
    # stopped with one epoch in the average, resumed: the same average
    cut = cfg.replace(out=str(tmp_path / "cut"))
    with pytest.raises(RuntimeError, match="stopped for the test"):
        train(cut, quiet=True, callbacks=[Stop()])
    resume(cut.out, quiet=True)
    again = load_checkpoint(RunFolder(cut.out).checkpoint("best"))["state_dict"]
    for k in floats:
        torch.testing.assert_close(again[k], best[k])
    with pytest.raises(ConfigError, match="swa=1"):
        TrainConfig(data="d", out="o", swa=1)
