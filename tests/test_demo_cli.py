"""`mksgn demo` argument errors: one line each, exit 2, before any stage runs."""
from __future__ import annotations

from click.testing import CliRunner

from mksgn.demo import PLANS, DemoPlan, demo


def test_real_dataset_needs_an_existing_root(tmp_path):
    r = CliRunner().invoke(demo, ["--dataset", "ucla", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--dataset ucla needs --root DIR" in r.output
    r = CliRunner().invoke(demo, ["--dataset", "ucla", "--root", str(tmp_path / "nope"),
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "not a directory" in r.output
    r = CliRunner().invoke(demo, ["--root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--root is for real data" in r.output
    assert not (tmp_path / "o").exists()      # nothing written before the arguments are right


def test_plans():
    ucla = PLANS["ucla"]()
    assert ucla.teacher_config == "ucla_cpu_teacher.yaml" and ucla.benchmark == "xview"
    assert ucla.lava_samples >= 2 and sum(ucla.budget_s.values()) <= 100 * 60
    quick = DemoPlan.synthetic().quick()
    assert quick.lava_samples == 1 and "optim.epochs=1" in quick.student_set
    assert set(DemoPlan.synthetic().budget_s) >= {"train teacher", "train student", "energy"}
