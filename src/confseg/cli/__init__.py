"""The ``confseg`` command: a thin typer layer that parses arguments and calls the library."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from confseg.cli.common import (
    Overwrite,
    Quiet,
    Threads,
    error_line,
    parse_sets,
    set_threads,
    user_errors,
)
from confseg.cli.media import _predict_videos
from confseg.cli.media import register as _register_media
from confseg.cli.study import study_app
from confseg.errors import ConfsegError
from confseg.progress import console, progress_bar

app = typer.Typer(
    name="confseg",
    help="Train and evaluate segmentation models from uncertain (confidence / multi-rater) labels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(study_app, name="study")


@app.command()
@user_errors
def synth(
    out: Annotated[Path, typer.Argument(help="Output dataset folder.")],
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 40,
    views: Annotated[int, typer.Option(help="Views (scan positions) per patient-day.")] = 4,
    days: Annotated[int, typer.Option(help="Study days per patient.")] = 2,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 256,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
    raters: Annotated[int, typer.Option(help="Simulated raters besides the confidence map.")] = 0,
    videos: Annotated[bool, typer.Option("--videos", help="Also write a short MP4 per item.")]
    = False,
    probe: Annotated[str, typer.Option(help="convex, linear or mixed.")] = "mixed",
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Generate the synthetic lung-ultrasound dataset (images, confidence, truth, clinical)."""
    from confseg.synth import generate

    with progress_bar("synth", quiet=quiet) as prog:
        path = generate(out, patients=patients, views=views, days=days, size=size, seed=seed,
                        raters=raters, videos=videos, probe=probe, overwrite=overwrite,
                        progress=prog)
    typer.echo(f"wrote {path}")


@app.command()
@user_errors
def info(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Refuse confidence levels that are not on the dataset's scale.")]
    = False,
    quiet: Quiet = False,
) -> None:
    """Summarise a dataset: counts, marked fraction and confidence levels per class."""
    from confseg.data import load_dataset
    from confseg.data.info import dataset_info

    ds = load_dataset(dataset, strict=strict)
    with progress_bar("reading maps", quiet=quiet or as_json) as prog:
        summary = dataset_info(ds, progress=prog)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    _print_info(summary)


def _stdout() -> Any:
    """A rich console on stdout (wide when not a terminal, so tables do not wrap in logs)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def _print_info(s: dict[str, Any]) -> None:
    from rich.table import Table

    out = _stdout()
    out.print(f"[bold]{s['name']}[/bold]  ({s['root']})")
    out.print(f"items {s['items']} (images {s['image_items']}, videos {s['video_items']}), "
              f"patients {s['patients']}, views {len(s['views'])}, days {s['days']}")
    out.print(f"raters: {', '.join(s['raters']) or 'none'} | clinical.csv: "
              f"{s['clinical_rows']} rows" if s["has_clinical"] else
              f"raters: {', '.join(s['raters']) or 'none'} | clinical.csv: none")
    out.print(f"ignore masks: {'yes' if s['has_ignore'] else 'no'} | true masks: "
              f"{'yes' if s['has_truth'] else 'no'}")
    t = Table("class", "items marked", "pixels marked", "confidence levels (% of marked pixels)")
    for cls, c in s["classes"].items():
        marked = sum(c["histogram"].values()) or 1
        levels = "  ".join(f"{lv}:{100 * n / marked:.0f}%" for lv, n in c["histogram"].items())
        t.add_row(cls, str(c["marked_items"]), f"{100 * c['marked_fraction']:.2f}%",
                  levels or "-")
    out.print(t)


@app.command("import")
@user_errors
def import_(
    layout: Annotated[str, typer.Argument(help="Source layout (see `confseg import --help`).")],
    src: Annotated[Path, typer.Argument(help="Source folder (or export file).")],
    dst: Annotated[Path, typer.Argument(help="New native dataset folder.")],
    images: Annotated[Path | None, typer.Option(help="Image folder (cvat, labelstudio).")] = None,
    classes: Annotated[str | None, typer.Option(help="Comma-separated classes to import.")]
    = None,
    class_name: Annotated[str | None, typer.Option(help="Class name (multirater).")] = None,
    patient_regex: Annotated[str | None, typer.Option(
        help="Regex whose first group is the patient id (nnunet, cvat, labelstudio).")] = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Import an external layout: lus-cs541, multirater, covid-blues, nnunet, cvat, labelstudio."""
    from confseg.importers import run_import

    opts: dict[str, Any] = {}
    if images is not None:
        opts["images"] = images
    if classes is not None:
        opts["classes"] = [c.strip() for c in classes.split(",") if c.strip()]
    if class_name is not None:
        opts["class_name"] = class_name
    if patient_regex is not None:
        opts["patient_regex"] = patient_regex
    with progress_bar(f"import {layout}", quiet=quiet) as prog:
        path = run_import(layout, src, dst, overwrite=overwrite, progress=prog, **opts)
    typer.echo(f"wrote {path}")


