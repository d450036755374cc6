"""``mksgn export nir`` and ``mksgn import nir``: converted networks to and from NIR graphs.

The translation is ``mksgn.nir_io`` (its docstring and docs/nir.md give the mapping); these verbs
read and write the files, check what they wrote, and report.
"""
from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path

import click

_DT_HELP = ("NIR time step in seconds (NIR files record none; snnTorch's importer assumes 1e-4).")


def _fail(msg: str, code: int = 2):
    e = click.ClickException(msg)
    e.exit_code = code
    raise e


@click.group("export")
def export() -> None:
    """Export a converted network to another format (NIR)."""


@export.command("nir")
@click.argument("convert_dir", metavar="CONVERT_DIR", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The .nir file to write (atomically).")
@click.option("--dt", type=click.FloatRange(min=0, min_open=True), default=None, help=_DT_HELP +
              "  [default: 1e-4]")
def export_nir(convert_dir: Path, out: Path, dt: float | None) -> None:
    """Write the network in CONVERT_DIR (or a model.net file) as a NIR graph.

    \b
    CUBA groups become CubaLIF (the first groups, driven by the host
    encoders, LIF), the readout an Integrator (I) or LI/CubaLI, synapses
    Conv1d/Conv2d/Linear, encoders Input -> Conv. Joints are folded into
    channels (a (C, T, V) group is (V*C, T)); inputs are folded the same way.
    Loihi's one-step latency per layer is dropped (NIR edges have none): run
    the NIR graph for the `steps` its metadata records (num_steps - latency).
    Spiking joint attention has no NIR node and is refused. docs/nir.md.
    """
    import nir

    from mksgn import netgraph, nir_io

    path = convert_dir / "model.net" if convert_dir.is_dir() else convert_dir
    if not path.is_file():
        _fail(f"{path}: no such file (run `mksgn convert` first)")
    try:
        net = netgraph.load(path)
    except (OSError, ValueError, KeyError) as e:
        _fail(f"{path}: not a converted mksgn network: {e}")
    manifest = path.parent / "manifest.json"
    if manifest.is_file():
        net.meta["input_manifest"] = json.loads(manifest.read_text()).get("input")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        nir_io.write(net, out, dt=dt or nir_io.DEFAULT_DT)
    except nir_io.NirExportError as e:
        _fail(f"{path}: {e}")
    graph = nir.read(str(out))             # type-checked, as any NIR reader would
    meta = nir_io.graph_meta(graph)
    kinds = Counter(type(n).__name__ for n in graph.nodes.values())
    click.echo(f"{path} -> {out} ({out.stat().st_size / 1e6:.1f} MB), nir.read type check ok")
    click.echo("  nodes: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    click.echo(f"  dt {meta['dt']:g} s, layout {meta['layout']}; run {meta['steps']} steps "
               f"(Loihi: {meta['num_steps']} = {meta['steps']} + latency {meta['latency']})")


@click.group("import")
def import_() -> None:
    """Import a network from another format (NIR) as a converted network."""


@import_.command("nir")
@click.argument("nir_file", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Output directory: model.net and import.json (written atomically).")
@click.option("--dt", type=click.FloatRange(min=0, min_open=True), default=None,
              help=_DT_HELP + "  [default: the file's if written by mksgn, else 1e-4]")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Steps the NIR network runs per sample (default: the file's, if recorded); "
                   "the Loihi network runs steps + its latency.")
@click.option("--scale", type=click.Choice(["auto", "keep", "netx"]), default=None,
              help="keep: weights are in slayer units (1.0 = 64 synaptic input units, files "
                   "mksgn wrote); auto: a power-of-two scale per group for the integer "
                   "resolution (default for other files); netx: the scale that makes every "
                   "weight exponent 0, and a stock-netx /layer section for chain networks "
                   "(`mksgn run` and lava-dl's netx read it).")
@click.option("--force", is_flag=True, help="Replace DIR when it exists and is not empty.")
def import_nir(nir_file: Path, out: Path, dt: float | None, steps: int | None,
               scale: str | None, force: bool) -> None:
    """Turn the NIR graph in FILE into a Loihi network directory.

    \b
    Reads CubaLIF, LIF, IF (spiking), CubaLI, LI, I (the readout; an
    Affine/Linear feeding the output directly gets an integrating readout),
    Affine, Linear, Conv1d, Conv2d, Flatten, SumPool2d, Scale, Delay, biases
    and a population feeding itself. Weights become 8-bit mantissas with an
    exponent per synapse group, decays 12-bit, thresholds vThMant; prints the
    quantisation error per layer and every assumption. `mksgn simulate`,
    `mksgn energy` and Lava read DIR/model.net.
    """
    from mksgn import netgraph, nir_io
    from mksgn.files import atomic_write_json

    from .outdir import check_out, staged
    from .student_io import ConvertError

    if not nir_file.is_file():
        _fail(f"{nir_file}: no such file")
    try:
        check_out(out, force)
    except ConvertError as e:
        _fail(str(e))
    try:
        net, report = nir_io.read(nir_file, dt=dt, steps=steps, scale=scale)
    except nir_io.NirImportError as e:
        _fail(str(e) if str(e).startswith(str(nir_file)) else f"{nir_file}: {e}")
    layers = _netx_section(nir_file, net) if scale == "netx" else None
    with staged(out) as tmp:
        netgraph.save(net, tmp / "model.net", extra_writer=layers)
        atomic_write_json(tmp / "import.json", {"source": str(nir_file), **report.to_dict()})
        inp = net.meta.get("nir_meta", {}).get("input")
        if inp:          # written by `mksgn export nir` from a converted student: its inputs
            atomic_write_json(tmp / "manifest.json", {"tool": "mksgn import nir",
                                                      "source": str(nir_file), "input": inp})
    _print_report(nir_file, out, net, report)


def _netx_section(nir_file: Path, net):
    """A writer of the stock-netx /layer section, checked on an in-memory file first."""
    import io

    import h5py

    from mksgn import netx_io

    def write(h5) -> None:
        netx_io.write_netx_layers(net, h5)
    try:
        with h5py.File(io.BytesIO(), "w") as h5:
            write(h5)
    except ValueError as e:
        _fail(f"{nir_file}: no stock-netx /layer section: {e}")
    return write


def _print_report(src: Path, out: Path, net, report) -> None:
    click.echo(f"{src} -> {out}/model.net:")
    click.echo(f"  {len(net.groups)} groups, {len(net.synapses)} synapse groups, "
               f"{net.num_steps} steps ({report.steps} + latency {report.latency}), "
               f"dt {report.dt:g} s")
    click.echo(f"  {'synapse group':<28} {'kind':<6} {'exp':>4} {'rel. L2 err':>11}")
    for q in report.layers:
        click.echo(f"  {q.name[:28]:<28} {q.kind:<6} {q.weight_exp:>4} {q.rel_l2:>11.2e}")
    for g, t in report.thresholds.items():
        if t["rel_err"] > 1e-3:
            click.echo(f"  {g}: threshold vThMant {t['vth_mant']} off by {t['rel_err']:.1e}")
    for a in report.assumed:
        click.echo(textwrap.fill(f"assumed: {a}", width=78, initial_indent="  ",
                                 subsequent_indent="    "))
