"""The layer rule (DESIGN.md) and the light imports it promises, checked on every run."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    code += "\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return set(out.stdout.split())


def test_import_contract_holds():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.fail("lint-imports missing: install the dev extra (pip install -e '.[dev]')")
    r = subprocess.run([exe, "--config", str(ROOT / ".importlinter")], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_inference_loads_no_lightning():
    mods = _modules_after("import confseg.inference, confseg.inference.files")
    assert "torch" in mods
    assert not {m for m in mods if m.split(".")[0] in ("pytorch_lightning", "lightning")}
    assert not {m for m in mods if m.startswith("confseg.training")}


def test_data_model_loads_no_torch():
    mods = _modules_after("import confseg, confseg.config, confseg.runs, confseg.report.run_report")
    assert "torch" not in mods and "pytorch_lightning" not in mods


def test_viz_and_display_load_no_torch():
    # the contract ignores preprocess -> torch because preprocess imports it lazily; hold it
    mods = _modules_after("import confseg.preprocess, confseg.viz.overlay, confseg.viz.palette, "
                          "confseg.viz.plots, confseg.annotator.maps")
    assert "torch" not in mods


def test_predict_cli_loads_no_lightning(tmp_path):
    # `confseg predict` on a run folder with a real checkpoint, then look at sys.modules.
    code = f"""
import sys, torch
from pathlib import Path
from confseg.models import create_model
from confseg.models.spec import SPEC_KEY, ModelSpec
from confseg.io.images import write_png
import numpy as np
run = Path({str(tmp_path / 'run')!r}); (run / 'checkpoints').mkdir(parents=True)
m = create_model('fpn-resnet18', in_channels=1, classes=2)
spec = ModelSpec(name='fpn-resnet18', in_channels=1, class_names=('a', 'b'), size=64)
torch.save({{'state_dict': {{'model.' + k: v for k, v in m.state_dict().items()}},
            SPEC_KEY: spec.to_dict()}}, run / 'checkpoints' / 'best.ckpt')
write_png(run / 'x.png', np.zeros((40, 56), np.uint8))
from typer.testing import CliRunner
from confseg.cli import app
r = CliRunner().invoke(app, ['predict', str(run), str(run / 'x.png'), '--out', str(run / 'p'),
                             '--quiet'])
assert r.exit_code == 0, r.output
"""
    mods = _modules_after(code)
    assert "confseg.inference.files" in mods
    assert not {m for m in mods if m.split(".")[0] in ("pytorch_lightning", "lightning")}
    assert (tmp_path / "run" / "p" / "x_prob_a.png").is_file()
