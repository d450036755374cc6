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


def _energy_on_sanafe(net_dir: Path, activity: Path | None, out: Path | None,
                      profile_name: str, max_connections: int | None) -> None:
    """``--backend sanafe``: SANA-FE's Loihi figures beside ours, into OUT/sanafe.{json,csv}."""
    from rich.console import Console

    from mksgn.hw_profiles import sanafe_backend as sfb
    from mksgn.spike_trains import SpikeTrainsError

    if activity is None or out is None:
        raise click.UsageError("--backend sanafe needs --activity SIM_DIR (with "
                               "spike_trains.npz) and --out REPORT_DIR")
    try:
        sfb.import_sanafe()
    except ImportError as e:
        raise click.ClickException(str(e)) from None
    profile = hwp.load_profile(profile_name)
    net, net_path = _load_network(net_dir)
    try:
        report = sfb.run_backend(net, net_path, activity, profile,
                                 max_connections=max_connections)
    except SpikeTrainsError as e:
        raise click.ClickException(str(e)) from None
    except ValueError as e:
        raise click.ClickException(f"{net_path}: {e}") from None
    console = Console()
    sfb.print_side_by_side(report, console)
    console.print("wrote " + ", ".join(str(p) for p in sfb.write_outputs(report, out)))


def _energy_options(f):
    """The options of ``mksgn energy`` (every one but DIR and --wide), in help order."""
    opts = [
        click.option("--profile", "profile_names", multiple=True, metavar="NAME|FILE.yaml",
                     help="Hardware profile for the student (repeatable): a bundled name (see "
                          "--list-profiles) or a YAML file. Default: loihi and cmos45nm_fp32."),
        click.option("--activity", type=click.Path(path_type=Path),
                     help="A `mksgn simulate` output directory (activity.json + activity.npz)."),
        click.option("--data", type=click.Path(path_type=Path),
                     help="Prepared data, to measure activity on the spot when --activity is "
                          "not given."),
        click.option("--split", default="test", show_default=True,
                     type=click.Choice(["train", "test"])),
        click.option("--samples", default=64, show_default=True, type=click.IntRange(min=1),
                     help="Samples to measure on the spot."),
        click.option("--teacher-profile", "teacher_names", multiple=True, metavar="NAME|FILE.yaml",
                     help="Profile(s) for the ANN teacher (cmos or ann_device; repeatable). "
                          "Default: cmos45nm_fp32 (the paper's comparison), gpu, cpu, arm."),
        click.option("--teacher-macs", type=click.Path(path_type=Path, dir_okay=False),
                     help="Teacher per-layer MACs as JSON, when DIR/teacher.onnx is missing."),
        click.option("--reference-teacher", type=click.Path(path_type=Path),
                     metavar="FILE.onnx|FILE.json",
                     help="A second teacher to compare the student with, beside DIR's: e.g. the "
                          "paper-scale one, `mksgn convert --teacher-config "
                          "train/configs/ucla_teacher.yaml --dataset ucla --out D` writes it as "
                          "D/teacher.onnx; or MACs as JSON (as --teacher-macs)."),
        click.option("--out", type=click.Path(path_type=Path, file_okay=False),
                     help="Report directory for energy.json, energy.csv, energy.png."),
        click.option("--list-profiles", is_flag=True, help="List the bundled profiles and exit."),
        click.option("--backend", type=click.Choice(["profiles", "sanafe"]), default="profiles",
                     show_default=True,
                     help="profiles: price our counts on each --profile; sanafe: replay the "
                          "spike trains of --activity (`mksgn simulate --spike-trains N`) on "
                          "SANA-FE's Loihi model (optional extra, GPL-3.0) beside our first "
                          "--profile (default loihi)."),
        click.option("--max-connections", type=click.IntRange(min=1), default=None, metavar="N",
                     help="--backend sanafe: replay at most N connections per SANA-FE run, "
                          "cutting the network by destination cores (about 1 kB of memory per "
                          "connection). Default: all in one run."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.command("energy")
@click.argument("net_dir", metavar="DIR", required=False,
                type=click.Path(path_type=Path, file_okay=False))
@_energy_options
@wide_option
@click.pass_context
def energy(ctx: click.Context, net_dir: Path | None, profile_names: tuple[str, ...],
           activity: Path | None, data: Path | None, split: str, samples: int,
           teacher_names: tuple[str, ...], teacher_macs: Path | None,
           reference_teacher: Path | None, out: Path | None, list_profiles: bool,
           backend: str, max_connections: int | None, wide: bool) -> None:
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
    if backend == "sanafe":
        _energy_on_sanafe(net_dir, activity, out, profile_names[0] if profile_names else "loihi",
                          max_connections)
        return
    from rich.console import Console

    from mksgn.hw_profiles import report as rep

    console = Console()
    # check every input before the (slow) measurement
    profiles, teacher_profiles = _energy_profiles(profile_names, teacher_names)
    net, net_path = _load_network(net_dir)
    _check_encoder_prices(net, profiles)
    teacher_layers, t_source = _teacher_layers(net_dir, teacher_macs)
    reference = _reference_teacher(reference_teacher)
    if out is None:
        raise click.UsageError("missing option --out REPORT_DIR")
    act, source = _activity(ctx, net, net_path, net_dir, activity, data, split, samples, out)
    try:
        report = rep.build_report(net, str(net_path), act, source, profiles, teacher_layers,
                                  teacher_profiles, t_source, reference)
    except ValueError as e:
        raise click.ClickException(f"{net_path}: {e}") from None
    paths = rep.write_outputs(report, out)
    rep.print_report(report, console, wide=wide, rest=str(paths[1]))
    console.print("wrote " + ", ".join(str(p) for p in paths))


def _energy_profiles(profile_names: tuple[str, ...], teacher_names: tuple[str, ...]):
    """The student's and the teacher's profiles (defaults when none named); the teacher's
    must be able to run an ANN."""
    profiles = hwp.load_profiles(profile_names or ("loihi", "cmos45nm_fp32"))
    teacher_profiles = hwp.load_profiles(teacher_names or ("cmos45nm_fp32", "gpu", "cpu", "arm"))
    for p in teacher_profiles:
        if p.kind == "neuromorphic":
            raise click.ClickException(f"--teacher-profile {p.name}: a neuromorphic profile cannot "
                                       "run the ANN teacher; use a cmos or ann_device profile")
    return profiles, teacher_profiles


def _check_encoder_prices(net, profiles) -> None:
    """A network with real-valued input encoders needs input_mac on every neuromorphic profile."""
    if net.encoders:
        for p in profiles:
            if p.kind == "neuromorphic" and not p.has("input_mac"):
                raise click.ClickException(f"{p.path}: energy.input_mac: missing field (the "
                                           "network has real-valued input encoders)")


def _teacher_layers(net_dir: Path, teacher_macs: Path | None):
    """(the teacher's per-layer MACs, where they came from): --teacher-macs, else
    DIR/teacher.onnx, else (None, "")."""
    from mksgn.hw_profiles import teacher as tea

    onnx_path = net_dir / "teacher.onnx"
    if teacher_macs is not None:
        return tea.json_layers(teacher_macs), str(teacher_macs)
    if onnx_path.is_file():
        return tea.onnx_layers(onnx_path), str(onnx_path)
    return None, ""


def _reference_teacher(reference_teacher: Path | None):
    """The --reference-teacher read, or None without one."""
    from mksgn.hw_profiles import teacher as tea

    if reference_teacher is None:
        return None
    try:
        return tea.read_teacher(reference_teacher)
    except click.ClickException as e:
        raise click.ClickException(f"--reference-teacher {e.message}") from None


def _activity(ctx: click.Context, net, net_path: Path, net_dir: Path, activity: Path | None,
              data: Path | None, split: str, samples: int, out: Path):
    """(the activity of NET, its source line): read from --activity, or first measured on
    --data into OUT/activity."""
    from mksgn import activity as act_io

    if activity is None:
        if data is None:
            raise click.UsageError("give --activity (a `mksgn simulate` output) or --data to "
                                   "measure activity on the spot")
        activity = _measure(ctx, net_dir, data, split, samples, out / "activity")
    try:
        act = act_io.read(activity, net, net_path)
    except act_io.ActivityFileError as e:
        raise click.ClickException(str(e)) from None
    return act, f"{activity}, {act.engine or 'unknown'} engine"