@app.command()
@user_errors
def split(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    k: Annotated[str, typer.Option(help="Number of folds, or 'loo' (one patient per fold).")]
    = "5",
    seed: Annotated[int, typer.Option(help="Shuffle seed.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Where to write (default DATASET/splits.json).")]
    = None,
) -> None:
    """Write patient-grouped K-fold splits (no patient in two folds)."""
    from confseg.data import load_dataset
    from confseg.data.splits import make_splits, write_splits

    ds = load_dataset(dataset, validate=False)
    splits = make_splits(ds, k=_int_or_word(k, "loo", "--k"), seed=seed)
    path = out or ds.splits_path()
    write_splits(path, splits)
    for f, pats in enumerate(splits.folds):
        n = sum(1 for it in ds.items if it.patient in set(pats))
        typer.echo(f"fold {f}: {len(pats)} patients, {n} items")
    typer.echo(f"wrote {path}")


@app.command()
@user_errors
def train(
    dataset: Annotated[Path | None, typer.Argument(help="Dataset folder.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Label strategy, e.g. threshold:0.6.")]
    = None,
    model: Annotated[str | None, typer.Option(help="Model name (see `confseg models`).")] = None,
    fold: Annotated[int | None, typer.Option(help="Test fold.")] = None,
    k: Annotated[str | None, typer.Option(help="Folds when the dataset has no splits.json.")]
    = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    size: Annotated[int | None, typer.Option(help="Input side (multiple of 32).")] = None,
    channels: Annotated[int | None, typer.Option(help="Input channels (1 grey, 3 colour).")]
    = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience (0 = off).")]
    = None,
    encoder_weights: Annotated[Path | None, typer.Option(
        help="Local file with pretrained encoder weights (never downloaded).")] = None,
    accelerator: Annotated[str | None, typer.Option(help="auto, cpu or gpu.")] = None,
    devices: Annotated[str | None, typer.Option(help="Devices (DDP when > 1).")] = None,
    num_workers: Annotated[int | None, typer.Option(help="DataLoader workers.")] = None,
    val: Annotated[str | None, typer.Option(
        help="Validation patients: next-fold, inner:F (a fraction of the non-test patients) "
             "or none (train on every non-test patient, keep the last epoch).")] = None,
    precision: Annotated[str | None, typer.Option(
        help="auto (bf16-mixed on CPUs with native bf16, 16-mixed on GPU), 32-true, "
             "bf16-mixed, 16-mixed.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any config option as KEY=VALUE (repeatable), e.g. --set augment=0.5.")]
    = None,
    preset: Annotated[str | None, typer.Option(
        help="A tested recipe (recommended, realtime, fpn-lus), or auto: plan model, size, "
             "batch and epochs from the dataset and this machine.")] = None,
    budget: Annotated[str | None, typer.Option(
        help="With --preset auto: wall-time budget for training, e.g. 20m.")] = None,
    threads: Threads = None,
    out: Annotated[Path | None, typer.Option(help="Run folder.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config (options override it).")]
    = None,
    resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run folder.")]
    = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train a model on a dataset with a label strategy; writes a self-describing run folder."""
    set_threads(threads)
    from confseg.config import TrainConfig
    from confseg.workflows import resume_and_evaluate, train_and_evaluate

    if resume is not None:
        _print_run(resume_and_evaluate(resume, quiet=quiet))
        return
    opts: dict[str, Any] = {
        "data": str(dataset) if dataset else None, "out": str(out) if out else None,
        "strategy": strategy, "model": model, "fold": fold, "epochs": epochs,
        "batch_size": batch_size, "size": size, "channels": channels, "lr": lr, "seed": seed,
        "patience": patience, "accelerator": accelerator, "num_workers": num_workers,
        "encoder_weights": str(encoder_weights) if encoder_weights else None,
        "k": _int_or_word(k, "loo", "--k") if k else None,
        "devices": _int_or_word(devices, "auto", "--devices") if devices else None,
        "val": val, "precision": precision,
    }
    for key, value in parse_sets(set_ or []).items():
        if opts.get(key) is not None:
            raise ConfsegError(f"--set {key}=...: {key} is also given as an option; give it once")
        opts[key] = value
    if budget is not None and preset != "auto":
        raise ConfsegError("--budget plans epochs for --preset auto; add --preset auto")
    if preset is not None:
        opts = _apply_preset(preset, opts, config=config, budget=budget, quiet=quiet)
    if config is not None:
        cfg = TrainConfig.load(config, **opts)
    else:
        if dataset is None or out is None:
            raise typer.BadParameter("give DATASET and --out (or --config / --resume)")
        cfg = TrainConfig.from_dict({k_: v for k_, v in opts.items() if v is not None},
                                    where="train options")
    _print_run(train_and_evaluate(cfg, overwrite=overwrite, quiet=quiet))


def _apply_preset(name: str, opts: dict[str, Any], *, config: Path | None, budget: str | None,
                  quiet: bool) -> dict[str, Any]:
    """Fill the options a user did not give from a preset (``auto``: from a plan)."""
    from confseg.config import PRESETS, TrainConfig

    if name == "auto":
        from confseg.training.plan import plan_auto

        given = {k: v for k, v in opts.items() if v is not None}
        base = TrainConfig.load(config, **given) if config else TrainConfig.from_dict(
            {"data": given.get("data") or "", "out": given.get("out") or "", **given},
            where="train options")
        plan = plan_auto(base, budget=budget)
        if not quiet:
            fp = plan["fingerprint"]
            console.print(
                f"auto plan: {fp['image_items']} images of median "
                f"{fp['median_height']}x{fp['median_width']} -> "
                + ", ".join(f"{k}={v}" for k, v in plan["overrides"].items())
                + f" (a step takes {plan['step_seconds']:.2f} s here, ~"
                f"{plan['epoch_seconds_estimate']:.0f} s an epoch)", highlight=False)
        values = plan["overrides"]
        record = {"preset": "auto", "plan": {k: v for k, v in plan.items() if k != "overrides"}}
    elif name in PRESETS:
        values = PRESETS[name]
        record = {"preset": name}
    else:
        raise ConfsegError(f"--preset {name!r}; choose one of {', '.join([*PRESETS, 'auto'])}")
    # recorded in config.yaml (TrainConfig.extra), so the run says how it was configured
    return {**opts, **{k: v for k, v in values.items() if opts.get(k) is None}, "extra": record}


def _int_or_word(text: str, word: str, option: str) -> int | str:
    """``text`` as an int, or the one word it may also be (``loo``, ``auto``)."""
    if text == word:
        return word
    try:
        return int(text)
    except ValueError:
        raise ConfsegError(f"{option} {text!r}: give a whole number or {word}") from None


def _print_run(run: Any) -> None:
    from confseg.training import is_rank_zero

    if not is_rank_zero():  # a DDP worker rank: rank 0 reports
        return
    if run.has_summary():
        _print_summary(run.summary())
    typer.echo(f"run folder: {run.root}")
    if run.report_path.exists():
        typer.echo(f"report: {run.report_path}")


def _print_summary(s: dict[str, Any]) -> None:
    from rich.table import Table

    out = _stdout()
    out.print(f"[bold]{s['split']}[/bold] split: {s['n_images']} images, {s['n_patients']} "
              f"patients; model {s['model']}, strategy {s['strategy']}  ({s['interval']})")
    from confseg.metrics.segmentation import HEADLINE

    metrics = [m for m in HEADLINE if any(m in c for c in s["classes"].values())]
    t = Table("class", *metrics)
    for cls, c in s["classes"].items():
        t.add_row(cls, *(f"{c[m]['mean']:.3f} [{c[m]['lo']:.3f}, {c[m]['hi']:.3f}]"
                         if m in c else "-" for m in metrics))
    out.print(t)
    if "calibration" in s:
        cal = s["calibration"]
        before, after = cal["before"], cal["after"]
        out.print(f"temperature {cal['temperature']:.3f}: ECE " + ", ".join(
            f"{c} {before[c]['ece']['mean']:.3f} -> {after[c]['ece']['mean']:.3f}" for c in after))


@app.command()
@user_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    data: Annotated[Path | None, typer.Option(help="Dataset (default: the run's).")] = None,
    split: Annotated[str, typer.Option(help="test, val, train or all.")] = "test",
    calibrate: Annotated[bool, typer.Option(
        "--calibrate", help="Fit temperature scaling on the validation split.")] = False,
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    out: Annotated[Path | None, typer.Option(help="Output folder.")] = None,
    ensemble: Annotated[list[Path] | None, typer.Option(
        "--ensemble", help="Another run whose probabilities are averaged with RUN's "
        "(repeatable). Writes to RUN/eval-ensemble-<n>runs-<split>-<dataset>/ (or --out); "
        "test/val/train and --calibrate need members with the same splits and fold.")] = None,
    tta: Annotated[str | None, typer.Option(
        "--tta", help="Test-time augmentation: flip (also average the left-right mirror; "
        "never vertical).")] = None,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Evaluate a run: summary.json (patient-bootstrap CIs), per_case.csv, reliability PNGs."""
    set_threads(threads)
    from confseg.evaluation import evaluate_run

    summary = evaluate_run(run, data=data, split=split, calibrate=calibrate,
                           checkpoint=checkpoint, out=out, quiet=quiet,
                           ensemble=ensemble or (), tta=tta)
    _print_summary(summary)
    typer.echo(f"wrote {Path(summary['out']) / 'summary.json'}")


@app.command()
@user_errors
def predict(
    run: Annotated[Path, typer.Argument(help="Run folder, or an exported bundle.")],
    images: Annotated[list[Path], typer.Argument(help="Image or video files (MP4, AVI, MOV, "
                                                      "MKV, TS, multi-frame DICOM), or with "
                                                      "--live a growing file or a device.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    level: Annotated[float, typer.Option(help="Probability threshold for masks.")] = 0.5,
    fmt: Annotated[str, typer.Option("--format", help="png (16-bit) or npz.")] = "png",
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    ensemble: Annotated[list[Path] | None, typer.Option(
        "--ensemble", help="Another run whose probabilities are averaged with RUN's "
        "(repeatable).")] = None,
    tta: Annotated[str | None, typer.Option(
        "--tta", help="Test-time augmentation: flip (also average the left-right mirror; "
        "never vertical).")] = None,
    calibration: Annotated[Path | None, typer.Option(
        "--calibration", help="Folder with the calibration.json to apply (for an ensemble or "
        "--tta: the folder `confseg evaluate ... --calibrate` wrote; default: RUN's own for a "
        "single run, none for an ensemble).")] = None,
    every: Annotated[int, typer.Option(help="Videos: take every k-th frame.")] = 1,
    max_frames: Annotated[int | None, typer.Option(help="Videos: at most M frames.")] = None,
    overlay: Annotated[bool, typer.Option(help="Videos: also write overlay.mp4.")] = False,
    batch_size: Annotated[int, typer.Option(help="Videos: frames per forward pass.")] = 8,
    backend: Annotated[str | None, typer.Option(
        help="Videos: torch (a run folder), onnxruntime, openvino, or fast (a bundle; fast "
             "measures them here and takes the quickest whose probabilities stay within 0.01 of "
             "fp32 on average; default "
             "onnxruntime).")] = None,
    precision: Annotated[str, typer.Option(
        help="Videos from a bundle: fp32, bf16 (--backend openvino, AVX-512 BF16 / AMX CPUs) "
             "or int8 (a bundle exported with --precision int8).")]
    = "fp32",
    live: Annotated[bool, typer.Option(
        help="Videos: read a growing file (MPEG-TS, MKV, fragmented MP4) or a device "
             "(/dev/video0) as frames arrive, dropping frames rather than falling behind.")]
    = False,
    idle: Annotated[float, typer.Option(
        help="With --live: a growing file ends after this many seconds without new "
             "bytes.")] = 2.0,
    prob_bits: Annotated[int, typer.Option(
        help="Videos: bits per stored probability, 8 (a step of 0.004, cheapest) or 16.")] = 8,
    threads: Threads = None,
    quiet: Quiet = False,
) -> None:
    """Predict probability maps, masks and overlays for image files, or stream videos."""
    from confseg.io.video import is_video

    set_threads(threads)
    videos = images if live else [p for p in images if is_video(p)]
    if videos:
        from confseg.inference.stream import PROB_BITS

        if prob_bits not in PROB_BITS:
            raise ConfsegError(f"--prob-bits {prob_bits}: give "
                               f"{' or '.join(map(str, PROB_BITS))}")
        if len(videos) != len(images):
            raise ConfsegError("give either images or videos, not both, in one call")
        _predict_videos(run, videos, out, every=every, max_frames=max_frames,
                        overlay=overlay, batch_size=batch_size, quiet=quiet, backend=backend,
                        precision=precision, threads=threads, live=live, idle=idle,
                        prob_bits=prob_bits)
        return
    from confseg.inference.files import predict_files

    with progress_bar("predict", quiet=quiet) as prog:
        paths = predict_files(run, images, out, level=level, fmt=fmt, checkpoint=checkpoint,
                              ensemble=ensemble or (), tta=tta, calibration=calibration,
                              progress=prog)
    typer.echo(f"wrote {len(paths)} files to {out}")


_register_media(app)


@app.command()
@user_errors
def annotate(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    rater: Annotated[str | None, typer.Option(
        help="Save to raters/<NAME>/ instead of confidence/.")] = None,
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    host: Annotated[str, typer.Option(help="Bind address (non-loopback prints a warning).")]
    = "127.0.0.1",
    model: Annotated[Path | None, typer.Option(
        help="Run folder whose predictions are offered as a pre-annotation layer.")] = None,
) -> None:
    """Paint per-pixel confidence in the browser (local web app)."""
    if not 1 <= port <= 65535:
        raise ConfsegError(f"--port {port}: give a port number between 1 and 65535")
    from confseg.io.optional import require

    for module in ("fastapi", "uvicorn"):
        require(module, "annotator", purpose="the annotator")
    from confseg.annotator import serve

    serve(dataset, rater=rater, host=host, port=port, model_run=model)


@app.command()
def models() -> None:
    """List the model names."""
    from confseg.models import list_models

    for name in list_models():
        typer.echo(name)


class _WarningLines(logging.Handler):
    """confseg's logged warnings as ``warning:`` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(f"[yellow]warning:[/yellow] {escape(record.getMessage())}",
                      highlight=False, soft_wrap=True)


def _log_to_console() -> None:
    log = logging.getLogger("confseg")
    if not any(isinstance(h, _WarningLines) for h in log.handlers):
        log.addHandler(_WarningLines(level=logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    """The console entry point: usage mistakes too become one ``error:`` line, exit 2."""
    _log_to_console()
    try:  # typer >= 0.2x vendors click; older ones use click itself
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover
        from click import exceptions as cx

    try:
        code = app(args=argv, prog_name="confseg", standalone_mode=False)
    except cx.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else "confseg --help")
        return 0
    except cx.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx else "confseg"
        error_line(f"{exc.format_message()} (see `{cmd} --help`)")
        return 2
    except (typer.Abort, KeyboardInterrupt):
        error_line("interrupted (Ctrl-C)")
        return 130
    return int(code or 0)


def main_entry() -> None:  # pragma: no cover - the `confseg` script
    """The ``confseg`` console script."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
