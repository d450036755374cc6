"""``mksgn energy``: per-layer energy of a converted student on hardware profiles, vs its teacher."""
from __future__ import annotations

from pathlib import Path

import click

from mksgn import profiles as hwp
from mksgn.terminal import wide_option


def _list_profiles() -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"energy profiles ({hwp.PROFILE_DIR})")
    for col in ("name", "kind", "energies", "description"):
        t.add_column(col)
    for name in hwp.builtin_names():
        p = hwp.load_profile(name)
        energies = ", ".join(f"{k} {e.value:g} {e.unit}" for k, e in p.energy.items())
        t.add_row(p.name, p.kind + (" (estimate)" if p.estimate else ""), energies, p.description)
    Console().print(t)


def _load_network(net_dir: Path):
    from mksgn import netgraph

    path = net_dir / "model.net"
    if not path.is_file():
        raise click.ClickException(f"{path}: no such file (run `mksgn convert` first)")
    try:
        return netgraph.load(path), path
    except (OSError, ValueError, KeyError) as e:
        raise click.ClickException(f"{path}: not a converted mksgn network: {e}") from None


def _measure(ctx: click.Context, net_dir: Path, data: Path, split: str, samples: int,
             out: Path) -> Path:
    """Measure activity on the spot with the fast engine (``mksgn simulate``), into ``out``."""
    from mksgn.deploy.cli import simulate

    out.mkdir(parents=True, exist_ok=True)
    ctx.invoke(simulate, net_dir=net_dir, data=data, split=split, samples=samples, engine="fast",
               out=out)
    return out


@click.command("energy")
@click.argument("net_dir", metavar="DIR", required=False,
                type=click.Path(path_type=Path, file_okay=False))
@click.option("--profile", "profile_names", multiple=True, metavar="NAME|FILE.yaml",
              help="Hardware profile for the student (repeatable): a bundled name "
                   "(see --list-profiles) or a YAML file. Default: loihi and cmos45nm_fp32.")
@click.option("--activity", type=click.Path(path_type=Path),
              help="A `mksgn simulate` output directory (activity.json + activity.npz).")
@click.option("--data", type=click.Path(path_type=Path),
              help="Prepared data, to measure activity on the spot when --activity is not given.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "test"]))
@click.option("--samples", default=64, show_default=True, type=click.IntRange(min=1),
              help="Samples to measure on the spot.")
@click.option("--teacher-profile", "teacher_names", multiple=True, metavar="NAME|FILE.yaml",
              help="Profile(s) for the ANN teacher (cmos or ann_device; repeatable). "
                   "Default: cmos45nm_fp32 (the paper's comparison), gpu, cpu, arm.")
@click.option("--teacher-macs", type=click.Path(path_type=Path, dir_okay=False),
              help="Teacher per-layer MACs as JSON, when DIR/teacher.onnx is missing.")
@click.option("--reference-teacher", type=click.Path(path_type=Path),
              metavar="FILE.onnx|FILE.json",
              help="A second teacher to compare the student with, beside DIR's: e.g. the "
                   "paper-scale one, `mksgn convert --teacher-config "
                   "train/configs/ucla_teacher.yaml --dataset ucla --out D` writes it as "
                   "D/teacher.onnx; or MACs as JSON (as --teacher-macs).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Report directory for energy.json, energy.csv, energy.png.")
@click.option("--list-profiles", is_flag=True, help="List the bundled profiles and exit.")
@wide_option
@click.pass_context
def energy(ctx: click.Context, net_dir: Path | None, profile_names: tuple[str, ...],
           activity: Path | None, data: Path | None, split: str, samples: int,
           teacher_names: tuple[str, ...], teacher_macs: Path | None,
           reference_teacher: Path | None, out: Path | None, list_profiles: bool,
           wide: bool) -> None:
    """Per-layer energy of a converted student from the spikes it fires, and of its teacher.

    DIR is a `mksgn convert` output (model.net, manifest.json, teacher.onnx). Spikes come from
    --activity (a `mksgn simulate` output) or are measured now on --samples test samples of
    --data with the fast engine (kept in OUT/activity/). Per layer: synaptic operations =
    spikes x exact fan-out, neuron updates, spike deliveries, encoder MACs; priced on each --profile. The teacher's MACs
    come from DIR/teacher.onnx (or --teacher-macs). --reference-teacher adds a second teacher
    (e.g. the untrained paper-scale one: same MACs as trained) and the reduction against it.
    Writes OUT/energy.json, energy.csv (every layer on every profile) and energy.png; prints the
    totals, the layers using the most energy and the reductions (every layer: --wide).
    Profiles: hw_profiles/README.md.

    \b
    Example:
      mksgn energy runs/demo/convert --activity runs/demo/sim \\
        --profile loihi --profile cmos45nm_fp32 --out runs/demo/energy
    """
    if list_profiles:
        _list_profiles()
        return
    if net_dir is None:
        raise click.UsageError("missing argument DIR (or use --list-profiles)")
    from rich.console import Console

    from mksgn.hw_profiles import activity as act_io
    from mksgn.hw_profiles import report as rep
    from mksgn.hw_profiles import teacher as tea

    console = Console()
    # check every input before the (slow) measurement
    profiles = hwp.load_profiles(profile_names or ("loihi", "cmos45nm_fp32"))
    teacher_profiles = hwp.load_profiles(teacher_names or ("cmos45nm_fp32", "gpu", "cpu", "arm"))
    for p in teacher_profiles:
        if p.kind == "neuromorphic":
            raise click.ClickException(f"--teacher-profile {p.name}: a neuromorphic profile cannot "
                                       "run the ANN teacher; use a cmos or ann_device profile")
    net, net_path = _load_network(net_dir)
    if net.encoders:
        for p in profiles:
            if p.kind == "neuromorphic" and not p.has("input_mac"):
                raise click.ClickException(f"{p.path}: energy.input_mac: missing field (the "
                                           "network has real-valued input encoders)")
    onnx_path = net_dir / "teacher.onnx"
    if teacher_macs is not None:
        teacher_layers, t_source = tea.json_layers(teacher_macs), str(teacher_macs)
    elif onnx_path.is_file():
        teacher_layers, t_source = tea.onnx_layers(onnx_path), str(onnx_path)
    else:
        teacher_layers, t_source = None, ""
    reference = None
    if reference_teacher is not None:
        try:
            reference = tea.read_teacher(reference_teacher)
        except click.ClickException as e:
            raise click.ClickException(f"--reference-teacher {e.message}") from None
    if out is None:
        raise click.UsageError("missing option --out REPORT_DIR")
    if activity is None:
        if data is None:
            raise click.UsageError("give --activity (a `mksgn simulate` output) or --data to "
                                   "measure activity on the spot")
        activity = _measure(ctx, net_dir, data, split, samples, out / "activity")
    act = act_io.read_activity(activity, net, net_path)
    source = f"{activity}, {act.engine or 'unknown'} engine"
    try:
        report = rep.build_report(net, str(net_path), act, source, profiles, teacher_layers,
                                  teacher_profiles, t_source, reference)
    except ValueError as e:
        raise click.ClickException(f"{net_path}: {e}") from None
    paths = rep.write_outputs(report, out)
    rep.print_report(report, console, wide=wide, rest=str(paths[1]))
    console.print("wrote " + ", ".join(str(p) for p in paths))

