"""The energy report: a typed dataclass, printed as a table, written as JSON, CSV and a PNG chart.

All energies are pJ per sample (one classified skeleton sequence); the terminal shows SI units.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mksgn import netgraph
from mksgn.files import atomic_write
from mksgn.hw_profiles.energy import (Activity, count_student, layer_energy,
                                      needed_neurons_per_core, needed_placements)
from mksgn.profiles import Profile
from mksgn.hw_profiles.teacher import TeacherFile, TeacherLayer, teacher_energy_pj
from mksgn.hw_profiles.latency import student_latency
from mksgn.opcount import placement

SCHEMA = "mksgn-energy/1"


@dataclass
class StudentLayerReport:
    """One neuron group: counts per sample and energy (pJ per sample) on each profile."""
    name: str
    shape: list[int]
    neurons: int
    synapses: int
    spikes_per_sample: float
    firing_rate: float
    synops: float
    attention_synops: float
    neuron_updates_active: float
    neuron_updates_idle: float
    encoder_macs: float
    core_deliveries: dict[str, float]              # neurons_per_core -> spike deliveries
    # profile -> {synops, neurons, routing, mesh, input, total}
    energy_pj: dict[str, dict[str, float]]
    mesh_hops: dict[str, dict[str, float]] = field(default_factory=dict)  # profile -> {ew, ns}


@dataclass
class TeacherLayerReport:
    name: str
    macs: int
    adds: int
    energy_pj: dict[str, float]                    # teacher profile -> pJ per sample


@dataclass
class ReferenceTeacher:
    """A second teacher the student is compared with (``--reference-teacher``), priced on the same
    teacher profiles as the trained one: e.g. the paper-scale teacher, untrained, whose MACs are
    those of the trained one (``mksgn convert --teacher-config``).

    source: the file read; name: its config's file name (from the file's metadata) or its own;
    about: the file's ``mksgn.*`` metadata (config, dataset, weights, input); macs / adds: totals
    per sample; reduction_percent[student profile][teacher profile] = 100 (1 - E_student / E_ref).
    """
    source: str
    name: str
    about: dict[str, str]
    macs: int
    adds: int
    layers: list[TeacherLayerReport]
    total_pj: dict[str, float]
    reduction_percent: dict[str, dict[str, float | None]]


@dataclass
class EnergyReport:
    network: str
    network_sha256: str
    activity: dict          # source, engine, samples, runs, num_steps, neuron_updates (rule)
    profiles: list[dict]
    student: list[StudentLayerReport]
    student_total_pj: dict[str, float]
    teacher_source: str = ""
    teacher_profiles: list[dict] = field(default_factory=list)
    teacher: list[TeacherLayerReport] = field(default_factory=list)
    teacher_total_pj: dict[str, float] = field(default_factory=dict)
    # reduction_percent[student profile][teacher profile] = 100 (1 - E_student / E_teacher)
    reduction_percent: dict[str, dict[str, float | None]] = field(default_factory=dict)
    schema: str = SCHEMA
    reference_teacher: ReferenceTeacher | None = None    # --reference-teacher
    # profile -> LatencyEstimate fields (s per step and per sample), for profiles with a
    # latency model (mksgn.hw_profiles.latency); no ANN-device profile states a time
    student_latency: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "EnergyReport":
        d = json.loads(text)
        d["student"] = [StudentLayerReport(**r) for r in d["student"]]
        d["teacher"] = [TeacherLayerReport(**r) for r in d["teacher"]]
        if d.get("reference_teacher"):
            ref = dict(d["reference_teacher"])
            ref["layers"] = [TeacherLayerReport(**r) for r in ref["layers"]]
            d["reference_teacher"] = ReferenceTeacher(**ref)
        return cls(**d)


def _price_teacher(layers: list[TeacherLayer], profiles: list[Profile]
                   ) -> tuple[list[TeacherLayerReport], dict[str, float]]:
    """Every teacher layer on every teacher profile, and the totals (pJ per sample)."""
    rows, totals = [], {p.name: 0.0 for p in profiles}
    for tl in layers:
        e = {p.name: teacher_energy_pj(tl, p) for p in profiles}
        for k, v in e.items():
            totals[k] += v
        rows.append(TeacherLayerReport(tl.name, tl.macs, tl.adds, e))
    return rows, totals


def _reductions(student: dict[str, float], teacher: dict[str, float]
                ) -> dict[str, dict[str, float | None]]:
    """100 (1 - E_student / E_teacher) per (student profile, teacher profile); None: E_teacher 0."""
    return {s: {t: (100.0 * (1.0 - es / et) if et > 0 else None) for t, et in teacher.items()}
            for s, es in student.items()}


def build_report(net: netgraph.Network, net_path: str, act: Activity, activity_source: str,
                 profiles: list[Profile], teacher_layers: list[TeacherLayer] | None = None,
                 teacher_profiles: list[Profile] = (), teacher_source: str = "",
                 reference: TeacherFile | None = None) -> EnergyReport:
    """Count, price and assemble everything (see ``mksgn.hw_profiles.energy``); ``reference``: a
    second teacher to compare with (``ReferenceTeacher``), priced on ``teacher_profiles``."""
    places = needed_placements(profiles)
    layers = count_student(net, act, needed_neurons_per_core(profiles), places)
    rows, totals = [], {p.name: 0.0 for p in profiles}
    for lc in layers:
        per_profile, hops = {}, {}
        for p in profiles:
            e = layer_energy(lc, p, net.num_steps)
            per_profile[p.name] = {"synops": e.synops, "neurons": e.neurons, "routing": e.routing,
                                   "mesh": e.mesh, "input": e.input, "total": e.total}
            totals[p.name] += e.total
            place = placement(p)
            if place in places:
                hops[p.name] = {"ew": lc.hops_ew[place], "ns": lc.hops_ns[place]}
        rows.append(StudentLayerReport(
            name=lc.name, shape=list(lc.shape), neurons=lc.neurons, synapses=lc.synapses,
            spikes_per_sample=lc.spikes, firing_rate=lc.firing_rate, synops=lc.synops,
            attention_synops=lc.attention_synops, neuron_updates_active=lc.updates_active,
            neuron_updates_idle=lc.updates_idle, encoder_macs=lc.encoder_macs,
            core_deliveries={str(k): v for k, v in lc.deliveries.items()}, energy_pj=per_profile,
            mesh_hops=hops))
    report = EnergyReport(
        network=str(net_path), network_sha256=act.network_sha256,
        activity={"source": activity_source, "engine": act.engine, "samples": act.samples,
                  "runs": act.runs if act.runs is not None else act.samples,
                  "num_steps": act.num_steps, "neuron_updates": act.active_rule},
        profiles=[p.to_dict() for p in profiles], student=rows, student_total_pj=totals)
    for p in profiles:
        est = student_latency(net, act, layers, p)
        if est is not None:
            report.student_latency[p.name] = asdict(est)
    if teacher_layers or reference is not None:
        report.teacher_profiles = [p.to_dict() for p in teacher_profiles]
    if teacher_layers:
        report.teacher_source = teacher_source
        report.teacher, report.teacher_total_pj = _price_teacher(teacher_layers, teacher_profiles)
        report.reduction_percent = _reductions(totals, report.teacher_total_pj)
    if reference is not None:
        rows, r_tot = _price_teacher(reference.layers, teacher_profiles)
        report.reference_teacher = ReferenceTeacher(
            source=reference.source, name=reference.name, about=dict(reference.about),
            macs=sum(r.macs for r in rows), adds=sum(r.adds for r in rows), layers=rows,
            total_pj=r_tot, reduction_percent=_reductions(totals, r_tot))
    return report


# ---------------------------------------------------------------------------------------------
# Output

def si_energy(pj: float) -> str:
    """pJ -> a short SI string ("4.60 pJ", "1.23 uJ")."""
    for unit, scale in (("J", 1e12), ("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def si_time(s: float) -> str:
    """Seconds -> a short SI string ("2.10 ms", "880 us")."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(s) >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def _count(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 or float(x).is_integer() else f"{x:,.2f}"


