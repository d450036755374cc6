"""Put a trained student or teacher into the repository as ``models/NAME/`` (issue 21).

    .venv/bin/python tools/ship_model.py RUN/last.pt --data PREPARED/xview \\
        --out models/NAME --recipe "mksgn demo --dataset ucla --long --root all_sqe" [--force]

RUN/last.pt: the run's checkpoint (the last epoch: no selection on the test split); its kind
says what ships. Strips it for release and measures the stripped file on the whole test split:
a student is converted (``mksgn convert``), run in the fast engine (``mksgn simulate``) and
priced (``mksgn energy``, default profiles); a teacher is evaluated in PyTorch (``mksgn
evaluate``). Then writes into ``--out``, all or nothing:

    KIND.pt        student.pt or teacher.pt: the checkpoint without optimiser/scheduler/RNG/
                   distiller state
    manifest.json  the recipe that made it, its config, epochs, and what it measured
    SHA256SUMS     KIND.pt, and for a student the model.net that ``mksgn convert
                   models/NAME/student.pt`` writes (the network whose accuracy and energy the
                   manifest gives)
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from mksgn.files import atomic_write_json, atomic_write_text, sha256, staged
from mksgn.train.checkpoint import for_release, load_checkpoint, save_atomic

MKSGN = [sys.executable, "-m", "mksgn.pipeline.cli"]


def mksgn(*args: str | Path) -> None:
    subprocess.run([*MKSGN, *map(str, args)], check=True, stdout=subprocess.DEVNULL)


def convert_and_measure(checkpoint: Path, data: Path, tmp: Path) -> tuple[Path, dict]:
    """convert -> simulate (fast engine, test split) -> energy; (model.net, what they measured)."""
    mksgn("convert", checkpoint, "--out", tmp / "convert", "--force")
    mksgn("simulate", tmp / "convert", "--data", data, "--split", "test", "--engine", "fast",
          "--out", tmp / "sim")
    mksgn("energy", tmp / "convert", "--activity", tmp / "sim", "--out", tmp / "energy")
    return tmp / "convert" / "model.net", measured(tmp / "sim", tmp / "energy")


def evaluate(checkpoint: Path, data: Path, tmp: Path) -> dict:
    """``mksgn evaluate`` on the test split: what the teacher measured."""
    mksgn("evaluate", checkpoint, "--data", data, "--split", "test", "--device", "cpu",
          "--json", tmp / "eval.json")
    ev = json.loads((tmp / "eval.json").read_text())
    return {"engine": "pytorch", "device": "cpu", "cpu": cpu_name(), "split": "test",
            "correct": round(ev["acc"] * ev["samples"]), "samples": int(ev["samples"]),
            "accuracy": ev["acc"]}


def cpu_name() -> str:
    """The CPU's model name (a float result is repeatable on one kind of CPU)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")),
                platform.processor())


def measured(sim: Path, energy: Path) -> dict:
    act = json.loads((sim / "activity.json").read_text())
    if act.get("engine") != "fast" or act.get("split") != "test":
        raise SystemExit(f"{sim}/activity.json: want the fast engine on the test split, got "
                         f"{act.get('engine')} on {act.get('split')}")
    out = {"engine": "fast", "split": "test", "correct": int(act["correct"]),
           "samples": int(act["samples"]), "accuracy": act["accuracy"],
           "agreement_with_pytorch": act["agreement"]["prediction_agreement"],
           "network_sha256": act["network_sha256"]}
    e = json.loads((energy / "energy.json").read_text())
    out["energy_j_per_sample"] = {p: pj * 1e-12 for p, pj in e["student_total_pj"].items()}
    return out


def manifest(ckpt: dict, recipe: str, result: dict) -> dict:
    cfg = ckpt["config"]
    return {"schema": "mksgn-shipped/1", "recipe": recipe, "kind": ckpt["kind"],
            "layout": ckpt["layout"], "num_classes": ckpt["num_classes"],
            "epoch": ckpt["epoch"], "epochs": cfg["optim"]["epochs"], "seed": cfg["seed"],
            "checkpoint": "the last epoch (no selection on the test split)",
            "config": cfg, "last_epoch_metrics": ckpt["metrics"][-1] if ckpt["metrics"] else {},
            "train_seconds": round(sum(m.get("time_s", 0) for m in ckpt["metrics"]), 1),
            "measured": result, "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="the prepared benchmark folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--recipe", required=True, help="the one command that re-creates the run")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    if a.out.exists() and any(a.out.iterdir()) and not a.force:
        raise SystemExit(f"{a.out}: exists and is not empty (--force to replace)")
    ckpt = load_checkpoint(a.checkpoint)
    kind = ckpt["kind"]
    if ckpt["epoch"] != ckpt["config"]["optim"]["epochs"]:
        raise SystemExit(f"{a.checkpoint}: epoch {ckpt['epoch']} of "
                         f"{ckpt['config']['optim']['epochs']}; ship the run's last epoch "
                         f"(RUN/last.pt of a finished run)")
    with staged(a.out) as stage, tempfile.TemporaryDirectory(dir=a.out.parent) as tmp:
        tmp = Path(tmp)
        weights = stage / f"{kind}.pt"
        save_atomic(for_release(ckpt), weights)
        sums = {weights.name: sha256(weights)}
        if kind == "student":
            net, result = convert_and_measure(weights, a.data, tmp)
            sums["model.net"] = sha256(net)
        else:
            result = evaluate(weights, a.data, tmp)
        atomic_write_json(stage / "manifest.json", manifest(ckpt, a.recipe, result))
        atomic_write_text(stage / "SHA256SUMS", "".join(f"{h}  {n}\n" for n, h in sums.items()))
    print(f"wrote {a.out}: {kind}, {result['correct']}/{result['samples']} on the test split "
          f"({result['engine']})")


if __name__ == "__main__":
    main()
