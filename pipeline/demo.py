"""``mksgn demo``: every stage of the pipeline in one command, on generated NTU-format data or
on real NW-UCLA skeletons (``--dataset ucla --root DIR``).

[data synth ->] data prepare -> train teacher (or adopt a given one) -> train student (KD) ->
convert -> simulate (fast engine, whole test split; Lava, a handful of samples) -> spike
agreement (PyTorch vs fast vs Lava, every group and step) -> energy (loihi, cmos45nm_fp32, ...)
-> summary + Markdown report.

The demo drives the same ``mksgn`` verbs a user runs (so it shows them in use) and records each
finished stage in ``OUT/stages.json``; a re-run skips finished stages unless ``--force``.
"""
from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import click

from mksgn.files import atomic_write_json, atomic_write_text, sha256, staged
from mksgn.pipeline.stages import RECIPE_FILE, Stages, invoke

CONFIGS = Path(__file__).resolve().parent.parent / "train" / "configs"
TEACHER_GIVEN = "teacher (given)"       # the stage that adopts a --teacher checkpoint


@dataclass
class DemoPlan:
    """What one demo run does: which data, which configs with which overrides, how many Lava
    samples, which energy profiles, and the wall-time budget of each stage (seconds on 2 CPU
    cores; printed beside the measured times at the end).

    dataset: ``synthetic`` (NTU60-format skeletons generated here; ``synth`` gives the sizes) or
    ``ucla`` (the real NW-UCLA json files under ``--root``). Checkpoints: the last epoch of each
    run is converted and reported (no selection on the test split); the best epoch's test
    accuracy is reported beside it, as the GCN literature reports it.
    """
    dataset: str = "synthetic"
    benchmark: str = "xsub"
    teacher_config: str = "synth_teacher.yaml"
    student_config: str = "synth_student.yaml"
    teacher_set: tuple[str, ...] = ("optim.epochs=10", "data.window=24", "model.base_channels=8")
    # Small enough that Lava runs a sample in about a minute. No soft labels: the data is 8 of
    # NTU60's 60 classes, and the teacher's 60-way soft labels at T = 4 put most of their mass on
    # the 52 absent ones (measured, seed 0: 31 % with them, 58 % without, on the same teacher).
    student_set: tuple[str, ...] = ("optim.epochs=16", "data.window=24", "model.frames=24",
                                    "model.stem_channels=8", "model.channels=[12,12,16,16,16,16]",
                                    "optim.lr=0.02", "kd.soft_labels=false")
    synth: dict = field(default_factory=lambda: {"classes": 8, "subjects": 8,
                                                 "samples-per-class": 36, "frames": 40})
    # a trained teacher to distil from instead of the teacher stage (``--teacher``)
    teacher_checkpoint: str | None = None
    lava_samples: int = 2
    profiles: tuple[str, ...] = ("loihi", "loihi2", "cmos45nm_fp32", "cmos45nm_int8")
    # the paper-scale teacher the energy reduction is also stated against (its graph, untrained:
    # its MACs do not depend on its weights; ``mksgn convert --teacher-config``)
    reference_teacher: str = "ntu60_xsub_teacher.yaml"
    reference_dataset: str = "ntu60"
    budget_s: dict = field(default_factory=lambda: {
        "data synth": 20, "data prepare": 20, "train teacher": 240, "train student": 180,
        "convert": 30, "simulate (fast engine)": 30, "Lava fixed_pt + spike agreement": 330,
        "paper-scale teacher graph": 30, "energy": 20})

    @classmethod
    def synthetic(cls) -> "DemoPlan":
        return cls()

    @classmethod
    def ucla(cls) -> "DemoPlan":
        """Real NW-UCLA at the CPU budget (train/configs/ucla_cpu_*.yaml), <= 100 min."""
        return cls(dataset="ucla", benchmark="xview", teacher_config="ucla_cpu_teacher.yaml",
                   student_config="ucla_cpu_student.yaml", teacher_set=(), student_set=(),
                   synth={}, reference_teacher="ucla_teacher.yaml", reference_dataset="ucla",
                   budget_s={
                       "data prepare": 30, "train teacher": 17 * 60, "train student": 68 * 60,
                       "convert": 60, "simulate (fast engine)": 4 * 60,
                       "Lava fixed_pt + spike agreement": 6 * 60,
                       "paper-scale teacher graph": 60, "energy": 60})

    @classmethod
    def ucla_long(cls) -> "DemoPlan":
        """NW-UCLA's long recipe: the CPU configs with a teacher of 24 epochs and a student of
        72 with AdamW's weight decay at 0.05 (the config's 1e-4 let the student's all-to-all
        graph weights overfit: README, NW-UCLA results), <= 150 min on 2 cores; resumable (an
        interrupted run goes on when re-run)."""
        plan = cls.ucla()
        return replace(plan, teacher_set=("optim.epochs=24",),
                       student_set=("optim.epochs=72", "optim.weight_decay=0.05"),
                       budget_s={**plan.budget_s, "train teacher": 40 * 60,
                                 "train student": 96 * 60})

    def seeded(self, seed: int) -> "DemoPlan":
        """Both trainings with ``seed`` instead of their configs'."""
        return replace(self, teacher_set=(*self.teacher_set, f"seed={seed}"),
                       student_set=(*self.student_set, f"seed={seed}"))

    def given_teacher(self, checkpoint: Path) -> "DemoPlan":
        """Distil from the trained teacher in ``checkpoint`` instead of training one."""
        budget = {k: v for k, v in self.budget_s.items() if k != "train teacher"}
        return replace(self, teacher_checkpoint=str(checkpoint),
                       budget_s={**budget, TEACHER_GIVEN: 10})

    def quick(self) -> "DemoPlan":
        """The same stages at toy sizes and one epoch each: a smoke run for the tests."""
        window = 12 if self.dataset == "synthetic" else 16
        tiny_t = ("optim.epochs=1", f"data.window={window}", "model.base_channels=4")
        tiny_s = ("optim.epochs=1", f"data.window={window}", f"model.frames={window}",
                  "model.stem_channels=4", "model.channels=[4,4,4,4,4,4]",
                  "model.temporal_kernel=3")
        synth = {"classes": 4, "subjects": 4, "samples-per-class": 6, "frames": 20} \
            if self.synth else {}
        return replace(self, teacher_set=tiny_t, student_set=tiny_s, synth=synth,
                       lava_samples=1, profiles=("loihi", "cmos45nm_fp32"))