def _student_table(report: EnergyReport, names: list[str]):
    """Every student layer, every profile (``--wide``)."""
    from rich.table import Table

    t = Table(title=f"student {report.network}: per sample "
                    f"({report.activity['samples']} samples, {report.activity['source']})",
              title_justify="left")
    for col in ("layer", "neurons", "synapses", "spikes/sample", "rate", "synops"):
        t.add_column(col, justify="left" if col == "layer" else "right", no_wrap=True)
    for n in names:
        t.add_column(f"E {n}", justify="right", no_wrap=True)
        t.add_column("share", justify="right", no_wrap=True)
    for r in report.student:
        cells = [r.name, _count(r.neurons), _count(r.synapses), _count(r.spikes_per_sample),
                 f"{r.firing_rate:.4f}", _count(r.synops)]
        for n in names:
            e, tot = r.energy_pj[n]["total"], report.student_total_pj[n]
            cells += [si_energy(e), f"{100 * e / tot:.1f}%" if tot else "-"]
        t.add_row(*cells)
    tot_cells = ["total", _count(sum(r.neurons for r in report.student)),
                 _count(sum(r.synapses for r in report.student)),
                 _count(sum(r.spikes_per_sample for r in report.student)), "",
                 _count(sum(r.synops for r in report.student))]
    for n in names:
        tot_cells += [si_energy(report.student_total_pj[n]), "100%"]
    t.add_row(*tot_cells, style="bold")
    return t


