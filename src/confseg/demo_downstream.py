"""``make demo-downstream``: the demo study's strategies judged by their clinical value.

Run after ``make demo`` (it reuses the demo study's models):

1. generate a synthetic video dataset (if missing): new patients, two days each, a clip per
   view, S/F and 30-day readmission driven by the same simulated lung water as the B-lines,
2. segment every clip once per strategy of the study and cache the frame features,
3. evaluate S/F per patient-day, S/F change between the days and readmission on every source
   (raw-image baseline, annotation oracle, acquisition control, each strategy) with nested,
   repeated patient-grouped cross-validation, and write the HTML report.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from confseg.progress import console, progress_bar

TASKS = ("sf", "sf-change", "outcome")


def main(argv: list[str] | None = None) -> int:
    """Run the downstream demo; returns a process exit code."""
    ap = argparse.ArgumentParser(prog="python -m confseg.demo_downstream", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default="demo/study", help="a finished study (make demo)")
    ap.add_argument("--data", default="demo/videos", help="synthetic video dataset folder")
    ap.add_argument("--out", default="demo/downstream", help="downstream folder")
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--max-frames", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--quiet", action="store_true")
    from confseg.demo import guarded

    return guarded(_run, ap.parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    from confseg.downstream.run import run_downstream
    from confseg.downstream.segment import segment_videos
    from confseg.errors import StudyError
    from confseg.report.downstream_report import write_downstream_report
    from confseg.runs import StudyFolder
    from confseg.synth import generate

    t0 = time.perf_counter()
    if not StudyFolder(args.study).is_study():
        raise StudyError(f"{args.study}: no study there; run `make demo` first (its models "
                         "segment the videos)")
    data = Path(args.data)
    if not (data / "dataset.json").exists():
        console.print(f"[bold]1/3[/bold] generating {args.patients} patients x {args.views} "
                      f"views x 2 days of synthetic clips in {data}")
        with progress_bar("synth", quiet=args.quiet) as prog:
            generate(data, patients=args.patients, views=args.views, days=2, size=128, seed=1,
                     videos=True, progress=prog)
    else:
        console.print(f"[bold]1/3[/bold] using the existing video dataset {data}")
    console.print(f"[bold]2/3[/bold] segmenting every clip with each strategy of {args.study} "
                  f"(one frame in {args.every}, at most {args.max_frames} per clip)")
    with progress_bar("videos", quiet=args.quiet) as prog:
        info = segment_videos(args.study, data, args.out, every=args.every,
                              max_frames=args.max_frames, progress=prog)
    seconds = sum(info["seconds"].values())
    console.print(f"    {info['videos']} clips, {len(info['segmenters'])} segmenters, "
                  f"{seconds:.0f} s")
    console.print(f"[bold]3/3[/bold] {', '.join(TASKS)}: {args.repeats} x {args.folds} "
                  "patient-grouped splits, hyper-parameters tuned inside each")
    for task in TASKS:
        s = run_downstream(data, args.out, task=task, repeats=args.repeats, folds=args.folds)
        head = s["headline"]
        console.print(f"  [bold]{task}[/bold] ({head}, {s['n_samples']} samples of "
                      f"{s['n_patients']} patients)")
        for name in s["sources"]:
            m = s["results"][name]["metrics"][head]
            console.print(f"    {name:26s} {m['mean']:.3f} [{m['lo']:.3f}, {m['hi']:.3f}]",
                          highlight=False)
        if s.get("selection"):
            sel = s["selection"]["metrics"][head]
            console.print(f"    {'chosen by inner CV':26s} {sel['mean']:.3f} [{sel['lo']:.3f}, "
                          f"{sel['hi']:.3f}]", highlight=False)
    report = write_downstream_report(args.out)
    console.print(f"done in {time.perf_counter() - t0:.0f} s")
    console.print(f"report: {Path(report).resolve()}")
    console.print(f"rank the strategies by S/F: confseg study summary {args.study} "
                  f"--by-downstream sf --downstream {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
