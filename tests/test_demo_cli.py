"""`mksgn demo` argument errors (one line each, exit 2, before any stage runs), its plans, and how
it re-runs stages."""
from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mksgn.pipeline import demo as demo_module
from mksgn.pipeline.demo import PLANS, DemoPlan, _DemoDirs, _run_model_stages, demo, energy_lines
from mksgn.pipeline.stages import Stages


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
        "                                    µJ  vs its teacher   vs paper-scale",
        "  the student's teacher         450.00",
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


def test_stages_remove_an_unfinished_stage_unless_it_resumes(tmp_path):
    """An unfinished stage's outputs are not trusted (removed before it runs again), except a
    resumable one's (a training run continues from its last.pt) unless --force."""
    seen = {}

    def look(name, p):
        return lambda: seen.setdefault(name, p.exists())
    for name, resumable, force, kept in [("a", False, False, False), ("b", True, False, True),
                                         ("c", True, True, False)]:
        p = tmp_path / name
        p.mkdir()
        (p / "last.pt").write_bytes(b"x")
        Stages(tmp_path, force).run(name, [p], look(name, p), resumable=resumable)
        assert seen[name] is kept, name


def test_an_interrupted_training_stage_resumes(tmp_path, monkeypatch):
    """The demo passes --resume to a training stage that left a last.pt, and not after --force."""
    calls = []

    def fake_invoke(args):
        calls.append(args)
        if args[:2] == ["train", "student"]:
            raise KeyboardInterrupt          # interrupted here; later stages never run

    monkeypatch.setattr(demo_module, "invoke", fake_invoke)
    dirs = _DemoDirs.under(tmp_path)
    dirs.teacher.mkdir()
    (dirs.teacher / "last.pt").write_bytes(b"x")
    with pytest.raises(KeyboardInterrupt):
        _run_model_stages(Stages(tmp_path, False), DemoPlan.ucla(), dirs)
    assert [c[:2] for c in calls] == [["train", "teacher"], ["train", "student"]]
    assert "--resume" in calls[0] and "--resume" not in calls[1]
    dirs.student.mkdir()
    (dirs.student / "last.pt").write_bytes(b"x")
    calls.clear()
    with pytest.raises(KeyboardInterrupt):           # the teacher is done: only the student
        _run_model_stages(Stages(tmp_path, False), DemoPlan.ucla(), dirs)
    assert [c[:2] for c in calls] == [["train", "student"]] and "--resume" in calls[0]
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        _run_model_stages(Stages(tmp_path, True), DemoPlan.ucla(), dirs)
    assert len(calls) == 2 and not any("--resume" in c for c in calls)
    assert not (dirs.teacher / "last.pt").exists()


