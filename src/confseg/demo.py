"""``make demo``: the confidence-threshold study on the embedded synthetic dataset, end to end.

1. generate the synthetic lung-ultrasound dataset (if missing) and summarise it,
2. run a study: six label strategies x 3 patient-level folds x 1 seed (12 epochs at 64 px,
   every patient tested once), on a local pool of worker processes,
3. collect paired statistics, print the summary table, write the study report.

Rerunning continues an unfinished demo study (finished cells are kept); a demo study with
other settings is replaced.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from confseg.data import load_dataset
from confseg.data.info import dataset_info
from confseg.progress import console, progress_bar

#: The demo's strategies: the conventional label, a low and two high thresholds, the soft
#: target and confidence weights. (The synthetic annotator uses levels 20/40/60/80/100 %, so
#: the naive 50 % threshold keeps the same pixels as 60 % here and is left out.)
DEMO_STRATEGIES = ("threshold:0", "threshold:0.4", "threshold:0.6", "threshold:0.8", "soft",
                   "weighted")


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns a process exit code."""
    ap = argparse.ArgumentParser(prog="python -m confseg.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="demo/synthetic", help="synthetic dataset folder")
    ap.add_argument("--out", default="demo/study", help="study folder")
    ap.add_argument("--patients", type=int, default=24)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=256, help="generated image side")
    ap.add_argument("--size", type=int, default=64, help="training input side")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--strategies", nargs="+", default=list(DEMO_STRATEGIES))
    ap.add_argument("--model", default="fpn-resnet18")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--quiet", action="store_true")
    return guarded(_run, ap.parse_args(argv))


def guarded(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``run(args)``, a user error printed as one line with its exit code (2)."""
    from confseg.errors import ConfsegError

    try:
        return run(args)
    except ConfsegError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return getattr(exc, "exit_code", 2)


def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from confseg.errors import StudyError
    from confseg.report.study_report import write_study_report
    from confseg.runs import StudyFolder
    from confseg.study import StudySpec, run_study
    from confseg.study.table import missing_lines, summary_sentences, summary_table
    from confseg.synth import generate

    t0 = time.perf_counter()
    data = Path(args.data)
    if not (data / "dataset.json").exists():
        console.print(f"[bold]1/3[/bold] generating the synthetic LUS dataset in {data}")
        with progress_bar("synth", quiet=args.quiet) as prog:
            generate(data, patients=args.patients, views=args.views, days=args.days,
                     size=args.image_size, seed=0, raters=3, progress=prog)
    else:
        console.print(f"[bold]1/3[/bold] using the existing dataset {data}")
    info = dataset_info(load_dataset(data))
    console.print(f"    {info['items']} images, {info['patients']} patients, classes "
                  f"{', '.join(info['classes'])}")
    spec = StudySpec(data=str(data), strategies=tuple(args.strategies), k=args.folds, seeds=1,
                     base={"model": args.model, "epochs": args.epochs, "size": args.size,
                           "batch_size": 8, "lr": 2e-3, "patience": 0, "val": "none"})
    console.print(f"[bold]2/3[/bold] study: {len(spec.strategies)} strategies x {spec.k} folds "
                  f"x 1 seed = {len(spec.cells())} runs of {args.model}, {args.epochs} epochs "
                  f"at {args.size}px -> {args.out}")
    command = ("python -m confseg.demo " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        if k not in ("quiet", "strategies", "jobs") and v is not None))
    try:
        summary = run_study(spec, args.out, jobs=args.jobs, quiet=args.quiet, command=command)
    except StudyError as exc:
        if "holds a study with another" not in str(exc):
            raise
        console.print(f"    {args.out} holds a demo study with other settings; replacing it")
        summary = run_study(spec, args.out, jobs=args.jobs, quiet=args.quiet, command=command,
                            overwrite=True)
    folder = StudyFolder(args.out)
    paired = folder.read_json(folder.paired_path)
    wide = Console(stderr=True, width=max(console.width, 180))
    console.print(f"[bold]3/3[/bold] {summary['finished_cells']}/{summary['n_cells']} runs "
                  f"finished; every one of {summary['n_patients']} patients tested once")
    for cls in summary["classes"]:
        wide.print(summary_table(summary, paired, cls=cls, reference="threshold:0"))
        for line in summary_sentences(summary, cls=cls, metrics=summary["metrics"][:1]):
            wide.print(f"  {line}", highlight=False)
    for line in missing_lines(summary):
        console.print(f"[yellow]missing:[/yellow] {line}", highlight=False)
    report = write_study_report(folder)
    console.print(f"done in {time.perf_counter() - t0:.0f} s")
    console.print(f"report: {report.resolve()}")
    console.print(f"study folder: {folder.root.resolve()} (study.yaml, cells/, results/"
                  "per_case.csv, results/paired.json)")
    return 0 if summary["finished_cells"] == summary["n_cells"] else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
