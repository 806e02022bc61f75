"""Ensembles and test-time augmentation (TTA): average several predictions' probabilities.

An :class:`Ensemble` holds one or more :class:`~confseg.inference.Predictor` members that
predict the same classes. Each member keeps its own input size and channels (it letterboxes
the image itself); the ensemble averages their *probabilities* (the sigmoid of each member's
logits), never their logits. With ``tta="flip"`` every member also predicts the image flipped
left-right, and that prediction is flipped back before it joins the average. Vertical flips
are never used: an ultrasound image has its probe at the top.

Test-time augmentation of a single model is a one-member ensemble::

    Ensemble.from_runs(["runs/a"], tta="flip")

Calibration works on the combined output: :meth:`Ensemble.logits_many` returns
``log(p / (1 - p))`` of the averaged probability ``p`` (clipped to ``[1e-6, 1 - 1e-6]``), and
the ensemble's own :attr:`~Ensemble.temperature` divides that logit, exactly as a
:class:`Predictor`'s temperature divides its network's logits. A :class:`Predictor` and an
:class:`Ensemble` therefore share one interface (:class:`ProbabilityModel`), which evaluation
and :func:`confseg.inference.files.predict_files` take.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from confseg.errors import CheckpointError, ConfsegError
from confseg.inference.predictor import Predictor
from confseg.runs import RunFolder

#: Test-time augmentations. Only the horizontal flip: ultrasound is never flipped vertically.
TTA_MODES = ("flip",)
#: Averaged probabilities are clipped to ``[EPS, 1 - EPS]`` before they become logits.
EPS = 1e-6

RunLike = str | os.PathLike[str] | RunFolder


class ProbabilityModel(Protocol):
    """What evaluation and prediction need: a :class:`Predictor` or an :class:`Ensemble`."""

    @property
    def classes(self) -> list[str]:
        """Class names, in output-channel order."""

    @property
    def temperature(self) -> float:
        """Logits are divided by it before the sigmoid (1 = uncalibrated)."""

    def logits_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                    ) -> list[torch.Tensor]:
        """Logits ``(K, H, W)`` at each image's size, before the temperature."""

    def probs_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                   ) -> list[np.ndarray]:
        """Probabilities ``(K, H, W)`` float32 at each image's size, after the temperature."""

    def predict_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                     ) -> list[np.ndarray]:
        """The same as :meth:`probs_many`."""

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Probabilities ``(K, H, W)`` of one image."""


def check_tta(tta: str | None) -> str | None:
    """The test-time augmentation named by ``tta`` (``None``/``"none"`` for none).

    Raises:
        ConfsegError: anything but ``flip``.
    """
    if tta is None or str(tta).strip().lower() in ("", "none"):
        return None
    name = str(tta).strip().lower()
    if name in TTA_MODES:
        return name
    raise ConfsegError(f"--tta {tta!r}: only 'flip' (left-right) is allowed; ultrasound images "
                       "are never flipped vertically (the probe is at the top)")


def prob_to_logit(prob: torch.Tensor) -> torch.Tensor:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[EPS, 1 - EPS]`` (float32 out)."""
    p = prob.double().clamp(EPS, 1.0 - EPS)
    return (torch.log(p) - torch.log1p(-p)).float()


def _flip(image: np.ndarray) -> np.ndarray:
    """An ``(H, W)`` or ``(H, W, C)`` image mirrored left-right."""
    return np.ascontiguousarray(np.asarray(image)[:, ::-1])