PLANS = {"synthetic": DemoPlan.synthetic, "ucla": DemoPlan.ucla}
LONG_PLANS = {"ucla": DemoPlan.ucla_long}     # --long


@dataclass
class Summary:
    """What the demo measured; written to OUT/summary.json and OUT/report.md.

    Accuracies are on the test split at the last epoch (the checkpoint that is converted);
    ``*_best_epoch_accuracy`` is the best test accuracy over the epochs (selected on the test
    split itself, as GCN papers report NW-UCLA and NTU; not a held-out number)."""
    out: str
    quick: bool
    classes: int
    dataset: str = "synthetic"
    benchmark: str = ""
    train_samples: int = 0
    test_samples: int = 0
    teacher_checkpoint: str | None = None          # --teacher: the one adopted, not trained here
    teacher_accuracy: float | None = None
    student_accuracy: float | None = None          # PyTorch student (quantisation-aware, eval)
    fast_accuracy: float | None = None             # fast integer engine, whole test split
    lava_accuracy: float | None = None             # Lava fixed_pt, lava_samples samples
    lava_samples: int = 0
    teacher_best_epoch_accuracy: float | None = None
    student_best_epoch_accuracy: float | None = None
    prediction_agreement_fast_vs_pytorch: float | None = None
    spike_agreement: dict = field(default_factory=dict)
    energy: dict = field(default_factory=dict)
    stage_seconds: dict = field(default_factory=dict)
    stage_budget_seconds: dict = field(default_factory=dict)


_write_json = atomic_write_json


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
                         modalities=modalities, train=False, pipeline=cfg.data.pipeline)
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
    return {"samples": len(x), "steps": int(net.num_steps), "compared_group_steps": compared,
            "pytorch_vs_fast": same_torch_fast / compared,
            "fast_vs_lava": same_fast_lava / compared,
            "scores_equal_all_three": scores_equal,
            "lava_predictions": lava_pred, "labels": labels.tolist(),
            "lava_accuracy": float(np.mean(np.array(lava_pred) == labels))}