def test_the_long_recipe_is_the_cpu_configs_run_longer_within_150_minutes(tmp_path):
    long, short = DemoPlan.ucla_long(), DemoPlan.ucla()
    assert (long.teacher_config, long.student_config) == (short.teacher_config,
                                                          short.student_config)
    assert long.teacher_set == ("optim.epochs=24",)
    assert long.student_set == ("optim.epochs=72", "optim.weight_decay=0.05")
    assert sum(long.budget_s.values()) <= 150 * 60
    r = CliRunner().invoke(demo, ["--long", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "no long recipe for --dataset synthetic" in r.output


def test_a_seed_reaches_both_trainings():
    plan = DemoPlan.ucla_long().seeded(2)
    assert plan.teacher_set[-1] == plan.student_set[-1] == "seed=2"
    assert plan.teacher_set[:-1] == DemoPlan.ucla_long().teacher_set


def test_a_resumed_stage_counts_every_sitting(tmp_path, monkeypatch):
    """Seconds of a resumable stage add up over its interrupted sittings; a plain stage's and a
    forced one's count only the sitting that finished."""
    import json

    from mksgn.pipeline import stages as stages_module
    clock = iter(range(0, 10_000, 10))             # every call 10 s later than the last
    monkeypatch.setattr(stages_module.time, "perf_counter", lambda: next(clock))

    def stop():
        raise KeyboardInterrupt
    for _ in range(2):                             # two sittings cut short: 10 s each
        with pytest.raises(KeyboardInterrupt):
            Stages(tmp_path, False).run("train", [tmp_path / "t"], stop, resumable=True)
    saved = json.loads((tmp_path / "stages.json").read_text())
    assert saved == {"unfinished": {"train": 20.0}}
    st = Stages(tmp_path, False)
    st.run("train", [tmp_path / "t"], lambda: None, resumable=True)
    assert st.seconds["train"] == 30.0
    assert json.loads((tmp_path / "stages.json").read_text()) == {"unfinished": {},
                                                                  "train": 30.0}
    with pytest.raises(KeyboardInterrupt):
        Stages(tmp_path, False).run("plain", [tmp_path / "p"], stop)
    st = Stages(tmp_path, False)
    st.run("plain", [tmp_path / "p"], lambda: None)
    assert st.seconds["plain"] == 10.0
    with pytest.raises(KeyboardInterrupt):
        Stages(tmp_path, False).run("again", [tmp_path / "a"], stop, resumable=True)
    st = Stages(tmp_path, True)                    # --force starts the clock afresh too
    st.run("again", [tmp_path / "a"], lambda: None, resumable=True)
    assert st.seconds["again"] == 10.0


@pytest.fixture
def demo_until_data(tmp_path, monkeypatch):
    """`mksgn demo --dataset ucla ARGS` run until its data stage starts: (run, the stage's
    calls, OUT)."""
    started = []

    def first_stage(*args):
        started.append(args)
        raise Started
    monkeypatch.setattr(demo_module, "_run_data_stages", first_stage)
    root, out = tmp_path / "all_sqe", tmp_path / "o"
    root.mkdir()

    def run(*extra):
        return CliRunner().invoke(demo, ["--dataset", "ucla", "--root", str(root),
                                         "--out", str(out), *extra])
    return run, started, out


class Started(Exception):
    """Raised where a test's demo reaches its first stage (data, or the first training)."""


def test_a_re_run_into_another_recipes_out_is_refused(demo_until_data):
    """A demo's OUT remembers the recipe that trained in it: a re-run with another seed (whose
    finished stages it would otherwise reuse) is refused in one line before any stage runs;
    the same recipe with other Lava samples goes on, and --force redoes it."""
    import json
    run, started, out = demo_until_data
    r = run("--seed", "1")
    assert isinstance(r.exception, Started) and len(started) == 1
    student = json.loads((out / "plan.json").read_text())["student"]
    assert (student["source"], student["kind"], student["seed"], student["optim"]["epochs"]) == (
        "config", "student", 1, 60)
    r = run("--seed", "2")
    assert r.exit_code == 2 and len(started) == 1
    assert (f"{out / 'plan.json'}: {out} holds another recipe's job (teacher.seed: 1, now 2); "
            f"give another --out, or --force to redo it") in " ".join(r.output.split())
    r = run("--long", "--seed", "1")
    assert r.exit_code == 2 and len(started) == 1
    assert "(teacher.optim.epochs: 12, now 24)" in " ".join(r.output.split())
    assert isinstance(run("--seed", "1", "--lava-samples", "4").exception, Started)
    assert isinstance(run("--seed", "2", "--force").exception, Started) and len(started) == 3
    assert json.loads((out / "plan.json").read_text())["teacher"]["seed"] == 2
    (out / "plan.json").write_text("[1, 2]")
    r = run("--seed", "2")
    assert r.exit_code == 2 and len(started) == 3
    assert "plan.json: not a recipe (a JSON object expected); --force to rewrite it" in r.output
    (out / "plan.json").write_text("{")
    assert "plan.json: not readable as a recipe" in run("--seed", "2").output


def test_a_demo_recipe_is_the_configs_it_trains_with(demo_until_data, tmp_path, monkeypatch):
    """The recipe holds the resolved configs, not their file names and --set strings: no --seed
    and --seed 1 (the configs' own seed) are one recipe, and an edited config file is another
    one (its finished trainings were made with the old values)."""
    import shutil
    configs = tmp_path / "configs"
    shutil.copytree(demo_module.CONFIGS, configs)
    monkeypatch.setattr(demo_module, "CONFIGS", configs)
    run, started, _ = demo_until_data
    assert isinstance(run().exception, Started)
    assert isinstance(run("--seed", "1").exception, Started) and len(started) == 2
    student = configs / "ucla_cpu_student.yaml"
    student.write_text(student.read_text().replace("lr: 2.0e-3", "lr: 1.0e-3"))
    r = run()
    assert r.exit_code == 2 and len(started) == 2
    assert "(student.optim.lr: 0.002, now 0.001)" in " ".join(r.output.split())


def test_a_forced_demo_stopped_early_leaves_nothing_finished(tmp_path):
    """--force forgets the finished stages at once: a forced run (of another recipe) that stops
    before its first stage ends cannot hand the old recipe's stages to the next plain run."""
    Stages(tmp_path, False).run("train teacher", [tmp_path / "t"], lambda: None)
    assert "train teacher" in Stages(tmp_path, False).done
    Stages(tmp_path, True)                       # the forced run stops right after starting
    assert "train teacher" not in Stages(tmp_path, False).done


def test_quick_demos_default_to_their_own_out():
    """`make demo` (runs/demo) is never refused because of an earlier `mksgn demo --quick`."""
    from mksgn.pipeline.demo import _default_out
    assert _default_out("synthetic", False) == Path("runs/demo")
    assert _default_out("synthetic", False, quick=True) == Path("runs/demo-quick")
    assert _default_out("ucla", True) == Path("runs/ucla-long")
    # a demo from a given teacher is not refused because a plain one trained in runs/ucla
    assert _default_out("ucla", False, given=True) == Path("runs/ucla-given-teacher")


def test_a_terminated_resumable_stage_records_its_time(tmp_path):
    """SIGTERM (a session closing, `kill`) cuts a resumable stage short as Ctrl-C does: the
    process exits 143 and stages.json keeps the seconds spent, for the next sitting to add."""
    import json
    import signal
    import subprocess
    import sys
    import time
    # the stage as a bare function, and as the demo runs training: a verb through `invoke`
    script = """if True:
        import sys, time, click
        from pathlib import Path
        from mksgn.pipeline import cli, stages

        @click.command()
        def train():
            print('started', flush=True)
            time.sleep(60)
        cli.main = train
        fn = (lambda: stages.invoke([])) if sys.argv[2] == 'True' else train.callback
        stages.Stages(Path(sys.argv[1]), False).run('train', [Path(sys.argv[1]) / 't'], fn,
                                                    resumable=True)
    """
    for through_a_verb in (False, True):
        out = tmp_path / str(through_a_verb)
        out.mkdir()
        proc = subprocess.Popen([sys.executable, "-c", script, str(out), str(through_a_verb)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert "started" in [proc.stdout.readline().strip() for _ in range(2)]  # after the rule
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 143, through_a_verb
        finally:
            proc.kill()
        spent = json.loads((out / "stages.json").read_text())["unfinished"]["train"]
        assert spent >= 0.5


@pytest.fixture(scope="module")
def tiny_teacher_run(tmp_path_factory):
    """A tiny prepared benchmark (ucla20 layout, 4 classes) and teacher/student runs on it."""
    from train_fakes import tiny_runs
    root = tmp_path_factory.mktemp("tiny")
    return tiny_runs(root), root


def test_a_given_teacher_must_be_a_teachers_checkpoint_of_the_benchmark(tiny_teacher_run,
                                                                          tmp_path):
    from mksgn.pipeline.demo import given_teacher
    _, root = tiny_teacher_run
    assert given_teacher(root / "teacher", "xsub") == (root / "teacher" / "last.pt").resolve()
    with pytest.raises(click.BadParameter, match="a 'student' checkpoint where a teacher is"):
        given_teacher(root / "student", "xsub")
    with pytest.raises(click.BadParameter, match="a teacher of the xsub benchmark; this demo's "
                                                 "is xview"):
        given_teacher(root / "teacher", "xview")
    (tmp_path / "empty").mkdir()
    with pytest.raises(click.BadParameter, match="no last.pt or best.pt in this run directory"):
        given_teacher(tmp_path / "empty", "xsub")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(click.BadParameter, match="junk.pt: not a readable checkpoint") as e:
        given_teacher(tmp_path / "junk.pt", "xsub")
    assert "\n" not in str(e.value)


def test_an_adopted_teacher_is_a_run_directory_of_its_checkpoint(tiny_teacher_run, tmp_path):
    """The later stages read OUT/teacher/last.pt and metrics.json as if trained there; adopting
    replaces a run directory whole, and a failed adoption leaves the old one as it was."""
    import json
    from mksgn.pipeline.demo import _last_acc, adopt_teacher
    _, root = tiny_teacher_run
    run = tmp_path / "teacher"
    run.mkdir()
    (run / "stale.pt").write_text("from an earlier job")
    adopt_teacher(root / "teacher" / "last.pt", run)
    assert sorted(p.name for p in run.iterdir()) == ["last.pt", "metrics.json"]
    assert (run / "last.pt").read_bytes() == (root / "teacher" / "last.pt").read_bytes()
    trained = json.loads((root / "teacher" / "metrics.json").read_text())["epochs"]
    assert _last_acc(run) == trained[-1]["test_acc"]
    with pytest.raises(FileNotFoundError):
        adopt_teacher(tmp_path / "gone.pt", run)
    assert (run / "last.pt").read_bytes() == (root / "teacher" / "last.pt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]


@pytest.fixture
def demo_until_training(tiny_teacher_run, tmp_path, monkeypatch):
    """`mksgn demo --dataset ucla ARGS` run until its first training starts (the data stage
    copies the tiny benchmark; the plan is the synthetic one): (run, invoke's calls, OUT)."""
    import shutil
    from dataclasses import replace
    prep, _ = tiny_teacher_run
    calls = []

    def first_training(args):
        calls.append(args)
        raise Started
    monkeypatch.setattr(demo_module, "_run_data_stages", lambda stages, plan, dataset, root,
                        dirs: shutil.copytree(prep, dirs.prepared, dirs_exist_ok=True))
    monkeypatch.setattr(demo_module, "invoke", first_training)
    monkeypatch.setitem(demo_module.PLANS, "ucla",
                        lambda: replace(DemoPlan.synthetic(), dataset="ucla"))
    data, out = tmp_path / "all_sqe", tmp_path / "o"
    data.mkdir()

    def run(*args):
        return CliRunner().invoke(demo, ["--dataset", "ucla", "--root", str(data), "--out",
                                         str(out), *map(str, args)])
    return run, calls, out


def test_a_demo_with_a_given_teacher_skips_training_one(tiny_teacher_run, demo_until_training,
                                                        tmp_path):
    """--teacher: the recipe holds the checkpoint's checksum instead of a teacher config (a
    re-run with another teacher, or with a trained one, is refused), the teacher is adopted
    instead of trained, and the student is distilled from OUT/teacher/last.pt."""
    import json

    import torch

    from mksgn.files import sha256
    _, root = tiny_teacher_run
    run, calls, out = demo_until_training
    r = run("--teacher", root / "teacher")
    assert isinstance(r.exception, Started), r.output
    recipe = json.loads((out / "plan.json").read_text())
    assert recipe["teacher"] == {"source": "checkpoint",
                                 "sha256": sha256(root / "teacher" / "last.pt")}
    done = json.loads((out / "stages.json").read_text())
    assert "teacher (given)" in done and "train teacher" not in done
    assert calls[0][:2] == ["train", "student"]
    assert calls[0][calls[0].index("--teacher") + 1] == str(out / "teacher" / "last.pt")
    other = torch.load(root / "teacher" / "last.pt", weights_only=True)
    other["epoch"] += 1
    torch.save(other, tmp_path / "other.pt")
    r = run("--teacher", tmp_path / "other.pt")
    assert r.exit_code == 2 and "(teacher.sha256: " in r.output and len(calls) == 1
    r = run()
    assert r.exit_code == 2 and len(calls) == 1
    assert "(teacher.source: checkpoint, now config)" in " ".join(r.output.split())
    r = run("--teacher", out / "teacher", "--force")
    assert r.exit_code == 2 and "where the demo adopts its teacher" in r.output
    assert (out / "teacher" / "last.pt").is_file()              # nothing removed


def test_a_demo_started_before_resolved_recipes_resumes(demo_until_training):
    """An OUT/plan.json of the earlier form ([config file, *--set strings] per training) is
    read as the configs it names: the same recipe resumes, another is refused."""
    import json
    run, calls, out = demo_until_training
    out.mkdir()
    old = {"dataset": "ucla", "benchmark": "xsub", "synth": DemoPlan.synthetic().synth,
           "root": str((out.parent / "all_sqe").resolve()),
           "teacher": ["synth_teacher.yaml", *DemoPlan.synthetic().teacher_set],
           "student": ["synth_student.yaml", *DemoPlan.synthetic().student_set]}
    (out / "plan.json").write_text(json.dumps(old))
    assert isinstance(run().exception, Started) and calls[0][:2] == ["train", "teacher"]
    assert json.loads((out / "plan.json").read_text())["teacher"]["source"] == "config"
    (out / "plan.json").write_text(json.dumps({**old, "student": ["synth_student.yaml"]}))
    r = run()
    assert r.exit_code == 2 and len(calls) == 1 and "(student.data.window: 32, now 24)" in r.output
