"""``mksgn demo``: every stage of the pipeline, on generated NTU-format data, in one command.

data synth -> data prepare -> train teacher -> train student (KD) -> convert -> simulate (fast
engine, whole test split; Lava, a handful of samples) -> spike agreement (PyTorch vs fast vs Lava,
every group and step) -> energy (loihi, cmos45nm_fp32, ...) -> summary + Markdown report.

The demo drives the same ``mksgn`` verbs a user runs (so it shows them in use) and records each
finished stage in ``OUT/stages.json``; a re-run skips finished stages unless ``--force``.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click

from mksgn.files import atomic_write_json, atomic_write_text

CONFIGS = Path(__file__).resolve().parent.parent / "train" / "configs"


@dataclass
class DemoPlan:
    """Sizes of one demo run. ``quick`` is a seconds-scale smoke run used by the tests."""
    classes: int = 8
    subjects: int = 8
    samples_per_class: int = 36
    frames: int = 40
    window: int = 24
    teacher_epochs: int = 10
    student_epochs: int = 16
    lava_samples: int = 2
    profiles: tuple[str, ...] = ("loihi", "loihi2", "cmos45nm_fp32", "cmos45nm_int8")
    teacher_set: tuple[str, ...] = ("model.base_channels=8",)
    # Small enough that Lava runs a sample in about a minute (about 150k neurons).
    student_set: tuple[str, ...] = ("model.stem_channels=8", "model.channels=[12,12,16,16,16,16]",
                                    "optim.lr=0.02")

    @classmethod
    def quick(cls) -> "DemoPlan":
        return cls(classes=4, subjects=4, samples_per_class=6, frames=20, window=12,
                   teacher_epochs=1, student_epochs=1, lava_samples=1,
                   profiles=("loihi", "cmos45nm_fp32"),
                   teacher_set=("model.base_channels=4",),
                   student_set=("model.stem_channels=4", "model.channels=[4,4,4,4,4,4]",
                                "model.temporal_kernel=3"))


@dataclass
class Summary:
    """What the demo measured; written to OUT/summary.json and OUT/report.md."""
    out: str
    quick: bool
    classes: int
    train_samples: int = 0
    test_samples: int = 0
    teacher_accuracy: float | None = None
    student_accuracy: float | None = None          # PyTorch student (quantisation-aware, eval)
    fast_accuracy: float | None = None             # fast integer engine, whole test split
    lava_accuracy: float | None = None             # Lava fixed_pt, lava_samples samples
    lava_samples: int = 0
    prediction_agreement_fast_vs_pytorch: float | None = None
    spike_agreement: dict = field(default_factory=dict)
    energy: dict = field(default_factory=dict)
    stage_seconds: dict = field(default_factory=dict)


_write_json = atomic_write_json


def _invoke(args: list[str]) -> None:
    """Run one ``mksgn`` verb in this process; a failure becomes a one-line ClickException."""
    from mksgn.cli import main
    try:
        main.main(args=args, prog_name="mksgn", standalone_mode=False)
    except click.exceptions.Exit as e:
        if e.exit_code:
            raise click.ClickException(f"`mksgn {' '.join(args)}` exited with {e.exit_code}")
    except SystemExit as e:
        if e.code:
            raise click.ClickException(f"`mksgn {' '.join(args)}` exited with {e.code}") from None


class Stages:
    """Runs named stages once; remembers finished ones in OUT/stages.json."""

    def __init__(self, out: Path, force: bool):
        self.out = out
        self.file = out / "stages.json"
        self.done: dict = {} if force or not self.file.is_file() else json.loads(self.file.read_text())
        self.seconds: dict = {}

    def run(self, name: str, outputs: list[Path], fn) -> None:
        from rich.console import Console
        console = Console()
        if name in self.done and all(p.exists() for p in outputs):
            console.print(f"[dim]· {name}: done earlier (--force to redo)[/dim]")
            self.seconds[name] = self.done[name]
            return
        for p in outputs:  # a stage that did not finish leaves nothing to trust
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        console.rule(f"[bold]{name}")
        t0 = time.perf_counter()
        fn()
        self.seconds[name] = round(time.perf_counter() - t0, 1)
        self.done[name] = self.seconds[name]
        _write_json(self.file, self.done)


def spike_agreement(conv_dir: Path, prepared: Path, samples: int) -> dict:
    """Run ``samples`` test samples through the PyTorch student, the fast engine and Lava
    (``Loihi2SimCfg(select_tag='fixed_pt')``) and compare every group's spikes at every step and
    the class scores, by exact equality. Also returns Lava's predictions and accuracy."""
    import numpy as np
    import torch

    from mksgn import netgraph
    from mksgn.netgraph import fold_persons
    from mksgn.data.dataset import SkeletonDataset
    from mksgn.deploy.engine import run as engine_run
    from mksgn.deploy.lava_graph import LavaNetwork
    from mksgn.train.checkpoint import load_model

    net = netgraph.load(conv_dir / "model.net")
    student, info = load_model(conv_dir / "student.pt")
    cfg = info["config"]
    modalities = list(cfg.data.modalities)
    ds = SkeletonDataset(prepared / cfg.data.benchmark, "test", window=cfg.data.window,
                         modalities=modalities, train=False)
    items = [ds[i] for i in range(min(samples, len(ds)))]
    x = torch.stack([item[0] for item in items])                         # (N, K, 3, T, V, M)
    labels = np.array([item[1] for item in items])
    folded = fold_persons(x)
    inputs = {m: folded[:, k] for k, m in enumerate(modalities)}
    with torch.no_grad():
        torch_spikes, torch_scores = student.simulate(x)
    fast = engine_run(net, inputs, record=("s",))
    groups = [g.name for g in net.groups if not g.readout]
    compared = net.num_steps * len(groups) * len(x)
    same_torch_fast = same_fast_lava = 0
    scores_equal = True
    lava_pred = []
    with LavaNetwork(net) as lava:
        for i in range(len(x)):
            r = lava.run(inputs={m: inputs[m][i].numpy() for m in modalities})
            for g in groups:
                f = fast.spikes[g][i].numpy().reshape(net.num_steps, -1)
                p = torch_spikes[g][i].numpy().reshape(net.num_steps, -1)
                lv = np.asarray(r.spikes[g]).reshape(net.num_steps, -1)
                same_torch_fast += int((p == f).all(1).sum())
                same_fast_lava += int((f == lv).all(1).sum())
            fs = fast.scores[i].numpy().reshape(-1)
            scores_equal &= bool(np.array_equal(fs, np.asarray(r.scores).reshape(-1))
                                 and np.array_equal(fs, torch_scores[i].numpy().reshape(-1)))
            lava_pred.append(int(np.argmax(np.asarray(r.scores).reshape(-1))))
    return {"samples": len(x), "compared_group_steps": compared,
            "pytorch_vs_fast": same_torch_fast / compared,
            "fast_vs_lava": same_fast_lava / compared,
            "scores_equal_all_three": scores_equal,
            "lava_predictions": lava_pred, "labels": labels.tolist(),
            "lava_accuracy": float(np.mean(np.array(lava_pred) == labels))}