def _test_accs(run: Path) -> list[float]:
    """Test accuracy of every evaluated epoch of a run, in order."""
    metrics = run / "metrics.json"
    if not metrics.is_file():
        return []
    rows = json.loads(metrics.read_text())
    rows = rows.get("epochs", rows) if isinstance(rows, dict) else rows
    return [r["test_acc"] for r in rows if r.get("test_acc") is not None]


def _last_acc(run: Path) -> float | None:
    accs = _test_accs(run)
    return accs[-1] if accs else None


def _best_acc(run: Path) -> float | None:
    accs = _test_accs(run)
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


_DATA_TEXT = {
    "synthetic": "Synthetic NTU RGB+D-format data (generated; NTU60 has 60 classes, {gen} of them "
                 "generated), {train} training and {test} test samples (cross-subject split)",
    "ucla": "NW-UCLA (real Kinect v1 skeletons), {classes} classes, {train} training (views 1-2) "
            "and {test} test (view 3) samples: the cross-view benchmark",
}


def _lava_sentence(s: Summary) -> str:
    a = s.spike_agreement
    return (f"Lava fixed_pt on {a.get('samples', 0)} test sample(s), {a.get('steps', '?')} steps "
            f"each: spikes of every neuron group at every step equal to the fast engine's on "
            f"{_pct(a.get('fast_vs_lava'))} and PyTorch's equal to the fast engine's on "
            f"{_pct(a.get('pytorch_vs_fast'))} of {a.get('compared_group_steps', 0)} group-steps; "
            f"class scores equal in all three: {a.get('scores_equal_all_three')}.")


def _config_text(config: str, sets: tuple[str, ...]) -> str:
    return f"`{config}`" + (f" with `{' '.join(sets)}`" if sets else "")


def _teacher_text(plan: DemoPlan) -> str:
    if plan.teacher_checkpoint:
        return f"the teacher trained earlier in `{plan.teacher_checkpoint}` (not trained here)"
    return _config_text(plan.teacher_config, plan.teacher_set)


