"""Training throughput: confseg's Lightning training step against a plain PyTorch loop.

Measures in one process, alternating plain / confseg ``--repeats`` times (ABAB...):

* ``plain_images_per_s``: forward, loss, backward, AdamW step, zero_grad over batches held in
  memory (same model, loss, optimiser, batch and input size as confseg);
* ``confseg_images_per_s``: :class:`confseg.training.module.SegmentationModule` driven by the
  Trainer of :func:`confseg.training.runner.build_trainer` (deterministic, CSVLogger with
  ``log_every_n_steps=1``, ModelCheckpoint), fed the SAME in-memory batches;
* ``overhead_ms_per_step``: the same pair with the model swapped for a 1x1 convolution, so
  what confseg adds per step is resolved to ~0.1 ms (``--ablations``: one suspect removed at a
  time);
* ``loader_images_per_s``: :class:`confseg.training.torchdata.SegmentationDataset` over a synthetic
  dataset with the training augmentation, through a DataLoader, second (cached) epoch.

Prints ONE JSON object on stdout; progress goes to stderr. See benchmarks/README.md and
``python benchmarks/train_throughput.py -h``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from _common import bench_loader, emit, environment, log, median, pick_device, rnd, sync
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from confseg.config import TrainConfig
from confseg.losses import SoftBCEDiceLoss
from confseg.models import create_model
from confseg.runs import RunFolder
from confseg.training import runner
from confseg.training.module import SegmentationModule

CLASSES = ["pleural_line", "b_line", "a_line"]
TARGET_RATIO = 0.95
TARGET_LOADER_OVER_MODEL = 5.0
DISTINCT_BATCHES = 4  # the in-memory batches are cycled; a few distinct ones are enough


def make_batches(n: int, *, batch: int, size: int, device: torch.device) -> list[dict[str, Any]]:
    """``n`` batches like a SegmentationDataset gives (image, binary target, weight with holes)."""
    g = torch.Generator().manual_seed(0)
    k = len(CLASSES)
    out = []
    for _ in range(n):
        image = torch.rand(batch, 1, size, size, generator=g)
        target = (torch.rand(batch, k, size, size, generator=g) > 0.8).float()
        weight = (torch.rand(batch, 1, size, size, generator=g) > 0.05).float().expand(
            batch, k, size, size).contiguous()
        out.append({"image": image.to(device), "target": target.to(device),
                    "weight": weight.to(device)})
    return out


def _config(args: argparse.Namespace, run_dir: Path, n_batches: int) -> TrainConfig:
    return TrainConfig(data=str(run_dir / "unused-data"), out=str(run_dir), model=args.model,
                       batch_size=args.batch_size, size=args.size, epochs=1, patience=0,
                       limit_train_batches=n_batches, seed=0)


def _tiny_model() -> nn.Module:
    """A 1x1 convolution: makes the model's cost ~0 so per-step overheads show in ms."""
    return nn.Conv2d(1, len(CLASSES), kernel_size=1)


def time_plain(args: argparse.Namespace, batches: list[dict[str, Any]], device: torch.device,
               amp: bool, *, steps: int, warmup: int, tiny: bool = False) -> list[float]:
    """Per-step seconds of the plain loop (warm-up steps dropped)."""
    cfg = _config(args, Path("."), 1)
    torch.manual_seed(0)
    model = (_tiny_model() if tiny else
             create_model(args.model, in_channels=1, classes=len(CLASSES)))
    model = model.to(device).train()
    loss_fn = SoftBCEDiceLoss(bce_weight=cfg.pos_weight_bce, dice_weight=cfg.dice_weight)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type) if amp else None
    times: list[float] = []
    sync(device)
    prev = time.perf_counter()
    for i in range(warmup + steps):
        b = batches[i % len(batches)]
        ctx = (torch.autocast(device.type, dtype=torch.float16) if amp
               else contextlib.nullcontext())
        with ctx:
            loss = loss_fn(model(b["image"]), b["target"], b["weight"])
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        now = time.perf_counter()
        times.append(now - prev)
        prev = now
    del model, opt
    gc.collect()
    return times[warmup:]