def _teacher_table(title: str, layers: list[TeacherLayerReport], totals: dict[str, float],
                   tnames: list[str]):
    """Every layer of one teacher, every teacher profile (``--wide``)."""
    from rich.table import Table

    tt = Table(title=f"{title}: per sample", title_justify="left")
    for col in ("layer", "MACs", "adds"):
        tt.add_column(col, justify="left" if col == "layer" else "right", no_wrap=True)
    for n in tnames:
        tt.add_column(f"E {n}", justify="right", no_wrap=True)
    for r in layers:
        tt.add_row(r.name, _count(r.macs), _count(r.adds), *[si_energy(r.energy_pj[n]) for n in tnames])
    tt.add_row("total", _count(sum(r.macs for r in layers)), _count(sum(r.adds for r in layers)),
               *[si_energy(totals[n]) for n in tnames], style="bold")
    return tt


def _totals_table(report: EnergyReport):
    """Student and teacher totals per profile, with their operation counts (fits 80 columns)."""
    from rich.table import Table

    t = Table(title="Energy and time per sample", title_justify="left")
    for col in ("model", "on", "energy", "time", "operations per sample"):
        t.add_column(col, justify="right" if col in ("energy", "time") else "left",
                     overflow="fold")
    synops = sum(r.synops for r in report.student)
    spikes = sum(r.spikes_per_sample for r in report.student)
    ops = f"{_count(synops)} synops, {_count(spikes)} spikes"
    for p in report.profiles:
        n = p["name"]
        lat = report.student_latency.get(n)
        t.add_row("student", n + (" (estimate)" if p.get("estimate") else ""),
                  si_energy(report.student_total_pj[n]),
                  si_time(lat["per_sample_s"]) if lat else "-", ops)
        ops = ""
    ops = (f"{_count(sum(r.macs for r in report.teacher))} MACs, "
           f"{_count(sum(r.adds for r in report.teacher))} adds")
    for n, e in report.teacher_total_pj.items():
        t.add_row("teacher", n, si_energy(e), "-", ops)
        ops = ""
    ref = report.reference_teacher
    if ref is not None:
        ops = f"{_count(ref.macs)} MACs, {_count(ref.adds)} adds"
        for n, e in ref.total_pj.items():
            t.add_row("reference teacher", n, si_energy(e), "-", ops)
            ops = ""
    return t