def write_report(out: Path, s: Summary, plan: DemoPlan) -> Path:
    data = _DATA_TEXT[s.dataset].format(gen=plan.synth.get("classes", "?"), classes=s.classes,
                                        train=s.train_samples, test=s.test_samples)
    lines = [
        "# mksgn demo report", "",
        f"{data}{' — quick mode' if s.quick else ''}. Configs: {_teacher_text(plan)}, "
        f"{_config_text(plan.student_config, plan.student_set)}.",
        "", "## Accuracy (test split)", "",
        "The last epoch of each run is converted and reported; the best epoch's test accuracy "
        "(how GCN papers report these benchmarks, selected on the test split) is beside it.", "",
        "| model | last epoch | best epoch |", "|---|---|---|",
        f"| teacher (4-stream GCN, float) | {_pct(s.teacher_accuracy)} | "
        f"{_pct(s.teacher_best_epoch_accuracy)} |",
        f"| student (PyTorch, quantisation-aware) | {_pct(s.student_accuracy)} | "
        f"{_pct(s.student_best_epoch_accuracy)} |",
        f"| student on the fast integer engine | {_pct(s.fast_accuracy)} | |",
        "", "## Exactness", "", _lava_sentence(s),
        f"Predictions fast engine vs PyTorch on the whole test split: "
        f"{_pct(s.prediction_agreement_fast_vs_pytorch)}.",
        "", "## Energy per sample", "",
        "Reductions are against the student's teacher and against the paper-scale teacher "
        f"configuration (`{plan.reference_teacher}`, MACs counted from its graph, untrained), "
        "both priced on the 45 nm fp32 convention (the paper's).", "",
        "Time per sample: the student on a profile with a latency model (a per-step barrier "
        "plus the busiest core's serial work, `hw_profiles/latency.py`); no ANN-device profile "
        "states the teacher's time.", "",
        "| profile | student | time per sample | teacher | student vs teacher | paper-scale "
        "teacher | student vs paper-scale |",
        "|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for name, e in s.energy.items():
        t = e.get("student_s")
        lines.append(f"| {name} | {e.get('student_j', nan):.3e} J | "
                     f"{'-' if t is None else f'{t * 1e3:.3f} ms'} | "
                     f"{e.get('teacher_j', nan):.3e} J ({e.get('teacher_profile')}) | "
                     f"{_versus(e.get('student_j', nan), e.get('teacher_j', nan))} | "
                     f"{e.get('paper_teacher_j', nan):.3e} J | "
                     f"{_versus(e.get('student_j', nan), e.get('paper_teacher_j', nan))} |")
    lines += ["", "![per-layer energy](energy/energy.png)", ""]
    if (out / "training.png").is_file():
        lines += ["![training curves](training.png)", ""]
    lines += ["## Stage times (s)", "", "| stage | seconds | budget |", "|---|---|---|"]
    lines += [f"| {k} | {v} | {s.stage_budget_seconds.get(k, '')} |"
              for k, v in s.stage_seconds.items()]
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
    ref = rep.get("reference_teacher") or {}
    out = {}
    for name, pj in rep["student_total_pj"].items():
        out[name] = {"student_j": pj * 1e-12, "teacher_j": teacher_j,
                     "student_s": rep.get("student_latency", {}).get(name, {}).get("per_sample_s"),
                     "teacher_profile": teacher_profile,
                     "reduction_pct": rep["reduction_percent"][name].get(teacher_profile)}
        if ref:
            out[name].update(
                paper_teacher=ref.get("name"),
                paper_teacher_j=ref["total_pj"].get(teacher_profile, float("nan")) * 1e-12,
                paper_reduction_pct=ref["reduction_percent"].get(name, {}).get(teacher_profile))
    return out


def _versus(joules: float, reference_j: float) -> str:
    """``joules`` against ``reference_j``: "4.31x more", or "53.21% less" with as many decimals
    as it takes not to round to 100% ("99.995% less")."""
    if not reference_j > 0:
        return "n/a"
    ratio = joules / reference_j
    if ratio >= 1:
        return f"{ratio:.2f}x more"
    pct, digits = 100 * (1 - ratio), 2
    while round(pct, digits) >= 100 and digits < 6:
        digits += 1
    return f"{pct:.{digits}f}% less"


def energy_lines(energy: dict) -> list[str]:
    """The demo's closing lines on energy per sample (``_energy_summary``'s dict): what is priced
    how, the teachers, then the student on each profile against each teacher. Within 80 columns
    for profile names up to 14 characters."""
    if not energy:
        return []
    first = next(iter(energy.values()))
    paper = first.get("paper_teacher_j")
    rows = [("the student's teacher", first["teacher_j"], "", "")]
    if paper is not None:
        rows.append(("paper-scale teacher", paper, "", ""))
    for name, e in energy.items():
        rows.append((f"student on {name}", e["student_j"], _versus(e["student_j"], e["teacher_j"]),
                     _versus(e["student_j"], paper) if paper is not None else ""))
    what = (f"Energy per sample: the student from its spikes on each profile, the teachers from "
            f"their MACs on {first['teacher_profile']} (the paper's convention)")
    if paper is not None:
        what += f"; the paper-scale teacher is {first.get('paper_teacher')}'s graph, untrained"
    w = max(len(r[0]) for r in rows)
    head = [f"  {'':<{w}}  {'µJ':>10}  {'vs its teacher':<15}"
            + ("  vs paper-scale" if paper is not None else "")]
    times = [f"{name} {e['student_s'] * 1e3:.3f} ms" for name, e in energy.items()
             if e.get("student_s") is not None]
    tail = textwrap.wrap("Time per sample: " + ", ".join(times) + ".", 78) if times else []
    return textwrap.wrap(what + ".", 78) + head + [
        f"  {label:<{w}}  {j * 1e6:>10,.2f}  {a:<15}  {b}".rstrip()
        for label, j, a, b in rows] + tail


def _default_out(dataset: str, long: bool, quick: bool = False, given: bool = False) -> Path:
    """runs/NAME[-long][-given-teacher][-quick]: each kind of job its own default OUT."""
    name = "demo" if dataset == "synthetic" else dataset
    return Path(f"runs/{name}{'-long' if long else ''}{'-given-teacher' if given else ''}"
                f"{'-quick' if quick else ''}")


@click.command()
@click.option("--dataset", type=click.Choice(list(PLANS)), default="synthetic", show_default=True,
              help="synthetic: generated NTU60-format skeletons; ucla: the real NW-UCLA json "
                   "files in --root (cross-view; CPU-budget configs, <= 100 min on 2 cores).")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="--dataset ucla: the folder of NW-UCLA json files (aAA_sSS_eEE_vVV.json, "
                   "e.g. CTR-GCN's data/NW-UCLA/all_sqe).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where every stage writes (re-used on a re-run). Default: runs/demo "
                   "(synthetic), runs/ucla (ucla), runs/ucla-long (--long); -given-teacher "
                   "after it with --teacher, -quick with --quick.")
