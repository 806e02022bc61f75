"""ModelSpec: what a trained network needs to be rebuilt and fed, stored in every checkpoint.

Checkpoints are only ever loaded with ``torch.load(weights_only=True)`` (:func:`load_checkpoint`):
a crafted checkpoint cannot run code. confseg writes nothing but tensors and plain types into
them (the spec, RNG states, Lightning's loop and optimiser state).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confseg.errors import CheckpointError

#: Checkpoint key holding the spec (plain types only, so ``weights_only=True`` loads it).
SPEC_KEY = "confseg_spec"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A self-describing model: architecture, input and output meaning, calibration.

    Attributes:
        name: Registered model name (:func:`confseg.models.list_models`).
        in_channels: Input channels (1 = grey).
        class_names: Output channels, one sigmoid per class.
        size: Square input side; images are letterboxed to it (:mod:`confseg.preprocess`).
        temperature: Logits are divided by it before the sigmoid (1 = uncalibrated).
        options: Architecture options given to ``create_model`` (plain JSON types).
    """

    name: str
    in_channels: int
    class_names: tuple[str, ...]
    size: int
    temperature: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        object.__setattr__(self, "options", dict(self.options))

    @property
    def classes(self) -> int:
        """Number of output channels."""
        return len(self.class_names)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, numbers, strings) for a checkpoint or a JSON file."""
        return {"name": self.name, "in_channels": self.in_channels,
                "class_names": list(self.class_names), "classes": self.classes,
                "size": self.size, "temperature": self.temperature,
                "options": dict(self.options)}

    @classmethod
    def from_dict(cls, obj: Any, *, where: str = "checkpoint") -> ModelSpec:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            CheckpointError: a field is missing or of the wrong type.
        """
        try:
            return cls(name=str(obj["name"]), in_channels=int(obj["in_channels"]),
                       class_names=tuple(obj["class_names"]), size=int(obj["size"]),
                       temperature=float(obj.get("temperature", 1.0)),
                       options=dict(obj.get("options") or {}))
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{where}: no usable model spec (name, channels, classes, "
                                  "size); it was not written by this confseg: retrain the run"
                                  ) from None

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], *, where: str = "checkpoint") -> ModelSpec:
        """The spec stored in a loaded checkpoint dict.

        Checkpoints of confseg 0.1 stored only ``{name, in_channels, classes}``; their size and
        class names are taken from the hyper-parameters Lightning saved beside them.
        """
        spec = state.get(SPEC_KEY)
        if isinstance(spec, dict) and "class_names" in spec:
            return cls.from_dict(spec, where=where)
        hp = state.get("hyper_parameters") or {}
        cfg = hp.get("cfg") or {}
        legacy = {"name": cfg.get("model", (spec or {}).get("name")),
                  "in_channels": cfg.get("channels", (spec or {}).get("in_channels")),
                  "class_names": hp.get("classes"), "size": cfg.get("size"),
                  "options": cfg.get("model_options")}
        return cls.from_dict(legacy, where=where)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code can run), with a clear error.

    Raises:
        CheckpointError: missing, truncated, or holding objects a weights-only load refuses
            (such as a pickled callable).
    """
    import torch

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
