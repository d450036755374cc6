"""``mksgn convert``: a trained student -> Loihi network file, ONNX, compatibility report."""
from __future__ import annotations

from pathlib import Path

import click

from mksgn.terminal import wide_option


@click.command("convert")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Output directory (written atomically; see --force).")
@click.option("--teacher", type=click.Path(path_type=Path),
              help="The teacher's run directory or checkpoint: also writes DIR/teacher.onnx.")
@click.option("--force", is_flag=True, help="Replace DIR when it exists and is not empty.")
@wide_option
def convert(checkpoint: Path, out: Path, teacher: Path | None, force: bool, wide: bool) -> None:
    """Convert the student in CHECKPOINT (a run directory: its best.pt; or a .pt) for Loihi.

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

    \b
    Example:
      mksgn convert runs/student --teacher runs/teacher --out runs/convert
    """
    from rich.console import Console

    from .compat import print_report
    from .convert import ConvertError, convert as run

    console = Console()
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