@click.option("--long", "long_", is_flag=True,
              help="--dataset ucla: the long recipe (teacher 24 epochs, student 72; <= 150 min "
                   "on 2 cores). Interrupted, it goes on from the last epoch when re-run.")
@click.option("--seed", type=int, default=None,
              help="Seed of both trainings (of the student's with --teacher; default: the "
                   "configs', 1); give each seed its own --out (an OUT trained with another "
                   "recipe is refused).")
@click.option("--teacher", "teacher_ckpt", type=click.Path(exists=True, path_type=Path),
              default=None,
              help="Distil from this trained teacher (a checkpoint, or a run directory: its "
                   "last.pt) instead of training one, e.g. models/ucla-xview-teacher/"
                   "teacher.pt.")
@click.option("--quick", is_flag=True, help="Tiny sizes and one epoch: a smoke run in about a minute.")
@click.option("--force", is_flag=True, help="Redo every stage, even those finished earlier.")
@click.option("--lava-samples", type=click.IntRange(min=1), default=None,
              help="Test samples run in Lava (slow, bit-accurate). Default 2 (quick: 1).")
def demo(dataset: str, root: Path | None, out: Path | None, long_: bool, seed: int | None,
         teacher_ckpt: Path | None, quick: bool, force: bool, lava_samples: int | None) -> None:
    """Run the whole pipeline and write a report under OUT.

    \b
    data -> teacher -> student (distilled) -> convert -> fast engine on
    the whole test split -> Lava fixed_pt on a few samples with a
    spike-by-spike check -> energy -> report.md.

    \b
    Examples:
      mksgn demo                  # synthetic data, ~9 min on 2 cores
      mksgn demo --dataset ucla --root all_sqe
                                  # real NW-UCLA, <= 100 min on 2 cores
      mksgn demo --dataset ucla --long --root all_sqe
                                  # the long recipe, <= 150 min
      mksgn demo --dataset ucla --root all_sqe --teacher TEACHER.pt
                                  # distil from a trained teacher, e.g.
                                  # models/ucla-xview-teacher/teacher.pt

    An interrupted demo re-run with the same arguments reuses the finished
    stages and goes on training from the last finished epoch.
    """
    from rich.console import Console
    console = Console()
    _check_root(dataset, root)
    if long_ and dataset not in LONG_PLANS:
        raise click.UsageError(f"--long: no long recipe for --dataset {dataset} "
                               f"(there is one for {', '.join(LONG_PLANS)})")
    # Lava fixes multiprocessing's start method when first imported and fails if anything (a
    # process pool of the data stage) fixed it before: let Lava go first.
    import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
    plan = (LONG_PLANS if long_ else PLANS)[dataset]()
    if quick:
        plan = plan.quick()
    if seed is not None:
        plan = plan.seeded(seed)
    if teacher_ckpt is not None:
        plan = plan.given_teacher(given_teacher(teacher_ckpt, plan.benchmark))
    if lava_samples:
        plan.lava_samples = lava_samples
    dirs = _DemoDirs.under(out or _default_out(dataset, long_, quick, teacher_ckpt is not None))
    _refuse_teacher_inside(plan, dirs)
    _upgrade_recipe(dirs.out)
    stages = Stages(dirs.out, force, recipe=_recipe(plan, root))
    _run_data_stages(stages, plan, dataset, root, dirs)
    _run_model_stages(stages, plan, dirs)
    summary, agree = _summarize(dirs, plan, dataset, quick, stages)
    _plot_training(dirs.out, {"teacher": dirs.teacher, "student": dirs.student})
    _write_json(dirs.out / "summary.json", asdict(summary))
    report = write_report(dirs.out, summary, plan)
    _print_summary(console, summary, agree, plan, stages, quick)
    console.print(f"report: {report}")