class StepTimer(pl.Callback):
    """Stamps the wall clock at every ``on_train_batch_start``.

    Step ``i`` takes ``stamp[i + 1] - stamp[i]``: the whole Lightning step cycle (training_step,
    backward, optimiser, every batch-end hook and logger write, and fetching the next batch).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stamps: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        sync(self.device)
        self.stamps.append(time.perf_counter())


class _NoLogModule(SegmentationModule):
    """SegmentationModule whose training_step logs nothing (ablation)."""

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.loss(self(batch["image"]), batch["target"], batch["weight"])


# Ablations: name -> (module class, quiet, trainer edit). Each removes one suspected overhead.
def _no_det(t: pl.Trainer) -> None:
    torch.use_deterministic_algorithms(False)


def _no_logger(t: pl.Trainer) -> None:
    t.loggers = []


def _no_ckpt(t: pl.Trainer) -> None:
    t.callbacks[:] = [c for c in t.callbacks if not isinstance(c, ModelCheckpoint)]


def _bare(t: pl.Trainer) -> None:
    _no_det(t)
    _no_logger(t)
    _no_ckpt(t)


Edit = Callable[[pl.Trainer], None] | None
VARIANTS: dict[str, tuple[type[SegmentationModule], bool, Edit]] = {
    "confseg": (SegmentationModule, True, None),
    "not_deterministic": (SegmentationModule, True, _no_det),
    "no_self_log": (_NoLogModule, True, None),
    "no_logger": (SegmentationModule, True, _no_logger),
    "no_checkpoint_callback": (SegmentationModule, True, _no_ckpt),
    "with_progress_bar": (SegmentationModule, False, None),
    "bare_lightning": (_NoLogModule, True, _bare),
}


def time_confseg(args: argparse.Namespace, batches: list[dict[str, Any]], device: torch.device,
                 variant: str = "confseg", *, steps: int, warmup: int, tiny: bool = False
                 ) -> tuple[list[float], dict[str, Any]]:
    """Per-step seconds of confseg's Lightning step (warm-up dropped) and trainer facts."""
    module_cls, quiet, edit = VARIANTS[variant]
    n = warmup + steps + 1  # +1: the last stamp is the start of one more step
    det_before = torch.are_deterministic_algorithms_enabled()
    threads_before = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="confseg-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        cfg = _config(args, run_dir, n)
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        module = module_cls(cfg.to_dict(), CLASSES)
        if tiny:
            module.model = _tiny_model()
        trainer = runner.build_trainer(cfg, RunFolder(run_dir), quiet=quiet)
        if edit is not None:
            edit(trainer)
        timer = StepTimer(device)
        trainer.callbacks.append(timer)
        facts = {"precision": str(trainer.precision),
                 "deterministic": torch.are_deterministic_algorithms_enabled(),
                 "loggers": [type(lg).__name__ for lg in trainer.loggers],
                 "log_every_n_steps": trainer.log_every_n_steps,
                 "callbacks": [type(c).__name__ for c in trainer.callbacks],
                 "progress_bar": trainer.progress_bar_callback is not None}
        loader = DataLoader(batches * (n // len(batches) + 1), batch_size=None)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*Experiment logs directory.*")
            warnings.filterwarnings("ignore", ".*val_dataloader.*")
            warnings.filterwarnings("ignore", ".*could not find the monitored key.*")
            trainer.fit(module, train_dataloaders=loader)
        facts["torch_threads_during_fit"] = torch.get_num_threads()
        del trainer, module, loader
    torch.use_deterministic_algorithms(det_before)
    torch.set_num_threads(threads_before)
    gc.collect()
    s = timer.stamps
    if len(s) != n:
        raise RuntimeError(f"expected {n} training steps, Lightning ran {len(s)}")
    return [b - a for a, b in itertools.pairwise(s)][warmup:], facts


def measure_overhead(args: argparse.Namespace, batches: list[dict[str, Any]],
                     device: torch.device, amp: bool) -> dict[str, Any]:
    """Per-step cost of everything but the model: plain vs confseg with a 1x1-conv model.

    With the model's cost ~0, what confseg (Lightning, logging, callbacks) adds per step is
    resolved to a millisecond even on a noisy machine. With ``--ablations`` each suspect is
    removed in turn (see :data:`VARIANTS`). Alternates ABAB... ``args.repeats`` times.
    """
    plan = {"steps": args.overhead_steps, "warmup": max(5, args.overhead_steps // 10),
            "tiny": True}
    names = ["plain", *(VARIANTS if args.ablations else ["confseg"])]
    ms: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.repeats):
        for name in names:
            if name == "plain":
                steps = time_plain(args, batches, device, amp, **plan)
            else:
                steps, _ = time_confseg(args, batches, device, name, **plan)
            ms[name].append(1000 * median(steps))
        log("overhead (1x1-conv model), ms/step: "
            + ", ".join(f"{n} {v[-1]:.2f}" for n, v in ms.items()))
    med = {n: median(v) for n, v in ms.items()}
    out: dict[str, Any] = {
        "model": "Conv2d(1, 3, kernel_size=1) (same batches, loss and optimiser)",
        "steps_timed": plan["steps"], "warmup_steps": plan["warmup"],
        "step_ms_median": {n: rnd(v, 3) for n, v in med.items()},
        "step_ms_per_repeat": {n: [rnd(x, 3) for x in v] for n, v in ms.items()},
        "overhead_ms_per_step": rnd(med["confseg"] - med["plain"], 3),
    }
    if args.ablations:
        out["saving_ms_per_step"] = {n: rnd(med["confseg"] - med[n], 3)
                                     for n in names if n not in ("plain", "confseg")}
    return out


def _per_s(step_seconds: list[float], batch: int) -> float:
    return batch * len(step_seconds) / sum(step_seconds)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--quick`` fills in tiny settings for a smoke test)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fpn-resnet18")
    p.add_argument("--batch-size", type=int, default=None, help="default 8")
    p.add_argument("--size", type=int, default=None, help="input side, default 256 (quick 64)")
    p.add_argument("--steps", type=int, default=None, help="timed steps, default 20 (quick 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps, default 3 (quick 1)")
    p.add_argument("--repeats", type=int, default=None, help="ABAB repeats, default 3 (quick 1)")
    p.add_argument("--loader-patients", type=int, default=None,
                   help="synthetic patients for the loader (x4 views x2 days), default 8 (quick 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's own choice)")
    p.add_argument("--order", choices=("plain-first", "confseg-first"), default="plain-first",
                   help="which of the pair runs first in each repeat (to check order bias)")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    p.add_argument("--overhead-steps", type=int, default=None,
                   help="timed steps of the 1x1-conv overhead measurement, default 200 "
                        "(quick 20)")
    p.add_argument("--ablations", action="store_true",
                   help="also time the overhead with each suspect removed in turn")
    p.add_argument("--no-loader", action="store_true", help="skip the data-loader measurement")
    a = p.parse_args(argv)
    quick = {"batch_size": 8, "size": 64, "steps": 5, "warmup": 1, "repeats": 1,
             "loader_patients": 2, "overhead_steps": 20}
    full = {"batch_size": 8, "size": 256, "steps": 20, "warmup": 3, "repeats": 3,
            "loader_patients": 8, "overhead_steps": 200}
    for key, value in (quick if a.quick else full).items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    if a.overhead_steps < 1 or a.steps < 1 or a.warmup < 0 or a.repeats < 1 or a.batch_size < 1:
        p.error("--steps, --repeats and --batch-size must be >= 1 and --warmup >= 0")
    if a.size % 32:
        p.error(f"--size {a.size}: use a multiple of 32")
    return a


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print its JSON."""
    args = parse_args(argv)
    t_start = time.perf_counter()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = pick_device()
    env = environment(device)
    cfg = _config(args, Path("."), 1)
    precision = runner.resolve_precision(cfg)
    amp = precision == "16-mixed"
    if (env["load_average_1min"] or 0) > (env["affinity_cpus"] or env["cpu_count"] or 1):
        log(f"warning: load average {env['load_average_1min']:.1f} exceeds the CPU count; "
            "timings will be noisy (see benchmarks/README.md)")
    log(f"{args.model} batch {args.batch_size} size {args.size} on {env['device']} "
        f"({env['torch_threads']} threads), {args.warmup}+{args.steps} steps x {args.repeats}")
    batches = make_batches(DISTINCT_BATCHES, batch=args.batch_size, size=args.size, device=device)
    repeats: list[dict[str, Any]] = []
    facts: dict[str, Any] = {}
    plan = {"steps": args.steps, "warmup": args.warmup}
    for r in range(args.repeats):
        if args.order == "confseg-first":
            conf, facts = time_confseg(args, batches, device, **plan)
        plain = time_plain(args, batches, device, amp, **plan)
        log(f"repeat {r + 1} plain:   {_per_s(plain, args.batch_size):.3f} img/s")
        if args.order == "plain-first":
            conf, facts = time_confseg(args, batches, device, **plan)
        log(f"repeat {r + 1} confseg: {_per_s(conf, args.batch_size):.3f} img/s")
        row = {"plain_images_per_s": _per_s(plain, args.batch_size),
               "confseg_images_per_s": _per_s(conf, args.batch_size),
               "plain_step_ms_median": 1000 * median(plain),
               "confseg_step_ms_median": 1000 * median(conf)}
        row["ratio"] = row["confseg_images_per_s"] / row["plain_images_per_s"]
        row["ratio_median_step"] = row["plain_step_ms_median"] / row["confseg_step_ms_median"]
        row["ratio_min_step"] = min(plain) / min(conf)
        repeats.append({k: rnd(v, 4) for k, v in row.items()})
    result: dict[str, Any] = {
        "benchmark": "train_throughput",
        "model": args.model, "batch_size": args.batch_size,
        "input_size": [1, args.size, args.size], "classes": len(CLASSES),
        "steps_timed": args.steps, "warmup_steps": args.warmup, "n_repeats": args.repeats,
        "order": args.order,
        "precision": precision, **env,
        "plain_images_per_s": rnd(median([x["plain_images_per_s"] for x in repeats])),
        "confseg_images_per_s": rnd(median([x["confseg_images_per_s"] for x in repeats])),
        "ratio": rnd(median([x["ratio"] for x in repeats])),
        "ratio_median_step": rnd(median([x["ratio_median_step"] for x in repeats])),
        "ratio_min_step": rnd(median([x["ratio_min_step"] for x in repeats])),
        "target_ratio": TARGET_RATIO,
        "repeats": repeats,
        "confseg_trainer": facts,
        "timed_window": {
            "plain": "wall time of the timed steps: take a pre-built batch from a list, forward, "
                     "SoftBCEDiceLoss, backward, AdamW step, zero_grad",
            "confseg": "wall time from on_train_batch_start of the first timed step to that of "
                       "the step after the last: batch fetch from an in-memory DataLoader "
                       "(batch_size=None), training_step with its self.log calls, backward, "
                       "optimizer step, zero_grad, all batch-end hooks and logger/CSV work",
            "excluded": ["warm-up steps", "Trainer and model construction",
                         "validation (no val dataloader given)",
                         "epoch-end checkpoint writing and epoch-end logging",
                         "EarlyStopping (patience=0; it only acts at epoch end)",
                         "data loading and augmentation (see loader_*)"],
        },
    }
    over = measure_overhead(args, batches, device, amp)
    plain_ms = median([x["plain_step_ms_median"] for x in repeats])
    result["overhead"] = over
    result["overhead_ms_per_step"] = over["overhead_ms_per_step"]
    result["ratio_from_overhead"] = rnd(plain_ms / (plain_ms + over["overhead_ms_per_step"]))
    if not args.no_loader:
        workers = cfg.num_workers
        loader = bench_loader(size=args.size, batch_size=args.batch_size,
                              patients=args.loader_patients, workers_default=workers)
        result["loader"] = loader
        result["loader_images_per_s"] = loader[f"workers_{workers}"]["epoch2_cached_images_per_s"]
        result["loader_images_per_s_2_workers"] = loader["workers_2"]["epoch2_cached_images_per_s"]
        result["loader_over_model"] = rnd(result["loader_images_per_s"]
                                          / result["confseg_images_per_s"], 2)
        result["target_loader_over_model"] = TARGET_LOADER_OVER_MODEL
    result["load_average_1min_end"] = environment(device)["load_average_1min"]
    result["total_seconds"] = rnd(time.perf_counter() - t_start, 1)
    emit(result)
    return result


if __name__ == "__main__":
    main()