def _top_layers_table(report: EnergyReport, profile: str, top: int):
    """The ``top`` student layers by energy on ``profile`` (fits 80 columns)."""
    from rich.table import Table

    rows = sorted(report.student, key=lambda r: -r.energy_pj[profile]["total"])[:top]
    tot = report.student_total_pj[profile]
    t = Table(title=f"Student layers using the most energy on {profile} "
                    f"({len(rows)} of {len(report.student)})", title_justify="left")
    for col in ("layer", "spikes/sample", "rate", "synops", "energy", "share"):
        t.add_column(col, justify="left" if col == "layer" else "right", overflow="fold")
    for r in rows:
        e = r.energy_pj[profile]["total"]
        t.add_row(r.name, _count(r.spikes_per_sample), f"{r.firing_rate:.4f}", _count(r.synops),
                  si_energy(e), f"{100 * e / tot:.1f}%" if tot else "-")
    return t


PARTS = ("synops", "neurons", "routing", "mesh", "input")


def _parts_table(report: EnergyReport):
    """Student energy per profile split into its parts (fits 80 columns): ``routing`` is the
    spike deliveries to cores, ``mesh`` their hops between tiles."""
    from rich.table import Table

    t = Table(title="Student energy by part, per sample", title_justify="left")
    t.add_column("on", overflow="fold")
    for col in PARTS:
        t.add_column(col, justify="right", overflow="fold")
    for p in report.profiles:
        n = p["name"]
        t.add_row(n, *[si_energy(sum(r.energy_pj[n].get(k, 0.0) for r in report.student))
                       for k in PARTS])
    return t


def neuron_update_note(activity: dict) -> str:
    """One line: how active neuron updates were counted for this report."""
    if activity.get("neuron_updates") == "recorded":
        return "neuron updates: active steps as the fast engine recorded them"
    return "neuron updates: active = spiking steps only (a lower bound: none recorded)"


def _reduction_table(reduction: dict[str, dict[str, float | None]], tnames: list[str],
                     teacher: str = "the teacher"):
    from rich.table import Table

    rt = Table(title=f"Energy reduction of the student vs {teacher}, 100 (1 - E_student / "
                     "E_teacher); negative: the student needs more", title_justify="left")
    rt.add_column("student on \\ teacher on", overflow="fold")
    for n in tnames:
        rt.add_column(n, justify="right", overflow="fold")
    for s, per in reduction.items():
        rt.add_row(s, *["-" if per[n] is None else f"{per[n]:.2f}%" for n in tnames])
    return rt


def _headline_pair(reduction: dict[str, dict[str, float | None]]) -> tuple[str, str] | None:
    """The (student, teacher) profile pair a one-line summary quotes: the paper's 45 nm fp32 pair
    when both sides have it, else the first of each."""
    if not reduction:
        return None
    s = "cmos45nm_fp32" if "cmos45nm_fp32" in reduction else next(iter(reduction))
    per = reduction[s]
    if not per:
        return None
    return s, "cmos45nm_fp32" if "cmos45nm_fp32" in per else next(iter(per))


def _print_reference(report: EnergyReport, console, wide: bool) -> None:
    """What the reference teacher is, and the student's reduction against it (one line; every
    profile pair with ``wide``)."""
    from mksgn.terminal import print_wide

    ref = report.reference_teacher
    about = ", ".join(f"{k} {v}" for k, v in ref.about.items() if k in ("dataset", "weights"))
    console.print(f"reference teacher {ref.name}: {ref.source}" + (f" ({about})" if about else ""))
    if wide:
        print_wide(console, _teacher_table(f"reference teacher {ref.name} ({ref.source})",
                                           ref.layers, ref.total_pj, list(ref.total_pj)))
        console.print(_reduction_table(ref.reduction_percent, list(ref.total_pj),
                                       f"the reference teacher {ref.name}"))
    pair = _headline_pair(ref.reduction_percent)
    if pair is None:
        return
    s, t = pair
    pct = ref.reduction_percent[s][t]
    on = s if s == t else f"student on {s}, teacher on {t}"
    if pct is None:
        console.print(f"vs reference teacher ({ref.name}): no energy on {t} ({on})")
    elif pct >= 0:
        console.print(f"vs reference teacher ({ref.name}): [bold]{pct:.2f}% less[/bold] ({on})")
    else:
        console.print(f"vs reference teacher ({ref.name}): [bold]{-pct:.2f}% more[/bold] ({on})")