def _recipe(plan: DemoPlan, root: Path | None) -> dict:
    """What decides the data and the trained networks of a demo (not its budgets, Lava samples
    or energy profiles, which a re-run may change): ``Stages``' recipe of the demo's OUT. The
    trainings enter as the configs they run with (file and --set resolved), so an edited config
    file counts and ``--seed 1`` is the recipe of a config whose seed is 1."""
    return {"dataset": plan.dataset, "benchmark": plan.benchmark, "synth": plan.synth,
            "root": str(root.resolve()) if root else None,
            "teacher": _teacher_recipe(plan),
            "student": _run_config(plan.student_config, plan.student_set)}


def _teacher_recipe(plan: DemoPlan) -> dict:
    """The teacher's part of the recipe: its config, or the bytes of a given checkpoint."""
    if plan.teacher_checkpoint:
        return {"source": "checkpoint", "sha256": sha256(plan.teacher_checkpoint)}
    return _run_config(plan.teacher_config, plan.teacher_set)


def _run_config(config: str, sets: tuple[str, ...]) -> dict:
    """The config a training stage runs with (CONFIGS/config after ``sets``), as a recipe part."""
    from mksgn.train.cli import load_or_exit, parse_sets
    from mksgn.train.config import to_dict
    return {"source": "config", **to_dict(load_or_exit(CONFIGS / config, parse_sets(sets)))}


def _upgrade_recipe(out: Path) -> None:
    """Rewrite an OUT/plan.json of the earlier form (each training as [config file, *--set
    strings]) as the configs they resolve to, so that a demo started before can resume."""
    file = out / RECIPE_FILE
    try:
        recipe = json.loads(file.read_text())
    except (OSError, ValueError):
        return                                  # none, or unreadable: Stages says so
    if not isinstance(recipe, dict):
        return
    old = {k: v for k, v in recipe.items() if k in ("teacher", "student") and isinstance(v, list)}
    if old and all(v and isinstance(v[0], str) for v in old.values()):
        _write_json(file, {**recipe, **{k: _run_config(v[0], tuple(v[1:]))
                                        for k, v in old.items()}})


def _check_root(dataset: str, root: Path | None) -> None:
    """--root goes with real data only, and must then be a directory."""
    if dataset == "synthetic" and root is not None:
        raise click.UsageError("--root is for real data (--dataset ucla); the synthetic demo "
                               "generates its own")
    if dataset != "synthetic":
        if root is None:
            raise click.UsageError(f"--dataset {dataset} needs --root DIR, the folder of its "
                                   "json files (e.g. CTR-GCN's data/NW-UCLA/all_sqe)")
        if not root.is_dir():
            raise click.UsageError(f"--root {root}: not a directory")


@dataclass(frozen=True)
class _DemoDirs:
    """Where each stage of a demo under ``out`` writes."""
    out: Path
    raw: Path
    prepared: Path
    teacher: Path
    student: Path
    conv: Path
    sim_fast: Path
    energy: Path
    agreement_file: Path
    paper_teacher: Path

    @classmethod
    def under(cls, out: Path) -> "_DemoDirs":
        return cls(out=out, raw=out / "raw", prepared=out / "prepared", teacher=out / "teacher",
                   student=out / "student", conv=out / "convert", sim_fast=out / "sim_fast",
                   energy=out / "energy", agreement_file=out / "agreement.json",
                   paper_teacher=out / "paper_teacher")


