import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from confseg.errors import ConfsegError
from confseg.models import ModelError, create_model, list_models
from confseg.models import smp as smp_module
from confseg.models.monai_nets import DynUNet2D, plan_dynunet
from confseg.models.registry import model_info

NAMES = list_models()
MONAI_NAMES = ["basicunet", "dynunet", "segresnet", "attention-unet",
               "flexunet-efficientnet-b0", "flexunet-efficientnet-b2"]
CLASSES = 3


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small convolutions run faster on one thread, and much faster on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(name: str, in_channels: int = 1, seed: int = 0, **kw: object) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, in_channels=in_channels, classes=CLASSES, **kw)


def ultrasound_like(size: int) -> torch.Tensor:
    """A ``(1, 1, size, size)`` frame in [0, 1]: Rayleigh speckle, a bright pleural line, a
    rib shadow below it, depth attenuation (what the exports must get right, not just noise)."""
    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[:size, :size] / size
    tissue = np.exp(-1.5 * rows) * (0.35 + 0.6 * np.exp(-((rows - 0.3) / 0.02) ** 2))
    tissue[(rows > 0.32) & (np.abs(cols - 0.3) < 0.1)] *= 0.15  # shadow under a rib
    frame = tissue * rng.rayleigh(0.6, (size, size))
    return torch.from_numpy(np.clip(frame, 0, 1).astype(np.float32))[None, None]


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def test_registry_lists_builtin_models() -> None:
    for arch in ("fpn", "unet"):
        for enc in ("resnet18", "resnet34", "resnet50"):
            assert f"{arch}-{enc}" in NAMES
    for name in MONAI_NAMES:
        assert name in NAMES
    for name in NAMES:  # every listed name has a capability record
        info = model_info(name)
        assert info.name == name and info.torchscript in ("script", "trace")


@pytest.mark.parametrize("name", NAMES)
def test_model(name: str, tmp_path: Path) -> None:
    """Every registered model: train step, seeds, odd sizes, TorchScript, ONNX, weights."""
    info = model_info(name)
    size = 32 if name.endswith("resnet50") else 64  # keep the big encoders fast
    batch = 1 if name in MONAI_NAMES else 2  # keep the MONAI nets fast
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    # same seed -> same train-mode output; forward/backward reaches the first conv (1 and 3 ch)
    model = build(name, 1)
    out = model(x[:, :1])
    assert torch.equal(out, build(name, 1)(x[:, :1]))
    for in_channels, m, y in [(1, model, out), (3, build(name, 3), None)]:
        assert m.confseg_spec == {"name": name, "in_channels": in_channels, "classes": CLASSES}
        y = m(x[:, :in_channels]) if y is None else y
        assert y.shape == (batch, CLASSES, size, size)
        y.square().mean().backward()
        grad = first_conv(m).weight.grad
        assert grad is not None and grad.shape[1] == in_channels
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0

    # eval mode: output size equals input size for odd and non-square inputs
    model = build(name, 1).eval()
    small = torch.randn(1, 1, 37, 41, generator=torch.Generator().manual_seed(2))
    odd = torch.randn(1, 1, 61, 77, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref_small, ref_odd = model(small), model(odd)
        assert ref_small.shape == (1, CLASSES, 37, 41)
        assert ref_odd.shape == (1, CLASSES, 61, 77)
        assert model(torch.randn(1, 1, 33, 95)).shape == (1, CLASSES, 33, 95)

    # the bundle's exports (MONAI's verified converters, as `confseg export` runs them) at a
    # fixed canvas: exported and eager probabilities agree within 1e-4 on random input and
    # on an ultrasound-like frame, batched (the ONNX batch axis is dynamic)
    ort = pytest.importorskip("onnxruntime")
    assert info.onnx, f"{name} is marked as not exporting to ONNX: drop this assert if so"
    from confseg.inference.export import write_onnx, write_torchscript

    canvas = torch.cat([torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(4)),
                        ultrasound_like(size)])
    with torch.no_grad():
        expected = torch.sigmoid(model(canvas)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_onnx(model, canvas[:1], tmp_path / "model.onnx")
        write_torchscript(model, canvas[:1], tmp_path / "model.ts",
                          trace=info.torchscript == "trace")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": canvas.numpy()})
    np.testing.assert_allclose(1 / (1 + np.exp(-got)), expected, rtol=0, atol=1e-4)
    with torch.no_grad():
        got_ts = torch.sigmoid(torch.jit.load(str(tmp_path / "model.ts"))(canvas)).numpy()
    np.testing.assert_allclose(got_ts, expected, rtol=0, atol=1e-4)

    # encoder weights round trip: save one encoder, load it into a differently seeded model
    weights = tmp_path / "encoder.pth"
    if not info.encoder_weights:
        torch.save(model.state_dict(), weights)
        with pytest.raises(ModelError, match="no separate encoder"):
            build(name, 1, encoder_weights=weights)
        return
    torch.save(model.encoder.state_dict(), weights)
    fresh = build(name, 1, seed=5, encoder_weights=weights)
    fresh_state = fresh.encoder.state_dict()
    assert not torch.equal(first_conv(fresh.decoder).weight, first_conv(model.decoder).weight)
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(fresh_state[key], value), key


SCRIPTABLE = [n for n in NAMES if model_info(n).torchscript == "script"
              and not n.endswith(("resnet34", "resnet50", "efficientnet-b2"))]  # one per family


@pytest.mark.parametrize("name", SCRIPTABLE)
def test_torchscript_script(name: str) -> None:
    """Models marked "script" also compile with torch.jit.script (size-generic)."""
    model = build(name, 2).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 2, 45, 70, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-4, atol=1e-5)


