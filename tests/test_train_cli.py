"""`mksgn train`, `mksgn evaluate`, `mksgn summary` end to end on a tiny prepared dataset."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from train_fakes import tiny_student_config, tiny_teacher_config, write_prepared

from mksgn.pipeline.cli import main
from mksgn.train.config import save_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_prepared(root / "prep")
    t = tiny_teacher_config()
    t.device = "auto"
    t.optim.epochs = 2
    save_config(t, root / "teacher.yaml")
    s = tiny_student_config()
    s.optim.epochs = 2
    save_config(s, root / "student.yaml")
    return root


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_train_evaluate_summary(setup):
    r = setup
    run = CliRunner()
    _ok(run.invoke(main, ["train", "teacher", "--config", str(r / "teacher.yaml"), "--data",
                          str(r / "prep"), "--out", str(r / "t"), "--no-progress",
                          "--stop-after", "1"]))
    assert len(json.loads((r / "t" / "metrics.json").read_text())["epochs"]) == 1
    _ok(run.invoke(main, ["train", "teacher", "--out", str(r / "t"), "--resume", "--no-progress"]))
    assert len(json.loads((r / "t" / "metrics.json").read_text())["epochs"]) == 2
    out = _ok(run.invoke(main, ["train", "student", "--config", str(r / "student.yaml"),
                                "--data", str(r / "prep"), "--teacher", str(r / "t"),
                                "--out", str(r / "s"), "--no-progress"]))
    assert "best test accuracy" in out
    # the run directory is stored as the file it meant, so a --resume later distils from it
    assert yaml.safe_load((r / "s" / "config.yaml").read_text())["teacher"] == \
        str(r / "t" / "last.pt")
    _ok(run.invoke(main, ["evaluate", str(r / "s"), "--json", str(r / "ev.json")]))
    ev = json.loads((r / "ev.json").read_text())
    assert ev["samples"] == 8 and 0 <= ev["acc"] <= 1 and 0 < ev["firing_rate"] < 1
    assert ev["params"] > 0 and ev["macs"] > 0
    out = _ok(run.invoke(main, ["summary", str(r / "s"), "--json"]))
    rows = json.loads(out)
    assert [x["kind"] for x in rows] == ["student", "teacher"]
    assert all(x["params"] > 0 and x["macs"] > 0 for x in rows)
    out = _ok(run.invoke(main, ["summary", str(r / "teacher.yaml"), "--num-classes", "4",
                                "--layout", "ucla20", "--json"]))
    assert json.loads(out)[0]["params"] == rows[1]["params"]


def test_bad_config_is_one_line_error(setup, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: teacher\nseeed: 1\n")
    res = CliRunner().invoke(main, ["train", "teacher", "--config", str(bad), "--out",
                                    str(tmp_path / "o")])
    assert res.exit_code == 1
    assert f"{bad}:2: seeed: unknown key" in res.output
    res = CliRunner().invoke(main, ["train", "student", "--config", str(setup / "teacher.yaml"),
                                    "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "kind is 'teacher'" in res.output


@pytest.mark.slow
def test_paper_config_summary():
    cfg = Path(__file__).parents[1] / "train" / "configs" / "ntu60_xsub_teacher.yaml"
    res = CliRunner().invoke(main, ["summary", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output)
    # 4 streams of ~1.45 M parameters; ~1.9 G MACs per stream on 64 frames (CTR-GCN: 1.97 G)
    assert row["streams"] == 4 and 5.6e6 < row["params"] < 6.0e6
    assert 7.0e9 < row["macs"] < 8.4e9


@pytest.mark.slow
def test_torchrun_two_cpu_processes(setup, tmp_path):
    """`torchrun --nproc-per-node 2` end to end on gloo: one set of files (rank 0), metrics summed
    over both processes' shards (every test sample counted exactly once)."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "mksgn.pipeline.cli", "train", "teacher", "--config", str(setup / "teacher.yaml"),
           "--data", str(setup / "prep"), "--out", str(tmp_path / "run"), "--no-progress"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert abs(r["test_acc"] * 8 - round(r["test_acc"] * 8)) < 1e-9     # 8 test samples
        assert abs(r["train_acc"] * 16 - round(r["train_acc"] * 16)) < 1e-9  # 2 x 8 per epoch
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == \
        ["best.pt", "config.yaml", "last.pt", "metrics.csv", "metrics.json"]


def test_a_run_directory_means_its_last_epoch(tmp_path):
    """best.pt is selected on the test split: a run directory given for a checkpoint (convert,
    evaluate, --teacher) must mean last.pt; best.pt only when named, or when it is all there is."""
    from mksgn.train.checkpoint import resolve
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"")
    assert resolve(run) == run / "best.pt"
    (run / "last.pt").write_bytes(b"")
    assert resolve(run) == run / "last.pt"
    assert resolve(run / "best.pt") == run / "best.pt"
    (run / "best.pt").unlink()
    (run / "last.pt").unlink()
    with pytest.raises(FileNotFoundError, match="no last.pt or best.pt"):
        resolve(run)
