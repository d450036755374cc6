"""``tools/ship_model.py`` on tiny runs: a teacher ships as teacher.pt measured by ``mksgn
evaluate``, a student as student.pt with its converted network's checksum and fast-engine
figures, each all or nothing; an existing folder is kept unless ``--force``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from train_fakes import tiny_runs

from mksgn.files import sha256
from mksgn.train.checkpoint import RELEASE_KEYS, load_checkpoint

SHIP = Path(__file__).resolve().parents[1] / "tools" / "ship_model.py"
MKSGN = [sys.executable, "-m", "mksgn.pipeline.cli"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ship")
    return root, tiny_runs(root)


def ship(ckpt: Path, prep: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SHIP), str(ckpt), "--data", str(prep),
                           "--out", str(out), "--recipe", "mksgn demo --quick", *extra],
                          capture_output=True, text=True, timeout=600)


def sums(d: Path) -> dict[str, str]:
    return {n: h for h, n in (ln.split() for ln in (d / "SHA256SUMS").read_text().splitlines())}


@pytest.mark.slow
def test_a_teacher_ships_with_its_evaluated_accuracy(runs, tmp_path):
    root, prep = runs
    out = tmp_path / "models" / "t"
    r = ship(root / "teacher" / "last.pt", prep, out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["SHA256SUMS", "manifest.json", "teacher.pt"]
    assert sums(out) == {"teacher.pt": sha256(out / "teacher.pt")}
    assert tuple(load_checkpoint(out / "teacher.pt")) == RELEASE_KEYS
    man = json.loads((out / "manifest.json").read_text())
    assert (man["kind"], man["epoch"], man["recipe"]) == ("teacher", 1, "mksgn demo --quick")
    ev = subprocess.run([*MKSGN, "evaluate", str(out / "teacher.pt"), "--data", str(prep),
                         "--json", str(tmp_path / "ev.json")], capture_output=True, text=True)
    assert ev.returncode == 0, ev.stderr[-2000:]
    ev = json.loads((tmp_path / "ev.json").read_text())
    m = man["measured"]
    assert (m["engine"], m["correct"], m["samples"]) == (
        "pytorch", round(ev["acc"] * ev["samples"]), ev["samples"])
    assert [p.name for p in out.parent.iterdir()] == ["t"]   # no staging or temp dir left


@pytest.mark.slow
def test_a_student_ships_with_its_network_checksum(runs, tmp_path):
    root, prep = runs
    out = tmp_path / "s"
    r = ship(root / "student" / "last.pt", prep, out)
    assert r.returncode == 0, r.stderr[-2000:]
    s = sums(out)
    assert set(s) == {"student.pt", "model.net"} and s["student.pt"] == sha256(out / "student.pt")
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "student" and man["measured"]["engine"] == "fast"
    assert man["measured"]["network_sha256"] == s["model.net"]
    conv = subprocess.run([*MKSGN, "convert", str(out / "student.pt"), "--out",
                           str(tmp_path / "conv")], capture_output=True, text=True)
    assert conv.returncode == 0, conv.stderr[-2000:]
    assert sha256(tmp_path / "conv" / "model.net") == s["model.net"]


@pytest.mark.slow
def test_an_existing_folder_is_kept_unless_forced(runs, tmp_path):
    root, prep = runs
    out = tmp_path / "t"
    out.mkdir()
    (out / "keep").write_text("x")
    r = ship(root / "teacher" / "last.pt", prep, out)
    assert r.returncode != 0 and "exists and is not empty (--force to replace)" in r.stderr
    assert [p.name for p in out.iterdir()] == ["keep"]
    r = ship(root / "teacher" / "last.pt", prep, out, "--force")
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["SHA256SUMS", "manifest.json", "teacher.pt"]


@pytest.mark.slow
def test_a_partial_run_or_a_failed_measure_ships_nothing(runs, tmp_path):
    import torch
    root, prep = runs
    ckpt = load_checkpoint(root / "teacher" / "last.pt")
    ckpt["config"]["optim"]["epochs"] = 5                 # as if stopped after 1 of 5 epochs
    torch.save(ckpt, tmp_path / "partial.pt")
    r = ship(tmp_path / "partial.pt", prep, tmp_path / "a")
    assert r.returncode != 0 and "epoch 1 of 5; ship the run's last epoch" in r.stderr
    r = ship(root / "student" / "last.pt", tmp_path / "no-such-data", tmp_path / "b")
    assert r.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partial.pt"]   # no a/, b/ or tmp*
