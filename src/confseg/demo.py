"""``make demo``: the main job on the embedded synthetic dataset, end to end.

1. generate the synthetic lung-ultrasound dataset (if missing),
2. summarise it (``dataset_info``),
3. train ``fpn-resnet18`` with ``threshold:0.6`` on fold 0 (patient-level split),
4. evaluate on the held-out patients (Dice vs annotator and vs synthetic truth, calibration,
   patient-bootstrap intervals), and print where everything is.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from confseg.data import load_dataset
from confseg.data.info import dataset_info
from confseg.progress import console, progress_bar


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns a process exit code."""
    ap = argparse.ArgumentParser(prog="python -m confseg.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="demo/synthetic", help="synthetic dataset folder")
    ap.add_argument("--run", default="demo/runs/demo", help="run folder")
    ap.add_argument("--patients", type=int, default=24)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=256, help="generated image side")
    ap.add_argument("--size", type=int, default=128, help="training input side")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--strategy", default="threshold:0.6")
    ap.add_argument("--model", default="fpn-resnet18")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    from confseg.errors import ConfsegError

    try:
        return _run(args)
    except ConfsegError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2


def _run(args: argparse.Namespace) -> int:
    from confseg.config import TrainConfig
    from confseg.metrics.segmentation import HEADLINE
    from confseg.synth import generate
    from confseg.workflows import train_and_evaluate

    t0 = time.perf_counter()
    data = Path(args.data)
    if not (data / "dataset.json").exists():
        console.print(f"[bold]1/4[/bold] generating the synthetic LUS dataset in {data}")
        with progress_bar("synth", quiet=args.quiet) as prog:
            generate(data, patients=args.patients, views=args.views, days=args.days,
                     size=args.image_size, seed=0, raters=3, progress=prog)
    else:
        console.print(f"[bold]1/4[/bold] using the existing dataset {data}")
    info = dataset_info(load_dataset(data))
    console.print(f"[bold]2/4[/bold] {info['items']} images, {info['patients']} patients, "
                  f"classes {', '.join(info['classes'])}; confidence levels "
                  + "; ".join(f"{c}: {v['levels']}" for c, v in info["classes"].items()))
    run = Path(args.run)
    console.print(f"[bold]3/4[/bold] training {args.model} with {args.strategy} on fold 0 "
                  f"({args.epochs} epochs at {args.size}px) -> {run}")
    cfg = TrainConfig(data=str(data), out=str(run), model=args.model, strategy=args.strategy,
                      fold=0, k=5, epochs=args.epochs, size=args.size, batch_size=8,
                      lr=2e-3, patience=0, seed=0)
    folder = train_and_evaluate(cfg, overwrite=True, quiet=args.quiet)
    summary = folder.summary()
    console.print(f"[bold]4/4[/bold] test fold: {summary['n_images']} images of "
                  f"{summary['n_patients']} held-out patients")
    for cls, m in summary["classes"].items():
        parts = []
        for key in ("dice_truth", "dice@0.6", "dice@any", "ece"):
            label = HEADLINE[key]
            if key in m:
                parts.append(f"{label} {m[key]['mean']:.3f} [{m[key]['lo']:.3f}, "
                             f"{m[key]['hi']:.3f}]")
        console.print(f"  {cls:13s} " + " | ".join(parts), highlight=False)
    status = folder.read_status()
    console.print(f"done in {time.perf_counter() - t0:.0f} s "
                  f"({status.get('seconds_per_epoch', 0):.1f} s/epoch)")
    console.print(f"report: {folder.report_path.resolve()}")
    console.print(f"run folder: {folder.root.resolve()} (summary.json, per_case.csv, "
                  "progress.png, reliability_*.png, examples/)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
