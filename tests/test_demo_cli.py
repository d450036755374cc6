"""`mksgn demo` argument errors: one line each, exit 2, before any stage runs."""
from __future__ import annotations

from click.testing import CliRunner

from mksgn.pipeline.demo import PLANS, DemoPlan, demo, energy_lines


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


def test_energy_lines_say_what_is_compared_with_what():
    """The closing lines: a student above the teacher reads "Nx more", not a negative reduction;
    a reduction never rounds to 100%; every line fits 80 columns."""
    teachers = dict(teacher_j=4.5e-4, teacher_profile="cmos45nm_fp32",
                    paper_teacher="ntu60_xsub_teacher.yaml", paper_teacher_j=3.6e-2)
    energy = {"loihi": dict(teachers, student_j=1.94e-3),
              "cmos45nm_fp32": dict(teachers, student_j=6.52e-5),
              "cmos45nm_int8": dict(teachers, student_j=1.8e-6)}
    lines = energy_lines(energy)
    assert lines == [
        "Energy per sample: the student from its spikes on each profile, the teachers",
        "from their MACs on cmos45nm_fp32 (the paper's convention); the paper-scale",
        "teacher is ntu60_xsub_teacher.yaml's graph, untrained.",
        "                                    µJ  vs teacher here  vs paper-scale",
        "  teacher trained here          450.00",
        "  paper-scale teacher        36,000.00",
        "  student on loihi            1,940.00  4.31x more       94.61% less",
        "  student on cmos45nm_fp32       65.20  85.51% less      99.82% less",
        "  student on cmos45nm_int8        1.80  99.60% less      99.995% less",
    ]
    assert all(len(ln) <= 80 for ln in lines)
    no_paper = {k: {f: v for f, v in e.items() if not f.startswith("paper")}
                for k, e in energy.items()}
    assert energy_lines(no_paper)[-1] == "  student on cmos45nm_int8        1.80  99.60% less"
    assert energy_lines({}) == []
