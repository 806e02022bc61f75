"""Predict per-class probability maps at the original image size.

A :class:`Predictor` is a network plus its :class:`~confseg.models.spec.ModelSpec`; a
checkpoint carries the spec, so loading needs nothing else (no config, no Lightning).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from confseg.errors import CheckpointError
from confseg.models import create_model
from confseg.models.spec import ModelSpec, load_checkpoint
from confseg.preprocess import Letterbox, to_channels
from confseg.runs import RunFolder

if TYPE_CHECKING:
    from confseg.inference.bundle import BundlePredictor


class Predictor:
    """A trained model plus its preprocessing.

    Args:
        model: Network returning logits ``(N, K, S, S)``.
        spec: What the network expects and predicts (channels, size, classes, temperature).
        device: Torch device.
    """

    def __init__(self, model: torch.nn.Module, spec: ModelSpec, *,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.spec = spec

    @property
    def classes(self) -> list[str]:
        """Class names, in output-channel order."""
        return list(self.spec.class_names)

    @property
    def size(self) -> int:
        """Square input side."""
        return self.spec.size

    @property
    def channels(self) -> int:
        """Model input channels."""
        return self.spec.in_channels

    @property
    def temperature(self) -> float:
        """Logits are divided by it before the sigmoid (1 = uncalibrated)."""
        return self.spec.temperature

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], *, temperature: float | None = None,
                        device: str | torch.device = "cpu") -> Predictor:
        """Load a checkpoint: its stored ModelSpec rebuilds the network.

        Args:
            path: A ``.ckpt`` written by confseg training.
            temperature: Override the spec's temperature (e.g. a fitted calibration).
            device: Torch device.
        """
        state = load_checkpoint(path)
        spec = ModelSpec.from_checkpoint(state, where=str(path))
        if temperature is not None:
            spec = spec.replace(temperature=float(temperature))
        model = create_model(spec.name, in_channels=spec.in_channels, classes=spec.classes,
                             size=spec.size, **spec.options)
        weights = {k.removeprefix("model."): v for k, v in state.get("state_dict", {}).items()
                   if k.startswith("model.")}
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: checkpoint does not fit model {spec.name!r} "
                                  f"({str(exc).splitlines()[0]})") from None
        return cls(model, spec, device=device)

    @classmethod
    def from_run(cls, run: str | os.PathLike[str] | RunFolder, *, checkpoint: str = "best",
                 calibrated: bool = True, temperature: float | None = None,
                 device: str | torch.device = "cpu") -> Predictor:
        """Load ``run/checkpoints/<checkpoint>.ckpt`` (``best`` or ``last``).

        With ``calibrated``, the temperature of ``run/calibration.json`` is applied if present;
        an explicit ``temperature`` overrides both.
        """
        folder = run if isinstance(run, RunFolder) else RunFolder(run)
        if not folder.root.is_dir():
            raise CheckpointError(f"{folder.root}: run folder not found")
        if temperature is None:
            temperature = folder.temperature() if calibrated else 1.0
        return cls.from_checkpoint(folder.checkpoint(checkpoint), temperature=temperature,
                                   device=device)

    @staticmethod
    def from_bundle(bundle: str | os.PathLike[str], **kw: Any) -> BundlePredictor:
        """An exported bundle's predictor (numpy + onnxruntime; see :mod:`.bundle`)."""
        from confseg.inference.bundle import BundlePredictor

        return BundlePredictor(bundle, **kw)

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

    def probs_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                   ) -> list[np.ndarray]:
        """The same as :meth:`predict_many` (the name an ``Ensemble`` shares)."""
        return self.predict_many(images, batch_size=batch_size)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Probabilities ``(K, H, W)`` for one image ``(H, W)`` or ``(H, W, C)``."""
        return self.predict_many([image])[0]