def _run_data_stages(stages: Stages, plan: DemoPlan, dataset: str, root: Path | None,
                     dirs: _DemoDirs) -> None:
    """[data synth ->] data prepare: the prepared dataset in ``dirs.prepared``."""
    raw, prepared = dirs.raw, dirs.prepared
    if dataset == "synthetic":
        stages.run("data synth", [raw], lambda: invoke([
            "data", "synth", "--out", str(raw), "--dataset", "ntu60",
            *[a for k, v in plan.synth.items() for a in (f"--{k}", str(v))], "--seed", "0"]))
        stages.run("data prepare", [prepared], lambda: invoke([
            "data", "prepare", "--dataset", "ntu60", "--root", str(raw), "--out", str(prepared),
            "--max-frames", str(2 * plan.synth["frames"])]))
    else:
        stages.run("data prepare", [prepared], lambda: invoke([
            "data", "prepare", "--dataset", dataset, "--root", str(root), "--out", str(prepared)]))


def _run_model_stages(stages: Stages, plan: DemoPlan, dirs: _DemoDirs) -> None:
    """train teacher (or adopt ``plan.teacher_checkpoint``) -> train student -> convert ->
    simulate -> Lava + spike agreement -> paper-scale teacher graph -> energy."""
    prepared, teacher, student, conv = dirs.prepared, dirs.teacher, dirs.student, dirs.conv
    sim_fast, energy, agreement_file = dirs.sim_fast, dirs.energy, dirs.agreement_file
    paper_teacher = dirs.paper_teacher
    quiet = ["--no-progress"] if not sys.stdout.isatty() else []

    def sets(extra):
        return [a for s in extra for a in ("--set", s)]
    def resume(run: Path) -> list[str]:     # an interrupted run continues where it stopped
        return ["--resume"] if (run / "last.pt").is_file() else []
    # the last epoch of each run (no checkpoint selection on the test split)
    if plan.teacher_checkpoint:
        stages.run(TEACHER_GIVEN, [teacher],
                   lambda: adopt_teacher(Path(plan.teacher_checkpoint), teacher))
    else:
        stages.run("train teacher", [teacher], lambda: invoke([
            "train", "teacher", "--config", str(CONFIGS / plan.teacher_config),
            "--data", str(prepared), "--out", str(teacher), *resume(teacher), *quiet,
            *sets(plan.teacher_set)]), resumable=True)
    stages.run("train student", [student], lambda: invoke([
        "train", "student", "--config", str(CONFIGS / plan.student_config),
        "--data", str(prepared), "--teacher", str(teacher / "last.pt"), "--out", str(student),
        *resume(student), *quiet, *sets(plan.student_set)]), resumable=True)
    stages.run("convert", [conv], lambda: invoke([
        "convert", str(student / "last.pt"), "--teacher", str(teacher / "last.pt"),
        "--out", str(conv), "--force"]))
    stages.run("simulate (fast engine)", [sim_fast], lambda: invoke([
        "simulate", str(conv), "--data", str(prepared), "--split", "test", "--engine", "fast",
        "--out", str(sim_fast)]))
    stages.run("Lava fixed_pt + spike agreement", [agreement_file], lambda: _write_json(
        agreement_file, spike_agreement(conv, prepared, plan.lava_samples)))
    stages.run("paper-scale teacher graph", [paper_teacher], lambda: invoke([
        "convert", "--teacher-config", str(CONFIGS / plan.reference_teacher),
        "--dataset", plan.reference_dataset, "--out", str(paper_teacher), "--force"]))
    stages.run("energy", [energy], lambda: invoke([
        "energy", str(conv), "--activity", str(sim_fast), "--out", str(energy),
        "--reference-teacher", str(paper_teacher / "teacher.onnx"),
        *[a for p in plan.profiles for a in ("--profile", p)]]))


def adopt_teacher(checkpoint: Path, run: Path) -> None:
    """Make ``run`` the run directory of the trained teacher in ``checkpoint``: the file as
    last.pt and the metrics it was saved with as metrics.json (what the later stages and the
    report read); all or nothing. The student's training checks it fits the data."""
    import shutil

    from mksgn.train.checkpoint import load_checkpoint
    metrics = load_checkpoint(checkpoint).get("metrics", [])
    with staged(run) as tmp:
        shutil.copyfile(checkpoint, tmp / "last.pt")
        _write_json(tmp / "metrics.json", {"epochs": metrics, "adopted_from": str(checkpoint)})


