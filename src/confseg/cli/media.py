"""Video and deployment commands: ``segment-videos``, ``downstream``, ``export``.

Also the video path of ``predict``. :func:`register` adds the commands to the app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from confseg.cli.common import Overwrite, Quiet, Threads, set_threads, user_errors
from confseg.errors import ConfsegError
from confseg.progress import console, progress_bar, rate_bar


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("segment-videos")(segment_videos_)
    app.command()(downstream)
    app.command()(export)


def _predict_videos(model_path: Path, videos: list[Path], out: Path, *, every: int,
                    max_frames: int | None, overlay: bool, batch_size: int, quiet: bool,
                    backend: str | None = None, precision: str = "fp32",
                    threads: int | None = None, live: bool = False, idle: float = 2.0,
                    prob_bits: int = 8) -> None:
    from confseg.inference.bundle import METADATA
    from confseg.inference.stream import predict_live, predict_video
    from confseg.io.video import probe_video, sample_indices

    model: Any
    if (model_path / METADATA).is_file():
        from confseg.inference.bundle import BundlePredictor

        if backend == "torch":
            raise ConfsegError(f"{model_path} is a bundle: --backend onnxruntime or openvino "
                               "(torch runs a run folder)")
        if backend == "fast":
            from confseg.inference.bundle import fastest

            model, choice = fastest(model_path, threads=threads, batch_size=batch_size)
            rates = ", ".join(f"{k} {v['model_fps']:.0f}" for k, v in choice["measured"].items())
            typer.echo(f"fast: {choice['chosen']} (model frames/s here: {rates})")
        else:
            model = BundlePredictor(model_path, backend=backend or "onnxruntime",
                                    precision=precision, threads=threads)
    else:
        if backend not in (None, "torch") or precision != "fp32":
            raise ConfsegError(f"{model_path} is a run folder, which runs on torch in fp32; "
                               f"for --backend {backend or 'onnxruntime'} --precision "
                               f"{precision} export it first: `confseg export {model_path} "
                               "--out BUNDLE --format onnx`, then predict with BUNDLE")
        from confseg.inference import Predictor

        model = Predictor.from_run(model_path)
    if live and (every != 1 or max_frames is not None):
        raise ConfsegError("--live takes frames as they come; drop --every and --max-frames")
    for v in videos:
        if live:
            with rate_bar(f"{v.name} (live)", quiet=quiet) as prog:
                meta = predict_live(model, v, out, batch_size=batch_size, overlay=overlay,
                                    idle=idle, prob_bits=prob_bits, progress=prog)
            typer.echo(f"wrote {out / v.stem} ({meta['frames']} frames, "
                       f"{meta['frames_per_second']:.1f} frames/s; dropped "
                       f"{meta['live']['dropped']} of {meta['live']['received']} received)")
            continue
        n = probe_video(v).frames
        total = len(sample_indices(n, every=every, max_frames=max_frames)) if n else None
        with rate_bar(v.name, total=total, quiet=quiet) as prog:
            meta = predict_video(model, v, out, every=every, max_frames=max_frames,
                                 batch_size=batch_size, overlay=overlay, prob_bits=prob_bits,
                                 progress=prog)
        typer.echo(f"wrote {out / v.stem} ({meta['frames']} frames, "
                   f"{meta['frames_per_second']:.1f} frames/s)")


@user_errors
def segment_videos_(
    segmenter: Annotated[Path, typer.Argument(help="A run folder, or a study folder (every "
                                                   "strategy, out-of-fold per patient).")],
    dataset: Annotated[Path, typer.Argument(help="Dataset folder with videos.")],
    out: Annotated[Path, typer.Option(help="Downstream folder.")],
    every: Annotated[int, typer.Option(help="Take every k-th frame.")] = 1,
    max_frames: Annotated[int | None, typer.Option(
        help="At most this many frames per video, spread over it.")] = None,
    skip_bad: Annotated[bool, typer.Option(
        help="Go on past a video that cannot be read; segment.json lists it.")] = False,
    batch_size: Annotated[int, typer.Option(help="Frames per forward pass.")] = 16,
    threads: Threads = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Segment every video once per segmenter and cache per-frame features (rerun = continue)."""
    set_threads(threads)
    from confseg.downstream.segment import segment_videos

    with progress_bar("videos", quiet=quiet) as prog:
        info = segment_videos(segmenter, dataset, out, every=every, max_frames=max_frames,
                              skip_bad=skip_bad, batch_size=batch_size, overwrite=overwrite,
                              progress=prog)
    for vid, why in info["skipped"].items():
        console.print(f"[yellow]skipped[/yellow] {vid}: {escape(why)}", highlight=False)
    typer.echo(f"wrote {out} ({info['videos']} videos, segmenters: "
               f"{', '.join(info['segmenters'])}; per-frame features in <segmenter>/frames/)")