def test_input_conv_adaptation(tmp_path: Path) -> None:
    rgb = build("fpn-resnet18", 3)
    path = tmp_path / "rgb.pt"
    # a full-model checkpoint wrapped as Lightning/DDP would write it: prefixes are stripped
    state = {f"module.model.{k}": v for k, v in rgb.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, path)
    grey = build("unet-resnet18", 1, seed=7, encoder_weights=path)
    conv = rgb.encoder.conv1.weight
    torch.testing.assert_close(grey.encoder.conv1.weight, conv.sum(1, keepdim=True))
    torch.testing.assert_close(
        grey.encoder.layer4[1].conv2.weight, rgb.encoder.layer4[1].conv2.weight
    )
    # a grey image gives the activations the RGB weights give on it repeated to 3 channels
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(grey.encoder.conv1(x), rgb.encoder.conv1(x.repeat(1, 3, 1, 1)))
    two = build("fpn-resnet18", 2, encoder_weights=path)
    torch.testing.assert_close(two.encoder.conv1.weight, conv[:, [0, 1]] * 1.5)


def test_torchvision_style_file_loads(tmp_path: Path) -> None:
    # torchvision ResNet state_dicts have an fc head and may lack num_batches_tracked
    enc = build("fpn-resnet34", 3).encoder.state_dict()
    state = {k: v for k, v in enc.items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(state, tmp_path / "tv.pth")
    model = build("fpn-resnet34", 3, seed=3, encoder_weights=tmp_path / "tv.pth")
    torch.testing.assert_close(
        model.encoder.layer3[5].bn2.running_var, enc["layer3.5.bn2.running_var"]
    )


def test_mismatched_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(build("fpn-resnet18").encoder.state_dict(), path)
    with pytest.raises(
        ModelError, match=r"r18\.pth do not match the fpn-resnet50 encoder: missing"
    ):
        build("fpn-resnet50", encoder_weights=path)
    with pytest.raises(ModelError, match=r"r18\.pth do not match the fpn-resnet34 encoder"):
        build("fpn-resnet34", encoder_weights=path)  # resnet34 has more blocks
    state = torch.load(path)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"shape mismatch.*layer1\.0\.conv1\.weight"):
        build("fpn-resnet18", encoder_weights=path)


