"""Distillation ablation on synthetic data: the student without KD, with soft labels only, with
the FTM feature loss only, and with both - trained in one run from the same seed and teacher.

Prints test accuracy (best and last epoch), parameter count and mean firing rate (spikes per
neuron per step on the test split) per variant, and the teacher's accuracy for reference.
Data: `mksgn data synth` (8 classes, NTU format) + `mksgn data prepare`, cross-subject split,
unless --data points at a prepared benchmark. Configs: train/configs/synth_{teacher,student}.yaml.
On 2 CPU cores the default run takes ~20 minutes (teacher ~4, each student ~4); --teacher RUN
reuses a trained teacher.

    python benchmarks/kd_ablation.py [--epochs 12] [--teacher-epochs 12] [--teacher RUN] [--out DIR]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mksgn.train.config import load_config
from mksgn.train.loop import train
from mksgn.train.summary import count_params

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"
VARIANTS = {  # name -> (soft labels, FTM)
    "no KD": (False, False),
    "soft labels only": (True, False),
    "FTM only": (False, True),
    "soft labels + FTM": (True, True),
}


def mksgn(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "mksgn.pipeline.cli", *args], check=True,
                   stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="Work directory (default: a temp dir).")
    ap.add_argument("--data", type=Path, default=None, help="Prepared benchmark dir (skip synth).")
    ap.add_argument("--teacher", type=Path, default=None, help="Reuse a trained teacher run.")
    ap.add_argument("--epochs", type=int, default=12, help="Student epochs per variant.")
    ap.add_argument("--teacher-epochs", type=int, default=12)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = args.out or Path(tempfile.mkdtemp(prefix="kd_ablation_"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    data = args.data
    if data is None:
        mksgn("data", "synth", "--out", str(work / "raw"), "--dataset", "ntu60",
              "--classes", str(args.classes), "--seed", str(args.seed), "--workers", "1")
        mksgn("data", "prepare", "--dataset", "ntu60", "--root", str(work / "raw"),
              "--out", str(work / "prepared"), "--workers", "1")
        data = work / "prepared" / "xsub"
    print(f"data: {data}", flush=True)

    teacher_dir = args.teacher
    if teacher_dir is None:
        teacher_dir = work / "teacher"
        tcfg = load_config(CONFIGS / "synth_teacher.yaml",
                           {"data.prepared": str(data), "optim.epochs": args.teacher_epochs,
                            "seed": args.seed, "device": "cpu"})
        t = train(tcfg, teacher_dir, progress=False, log=lambda s: print("  teacher " + s, flush=True))
        t_params = count_params(t.model)
        t_acc, t_last = t.best_acc, t.metrics[-1]["test_acc"]
    else:
        from mksgn.train.checkpoint import load_model
        model, info = load_model(teacher_dir)
        t_params = count_params(model)
        t_acc = max(m["test_acc"] for m in info["metrics"])
        t_last = info["metrics"][-1]["test_acc"]
    # the teacher's best epoch, as the README's figures were measured (the same teacher for
    # every variant; a run directory alone now means its last.pt)
    if (Path(teacher_dir) / "best.pt").is_file():
        teacher_dir = Path(teacher_dir) / "best.pt"

    rows = []
    for name, (soft, ftm) in VARIANTS.items():
        cfg = load_config(CONFIGS / "synth_student.yaml",
                          {"data.prepared": str(data), "optim.epochs": args.epochs,
                           "seed": args.seed, "device": "cpu", "kd.soft_labels": soft,
                           "kd.ftm": ftm, "teacher": str(teacher_dir) if soft or ftm else ""})
        t0 = time.perf_counter()
        res = train(cfg, work / f"student_{name.replace(' ', '_').replace('+', 'and')}",
                    progress=False, log=lambda s, n=name: print(f"  {n}: " + s, flush=True))
        last = res.metrics[-1]
        rows.append((name, res.best_acc, last["test_acc"], count_params(res.model),
                     last["test_firing_rate"], time.perf_counter() - t0))

    n_classes = args.classes
    print()
    print(f"KD ablation on synthetic data ({n_classes} classes, chance {1 / n_classes:.3f}), "
          f"seed {args.seed}, student {args.epochs} epochs, total {time.perf_counter() - t_start:.0f} s")
    head = f"{'model':<28}{'best acc':>10}{'last acc':>10}{'params':>10}{'firing rate':>13}{'time s':>8}"
    print(head)
    print("-" * len(head))
    print(f"{'teacher (4 streams)':<28}{t_acc:>10.4f}{t_last:>10.4f}{t_params:>10,}{'-':>13}{'-':>8}")
    for name, best, last, params, rate, secs in rows:
        print(f"{'student, ' + name:<28}{best:>10.4f}{last:>10.4f}{params:>10,}{rate:>13.4f}{secs:>8.0f}")
    base = rows[0][1]
    print("accuracy gain over no KD (best acc): " + ", ".join(
        f"{name} {best - base:+.4f}" for name, best, *_ in rows[1:]))


if __name__ == "__main__":
    main()