@user_errors
def downstream(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder with videos and clinical.csv.")],
    task: Annotated[str, typer.Option(help="sf, sf-change, outcome or severity.")],
    out: Annotated[Path, typer.Option(help="Downstream folder (the segment-videos cache).")],
    segmenters: Annotated[list[str] | None, typer.Option(
        "--segmenters", help="Run or study folders (repeatable); segmented into --out first "
                             "unless cached there.")] = None,
    target: Annotated[str | None, typer.Option(
        help="Target column (default: sf_ratio, readmit_30d, severity).")] = None,
    tolerance: Annotated[float, typer.Option(help="sf-change: |delta S/F| <= this is same.")]
    = 15.0,
    estimator: Annotated[str, typer.Option(help="linear or gbm.")] = "linear",
    repeats: Annotated[int, typer.Option(help="Repeated outer splits.")] = 5,
    folds: Annotated[int, typer.Option(help="Outer patient-grouped folds.")] = 5,
    every: Annotated[int, typer.Option(help="Segment every k-th frame.")] = 1,
    max_frames: Annotated[int | None, typer.Option(help="At most M frames per video.")] = None,
    skip_bad: Annotated[bool, typer.Option(help="Go on past unreadable videos.")] = False,
    positive: Annotated[str | None, typer.Option(
        help="outcome on a category column: the levels that count as positive, e.g. 0,1,3."
    )] = None,
    threads: Threads = None,
) -> None:
    """Evaluate a clinical task on every feature source with nested patient-grouped CV."""
    set_threads(threads)
    from confseg.downstream.run import run_downstream

    segs = [v.strip() for t in segmenters or [] for v in t.split(",") if v.strip()]
    s = run_downstream(dataset, out, task=task, segmenters=segs, target=target,
                       tolerance=tolerance, estimator=estimator, repeats=repeats, folds=folds,
                       every=every, max_frames=max_frames, skip_bad=skip_bad,
                       positive=[v.strip() for v in (positive or "").split(",") if v.strip()])
    head = s["headline"]
    console.print(f"{task}: {s['n_samples']} samples of {s['n_patients']} patients, "
                  f"{repeats}x{folds} patient-grouped splits, {estimator}")
    for name in s["sources"]:
        m = s["results"][name]["metrics"]
        parts = [f"{k} {v['mean']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]" for k, v in m.items()]
        console.print(f"  {name:26s} " + " | ".join(parts), highlight=False)
    for line in s["sentences"]:
        console.print(f"  {line}", highlight=False)
    typer.echo(f"wrote {out}/tasks/{s.get('name', task)}/summary.json (headline {head})")
    from confseg.report.downstream_report import write_downstream_report

    typer.echo(f"report: {write_downstream_report(out)}")


@user_errors
def export(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    out: Annotated[Path, typer.Option(help="Bundle folder.")],
    format_: Annotated[list[str] | None, typer.Option(
        "--format", help="torchscript, onnx and/or openvino (repeatable or comma-separated; "
                         "default all three, openvino where it is installed).")] = None,
    precision: Annotated[list[str] | None, typer.Option(
        "--precision", help="fp32, bf16 and/or int8 (repeatable or comma-separated; default "
        "all): int8 writes models/model.int8.onnx calibrated on the run's training images; "
        "the test-split Dice of each goes into metadata.json.")] = None,
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    overwrite: Overwrite = False,
) -> None:
    """Export a run as a deployable bundle (configs/metadata.json, models/model.ts, .onnx)."""
    from confseg.inference.bundle import PRECISIONS
    from confseg.inference.export import default_formats, export_run

    def listed(values: list[str] | None, default: list[str] | tuple[str, ...]) -> list[str]:
        return [v.strip() for t in values or [] for v in t.split(",") if v.strip()] or list(
            default)

    path = export_run(run, out, formats=listed(format_, default_formats()),
                      precisions=listed(precision, PRECISIONS), checkpoint=checkpoint,
                      overwrite=overwrite)
    meta = json.loads((path / "configs" / "metadata.json").read_text())
    check = meta.get("checks", {}).get("onnx_vs_eager_max_abs_prob")
    typer.echo(f"wrote {path} ({', '.join(meta['formats'])}"
               + (f"; ONNX vs eager: max |dp| {check:.1e}" if check is not None else "") + ")")
    for name, row in meta.get("precision_cost", {}).get("settings", {}).items():
        dice = ", ".join(f"{k} {v:.4f}" for k, v in row["dice"].items())
        cost = f"; Dice cost {row['dice_cost']:+.4f}" if "dice_cost" in row else ""
        typer.echo(f"  {name}: test Dice {dice}{cost}")