def given_teacher(path: Path, benchmark: str) -> Path:
    """The checkpoint ``--teacher`` names (a run directory: its last.pt), refused in one line
    unless it is a trained teacher of ``benchmark`` (one trained on another split of the same
    skeletons may have learnt from this one's test samples)."""
    from mksgn.convert.student_io import ConvertError, load
    try:
        _, info = load(path, "teacher")
    except ConvertError as e:
        raise click.BadParameter(str(e), param_hint="--teacher") from None
    theirs = info["config"].data.benchmark
    if theirs != benchmark:
        raise click.BadParameter(f"{info['file']}: a teacher of the {theirs} benchmark; this "
                                 f"demo's is {benchmark}", param_hint="--teacher")
    return Path(info["file"]).resolve()


def _refuse_teacher_inside(plan: DemoPlan, dirs: "_DemoDirs") -> None:
    """A given teacher inside the OUT/teacher it is to be adopted as would be removed first."""
    if plan.teacher_checkpoint and dirs.teacher.resolve() in \
            Path(plan.teacher_checkpoint).resolve().parents:
        raise click.BadParameter(f"{plan.teacher_checkpoint}: inside {dirs.teacher}, where the "
                                 f"demo adopts its teacher; copy it elsewhere first",
                                 param_hint="--teacher")


def _summarize(dirs: _DemoDirs, plan: DemoPlan, dataset: str, quick: bool,
               stages: Stages) -> tuple[Summary, dict]:
    """(the run's Summary, the spike-agreement dict) from what the stages wrote."""
    info = json.loads((dirs.prepared / plan.benchmark / "info.json").read_text())
    fast = json.loads((dirs.sim_fast / "activity.json").read_text())
    agree = json.loads(dirs.agreement_file.read_text())
    counts = info.get("counts", {})
    teacher, student = dirs.teacher, dirs.student
    summary = Summary(
        out=str(dirs.out), quick=quick, classes=int(info["num_classes"]), dataset=dataset,
        benchmark=plan.benchmark,
        train_samples=int(counts.get("train", 0)), test_samples=int(counts.get("test", 0)),
        teacher_checkpoint=plan.teacher_checkpoint,
        teacher_accuracy=_last_acc(teacher), student_accuracy=_last_acc(student),
        fast_accuracy=fast.get("accuracy"), lava_accuracy=agree.get("lava_accuracy"),
        lava_samples=int(agree.get("samples", 0)),
        teacher_best_epoch_accuracy=_best_acc(teacher),
        student_best_epoch_accuracy=_best_acc(student),
        prediction_agreement_fast_vs_pytorch=(fast.get("agreement") or {}).get("prediction_agreement"),
        spike_agreement=agree, energy=_energy_summary(dirs.energy / "energy.json"),
        stage_seconds=stages.seconds, stage_budget_seconds=plan.budget_s)
    return summary, agree


def _print_summary(console, summary: Summary, agree: dict, plan: DemoPlan, stages: Stages,
                   quick: bool) -> None:
    """The closing summary: accuracies, the Lava check, energy, the stage times."""
    console.rule("[bold]summary")
    console.print(f"accuracy (test, last epoch): teacher {_pct(summary.teacher_accuracy)} | "
                  f"student {_pct(summary.student_accuracy)} | fast engine "
                  f"{_pct(summary.fast_accuracy)}")
    console.print(f"Lava fixed_pt, {agree.get('samples')} sample(s) x {agree.get('steps')} steps: "
                  f"spikes = fast engine {_pct(agree.get('fast_vs_lava'))}, PyTorch = fast "
                  f"{_pct(agree.get('pytorch_vs_fast'))}, scores equal "
                  f"{agree.get('scores_equal_all_three')}")
    for line in energy_lines(summary.energy):
        console.print(line)
    from rich.table import Table
    table = Table(title="stage times (s)", title_justify="left")
    for col in ("stage", "seconds", "budget"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for k, v in stages.seconds.items():
        b = plan.budget_s.get(k)
        over = b is not None and not quick and v > b
        table.add_row(k, f"[red]{v}[/red]" if over else str(v), "" if b is None else str(b))
    table.add_row("total", f"{sum(stages.seconds.values()):.1f}",
                  str(sum(plan.budget_s.get(k, 0) for k in stages.seconds)))
    console.print(table)
