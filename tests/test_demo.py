"""`mksgn demo --quick`: the whole pipeline end to end, as a user runs it."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.lava]

MKSGN = [sys.executable, "-m", "mksgn.pipeline.cli"]


def test_demo_quick_end_to_end_and_rerun_reuses_stages(tmp_path):
    out = tmp_path / "demo"
    first = subprocess.run([*MKSGN, "demo", "--quick", "--out", str(out)],
                           capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    summary = json.loads((out / "summary.json").read_text())
    for key in ("teacher_accuracy", "student_accuracy", "fast_accuracy", "lava_accuracy"):
        assert 0.0 <= summary[key] <= 1.0, key
    # the fast engine runs the converted network; it must agree with PyTorch on every sample
    assert summary["prediction_agreement_fast_vs_pytorch"] == 1.0
    agree = summary["spike_agreement"]
    assert agree["compared_group_steps"] > 0
    assert agree["pytorch_vs_fast"] == 1.0
    assert agree["fast_vs_lava"] == 1.0
    assert agree["scores_equal_all_three"] is True
    energy = summary["energy"]
    assert set(energy) >= {"loihi", "cmos45nm_fp32"}
    for e in energy.values():
        assert e["student_j"] > 0 and e["teacher_j"] > 0
        expected = 100 * (1 - e["student_j"] / e["teacher_j"])
        assert math.isclose(e["reduction_pct"], expected, rel_tol=1e-9, abs_tol=1e-9)
        # and against the paper-scale teacher's graph (untrained; far more MACs than the demo's)
        assert e["paper_teacher"] == "ntu60_xsub_teacher.yaml"
        assert e["paper_teacher_j"] > 10 * e["teacher_j"]
        expected = 100 * (1 - e["student_j"] / e["paper_teacher_j"])
        assert math.isclose(e["paper_reduction_pct"], expected, rel_tol=1e-9, abs_tol=1e-9)
    for f in ("report.md", "training.png", "energy/energy.png", "energy/energy.json",
              "convert/model.net", "convert/manifest.json", "sim_fast/activity.json"):
        assert (out / f).is_file(), f
    report = (out / "report.md").read_text()
    assert "![per-layer energy](energy/energy.png)" in report

    model_mtime = (out / "convert" / "model.net").stat().st_mtime_ns
    second = subprocess.run([*MKSGN, "demo", "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert second.stdout.count("done earlier") >= 8
    assert (out / "convert" / "model.net").stat().st_mtime_ns == model_mtime

    # distilling from the teacher this demo trained, into another OUT: no teacher is trained,
    # the student learns from the same teacher file, and the report says where it came from
    again = tmp_path / "again"
    third = subprocess.run([*MKSGN, "demo", "--quick", "--out", str(again),
                            "--teacher", str(out / "teacher")],
                           capture_output=True, text=True, timeout=900)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    stages = json.loads((again / "stages.json").read_text())
    assert "teacher (given)" in stages and "train teacher" not in stages
    assert (again / "teacher" / "last.pt").read_bytes() == \
        (out / "teacher" / "last.pt").read_bytes()
    assert json.loads((again / "summary.json").read_text())["teacher_accuracy"] == \
        summary["teacher_accuracy"]
    assert f"`{(out / 'teacher' / 'last.pt').resolve()}` (not trained here)" in \
        (again / "report.md").read_text()