def _best_acc(run: Path) -> float | None:
    metrics = run / "metrics.json"
    if not metrics.is_file():
        return None
    rows = json.loads(metrics.read_text())
    rows = rows.get("epochs", rows) if isinstance(rows, dict) else rows
    accs = [r.get("test_acc") for r in rows if r.get("test_acc") is not None]
    return max(accs) if accs else None


def _plot_training(out: Path, runs: dict[str, Path]) -> Path | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.2))
    drawn = False
    for label, run in runs.items():
        metrics = run / "metrics.json"
        if not metrics.is_file():
            continue
        rows = json.loads(metrics.read_text())
        rows = rows.get("epochs", rows) if isinstance(rows, dict) else rows
        pts = [(r["epoch"], r["test_acc"]) for r in rows if r.get("test_acc") is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    path = out / "training.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def write_report(out: Path, s: Summary) -> Path:
    lines = [
        "# mksgn demo report", "",
        f"Synthetic NTU RGB+D-format data, {s.classes} classes, {s.train_samples} training and "
        f"{s.test_samples} test samples (cross-subject split){' — quick mode' if s.quick else ''}.",
        "", "## Accuracy (test split)", "",
        "| model | accuracy |", "|---|---|",
        f"| teacher (4-stream GCN, float) | {_pct(s.teacher_accuracy)} |",
        f"| student (PyTorch, quantisation-aware) | {_pct(s.student_accuracy)} |",
        f"| student on the fast integer engine | {_pct(s.fast_accuracy)} |",
        f"| student in Lava fixed_pt ({s.lava_samples} samples) | {_pct(s.lava_accuracy)} |",
        "", "## Exactness", "",
        f"Spikes compared for every neuron group at every step on {s.lava_samples} sample(s): "
        f"PyTorch vs fast engine {_pct(s.spike_agreement.get('pytorch_vs_fast'))}, fast engine vs "
        f"Lava {_pct(s.spike_agreement.get('fast_vs_lava'))}; class scores equal in all three: "
        f"{s.spike_agreement.get('scores_equal_all_three')}. Predictions fast engine vs PyTorch on "
        f"the whole test split: {_pct(s.prediction_agreement_fast_vs_pytorch)}.",
        "", "## Energy per sample", "",
        "| profile | student | teacher | reduction |", "|---|---|---|---|",
    ]
    for name, e in s.energy.items():
        lines.append(f"| {name} | {e.get('student_j', float('nan')):.3e} J | "
                     f"{e.get('teacher_j', float('nan')):.3e} J ({e.get('teacher_profile')}) | "
                     f"{e.get('reduction_pct', float('nan')):.2f}% |")
    lines += ["", "![per-layer energy](energy/energy.png)", ""]
    if (out / "training.png").is_file():
        lines += ["![training curves](training.png)", ""]
    lines += ["## Stage times (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in s.stage_seconds.items()]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _energy_summary(energy_json: Path, teacher_profile: str = "cmos45nm_fp32") -> dict:
    """Per student profile: joules per sample and the reduction vs the teacher on
    ``teacher_profile`` (the paper's 45 nm convention), from energy.json."""
    if not energy_json.is_file():
        return {}
    rep = json.loads(energy_json.read_text())
    teacher_j = rep["teacher_total_pj"].get(teacher_profile, float("nan")) * 1e-12
    return {name: {"student_j": pj * 1e-12, "teacher_j": teacher_j, "teacher_profile": teacher_profile,
                   "reduction_pct": rep["reduction_percent"][name].get(teacher_profile)}
            for name, pj in rep["student_total_pj"].items()}


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True, help="Where every stage writes (re-used on a re-run).")
@click.option("--quick", is_flag=True, help="Tiny sizes and one epoch: a smoke run in about a minute.")
@click.option("--force", is_flag=True, help="Redo every stage, even those finished earlier.")
@click.option("--lava-samples", type=click.IntRange(min=1), default=None,
              help="Test samples run in Lava (slow, bit-accurate). Default 2 (quick: 1).")
def demo(out: Path, quick: bool, force: bool, lava_samples: int | None) -> None:
    """Run the whole pipeline on generated NTU-format data and write a report under OUT."""
    from rich.console import Console
    console = Console()
    # Lava fixes multiprocessing's start method when first imported and fails if anything (a
    # process pool of the data stage) fixed it before: let Lava go first.
    import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
    plan = DemoPlan.quick() if quick else DemoPlan()
    if lava_samples:
        plan.lava_samples = lava_samples
    out.mkdir(parents=True, exist_ok=True)
    raw, prepared = out / "raw", out / "prepared"
    teacher, student, conv = out / "teacher", out / "student", out / "convert"
    sim_fast, energy = out / "sim_fast", out / "energy"
    stages = Stages(out, force)
    quiet = ["--no-progress"] if not sys.stdout.isatty() else []

    stages.run("data synth", [raw], lambda: _invoke([
        "data", "synth", "--out", str(raw), "--dataset", "ntu60", "--classes", str(plan.classes),
        "--subjects", str(plan.subjects), "--samples-per-class", str(plan.samples_per_class),
        "--frames", str(plan.frames), "--seed", "0"]))
    stages.run("data prepare", [prepared], lambda: _invoke([
        "data", "prepare", "--dataset", "ntu60", "--root", str(raw), "--out", str(prepared),
        "--max-frames", str(2 * plan.frames)]))

    def sets(extra):
        return [a for s in extra for a in ("--set", s)]
    stages.run("train teacher", [teacher], lambda: _invoke([
        "train", "teacher", "--config", str(CONFIGS / "synth_teacher.yaml"), "--data", str(prepared),
        "--out", str(teacher), *quiet, "--set", f"optim.epochs={plan.teacher_epochs}",
        "--set", f"data.window={plan.window}", *sets(plan.teacher_set)]))
    stages.run("train student", [student], lambda: _invoke([
        "train", "student", "--config", str(CONFIGS / "synth_student.yaml"), "--data", str(prepared),
        "--teacher", str(teacher), "--out", str(student), *quiet,
        "--set", f"optim.epochs={plan.student_epochs}", "--set", f"data.window={plan.window}",
        "--set", f"model.frames={plan.window}", *sets(plan.student_set)]))
    stages.run("convert", [conv], lambda: _invoke([
        "convert", str(student), "--teacher", str(teacher), "--out", str(conv), "--force"]))
    stages.run("simulate (fast engine)", [sim_fast], lambda: _invoke([
        "simulate", str(conv), "--data", str(prepared), "--split", "test", "--engine", "fast",
        "--out", str(sim_fast)]))
    agreement_file = out / "agreement.json"
    stages.run("Lava fixed_pt + spike agreement", [agreement_file], lambda: _write_json(
        agreement_file, spike_agreement(conv, prepared, plan.lava_samples)))
    stages.run("energy", [energy], lambda: _invoke([
        "energy", str(conv), "--activity", str(sim_fast), "--out", str(energy),
        *[a for p in plan.profiles for a in ("--profile", p)]]))

    info = json.loads((prepared / "xsub" / "info.json").read_text())
    fast = json.loads((sim_fast / "activity.json").read_text())
    agree = json.loads(agreement_file.read_text())
    counts = info.get("counts", {})
    summary = Summary(
        out=str(out), quick=quick, classes=int(info["num_classes"]),
        train_samples=int(counts.get("train", 0)), test_samples=int(counts.get("test", 0)),
        teacher_accuracy=_best_acc(teacher), student_accuracy=_best_acc(student),
        fast_accuracy=fast.get("accuracy"), lava_accuracy=agree.get("lava_accuracy"),
        lava_samples=int(agree.get("samples", 0)),
        prediction_agreement_fast_vs_pytorch=(fast.get("agreement") or {}).get("prediction_agreement"),
        spike_agreement=agree, energy=_energy_summary(energy / "energy.json"),
        stage_seconds=stages.seconds)
    _plot_training(out, {"teacher": teacher, "student": student})
    _write_json(out / "summary.json", asdict(summary))
    report = write_report(out, summary)

    console.rule("[bold]summary")
    console.print(f"teacher {_pct(summary.teacher_accuracy)} | student (PyTorch) "
                  f"{_pct(summary.student_accuracy)} | fast engine {_pct(summary.fast_accuracy)} | "
                  f"Lava {_pct(summary.lava_accuracy)} on {summary.lava_samples} sample(s)")
    console.print(f"spikes, every group and step: PyTorch=fast {_pct(agree.get('pytorch_vs_fast'))}, "
                  f"fast=Lava {_pct(agree.get('fast_vs_lava'))}")
    for name, e in summary.energy.items():
        console.print(f"energy {name}: student {e['student_j']:.3e} J/sample, reduction vs the "
                      f"teacher on {e['teacher_profile']} {e['reduction_pct']:.2f}%")
    console.print(f"report: {report}")
