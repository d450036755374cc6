"""``mksgn sweep``: a family of energy-penalised students and their accuracy-energy frontier.

For every energy weight (``W``; ``W:K`` also prunes each graph synapse to K source joints per
joint, ``energy.graph_keep``; ``W:K:F`` or ``W::F`` keeps the fraction F of the weights of every
conv and graph synapse group, ``energy.synapse_keep``; ``W:K:Fe`` keeps the fraction F of their
synaptic events instead, cut where weights cost the most, ``energy.synapse_keep_by: energy``):
train a student (``energy.mode`` / ``energy.weight`` set on the given config, optionally
fine-tuned from ``--init``, distilled from ``--teacher`` as the config says), convert its last
epoch, run it on the fast engine over the whole test split, and price it with ``mksgn energy``.
Each point is a normal run directory ``OUT/w<W>[k<K>][s<F>[e]]/`` (student, convert, sim_fast,
energy; e.g. ``w0k5s0.5``); a re-run reuses finished stages and resumes an unfinished training. The frontier goes to
``OUT/frontier.{json,csv,png}``: accuracy, energy and time (``latency_s``, profiles with a latency
model) per sample on each profile, energy per
*correct* classification, the trained-for estimate beside the measured figure, and which points are
Pareto-optimal; the teacher (and the paper's MK-SGN point on NW-UCLA) marked.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

from mksgn.files import atomic_write_json, atomic_write_text
from mksgn.pipeline.stages import Stages, invoke

# MK-SGN's reported NW-UCLA top-1 and energy per sample (Zheng et al. 2024, arXiv 2404.10210;
# 45 nm convention). Marked on NW-UCLA frontiers only.
PAPER_POINT = {"ucla": {"label": "MK-SGN (paper)", "accuracy": 0.923, "energy_j": 0.596e-3,
                        "profile": "cmos45nm_fp32"}}


@dataclass
class SweepPoint:
    """One student of the family. Energies are joules per sample, measured from the fast engine's
    spikes on the whole test split (``mksgn energy``), per profile."""
    label: str                                   # "w0.5", "w5k4", or "init" (the --init student)
    weight: float | None
    run: str
    accuracy: float                              # fast engine, test split, last epoch
    correct: int
    samples: int
    firing_rate: float                           # spikes per neuron-step, all groups
    energy_j: dict[str, float]
    energy_per_correct_j: dict[str, float | None]   # energy_j * samples / correct (None: 0)
    energy_ratio: dict[str, float | None] = field(default_factory=dict)  # baseline's / this one
    accuracy_delta: float = 0.0                  # this accuracy - the baseline's
    spike_energy_j: float | None = None          # measured spike-driven part (synops, routing,
    #                                              mesh) on the training profile
    trained_for_j: float | None = None           # the training estimate, last epoch (train split)
    pareto: dict[str, bool] = field(default_factory=dict)
    graph_keep: int | None = None                # source joints per graph destination (None: all)
    synapse_keep: float | None = None            # fraction of weights kept (None: all)
    synapse_keep_by: str | None = None           # "count" (of weights) or "energy" (of events)
    latency_s: dict[str, float] = field(default_factory=dict)  # s per sample, profiles with a
    #                                              latency model (mksgn.hw_profiles.latency)


@dataclass
class Frontier:
    mode: str
    train_profile: str
    profiles: list[str]
    dataset: str
    teacher: dict                                # accuracy, energy_j per teacher profile
    reference_teacher: dict
    paper: dict
    baseline: str                                # the unpenalised point ratios refer to
    points: list[SweepPoint]


def _pareto(points: list[SweepPoint], profile: str) -> None:
    """Mark points no other point beats in both accuracy and energy on ``profile``."""
    for p in points:
        p.pareto[profile] = not any(
            q is not p and q.accuracy >= p.accuracy and q.energy_j[profile] <= p.energy_j[profile]
            and (q.accuracy > p.accuracy or q.energy_j[profile] < p.energy_j[profile])
            for q in points)


@dataclass(frozen=True)
class Spec:
    """One point of ``--weights``: energy weight, graph sources kept, fraction of weights (or,
    ``by_energy``, of synaptic events) kept."""
    weight: float
    graph_keep: int | None = None
    synapse_keep: float | None = None
    by_energy: bool = False

    @property
    def keep_by(self) -> str | None:
        """``energy.synapse_keep_by`` of the point (None: no weight cut)."""
        if self.synapse_keep is None:
            return None
        return "energy" if self.by_energy else "count"

    @property
    def label(self) -> str:
        return (f"w{self.weight:g}" + ("" if self.graph_keep is None else f"k{self.graph_keep}")
                + ("" if self.synapse_keep is None else f"s{self.synapse_keep:g}")
                + ("e" if self.by_energy else ""))


def _finished_epochs(run: Path) -> int:
    m = run / "metrics.json"
    if not m.is_file():
        return 0
    return len(json.loads(m.read_text()).get("epochs", []))


def _point(label: str, weight: float | None, run: Path, sim: Path, energy: Path,
           train_profile: str, spec: Spec | None = None) -> SweepPoint:
    act = json.loads((sim / "activity.json").read_text())
    rep = json.loads((energy / "energy.json").read_text())
    samples, correct = int(act["samples"]), int(act["correct"])
    groups = act["groups"].values()
    fired = sum(g["spikes_per_sample"] for g in groups)
    runs_per_sample = int(act.get("runs", samples)) / samples
    slots = sum(g["neurons"] for g in groups) * int(act["num_steps"]) * runs_per_sample
    e = {k: v * 1e-12 for k, v in rep["student_total_pj"].items()}
    spike = None
    if train_profile in e:
        spike = 1e-12 * sum(layer["energy_pj"][train_profile].get(k, 0.0)
                            for layer in rep["student"] for k in ("synops", "routing", "mesh"))
    trained = None
    metrics = run / "metrics.json"
    if metrics.is_file():
        rows = json.loads(metrics.read_text()).get("epochs", [])
        if rows and rows[-1].get("train_energy_uj") is not None:
            trained = rows[-1]["train_energy_uj"] * 1e-6
    return SweepPoint(label=label, weight=weight, run=str(run), accuracy=correct / samples,
                      correct=correct, samples=samples, firing_rate=fired / max(slots, 1),
                      energy_j=e,
                      energy_per_correct_j={k: v * samples / correct if correct else None
                                            for k, v in e.items()},
                      spike_energy_j=spike, trained_for_j=trained,
                      graph_keep=spec.graph_keep if spec else None,
                      synapse_keep=spec.synapse_keep if spec else None,
                      synapse_keep_by=spec.keep_by if spec else None,
                      latency_s={k: v["per_sample_s"]
                                 for k, v in rep.get("student_latency", {}).items()})


def _teacher(teacher: Path | None, energy: Path) -> tuple[dict, dict]:
    rep = json.loads((energy / "energy.json").read_text())
    acc = None
    m = teacher.parent / "metrics.json" if teacher is not None else None
    if m is not None and m.is_file():
        rows = [r for r in json.loads(m.read_text()).get("epochs", []) if r.get("test_acc") is not None]
        acc = rows[-1]["test_acc"] if rows else None
    t = {"run": str(teacher) if teacher else None, "accuracy": acc,
         "energy_j": {k: v * 1e-12 for k, v in rep.get("teacher_total_pj", {}).items()}}
    ref = rep.get("reference_teacher") or {}
    r = {"name": ref.get("name"), "energy_j": {k: v * 1e-12
                                              for k, v in ref.get("total_pj", {}).items()}} if ref else {}
    return t, r


def write_frontier(out: Path, fr: Frontier) -> list[Path]:
    """OUT/frontier.json, frontier.csv and frontier.png (one panel per profile)."""
    atomic_write_json(out / "frontier.json", asdict(fr))
    buf = io.StringIO()
    cols = ["label", "weight", "graph_keep", "synapse_keep", "synapse_keep_by", "accuracy",
            "accuracy_delta", "correct", "samples", "firing_rate"]
    for p in fr.profiles:
        cols += [f"energy_j_{p}", f"energy_ratio_{p}", f"energy_per_correct_j_{p}",
                 f"latency_s_{p}", f"pareto_{p}"]
    cols += ["spike_energy_j", "trained_for_j", "run"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for pt in fr.points:
        row = {k: getattr(pt, k) for k in ("label", "weight", "graph_keep", "synapse_keep",
                                             "synapse_keep_by", "accuracy", "accuracy_delta",
                                             "correct", "samples", "firing_rate",
                                             "spike_energy_j", "trained_for_j",
                                             "run")}
        for p in fr.profiles:
            row.update({f"energy_j_{p}": pt.energy_j.get(p),
                        f"energy_ratio_{p}": pt.energy_ratio.get(p),
                        f"energy_per_correct_j_{p}": pt.energy_per_correct_j.get(p),
                        f"latency_s_{p}": pt.latency_s.get(p),
                        f"pareto_{p}": pt.pareto.get(p)})
        w.writerow(row)
    atomic_write_text(out / "frontier.csv", buf.getvalue())
    return [out / "frontier.json", out / "frontier.csv", _plot(out / "frontier.png", fr)]


def _plot(path: Path, fr: Frontier) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(fr.profiles)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
    for ax, prof in zip(axes[0], fr.profiles):
        pts = sorted(fr.points, key=lambda p: p.energy_j[prof])
        ax.scatter([p.energy_j[prof] * 1e6 for p in pts], [p.accuracy * 100 for p in pts],
                   color="tab:blue", zorder=3, label="students (fast engine)")
        front = [p for p in pts if p.pareto.get(prof)]
        ax.plot([p.energy_j[prof] * 1e6 for p in front], [p.accuracy * 100 for p in front],
                color="tab:blue", alpha=0.5)
        for p in pts:
            ax.annotate(p.label, (p.energy_j[prof] * 1e6, p.accuracy * 100), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
        te = fr.teacher.get("energy_j", {}).get(prof)
        if te is not None and fr.teacher.get("accuracy") is not None:
            ax.scatter([te * 1e6], [fr.teacher["accuracy"] * 100], marker="*", s=120,
                       color="tab:red", zorder=3, label="teacher (trained)")
        paper = fr.paper
        if paper and paper.get("profile") == prof:
            ax.scatter([paper["energy_j"] * 1e6], [paper["accuracy"] * 100], marker="D",
                       color="tab:green", zorder=3, label=paper["label"])
        ax.set_xscale("log")
        ax.tick_params(axis="x", which="minor", labelsize=6)     # 2x10^2, 3x10^2... crowd
        ax.set_xlabel(f"energy per sample (uJ), {prof}")
        ax.set_ylabel("test top-1 (%)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"accuracy-energy frontier ({fr.dataset}, {fr.mode} term on {fr.train_profile})",
                 fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def _print(fr: Frontier) -> None:
    from rich.console import Console
    from rich.table import Table
    prof = fr.profiles[0]
    t = Table(title=f"frontier on {prof} (* Pareto-optimal; x less and delta vs "
                    f"{fr.baseline}; trained: the training estimate, uJ)", title_justify="left")
    for col in ("point", "acc %", "delta", "rate", "uJ/sample", "x less", "uJ/correct",
                "trained"):
        t.add_column(col, justify="left" if col == "point" else "right")
    for p in fr.points:
        t.add_row(p.label + ("*" if p.pareto.get(prof) else ""), f"{p.accuracy * 100:.1f}",
                  f"{p.accuracy_delta * 100:+.1f}", f"{p.firing_rate:.3f}",
                  f"{p.energy_j[prof] * 1e6:,.0f}", _num(p.energy_ratio[prof], 1, ".2f"),
                  _num(p.energy_per_correct_j[prof], 1e6, ",.0f"),
                  "" if p.trained_for_j is None else f"{p.trained_for_j * 1e6:,.0f}")
    Console().print(t)


def _num(x: float | None, scale: float, fmt: str) -> str:
    return "n/a" if x is None else format(x * scale, fmt)


def _weights(text: str) -> list[Spec]:
    """``0,2,5:4,0:5:0.5,0::0.3,0::0.3e`` -> one ``Spec`` each: an energy weight, optionally
    ':K' graph source joints kept and ':F' the fraction of weights kept (':Fe': of synaptic
    events)."""
    pts = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        parts = item.split(":")
        try:
            if len(parts) > 3 or (len(parts) == 2 and not parts[1]) \
                    or (len(parts) == 3 and not parts[2]):
                raise ValueError(item)
            f = parts[2] if len(parts) == 3 else None
            by_energy = f is not None and f.endswith("e")
            pt = Spec(float(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1] else None,
                      float(f[:-1] if by_energy else f) if f is not None else None, by_energy)
        except ValueError:
            pt = Spec(-1.0)                                            # reported below
        if pt.weight < 0 or not math.isfinite(pt.weight) \
                or (pt.graph_keep is not None and pt.graph_keep < 1) \
                or (pt.synapse_keep is not None and not 0 < pt.synapse_keep <= 1):
            raise click.BadParameter(
                f"{item!r} in {text!r}: expected a non-negative weight, optionally with ':K' "
                f"source joints (K >= 1) and ':F' kept weights (0 < F <= 1; 'Fe': kept events), "
                f"e.g. 0,2,5:4,0:5:0.5,0::0.3,0::0.3e", param_hint="--weights")
        pts.append(pt)
    if not pts:
        raise click.BadParameter(f"{text!r}: expected comma-separated weights, e.g. 0,0.5,1,2",
                                 param_hint="--weights")
    # by weight, then unpruned first, then the deeper cut first (smaller K, smaller F)
    return sorted(dict.fromkeys(pts), key=lambda p: (p.weight, p.graph_keep is not None,
                                                     p.graph_keep or 0,
                                                     p.synapse_keep is not None,
                                                     p.synapse_keep or 0, p.by_energy))


def _sweep_options(f):
    """The options of ``mksgn sweep``, in help order."""
    opts = [
        click.option("--config", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     required=True,
                     help="Student run config (e.g. train/configs/ucla_cpu_student.yaml)."),
        click.option("--data", type=click.Path(file_okay=False, exists=True, path_type=Path),
                     required=True, help="Prepared data root (mksgn data prepare --out)."),
        click.option("--teacher", type=click.Path(exists=True, path_type=Path), default=None,
                     help="Teacher run (its last.pt) or checkpoint: distillation, the teacher's "
                          "energy."),
        click.option("--init", type=click.Path(exists=True, path_type=Path), default=None,
                     help="Fine-tune every point from this student run (its last.pt) or "
                          "checkpoint; also measured as point 'init'."),
        click.option("--weights", default="0,0.5,1,2", show_default=True,
                     help="Energy weights, comma-separated (0: the unpenalised control); W:K "
                          "also prunes every graph synapse to K source joints per joint, W:K:F "
                          "(or W::F) keeps the fraction F of each conv and graph synapse "
                          "group's weights, W:K:Fe the fraction F of their synaptic events."),
        click.option("--mode", type=click.Choice(["energy", "rate"]), default="energy",
                     show_default=True,
                     help="energy: estimated energy per sample on --train-profile; rate: mean "
                          "firing rate above energy.target_rate."),
        click.option("--train-profile", default="loihi", show_default=True,
                     help="Hardware profile whose per-op energies the energy term uses."),
        click.option("--profile", "profiles", multiple=True,
                     help="Profiles to measure on (repeatable; default loihi and "
                          "cmos45nm_fp32)."),
        click.option("--reference-teacher", type=click.Path(exists=True, path_type=Path),
                     default=None, help="A second teacher graph for the reduction (e.g. the "
                                        "paper-scale one, `mksgn convert --teacher-config`)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Config override for every point, e.g. --set optim.epochs=6. "
                          "Repeatable."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
                     help="Sweep directory: one run directory per point, "
                          "frontier.{json,csv,png}."),
        click.option("--force", is_flag=True,
                     help="Measure every point anew (trainings still resume from their runs)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.command()
@_sweep_options
def sweep(config: Path, data: Path, teacher: Path | None, init: Path | None, weights: str,
          mode: str, train_profile: str, profiles: tuple[str, ...],
          reference_teacher: Path | None, sets: tuple[str, ...], out: Path, force: bool) -> None:
    """Train students over energy weights and write the accuracy-energy frontier.

    \b
    Each point: train (resumable) -> convert -> fast engine (test split)
    -> energy.
    Example (NW-UCLA: the demo's student fine-tuned 5 epochs per point):
      mksgn sweep --config train/configs/ucla_cpu_student.yaml \\
        --data runs/ucla/prepared --teacher runs/ucla/teacher \\
        --init runs/ucla/student --weights 0,2,5,12 \\
        --set optim.epochs=5 --set optim.lr=1e-3 --out runs/ucla_sweep
    """
    ws = _weights(weights)
    # a run directory means its last epoch (selected on nothing), as in the demo
    teacher = teacher / "last.pt" if teacher is not None and teacher.is_dir() else teacher
    init = init / "last.pt" if init is not None and init.is_dir() else init
    profiles = tuple(profiles) or ("loihi", "cmos45nm_fp32")
    if train_profile not in profiles:
        profiles = (train_profile, *profiles)
    import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401  (see demo)
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(out, force)
    dataset = _dataset(config, data)
    energy_args = [a for p in profiles for a in ("--profile", p)]
    if reference_teacher is not None:
        energy_args += ["--reference-teacher", str(reference_teacher)]
    # what a measurement depends on besides the point's weights: a change redoes it
    sig = hashlib.sha1(json.dumps([str(teacher), str(init), str(reference_teacher),
                                   list(profiles)]).encode()).hexdigest()[:8]
    runner = _PointRunner(stages, out, data, teacher, energy_args, sig)
    points: list[SweepPoint] = []
    if init is not None:
        runner.measure("init", init)
        points.append(_point("init", None, init.parent, out / "init" / "sim_fast",
                             out / "init" / "energy", train_profile))
    for spec in ws:
        over = _overrides(spec, mode, train_profile, sets, init)
        run = runner.train(spec.label, config, over)
        points.append(_point(spec.label, spec.weight, run, out / spec.label / "sim_fast",
                             out / spec.label / "energy", train_profile, spec))
    fr = _frontier(points, teacher, out, mode, train_profile, profiles, dataset)
    files = write_frontier(out, fr)
    _print(fr)
    click.echo("wrote " + ", ".join(str(f) for f in files))


def _dataset(config: Path, data: Path) -> str:
    """The dataset name in the benchmark info.json of CONFIG's data under DATA ("" without)."""
    from mksgn.train.config import ConfigError, load_config
    try:
        bench = load_config(config, {"data.prepared": str(data)}).data.benchmark_dir()
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    info = json.loads((bench / "info.json").read_text()) if (bench / "info.json").is_file() else {}
    return str(info.get("dataset", ""))


def _overrides(spec: Spec, mode: str, train_profile: str, sets: tuple[str, ...],
               init: Path | None) -> list[str]:
    """The config overrides (KEY=VALUE) that train the point SPEC."""
    over = [f"energy.mode={mode}",
            f"energy.weight={spec.weight}",         # 0: estimated, not trained for
            f"energy.profile={train_profile}", *sets]
    if spec.graph_keep is not None:
        over.append(f"energy.graph_keep={spec.graph_keep}")
    if spec.synapse_keep is not None:
        over += [f"energy.synapse_keep={spec.synapse_keep}",
                 f"energy.synapse_keep_by={spec.keep_by}"]
    if init is not None:
        over.append(f"init={init}")
    return over


@dataclass(frozen=True)
class _PointRunner:
    """Trains and measures the points of one sweep in OUT/<tag>/ as resumable stages.

    sig: a hash of what a measurement depends on besides the point's weights (the teacher,
    --init, --reference-teacher, the profiles), part of each measuring stage's name."""
    stages: Stages
    out: Path
    data: Path
    teacher: Path | None
    energy_args: list[str]
    sig: str

    @property
    def teacher_args(self) -> list[str]:
        return ["--teacher", str(self.teacher)] if self.teacher is not None else []

    def measure(self, tag: str, run: Path) -> None:
        """convert -> fast engine -> energy of the student RUN (a run directory or .pt)."""
        out, data, sig, stages = self.out, self.data, self.sig, self.stages
        conv, sim, en = out / tag / "convert", out / tag / "sim_fast", out / tag / "energy"
        stages.run(f"{tag}: convert [{sig}]", [conv], lambda: invoke([
            "convert", str(run / "last.pt" if run.is_dir() else run), *self.teacher_args,
            "--out", str(conv), "--force"]))
        stages.run(f"{tag}: fast engine [{sig}]", [sim], lambda: invoke([
            "simulate", str(conv), "--data", str(data), "--split", "test", "--engine", "fast",
            "--out", str(sim)]))
        stages.run(f"{tag}: energy [{sig}]", [en], lambda: invoke([
            "energy", str(conv), "--activity", str(sim), "--out", str(en), *self.energy_args]))

    def train(self, tag: str, config: Path, over: list[str]) -> Path:
        """Train (or resume) the student OUT/<tag>/student with the overrides OVER, then
        measure it; new weights redo the measurement. Returns the run directory."""
        run = self.out / tag / "student"
        args = ["train", "student", "--config", str(config), "--data", str(self.data),
                *self.teacher_args, "--out", str(run), "--no-progress",
                *[a for s in over for a in ("--set", s)]]
        if (run / "last.pt").is_file():
            args.append("--resume")         # continues, or finds every epoch done
        click.echo(f"{tag}: train student ({'resume' if '--resume' in args else 'new run'})")
        before = _finished_epochs(run)
        invoke(args)
        if _finished_epochs(run) != before:      # new weights: measure them anew
            for d in ("convert", "sim_fast", "energy"):
                shutil.rmtree(self.out / tag / d, ignore_errors=True)
        self.measure(tag, run)
        return run


def _frontier(points: list[SweepPoint], teacher: Path | None, out: Path, mode: str,
              train_profile: str, profiles: tuple[str, ...], dataset: str) -> Frontier:
    """The Frontier of POINTS: Pareto marks per profile, each point against the baseline (the
    unpruned weight-0 point, else the first), the teacher and the paper's point."""
    t, ref = _teacher(teacher, out / points[0].label / "energy")
    base = next((p for p in points if p.weight == 0 and p.graph_keep is None
                 and p.synapse_keep is None), points[0])
    for p in profiles:
        _pareto(points, p)
    for pt in points:
        pt.accuracy_delta = pt.accuracy - base.accuracy
        pt.energy_ratio = {k: base.energy_j[k] / v if v else None
                           for k, v in pt.energy_j.items()}
    return Frontier(mode=mode, train_profile=train_profile, profiles=list(profiles),
                    dataset=dataset, teacher=t, reference_teacher=ref,
                    paper=PAPER_POINT.get(dataset, {}), baseline=base.label, points=points)