def print_report(report: EnergyReport, console, wide: bool = False, top: int = 5,
                 rest: str = "energy.csv") -> None:
    """Totals, the ``top`` layers on the first profile and the reductions, in 80 columns (rich);
    with ``wide`` also every layer of the student and the teacher on every profile. ``rest``
    names the file that holds every layer (printed so the reader can find it)."""
    from mksgn.terminal import print_wide

    names = [p["name"] for p in report.profiles]
    tnames = list(report.teacher_total_pj)
    console.print(f"student {report.network}: {report.activity['samples']} samples "
                  f"({report.activity['source']})")
    console.print(_totals_table(report))
    console.print(_parts_table(report))
    console.print(neuron_update_note(report.activity))
    if wide:
        print_wide(console, _student_table(report, names))
        if report.teacher:
            print_wide(console, _teacher_table(f"teacher ({report.teacher_source})",
                                               report.teacher, report.teacher_total_pj, tnames))
    else:
        console.print(_top_layers_table(report, names[0], top))
    for p in report.profiles:
        if p.get("estimate"):
            console.print(f"note: profile {p['name']} is an ESTIMATE: {p.get('basis', '')}" if wide
                          else f"note: profile {p['name']} is an ESTIMATE (its basis: "
                               f"profiles[].basis in energy.json)")
    if not wide:
        console.print(f"every layer on every profile: {rest} (--wide prints them here)")
    if not report.teacher:
        console.print("no teacher: give DIR/teacher.onnx or --teacher-macs for the comparison")
    else:
        console.print(_reduction_table(report.reduction_percent, tnames,
                                       f"the teacher ({report.teacher_source})"))
    if report.teacher and "cmos45nm_fp32" in report.reduction_percent \
            and "cmos45nm_fp32" in report.teacher_total_pj:
        pct = report.reduction_percent["cmos45nm_fp32"]["cmos45nm_fp32"]
        if pct is not None:
            console.print(f"paper convention (45 nm fp32, Horowitz 2014: synops x 0.9 pJ vs MACs x "
                          f"4.6 pJ): the student uses [bold]{pct:.2f}% less energy[/bold] than the "
                          "teacher" if pct >= 0 else
                          f"paper convention (45 nm fp32): the student uses [bold]{-pct:.2f}% more "
                          "energy[/bold] than the teacher")
    if report.reference_teacher is not None:
        _print_reference(report, console, wide)


CSV_COLUMNS = ("part", "layer", "profile", "neurons", "synapses", "spikes_per_sample",
               "firing_rate", "synops", "encoder_macs", "hops_ew", "hops_ns", "macs", "adds",
               "synops_pj", "neurons_pj", "routing_pj", "mesh_pj", "input_pj", "energy_pj",
               "share")


