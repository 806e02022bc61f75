"""Predict per-class probability maps at the original image size from a run folder."""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from confseg.errors import ConfsegError
from confseg.models import create_model
from confseg.torchdata import to_channels
from confseg.training.config import TrainConfig
from confseg.transforms import Letterbox


class CheckpointError(ConfsegError):
    """A checkpoint is missing, unreadable or does not match its run."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint (weights-only safe) with a clear error."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found; train the run first")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{p}: holds objects a weights-only load refuses (not written by "
                              "this confseg version?); retrain the run") from None
    except Exception as exc:
        raise CheckpointError(f"{p}: cannot read checkpoint ({type(exc).__name__}); it may be "
                              "truncated: retrain or resume the run") from None


class Predictor:
    """A trained model plus its preprocessing.

    Args:
        model: Network returning logits ``(N, K, S, S)``.
        classes: Class names.
        size: Square input side used in training.
        channels: Model input channels.
        temperature: Logits are divided by it before the sigmoid (1 = uncalibrated).
        device: Torch device.
    """

    def __init__(self, model: torch.nn.Module, *, classes: Sequence[str], size: int,
                 channels: int, temperature: float = 1.0, device: str | torch.device = "cpu"
                 ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.classes = list(classes)
        self.size = int(size)
        self.channels = int(channels)
        self.temperature = float(temperature)

    @classmethod
    def from_run(cls, run: str | Path, *, checkpoint: str = "best", calibrated: bool = True,
                 device: str | torch.device = "cpu") -> Predictor:
        """Load ``run/checkpoints/<checkpoint>.ckpt`` (``best`` or ``last``).

        With ``calibrated``, a temperature from ``run/calibration.json`` is applied if present.
        """
        run = Path(run)
        cfg_path = run / "config.yaml"
        if not cfg_path.exists():
            raise CheckpointError(f"{run}: no config.yaml; not a confseg run folder")
        cfg = TrainConfig.load(cfg_path)
        state = load_checkpoint(run / "checkpoints" / f"{checkpoint}.ckpt")
        classes = list(state.get("hyper_parameters", {}).get("classes", []))
        if not classes:
            raise CheckpointError(f"{run}: checkpoint has no class list; retrain with confseg")
        spec = state.get("confseg_spec") or {}
        if spec and (spec.get("name") != cfg.model or spec.get("classes") != len(classes)):
            raise CheckpointError(f"{run}: checkpoint holds {spec.get('name')!r}, config says "
                                  f"{cfg.model!r}; the run folder is inconsistent")
        model = create_model(cfg.model, in_channels=cfg.channels, classes=len(classes))
        weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items()
                   if k.startswith("model.")}
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{run}: checkpoint does not fit model {cfg.model!r} "
                                  f"({str(exc).splitlines()[0]})") from None
        temperature = 1.0
        cal = run / "calibration.json"
        if calibrated and cal.exists():
            temperature = float(json.loads(cal.read_text())["temperature"])
        return cls(model, classes=classes, size=cfg.size, channels=cfg.channels,
                   temperature=temperature, device=device)

    def _prepare(self, image: np.ndarray) -> tuple[torch.Tensor, Letterbox]:
        x = torch.from_numpy(to_channels(image, self.channels))
        box = Letterbox.fit(x.shape[1], x.shape[2], self.size)
        return box.apply(x, mode="bilinear"), box

    @torch.inference_mode()
    def logits_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                    ) -> list[torch.Tensor]:
        """Logits ``(K, H, W)`` at each image's original size (before temperature)."""
        out: list[torch.Tensor] = []
        for i in range(0, len(images), batch_size):
            prepared = [self._prepare(im) for im in images[i:i + batch_size]]
            x = torch.stack([p[0] for p in prepared]).to(self.device)
            z = self.model(x).float().cpu()
            out.extend(box.invert(z[j], mode="bilinear") for j, (_, box) in enumerate(prepared))
        return out

    def predict_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                     ) -> list[np.ndarray]:
        """Probabilities ``(K, H, W)`` float32 at each image's original size."""
        return [torch.sigmoid(z / self.temperature).numpy()
                for z in self.logits_many(images, batch_size=batch_size)]

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Probabilities ``(K, H, W)`` for one image ``(H, W)`` or ``(H, W, C)``."""
        return self.predict_many([image])[0]
