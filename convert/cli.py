"""``mksgn convert``: a trained student -> Loihi network file, ONNX, compatibility report."""
from __future__ import annotations

from pathlib import Path

import click

from mksgn.data.prepare import DATASET_SPECS
from mksgn.terminal import wide_option


def _convert_options(f):
    """The options of ``mksgn convert`` but --wide, in help order."""
    opts = [
        click.option("--out", "out", required=True,
                     type=click.Path(path_type=Path, file_okay=False),
                     help="Output directory (written atomically; see --force)."),
        click.option("--teacher", type=click.Path(path_type=Path),
                     help="The teacher's run directory or checkpoint: also writes "
                          "DIR/teacher.onnx."),
        click.option("--teacher-config", type=click.Path(path_type=Path, dir_okay=False),
                     metavar="CONFIG.yaml",
                     help="Instead of CHECKPOINT: write only DIR/teacher.onnx, the graph of "
                          "this run config's teacher with untrained weights (its MACs are the "
                          "trained one's), e.g. the paper-scale train/configs/ucla_teacher.yaml "
                          "for `mksgn energy --reference-teacher`."),
        click.option("--dataset", type=click.Choice(list(DATASET_SPECS)),
                     help="With --teacher-config: the dataset whose classes, skeleton and "
                          "bodies the teacher is built for (default: the config's prepared data "
                          "says)."),
        click.option("--force", is_flag=True, help="Replace DIR when it exists and is not empty."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.command("convert")
@click.argument("checkpoint", type=click.Path(path_type=Path), required=False)
@_convert_options
@wide_option
def convert(checkpoint: Path | None, out: Path, teacher: Path | None,
            teacher_config: Path | None, dataset: str | None, force: bool, wide: bool) -> None:
    """Convert the student in CHECKPOINT (a run directory: its last.pt; or a .pt) for Loihi.

    \b
    Writes, all or nothing, into --out DIR:
      model.net           HDF5: /mksgn graph section (every node and edge, integer
                          weights, CUBA parameters, encoders); for a chain student
                          also a /layer section that stock lava-dl netx loads
                          (docs/netfile.md)
      manifest.json       versions, source config, input encoding, per-layer table
                          with quantisation error
      compat.json         per node: native / workaround / host / unsupported on
                          Loihi, and the chip resources against one Loihi 2
      student_float.onnx  the float rate-coded ANN counterpart of the student
      teacher.onnx        the teacher (with --teacher)
      student.pt          the student checkpoint (deploy compares against it)

    Prints the nodes that are not native, the chip resources and the verdict (every node:
    compat.json, or --wide).

    With --teacher-config CONFIG.yaml instead of CHECKPOINT, writes only DIR/teacher.onnx: the
    teacher of that run config, built for --dataset's classes, skeleton and bodies and exported
    as --teacher exports a trained one, but with its initial (untrained) weights. The weights
    are irrelevant to what it is for: the graph and its MACs per sample depend only on the
    config. `mksgn energy --reference-teacher DIR/teacher.onnx` then compares the student with
    it, e.g. with the paper-scale teacher no CPU run trains.

    \b
    Examples:
      mksgn convert runs/student --teacher runs/teacher --out runs/convert
      mksgn convert --teacher-config train/configs/ucla_teacher.yaml \\
        --dataset ucla --out runs/paper_teacher
    """
    from rich.console import Console

    console = Console()
    if teacher_config is not None:
        if checkpoint is not None or teacher is not None:
            raise click.UsageError("--teacher-config writes only a teacher graph; give it "
                                   "without CHECKPOINT and --teacher")
        _teacher_graph(console, teacher_config, dataset, out, force)
        return
    if checkpoint is None:
        raise click.UsageError("missing argument CHECKPOINT (or --teacher-config CONFIG.yaml)")
    if dataset is not None:
        raise click.UsageError("--dataset goes with --teacher-config (a student checkpoint "
                               "knows its dataset)")
    _convert_student(console, checkpoint, out, teacher, force, wide)


def _convert_student(console, checkpoint: Path, out: Path, teacher: Path | None,
                     force: bool, wide: bool) -> None:
    """Convert CHECKPOINT into OUT and print the compatibility report and a summary."""
    from .compat import print_report
    from .convert import ConvertError, convert as run

    try:
        res = run(checkpoint, out, teacher=teacher, force=force)
    except ConvertError as e:
        raise click.ClickException(str(e)) from None
    print_report(res.report, console, wide=wide, details=str(res.out / "compat.json"))
    if res.network.meta.get("config", {}).get("chain") and not res.report.stock_netx:
        console.print(f"[yellow]warning:[/] a chain student, but no stock-netx /layer section: "
                      f"{res.report.stock_netx_note}")
    man = res.manifest
    worst = man.totals.get("quant_rel_l2_max")
    console.print(f"quantisation error (relative L2, worst layer): "
                  f"{worst:.2e}" if worst is not None else "quantisation error: not available")
    total = sum(res.seconds.values())
    files = sorted(p.name for p in res.out.iterdir())
    console.print(f"[bold]wrote[/] {res.out}/ ({', '.join(files)}) in {total:.1f} s")


def _teacher_graph(console, config: Path, dataset: str | None, out: Path, force: bool) -> None:
    from .convert import ConvertError
    from .onnx_export import teacher_graph

    try:
        g = teacher_graph(config, dataset, out, force=force)
    except ConvertError as e:
        raise click.ClickException(str(e)) from None
    shape = ", ".join(map(str, g.input_shape))
    console.print(f"teacher of {g.config} for {g.dataset}:")
    console.print(f"  {len(g.modalities)} streams, {g.num_classes} classes, {g.layout}, "
                  f"{g.persons} body slot(s), {g.window} frames")
    console.print(f"  input ({shape}), {g.params:,} parameters")
    console.print("  weights untrained (the graph and its MACs do not depend on them)")
    console.print(f"[bold]wrote[/] {g.path}")