def to_csv(report: EnergyReport) -> str:
    """One row per (layer, profile), student, teacher, then the reference teacher (part
    ``reference_teacher``); energies pJ per sample."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in report.student:
        for n, e in r.energy_pj.items():
            tot = report.student_total_pj[n]
            w.writerow({"part": "student", "layer": r.name, "profile": n, "neurons": r.neurons,
                        "synapses": r.synapses, "spikes_per_sample": repr(r.spikes_per_sample),
                        "firing_rate": repr(r.firing_rate), "synops": repr(r.synops),
                        "encoder_macs": repr(r.encoder_macs), "macs": "", "adds": "",
                        "hops_ew": repr(r.mesh_hops[n]["ew"]) if n in r.mesh_hops else "",
                        "hops_ns": repr(r.mesh_hops[n]["ns"]) if n in r.mesh_hops else "",
                        "synops_pj": repr(e["synops"]), "neurons_pj": repr(e["neurons"]),
                        "routing_pj": repr(e["routing"]), "mesh_pj": repr(e.get("mesh", 0.0)),
                        "input_pj": repr(e["input"]),
                        "energy_pj": repr(e["total"]),
                        "share": repr(e["total"] / tot) if tot else ""})
    parts = [("teacher", report.teacher, report.teacher_total_pj)]
    if report.reference_teacher is not None:
        ref = report.reference_teacher
        parts.append(("reference_teacher", ref.layers, ref.total_pj))
    for part, layers, totals in parts:
        for r in layers:
            for n, e in r.energy_pj.items():
                tot = totals[n]
                w.writerow({"part": part, "layer": r.name, "profile": n, "macs": r.macs,
                            "adds": r.adds, "energy_pj": repr(e),
                            "share": repr(e / tot) if tot else ""})
    return buf.getvalue()




def plot(report: EnergyReport, path: Path) -> None:
    """PNG: per-layer student energy by profile (top), student vs teacher totals (bottom)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [p["name"] for p in report.profiles]
    layers = [r.name for r in report.student]
    bars = [(f"student on {n}", report.student_total_pj[n], "tab:blue") for n in names]
    bars += [(f"teacher on {n}", v, "tab:red") for n, v in report.teacher_total_pj.items()]
    if report.reference_teacher is not None:
        ref = report.reference_teacher
        bars += [(f"reference teacher {ref.name} on {n}", v, "tab:purple")
                 for n, v in ref.total_pj.items()]
    fig, (ax, bx) = plt.subplots(
        2, 1, figsize=(min(20.0, max(8.0, 0.12 * len(layers) * len(names) + 3)), 8.5),
        gridspec_kw={"height_ratios": [3, max(1.2, 0.25 * len(bars))]})
    width = 0.8 / max(1, len(names))
    x = np.arange(len(layers))
    for i, n in enumerate(names):
        ys = [r.energy_pj[n]["total"] * 1e-3 for r in report.student]   # nJ
        ax.bar(x + (i - (len(names) - 1) / 2) * width, ys, width, label=n)
    ax.set_xticks(x, layers, rotation=75, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(layers) - 0.4)
    ax.set_yscale("log")
    ax.set_ylabel("energy per sample (nJ)")
    ax.set_title(f"student per layer ({report.network})", fontsize=9)
    ax.legend(fontsize=7, ncol=min(len(names), 4))
    ax.grid(axis="y", alpha=0.3)
    y = np.arange(len(bars))[::-1]
    vals = [v * 1e-6 for _, v, _ in bars]                                # uJ
    bx.barh(y, vals, color=[c for _, _, c in bars])
    for yi, v in zip(y, vals):
        bx.text(v, yi, f" {si_energy(v * 1e6)}", va="center", fontsize=7)
    bx.set_yticks(y, [b for b, _, _ in bars], fontsize=7)
    bx.set_xscale("log")
    bx.set_xlabel("energy per sample (uJ)")
    bx.set_title("total: student vs teacher", fontsize=9)
    bx.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda t: fig.savefig(t, format="png", dpi=110))
    plt.close(fig)


def write_outputs(report: EnergyReport, out: Path) -> list[Path]:
    """REPORT_DIR/energy.json, energy.csv, energy.png, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "energy.json", out / "energy.csv", out / "energy.png"]
    atomic_write(paths[0], lambda t: Path(t).write_text(report.to_json()))
    atomic_write(paths[1], lambda t: Path(t).write_text(to_csv(report)))
    plot(report, paths[2])
    return paths