class Ensemble:
    """Several predictors (or one, with test-time augmentation) averaged in probability.

    Args:
        members: Predictors of the same classes, in order.
        tta: ``None`` or ``"flip"`` (also average each image's left-right mirror).
        temperature: Divides the logit of the averaged probability (1 = uncalibrated).
        names: What to call each member in messages and records (default ``member <i>``).

    Raises:
        CheckpointError: members predict different classes (the message names the member).
    """

    def __init__(self, members: Sequence[Predictor], *, tta: str | None = None,
                 temperature: float = 1.0, names: Sequence[str] | None = None) -> None:
        if not members:
            raise ConfsegError("an ensemble needs at least one member")
        names = [f"member {i}" for i in range(len(members))] if names is None else list(names)
        if len(names) != len(members):
            raise ValueError("one name per member")
        for name, member in zip(names[1:], members[1:], strict=True):
            _check_same_classes(members[0].classes, names[0], member.classes, name)
        if not temperature > 0:
            raise ConfsegError(f"temperature={temperature}; must be > 0")
        self.members = list(members)
        self.names = names
        self.tta = check_tta(tta)
        self._temperature = float(temperature)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.names!r}, tta={self.tta!r})"

    def __len__(self) -> int:
        return len(self.members)

    @classmethod
    def from_runs(cls, runs: Sequence[RunLike], *, checkpoint: str = "best",
                  tta: str | None = None, temperature: float = 1.0,
                  device: str | torch.device = "cpu") -> Ensemble:
        """Load ``run/checkpoints/<checkpoint>.ckpt`` of every run, uncalibrated.

        Each member's own ``calibration.json`` is not applied: it describes that model alone.
        The ensemble's ``temperature`` (from its own evaluation folder's ``calibration.json``)
        applies to the combined output.

        Raises:
            CheckpointError: a run has no such checkpoint, or predicts other classes than the
                first run (the message names it).
        """
        tta = check_tta(tta)
        if not runs:
            raise ConfsegError("an ensemble needs at least one run")
        members: list[Predictor] = []
        names = [str(r.root if isinstance(r, RunFolder) else r) for r in runs]
        for name, run in zip(names, runs, strict=True):
            member = Predictor.from_run(run, checkpoint=checkpoint, calibrated=False,
                                        device=device)
            if members:
                _check_same_classes(members[0].classes, names[0], member.classes, name)
            members.append(member)
        return cls(members, tta=tta, temperature=temperature, names=names)

    @property
    def classes(self) -> list[str]:
        """Class names, in output-channel order (the members agree on them)."""
        return list(self.members[0].classes)

    @property
    def temperature(self) -> float:
        """Divides the logit of the averaged probability before the sigmoid (1 = uncalibrated)."""
        return self._temperature

    def with_temperature(self, temperature: float) -> Ensemble:
        """The same members and TTA with another temperature."""
        return type(self)(self.members, tta=self.tta, temperature=temperature, names=self.names)

    def describe(self) -> dict[str, Any]:
        """``{"ensemble": n, "runs": [...], "tta": ...}`` for records such as summary.json."""
        return {"ensemble": len(self.members), "runs": list(self.names), "tta": self.tta}

    @torch.inference_mode()
    def mean_probs_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                        ) -> list[torch.Tensor]:
        """The averaged probabilities ``(K, H, W)`` float32, before any temperature."""
        images = list(images)
        views = [False, True] if self.tta == "flip" else [False]
        sums: list[torch.Tensor] | None = None
        n = 0
        for member in self.members:
            for flipped in views:
                batch = [_flip(im) for im in images] if flipped else images
                probs = [torch.sigmoid(z / member.temperature)
                         for z in member.logits_many(batch, batch_size=batch_size)]
                if flipped:
                    probs = [p.flip(-1) for p in probs]
                sums = probs if sums is None else [s + p for s, p in zip(sums, probs, strict=True)]
                n += 1
        assert sums is not None
        return [s / n for s in sums]

    def logits_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                    ) -> list[torch.Tensor]:
        """``log(p / (1 - p))`` of the averaged probability (clipped), before the temperature."""
        return [prob_to_logit(p) for p in self.mean_probs_many(images, batch_size=batch_size)]

    def predict_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                     ) -> list[np.ndarray]:
        """Probabilities ``(K, H, W)`` float32 at each image's size.

        At temperature 1 the average itself, else ``sigmoid(logit(p) / T)``.
        """
        probs = self.mean_probs_many(images, batch_size=batch_size)
        if self.temperature == 1.0:
            return [p.numpy() for p in probs]
        return [torch.sigmoid(prob_to_logit(p) / self.temperature).numpy() for p in probs]

    def probs_many(self, images: Sequence[np.ndarray], *, batch_size: int = 8
                   ) -> list[np.ndarray]:
        """The same as :meth:`predict_many`."""
        return self.predict_many(images, batch_size=batch_size)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Probabilities ``(K, H, W)`` for one image ``(H, W)`` or ``(H, W, C)``."""
        return self.predict_many([image])[0]


def load_predictor(runs: Sequence[RunLike], *, checkpoint: str = "best", tta: str | None = None,
                   calibrated: bool = True, temperature: float | None = None,
                   device: str | torch.device = "cpu") -> Predictor | Ensemble:
    """A :class:`Predictor` for one run without TTA (as today), else an :class:`Ensemble`.

    Args:
        runs: Run folders; the first leads.
        checkpoint: ``best`` or ``last`` (for every run).
        tta: ``None`` or ``"flip"``.
        calibrated: For one run without TTA, apply its ``calibration.json``. An ensemble's
            members are always uncalibrated (their temperatures describe each model alone).
        temperature: Overrides the temperature (the single run's, or the ensemble's; an
            ensemble's default is 1).
        device: Torch device.
    """
    tta = check_tta(tta)
    if len(runs) == 1 and tta is None:
        return Predictor.from_run(runs[0], checkpoint=checkpoint, calibrated=calibrated,
                                  temperature=temperature, device=device)
    return Ensemble.from_runs(runs, checkpoint=checkpoint, tta=tta,
                              temperature=1.0 if temperature is None else temperature,
                              device=device)


def _check_same_classes(first: Sequence[str], first_name: str, other: Sequence[str],
                        other_name: str) -> None:
    if list(first) != list(other):
        raise CheckpointError(f"{other_name}: predicts classes {list(other)}, not "
                              f"{list(first)} like {first_name}; ensemble members must "
                              "predict the same classes in the same order")
