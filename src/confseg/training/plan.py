"""``--preset auto``: plan a run from the dataset's fingerprint and this machine's speed.

It chooses model, input size, batch size and epochs, optionally within a wall-time budget.
nnU-Net plans from a fingerprint (image sizes, spacing) but trains a fixed schedule; confseg
also times a few real training steps of the planned model on the machine it runs on and fits
the number of epochs into ``--budget``.

The plan is a dict of :class:`~confseg.config.TrainConfig` overrides plus what it was based
on (``fingerprint``, measured ``step_seconds``, ``budget_seconds``), recorded in ``run.json``.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import numpy as np
import torch

from confseg.config import PRESETS, TrainConfig
from confseg.data import Dataset, load_dataset
from confseg.errors import ConfigError
from confseg.losses import SoftBCEDiceLoss
from confseg.models import create_model

#: Iterations an unbudgeted plan aims for (then clamped to the epoch range below).
TARGET_STEPS = 1500
EPOCH_RANGE = (10, 300)


def parse_budget(text: str | None) -> float | None:
    """``20m``, ``90s``, ``1.5h`` or plain seconds -> seconds (None for no budget).

    Raises:
        ConfigError: an unreadable or non-positive budget.
    """
    if text is None or str(text).strip() == "":
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smh]?)\s*", str(text).lower())
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"--budget {text!r}: give a time like 20m, 90s or 1.5h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def fingerprint(ds: Dataset, *, sample: int = 32) -> dict[str, Any]:
    """Image sizes, structure sizes (marked fraction per class) and counts of a dataset."""
    items = ds.image_items()
    shapes = np.array([ds.image_size(it) for it in items]) if items else np.zeros((0, 2))
    pick = items[:: max(1, len(items) // sample)][:sample]
    marked = {c: [] for c in ds.classes}
    for it in pick:
        conf = ds.read_confidence_stack(it)
        for k, c in enumerate(ds.classes):
            marked[c].append(float((conf[k] > 0).mean()))
    return {
        "image_items": len(items), "patients": len(ds.patients()),
        "median_height": int(np.median(shapes[:, 0])) if len(items) else 0,
        "median_width": int(np.median(shapes[:, 1])) if len(items) else 0,
        "marked_fraction": {c: round(float(np.mean(v)), 5) if v else 0.0
                            for c, v in marked.items()},
    }


def _size_for(fp: dict[str, Any]) -> int:
    """Input side: the median long side rounded to 32, at most 256 on CPU (384 on GPU).

    Thin structures (< 1 % of pixels) keep at least 256 when the images are that large.
    """
    long_side = max(fp["median_height"], fp["median_width"], 32)
    cap = 384 if torch.cuda.is_available() else 256
    size = min(cap, max(64, round(long_side / 32) * 32))
    thin = min(list(fp["marked_fraction"].values()) or [1.0]) < 0.01
    if thin and long_side >= 256:
        size = max(size, 256)
    return size


def step_seconds(model: str, *, size: int, batch_size: int, channels: int, classes: int,
                 precision: str, steps: int = 3, options: dict[str, Any] | None = None
                 ) -> float:
    """Median seconds of one real training step (forward, loss, backward, AdamW) here."""
    torch.manual_seed(0)
    net = create_model(model, in_channels=channels, classes=classes, size=size,
                       **(options or {})).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss = SoftBCEDiceLoss()
    x = torch.rand(batch_size, channels, size, size)
    t = (torch.rand(batch_size, classes, size, size) > 0.9).float()
    w = torch.ones_like(t)
    bf16 = precision.startswith("bf16")
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z = net(x)
        value = loss(z.float(), t, w)
        opt.zero_grad()
        value.backward()
        opt.step()
        if i:  # the first step warms up
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def plan_auto(cfg: TrainConfig, *, budget: str | None = None) -> dict[str, Any]:
    """Plan a run for ``cfg.data``: the ``recommended`` preset, sized to the data and budget.

    Args:
        cfg: The configuration so far (its data, fold, k and validation mode are used).
        budget: Wall-time budget for training (``20m``); None plans by iterations.

    Returns:
        ``{"overrides": {...}, "fingerprint": {...}, "step_seconds", "budget_seconds",
        "epoch_seconds_estimate"}``.
    """
    from confseg.training.runner import resolve_precision

    seconds = parse_budget(budget)
    ds = load_dataset(cfg.data)
    fp = fingerprint(ds)
    base = dict(PRESETS["recommended"])
    size = _size_for(fp)
    # the preset's batch (4: more optimiser steps per epoch on small datasets), halved above
    # 256 px where a step's memory and time grow with the square of the side
    batch = int(base["batch_size"]) if size <= 256 else max(1, int(base["batch_size"]) // 2)
    n_folds = len(ds.patients()) if cfg.k == "loo" else int(cfg.k)
    held_out = 1 + (1 if cfg.val == "next-fold" else 0)
    train_items = max(1, round(fp["image_items"] * max(n_folds - held_out, 1) / n_folds))
    steps_per_epoch = max(1, math.ceil(train_items / batch))
    probe = cfg.replace(**{k: v for k, v in base.items()
                           if k in ("model", "model_options", "precision")},
                        size=size, batch_size=batch)
    precision = resolve_precision(probe)
    step = step_seconds(probe.model, size=size, batch_size=batch, channels=cfg.channels,
                        classes=len(ds.classes), precision=precision,
                        options=probe.model_options)
    # an epoch: its training steps plus validation and bookkeeping (~25 %)
    epoch_s = step * steps_per_epoch * 1.25
    if seconds is None:
        epochs = math.ceil(TARGET_STEPS / steps_per_epoch)
    else:
        epochs = math.floor(0.9 * seconds / epoch_s)
        if epochs < EPOCH_RANGE[0]:
            raise ConfigError(f"--budget {budget}: an epoch takes about {epoch_s:.0f} s here, so "
                              f"{budget} allows {max(epochs, 0)} epochs; give at least "
                              f"{math.ceil(EPOCH_RANGE[0] * epoch_s / 0.9 / 60)}m")
    epochs = int(min(max(epochs, EPOCH_RANGE[0]), EPOCH_RANGE[1]))
    overrides = {**base, "size": size, "batch_size": batch, "epochs": epochs}
    return {"overrides": overrides, "fingerprint": fp, "step_seconds": round(step, 4),
            "steps_per_epoch": steps_per_epoch, "epoch_seconds_estimate": round(epoch_s, 2),
            "budget_seconds": seconds, "precision": precision}
