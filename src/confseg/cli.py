"""The ``confseg`` command: a thin typer layer that parses arguments and calls the library."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from confseg.errors import ConfsegError
from confseg.progress import console, progress_bar

app = typer.Typer(
    name="confseg",
    help="Train and evaluate segmentation models from uncertain (confidence / multi-rater) labels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")]


def user_errors(fn: F) -> F:
    """Turn a ConfsegError into a one-line message and exit status 2 (no traceback)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfsegError as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


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
    quiet: Quiet = False,
) -> None:
    """Summarise a dataset: counts, marked fraction and confidence levels per class."""
    from confseg.dataset import load_dataset
    from confseg.info import dataset_info

    ds = load_dataset(dataset)
    with progress_bar("reading maps", quiet=quiet or as_json) as prog:
        summary = dataset_info(ds, progress=prog)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    _print_info(summary)


def _print_info(s: dict[str, Any]) -> None:
    from rich.table import Table

    out = console.__class__()  # stdout console
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
    from confseg.dataset import load_dataset
    from confseg.splits import make_splits, write_splits

    ds = load_dataset(dataset, validate=False)
    splits = make_splits(ds, k=k if k == "loo" else int(k), seed=seed)
    path = out or dataset / "splits.json"
    write_splits(path, splits)
    for f, pats in enumerate(splits.folds):
        n = sum(1 for it in ds.items if it.patient in set(pats))
        typer.echo(f"fold {f}: {len(pats)} patients, {n} items")
    typer.echo(f"wrote {path}")


def main() -> None:  # pragma: no cover - console entry
    """Entry point for ``python -m confseg``."""
    app(prog_name="confseg")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
