"""``confseg study run | status | summary | report``: thin commands over :mod:`confseg.study`."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from confseg.cli.common import Overwrite, Quiet, Threads, parse_sets, set_threads, user_errors
from confseg.errors import ConfsegError
from confseg.progress import console

study_app = typer.Typer(help="The confidence-threshold study: strategies x folds x seeds.",
                        no_args_is_help=True)

Folder = Annotated[Path, typer.Argument(help="Study folder.")]


def _split(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated values as one list."""
    return [v.strip() for text in values or [] for v in text.split(",") if v.strip()]


@study_app.command("run", context_settings={"allow_extra_args": True})
@user_errors
def run(
    ctx: typer.Context,
    dataset: Annotated[Path, typer.Argument(help="Dataset folder.")],
    strategies: Annotated[list[str] | None, typer.Option(
        "--strategies", help="Label strategies, space- or comma-separated, e.g. --strategies "
                             "threshold:0 threshold:0.6 soft (default: the nine of the study)."
    )] = None,
    folds: Annotated[int, typer.Option(help="Patient-level folds.")] = 5,
    seeds: Annotated[int, typer.Option(help="Seeds per fold and strategy.")] = 1,
    model: Annotated[str | None, typer.Option(help="Model for every cell.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs for every cell.")] = None,
    size: Annotated[int | None, typer.Option(help="Input size for every cell.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Any train option for every cell, KEY=VALUE (repeatable).")] = None,
    config: Annotated[Path | None, typer.Option(
        help="YAML base recipe for every cell (options override it).")] = None,
    preset: Annotated[str | None, typer.Option(
        help="A tested recipe for every cell (recommended, realtime, fpn-lus); options "
             "override it.")]
    = None,
    references: Annotated[list[str] | None, typer.Option(
        help="Confidence levels the Dice is measured against (default: any,0.6).")] = None,
    compare: Annotated[list[str] | None, typer.Option(
        help="Reference strategies of the paired tests (default: threshold:0,threshold:0.5)."
    )] = None,
    split_seed: Annotated[int, typer.Option(help="Seed of the patient split.")] = 0,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates.")] = 1000,
    out: Annotated[Path, typer.Option(help="Study folder.")] = Path("studies/study"),
    jobs: Annotated[int | None, typer.Option(
        help="Cells at once (default: one per GPU, else one per CPU core).")] = None,
    threads: Threads = None,
    executor: Annotated[str, typer.Option(help="local (worker processes) or ray.")] = "local",
    ray_address: Annotated[str | None, typer.Option(
        help="Address of a running Ray cluster (default: start Ray locally).")] = None,
    report: Annotated[bool, typer.Option(help="Write report.html at the end.")] = True,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train every strategy on every fold and seed, collect paired statistics, write a report.

    Rerunning the same command continues the study: finished cells are skipped, interrupted
    ones resume from their last checkpoint.
    """
    if ctx.args and strategies is None:
        raise ConfsegError(f"unexpected argument {ctx.args[0]!r}; strategies follow "
                           "--strategies")
    set_threads(threads)
    from confseg.study import DEFAULT_STRATEGIES, StudySpec, run_study
    from confseg.study.spec import DEFAULT_COMPARE, DEFAULT_REFERENCES

    base: dict[str, Any] = {}
    if config is not None:
        import yaml

        try:
            base = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfsegError(f"{config}: base recipe not found") from None
        except yaml.YAMLError:
            raise ConfsegError(f"{config}: not valid YAML; fix it") from None
        if not isinstance(base, dict):
            raise ConfsegError(f"{config}: must be a mapping of option: value")
    if preset is not None:
        from confseg.config import PRESETS

        if preset not in PRESETS:
            hint = (" (plan one run with `confseg train --preset auto`, then pass its "
                    "config.yaml as --config)" if preset == "auto" else "")
            raise ConfsegError(f"--preset {preset!r}; choose one of {', '.join(PRESETS)}{hint}")
        base = {**PRESETS[preset], **base}
    base.update({k: v for k, v in (("model", model), ("epochs", epochs), ("size", size))
                 if v is not None})
    base.update(parse_sets(set_ or []))
    spec = StudySpec(data=str(dataset),
                     strategies=tuple(_split([*(strategies or []), *ctx.args]))
                     or DEFAULT_STRATEGIES,
                     k=folds, seeds=seeds, split_seed=split_seed, base=base,
                     references=tuple(_split(references)) or DEFAULT_REFERENCES,
                     compare=tuple(_split(compare)) or DEFAULT_COMPARE, n_boot=n_boot)
    command = "confseg " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == [
        "study"] else None
    summary = run_study(spec, out, jobs=jobs, threads=threads, executor=executor,
                        ray_address=ray_address, overwrite=overwrite, quiet=quiet,
                        command=command)
    _print_summary(out, summary)
    if report:
        from confseg.report.study_report import write_study_report

        console.print(f"report: {write_study_report(out).resolve()}")
    if summary["finished_cells"] < summary["n_cells"]:
        raise typer.Exit(1)


@study_app.command("status")
@user_errors
def status(
    folder: Folder,
    watch: Annotated[bool, typer.Option(help="Redraw until the study stops running.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Cells pending / running / finished / failed, with an ETA from the finished cells."""
    from confseg.study import study_status

    st = study_status(folder)
    if as_json:
        typer.echo(json.dumps(st, indent=1, default=str))
        return
    if watch and st["state"] == "running":
        _watch(folder)
        st = study_status(folder)
    from rich.table import Table

    t = Table(title=f"{st['study']}: {st['state']}", title_justify="left")
    for col in ("cell", "status", "epochs", "seconds", "error"):
        t.add_column(col)
    for c in st["cells"]:
        colour = {"finished": "green", "failed": "red", "running": "cyan",
                  "interrupted": "yellow"}.get(c["status"], "white")
        t.add_row(c["cell"], f"[{colour}]{c['status']}[/{colour}]", str(c["epochs"] or ""),
                  f"{c['seconds']:.0f}" if c["seconds"] else "", c["error"] or "")
    console.print(t)
    console.print(_progress_line(st))


def _progress_line(st: dict[str, Any]) -> str:
    n, done = st["total"], st["counts"].get("finished", 0)
    width = 30
    fill = round(width * done / max(n, 1))
    counts = ", ".join(f"{v} {k}" for k, v in sorted(st["counts"].items()))
    eta = f"; ETA {time.strftime('%H:%M:%S', time.gmtime(st['eta_seconds']))}" if (
        st["eta_seconds"] and st["state"] == "running") else ""
    return f"[{'#' * fill}{'.' * (width - fill)}] {done}/{n} finished ({counts}){eta}"


def _watch(folder: Path) -> None:
    from rich.live import Live

    from confseg.study import study_status

    with Live(console=console, refresh_per_second=1) as live:
        while True:
            st = study_status(folder)
            live.update(_progress_line(st))
            if st["state"] != "running":
                return
            time.sleep(2)


@study_app.command("summary")
@user_errors
def summary(
    folder: Folder,
    metric: Annotated[str | None, typer.Option(
        help="Metric of the paired column (default: the first headline metric).")] = None,
    reference: Annotated[str | None, typer.Option(
        help="Reference strategy of the paired column (default: the first of --compare).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print summary.json.")] = False,
    by_downstream: Annotated[str | None, typer.Option(
        help="Rank the strategies by a downstream task (sf, sf-change, outcome, severity) "
             "evaluated with `confseg downstream ... --segmenters STUDY --out DIR`.")] = None,
    downstream: Annotated[Path | None, typer.Option(
        help="With --by-downstream: the downstream folder.")] = None,
) -> None:
    """The strategy x metric table, the best strategy per metric, paired differences."""
    from confseg.runs import StudyFolder

    sf = StudyFolder(folder).require()
    s = sf.read_json(sf.summary_path)
    if by_downstream is not None:
        _print_by_downstream(s, by_downstream, downstream)
        return
    if as_json:
        typer.echo(json.dumps(s, indent=1, default=float))
        return
    paired = sf.read_json(sf.paired_path)
    if metric is not None and metric not in s["metrics"]:
        raise ConfsegError(f"--metric {metric!r}; choose one of {', '.join(s['metrics'])}")
    if reference is not None:
        from confseg.targets import parse_strategy

        reference = str(parse_strategy(reference))
        if reference not in paired.get("comparisons", {}):
            raise ConfsegError(f"--reference {reference!r}: no paired results against it; "
                               f"choose one of {', '.join(paired['comparisons']) or '(none)'}")
    _print_summary(folder, s, paired=paired, metric=metric, reference=reference)


def _print_summary(folder: Path, s: dict[str, Any], *, paired: dict[str, Any] | None = None,
                   metric: str | None = None, reference: str | None = None) -> None:
    from confseg.runs import StudyFolder
    from confseg.study.table import missing_lines, summary_sentences, summary_table

    sf = StudyFolder(folder)
    paired = paired if paired is not None else sf.read_json(sf.paired_path)
    if reference is None and paired.get("references"):
        reference = paired["references"][0]
    from rich.console import Console

    wide = Console(stderr=True, width=max(console.width, 180))
    for cls in s["classes"]:
        wide.print(summary_table(s, paired, cls=cls, metric=metric, reference=reference))
        for line in summary_sentences(s, cls=cls):
            wide.print(f"  {line}", highlight=False)
    lines = missing_lines(s)
    if lines:
        console.print(f"[yellow]{len(lines)} of {s['n_cells']} cells are missing from the "
                      "results:[/yellow]")
        for line in lines:
            console.print(f"  {line}", highlight=False)


def _print_by_downstream(s: dict[str, Any], task: str, downstream: Path | None) -> None:
    """Strategies ranked by a downstream metric, beside their segmentation rank."""
    from rich.table import Table

    from confseg.runs import strategy_slug

    if downstream is None:
        raise ConfsegError("--by-downstream needs --downstream DIR (the folder written by "
                           "`confseg downstream DATASET --task TASK --segmenters STUDY`)")
    path = downstream / "tasks" / task / "summary.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfsegError(f"{path}: missing; run `confseg downstream DATASET --task {task} "
                           f"--segmenters STUDY --out {downstream}` first") from None
    head, lower = d["headline"], d["lower_is_better"]
    seg_metric = s["metrics"][0]
    cls = s["classes"][0]
    seg_rank = sorted(s["strategies"], key=lambda x: -s["table"][x][cls][seg_metric]["mean"])
    rows = [(st, d["results"][strategy_slug(st)]["metrics"][head]) for st in s["strategies"]
            if strategy_slug(st) in d["results"]]
    rows.sort(key=lambda r: r[1]["mean"] if lower else -r[1]["mean"])
    t = Table(title=f"strategies by downstream {task} ({head}{', lower is better' if lower else ''}"
                    f"; {d['repeats']}x{d['folds']} patient-grouped splits)",
              title_justify="left")
    for col in ("rank", "strategy", f"{head} [95%]", f"segmentation rank ({seg_metric}, {cls})"):
        t.add_column(col)
    for i, (st, m) in enumerate(rows, 1):
        t.add_row(str(i), st, f"{m['mean']:.3f} [{m['lo']:.3f}, {m['hi']:.3f}]",
                  str(seg_rank.index(st) + 1))
    console.print(t)
    sel = d.get("selection")
    if sel:
        m = sel["metrics"][head]
        chosen = ", ".join(f"{k} {v}x" for k, v in sel["chosen"].items())
        console.print(f"  choosing the strategy inside each outer split by its inner-CV score "
                      f"(nested): {head} {m['mean']:.3f} [{m['lo']:.3f}, {m['hi']:.3f}]; "
                      f"chosen: {chosen}", highlight=False)
    for name in ("raw", "annotation"):
        if name in d["results"]:
            m = d["results"][name]["metrics"][head]
            console.print(f"  baseline {name}: {head} {m['mean']:.3f} [{m['lo']:.3f}, "
                          f"{m['hi']:.3f}]", highlight=False)


@study_app.command("report")
@user_errors
def report_(folder: Folder) -> None:
    """Write one self-contained report.html from the study's results."""
    from confseg.report.study_report import write_study_report

    console.print(f"report: {write_study_report(folder).resolve()}")
