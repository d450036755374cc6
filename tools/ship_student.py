"""Put a trained student into the repository as ``models/NAME/`` (issue 21).

    .venv/bin/python tools/ship_student.py RUN/last.pt --data PREPARED/xview \\
        --out models/NAME --recipe "mksgn demo --dataset ucla --long --root all_sqe" [--force]

RUN/last.pt: the student's checkpoint (the last epoch: no selection on the test split).
Strips it for release, converts the stripped file (``mksgn convert``), runs the network on the
whole test split in the fast engine (``mksgn simulate``) and prices it (``mksgn energy``, default
profiles), then writes into ``--out``, all or nothing:

    student.pt     the checkpoint without optimiser/scheduler/RNG/distiller state
    manifest.json  the recipe that made it, its config, epochs, and what it measured
    SHA256SUMS     student.pt, and the model.net that ``mksgn convert models/NAME/student.pt``
                   writes (the network whose accuracy and energy the manifest gives)
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from mksgn.files import atomic_write_json, atomic_write_text, sha256
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
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=a.out.parent) as tmp:
        tmp = Path(tmp)
        stage = tmp / "ship"
        stage.mkdir()
        save_atomic(for_release(ckpt), stage / "student.pt")
        net, result = convert_and_measure(stage / "student.pt", a.data, tmp)
        cfg = ckpt["config"]
        atomic_write_json(stage / "manifest.json", {
            "schema": "mksgn-shipped/1", "recipe": a.recipe, "kind": ckpt["kind"],
            "layout": ckpt["layout"], "num_classes": ckpt["num_classes"],
            "epoch": ckpt["epoch"], "epochs": cfg["optim"]["epochs"], "seed": cfg["seed"],
            "checkpoint": "the last epoch (no selection on the test split)",
            "config": cfg, "last_epoch_metrics": ckpt["metrics"][-1] if ckpt["metrics"] else {},
            "train_seconds": round(sum(m.get("time_s", 0) for m in ckpt["metrics"]), 1),
            "measured": result, "torch": torch.__version__})
        atomic_write_text(stage / "SHA256SUMS", f"{sha256(stage / 'student.pt')}  student.pt\n"
                                                f"{sha256(net)}  model.net\n")
        if a.out.exists():
            shutil.rmtree(a.out)
        stage.rename(a.out)
    print(f"wrote {a.out}: fast engine {result['correct']}/{result['samples']} on the test split")


if __name__ == "__main__":
    main()
