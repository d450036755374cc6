"""``mksgn data``: generate synthetic skeleton files and prepare datasets for training."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from . import prepare as prep
from .synth import SynthConfig, class_names, generate

_DATASETS = click.Choice(["ntu60", "ntu120", "ucla"])


def _progress(description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn
    from rich.console import Console
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                    transient=False, disable=not sys.stderr.isatty())


@click.group()
def data() -> None:
    """Skeleton data: NTU RGB+D 60/120 and NW-UCLA loaders, synthetic data in the same formats.

    \b
    mksgn data synth --out RAW --dataset ntu60
        # demo data, in the real files' formats
    mksgn data prepare --dataset ntu60 --root RAW --out PREP
        # parse once -> PREP/xsub, PREP/xview
    """


@data.command()
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory to write into (NTU: OUT/nturgb+d_skeletons/, UCLA: OUT/all_sqe/).")
@click.option("--dataset", type=_DATASETS, default="ntu60", show_default=True,
              help="Which dataset's file format and naming to imitate.")
@click.option("--classes", type=int, default=8, show_default=True, help="Number of action classes K.")
@click.option("--subjects", type=int, default=8, show_default=True,
              help="Number of performers (alternating cross-subject train/test IDs).")
@click.option("--samples-per-class", type=int, default=40, show_default=True)
@click.option("--frames", type=int, default=64, show_default=True, help="Mean sequence length (frames).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--second-actor-prob", type=float, default=0.15, show_default=True,
              help="NTU only: chance of a second (bystander or spurious) body in a sample.")
@click.option("--workers", type=int, default=None, help="Processes (default: all cores).")
def synth(out: Path, dataset: str, classes: int, subjects: int, samples_per_class: int, frames: int,
          seed: int, second_actor_prob: float, workers: int | None) -> None:
    """Write synthetic skeleton actions as real .skeleton / json files (deterministic from --seed)."""
    try:
        cfg = SynthConfig(dataset, classes, subjects, samples_per_class, frames, seed, second_actor_prob)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    with _progress("synth") as bar:
        task = bar.add_task(f"synth {dataset}", total=None)
        specs = generate(cfg, out, workers, on_start=lambda n: bar.update(task, total=n),
                         on_progress=lambda k: bar.advance(task, k))
    click.echo(f"wrote {len(specs)} {dataset} samples ({classes} classes: "
               f"{', '.join(class_names(classes)[:8])}{', ...' if classes > 8 else ''}) to {out}")


@data.command()
@click.option("--dataset", type=_DATASETS, required=True)
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Raw data directory, searched recursively for *.skeleton (NTU) or *.json (UCLA).")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Prepared directory: OUT/<benchmark>/{train,test}_{data.npy,label.npy,meta.json}.")
@click.option("--max-frames", type=int, default=None,
              help="Pad/limit length; longer sequences are subsampled. [default: 300 NTU, 52 UCLA]")
@click.option("--workers", type=int, default=None, help="Parser processes (default: all cores).")
@click.option("--skip-list", "skip_lists", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              multiple=True, help="Extra file of sample names to leave out (one per line). Repeatable.")
@click.option("--no-default-skip-list", is_flag=True,
              help="Keep the samples the NTU authors list as having missing skeletons.")
def prepare(dataset: str, root: Path, out: Path, max_frames: int | None, workers: int | None,
            skip_lists: tuple[Path, ...], no_default_skip_list: bool) -> None:
    """Parse, denoise, centre and pad a dataset into cached arrays for every standard benchmark."""
    cfg = prep.PrepareConfig(dataset, root, out, max_frames, workers, skip_lists, not no_default_skip_list)
    try:
        with _progress("prepare") as bar:
            task = bar.add_task(f"parse {dataset}", total=None)
            report = prep.prepare(cfg, on_start=lambda n: bar.update(task, total=n),
                                  on_progress=lambda k: bar.advance(task, k))
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    _print_summary(report)


def _print_summary(r: prep.PrepareReport) -> None:
    from rich.console import Console
    from rich.table import Table
    con = Console()
    con.print(f"[bold]{r.dataset}[/bold]: {r.samples_kept} of {r.files_found} files kept, "
              f"{r.num_classes} classes, T_max {r.t_max} ({r.seconds:.1f} s)")
    table = Table()
    table.add_column("benchmark")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    for bench, c in r.counts.items():
        table.add_row(bench, str(c["train"]), str(c["test"]))
    con.print(table)
    for note, n in r.notes.items():
        con.print(f"  {note}: {n}")
    if r.skipped:
        con.print(f"[bold]skipped {len(r.skipped)} file(s)[/bold]:")
        for reason, n in prep.iter_reasons(r.skipped).items():
            con.print(f"  {n:6d}  {reason}")
        for s in r.skipped[:10]:
            con.print(f"    {s}", markup=False, highlight=False)
        if len(r.skipped) > 10:
            con.print(f"    ... all {len(r.skipped)} listed in {Path(r.out) / 'prepare_report.json'}")
    con.print(f"wrote {', '.join(str(Path(r.out) / b) for b in r.counts)}")