def test_bad_weights_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found; confseg never downloads"):
        build("fpn-resnet18", encoder_weights="imagenet")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=r"cannot read encoder weights .*junk\.pt"):
        build("fpn-resnet18", encoder_weights=tmp_path / "junk.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ModelError, match="is not a state_dict"):
        build("fpn-resnet18", encoder_weights=tmp_path / "list.pt")


def test_unknown_name_and_options() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'fpn-resnet19'.*fpn-resnet34"):
        create_model("fpn-resnet19", in_channels=1, classes=2)
    with pytest.raises(ModelError, match=r"unknown option.*colour"):
        create_model("unet-resnet18", in_channels=1, classes=2, colour=1)
    with pytest.raises(ModelError, match="classes=0"):
        create_model("fpn-resnet18", in_channels=1, classes=0)
    assert issubclass(ModelError, ConfsegError)


def test_fpn_options() -> None:
    model = build("fpn-resnet18", pyramid_channels=64, segmentation_channels=32, dropout=0.5)
    assert model.decoder.laterals[0].out_channels == 64
    assert model.classifier.in_channels == 32
    assert isinstance(model.dropout, nn.Dropout2d)


@pytest.mark.skipif(smp_module.smp_available(), reason="segmentation_models_pytorch is installed")
def test_smp_missing() -> None:
    assert not any(n.startswith("smp-") for n in NAMES)
    with pytest.raises(
        ModelError, match=r"segmentation_models_pytorch is not installed.*fpn-resnet34"
    ):
        create_model("smp-fpn-resnet34", in_channels=1, classes=2)


def test_smp_names_when_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict]] = []

    class Fake(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Conv2d(1, 1, 1)

    def fake_create(arch: str, **kw: object) -> nn.Module:
        calls.append((arch, kw))
        return Fake()

    fake = types.SimpleNamespace(create_model=fake_create)
    monkeypatch.setattr(smp_module, "_import_smp", lambda: (fake, ""))
    assert "smp-fpn-resnet34" in list_models()
    model = create_model("smp-unetplusplus-resnet50", in_channels=2, classes=4)
    assert calls == [
        (
            "unetplusplus",
            {"encoder_name": "resnet50", "encoder_weights": None, "in_channels": 2, "classes": 4},
        )
    ]
    assert model.confseg_spec["name"] == "smp-unetplusplus-resnet50"
    with pytest.raises(ModelError, match="expected smp-<arch>-<encoder>"):
        create_model("smp-fpn", in_channels=1, classes=1)


@pytest.mark.parametrize(
    ("size", "strides"),
    [(16, [1, 2, 2]), (32, [1, 2, 2, 2]), (64, [1, 2, 2, 2, 2]), (96, [1, 2, 2, 2, 2]),
     (128, [1, 2, 2, 2, 2, 2]), (256, [1, 2, 2, 2, 2, 2]), (512, [1, 2, 2, 2, 2, 2])],
)
def test_dynunet_plan(size: int, strides: list[int]) -> None:
    # nnU-Net's rule: halve while the map is >= 8 px (bottleneck 4-7 px), 3x3 kernels, first
    # stride 1; capped at 6 stages
    kernels, planned = plan_dynunet(size)
    assert planned == strides and kernels == [3] * len(strides)


def test_dynunet_plan_uncapped_and_too_small() -> None:
    assert plan_dynunet(256, max_levels=None)[1] == [1, 2, 2, 2, 2, 2, 2]  # nnU-Net: 4 px at 256
    assert plan_dynunet(512, max_levels=None)[1] == [1] + [2] * 7
    with pytest.raises(ModelError, match="size=8 allows only 1 halving"):
        plan_dynunet(8)


def test_size_option_for_every_model() -> None:
    """create_model accepts size for all models; only dynunet plans from it."""
    small = build("dynunet", size=32)
    assert isinstance(small, DynUNet2D)
    assert small.strides == [1, 2, 2, 2] and small.input_multiple == 8
    assert build("dynunet").strides == [1, 2, 2, 2, 2, 2]  # default size 256
    assert build("dynunet").input_multiple == 32
    reference = build("fpn-resnet18")
    sized = build("fpn-resnet18", size=128)
    for (key, a), b in zip(reference.state_dict().items(), sized.state_dict().values(),
                           strict=True):
        assert torch.equal(a, b), key
    assert build("basicunet", size=64).input_multiple == 16
    with pytest.raises(ModelError, match="size=0"):
        build("unet-resnet18", size=0)


def test_dynunet_deep_supervision() -> None:
    model = build("dynunet", size=64, deep_supervision=True, deep_supr_num=2)
    x = torch.randn(2, 1, 45, 50)
    stacked = model(x)  # training mode: main output and two heads, at the input size
    assert stacked.shape == (2, 3, CLASSES, 45, 50)
    stacked.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        main = model(x)
        assert main.shape == (2, CLASSES, 45, 50)
        # MONAI's heads write into a shared Python list: torch.jit.script refuses, trace works
        with pytest.raises(RuntimeError):
            torch.jit.script(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, x, check_trace=False)
        torch.testing.assert_close(traced(x[:1, :, :33, :40]), model(x[:1, :, :33, :40]))
    with pytest.raises(ModelError, match="deep_supr_num=9"):
        build("dynunet", size=64, deep_supervision=True, deep_supr_num=9)


def test_monai_options_and_errors() -> None:
    assert build("attention-unet", channels=(8, 16, 32), strides=(2, 2)).input_multiple == 4
    assert build("segresnet", init_filters=8, blocks_down=(1, 1, 1),
                 blocks_up=(1, 1)).input_multiple == 4
    with pytest.raises(ModelError, match=r"unknown option.*colour.*use .*features"):
        build("basicunet", colour=1)
    with pytest.raises(ModelError, match=r"strides=.*one entry fewer"):
        build("attention-unet", strides=(2, 2, 2, 2))
    with pytest.raises(ModelError, match="MONAI rejected"):
        build("basicunet", upsample="sideways")
    with pytest.raises(ModelError, match=r"backbone 'resnet18'.*use unet-resnet18"):
        build("flexunet-resnet18")
    with pytest.raises(ModelError, match="unknown FlexibleUNet backbone 'efficientnet-b9'"):
        build("flexunet-efficientnet-b9")


def test_flexunet_every_parameter_trains_and_rgb_weights_adapt(tmp_path: Path) -> None:
    # EfficientNet's unused classifier is removed: every parameter gets a gradient (DDP)
    model = build("flexunet-efficientnet-b1", 1)
    model(torch.randn(1, 1, 64, 64)).mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    # an RGB encoder file (with the classifier keys a full EfficientNet has) loads into a grey
    # model: the stem kernels are summed over channels
    rgb = build("flexunet-efficientnet-b1", 3)
    state = dict(rgb.encoder.state_dict())
    state["_fc.weight"], state["_fc.bias"] = torch.zeros(1000, 1280), torch.zeros(1000)
    torch.save(state, tmp_path / "b1.pth")
    grey = build("flexunet-efficientnet-b1", 1, seed=3, encoder_weights=tmp_path / "b1.pth")
    torch.testing.assert_close(grey.encoder._conv_stem.weight,
                               rgb.encoder._conv_stem.weight.sum(1, keepdim=True))


@pytest.mark.parametrize("head_stride", [2, 1])
def test_fpn_head_stride_option(head_stride: int) -> None:
    default = build("fpn-resnet18", 2)
    model = build("fpn-resnet18", 2, head_stride=head_stride).eval()
    assert len(model.refine) == {2: 1, 1: 2}[head_stride]
    # the option adds stages; the encoder and pyramid are the same modules (same keys)
    assert set(default.encoder.state_dict()) == set(model.encoder.state_dict())
    x = torch.randn(1, 2, 45, 70, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, CLASSES, 45, 70)
        torch.testing.assert_close(torch.jit.script(model)(x), out)
    with pytest.raises(ModelError, match="head_stride=3"):
        build("fpn-resnet18", head_stride=3)


def test_dynunet_is_planned_for_the_training_size(tmp_path: Path) -> None:
    """The run's size reaches create_model in training and when a Predictor loads the run."""
    from confseg.config import TrainConfig
    from confseg.inference import Predictor
    from confseg.training import train

    from conftest import write_tiny_dataset

    ds = write_tiny_dataset(tmp_path / "ds", patients=4, per_patient=1, size=(32, 32))
    run = train(TrainConfig(data=str(ds), out=str(tmp_path / "r"), model="dynunet", size=64,
                            epochs=1, batch_size=2, k=2, val="none", patience=0), quiet=True)
    model = Predictor.from_run(run).model
    assert list(model.strides) == plan_dynunet(64)[1] != plan_dynunet(256)[1]


def test_dynunet_deep_supervision_trains_every_head_and_exports(tmp_path: Path) -> None:
    """With deep supervision on, training applies the loss to every head; the bundle has one
    output."""
    from confseg.config import TrainConfig
    from confseg.inference import Predictor
    from confseg.inference.export import export_run
    from confseg.losses import SoftBCEDiceLoss, deep_supervision_components
    from confseg.training import train

    from conftest import write_tiny_dataset

    loss = SoftBCEDiceLoss()
    z = torch.randn(2, 1, CLASSES, 8, 8)
    t = torch.rand(2, CLASSES, 8, 8)
    one = deep_supervision_components(loss, z, t)
    torch.testing.assert_close(one["loss"], loss(z[:, 0], t))  # one head: the plain loss
    heads = torch.stack([z[:, 0], torch.zeros_like(z[:, 0])], 1).requires_grad_()
    two = deep_supervision_components(loss, heads, t)
    torch.testing.assert_close(two["loss"], (loss(z[:, 0], t) + 0.5 * loss(heads[:, 1], t)) / 1.5)
    two["loss"].backward()
    assert heads.grad[:, 1].abs().sum() > 0  # the lower head is trained too
    with pytest.raises(ValueError, match="one more axis"):
        deep_supervision_components(loss, z[:, 0], t)

    ds = write_tiny_dataset(tmp_path / "ds", patients=4, per_patient=1, size=(32, 32))
    run = train(TrainConfig(data=str(ds), out=str(tmp_path / "r"), model="dynunet", size=64,
                            model_options={"deep_supervision": True, "deep_supr_num": 2},
                            epochs=1, batch_size=2, k=2, val="none", patience=0), quiet=True)
    pred = Predictor.from_run(run)
    assert pred.predict(np.zeros((32, 32), np.uint8)).shape == (2, 32, 32)  # classes a, b
    bundle = export_run(run, tmp_path / "b", formats=["torchscript", "onnx"],
                        precisions=["fp32"], measure=False)
    assert {"model.ts", "model.onnx"} <= {f.name for f in (bundle / "models").iterdir()}


def test_model_options_reach_training_the_predictor_and_the_bundle(tmp_path: Path) -> None:
    """TrainConfig.model_options builds the network, lives in the ModelSpec and rebuilds it."""
    import json

    from confseg.config import TrainConfig
    from confseg.inference import Predictor
    from confseg.inference.export import export_run
    from confseg.training import train

    from conftest import write_tiny_dataset

    ds = write_tiny_dataset(tmp_path / "ds", patients=4, per_patient=1, size=(32, 32))
    features = [4, 4, 8, 8, 16, 4]
    run = train(TrainConfig(data=str(ds), out=str(tmp_path / "r"), model="basicunet", size=32,
                            model_options={"features": features}, epochs=1, batch_size=2,
                            k=2, val="none", patience=0), quiet=True)
    pred = Predictor.from_run(run)
    assert pred.spec.options == {"features": features}
    convs = [m for m in pred.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].out_channels == 4  # not MONAI's default 32
    export_run(run, tmp_path / "b", formats=["onnx"], precisions=["fp32"], measure=False)
    meta = json.loads((tmp_path / "b" / "configs" / "metadata.json").read_text())
    assert meta["model_options"] == {"features": features}
    with pytest.raises(ModelError, match="unknown option"):
        train(TrainConfig(data=str(ds), out=str(tmp_path / "r2"), model="basicunet", size=32,
                          model_options={"feature": features}, epochs=1, k=2, val="none"),
              quiet=True)


def test_flexunet_batch_norm_momentum() -> None:
    # MONAI's EfficientNets keep TensorFlow's batch-norm momentum (0.01): a 240-step CPU run
    # left running variances near their initial 1 and the eval-mode network predicted nothing
    # on lus-cs541 (docs/results.md); every encoder batch norm runs at PyTorch's 0.1
    model = build("flexunet-efficientnet-b0", 1)
    norms = [m for m in model.encoder.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(norms) > 40 and {m.momentum for m in norms} == {0.1}
