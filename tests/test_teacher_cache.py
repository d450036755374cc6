"""kd.teacher_draws: the teacher's outputs kept per augmentation draw (train.teacher_cache)."""
from __future__ import annotations

import pytest
import torch
from train_fakes import FakeSkeletons, tiny_student_config, tiny_teacher_config

from mksgn.data.layouts import get_layout
from mksgn.train.checkpoint import build_model, load_checkpoint, load_model
from mksgn.train.config import ConfigError
from mksgn.train.distill import Distiller, freeze
from mksgn.train.loop import train
from mksgn.train.teacher_cache import TeacherCache


def _data():
    return (FakeSkeletons(24, 4, 8, 2, train=True, seed=0),
            FakeSkeletons(12, 4, 8, 2, train=False, data_seed=1))


def _stable(rows):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("teacher")
    cfg = tiny_teacher_config()
    cfg.optim.epochs = 2
    train(cfg, out, datasets=_data(), progress=False)
    return out


def _cache(teacher_run, draws: int = 2, stages=((1, 1), (5, 2))):
    torch.manual_seed(0)
    cfg = tiny_student_config(teacher=str(teacher_run))
    cfg.kd.stages = stages
    teacher = freeze(load_model(teacher_run)[0])
    student = build_model("student", cfg.model, 4, get_layout("ucla20"))
    x = torch.stack([_data()[0][i][0] for i in range(2)])
    distiller = Distiller.for_models(cfg.kd, student, teacher, x)
    return TeacherCache(teacher, distiller, draws, 5, torch.device("cpu")), teacher, distiller


def test_kept_outputs_are_the_teachers_on_the_epochs_draw(teacher_run):
    """Epochs 1 and 3 of two draws share draw 1: the kept logits and FTM targets of any samples
    are the teacher's on the data that draw gives them (batched otherwise: float rounding)."""
    torch.set_num_threads(1)
    cache, teacher, distiller = _cache(teacher_run)
    ds = _data()[0]
    assert [cache.draw_of(e) for e in range(5)] == [0, 1, 0, 1, 0]
    assert cache.prepare(ds, 3) == 1 and cache.prepare(ds, 0) == 0
    idx = torch.tensor([7, 2, 19])
    ds.set_epoch(1)
    x = torch.stack([ds[int(i)][0] for i in idx])
    with torch.no_grad():
        want = teacher(x)
    got = cache.outputs(1, idx)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-6)
    kept = distiller.targets(got.features)
    assert len(kept) == 2
    for k, w in zip(kept, distiller.targets(want.features)):
        torch.testing.assert_close(k, w, rtol=1e-5, atol=1e-6)
    other = cache.outputs(0, idx)       # another draw: other noise, other outputs
    assert not torch.allclose(other.logits, got.logits)


def test_a_teacher_stage_matched_twice_is_refused(teacher_run):
    with pytest.raises(ValueError, match="match a teacher stage twice"):
        _cache(teacher_run, stages=((1, 1), (5, 1)))


def test_negative_teacher_draws_is_a_config_error():
    cfg = tiny_student_config()
    cfg.kd.teacher_draws = -1
    with pytest.raises(ConfigError, match="kd.teacher_draws must be >= 0"):
        cfg.validate()


@pytest.mark.slow
def test_kept_teacher_trains_like_the_live_one_then_cycles_and_resumes_exactly(tmp_path,
                                                                                teacher_run):
    """Two draws over four epochs: the first two epochs are the live teacher's run (same data,
    the same teacher outputs up to rounding), the later ones re-use draws 0 and 1 (other data
    than the live run's epochs 2-3); stopped after three epochs and resumed (draw 1 computed
    anew), the run ends with the unbroken run's metrics and weights exactly."""
    torch.set_num_threads(1)
    live = train(tiny_student_config(teacher=str(teacher_run)), None, datasets=_data(),
                 progress=False)
    cfg = tiny_student_config(teacher=str(teacher_run), teacher_draws=2)
    full = train(cfg, tmp_path / "full", datasets=_data(), progress=False)
    for a, b in zip(live.metrics[:2], full.metrics[:2]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert full.metrics[3]["train_loss"] != pytest.approx(live.metrics[3]["train_loss"],
                                                          rel=1e-4)
    train(cfg, tmp_path / "part", datasets=_data(), progress=False, stop_after=3)
    resumed = train(cfg, tmp_path / "part", datasets=_data(), progress=False, resume=True)
    assert _stable(resumed.metrics) == _stable(full.metrics)
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(load_checkpoint(tmp_path / "full" / "last.pt")["rng"]["torch"],
                       load_checkpoint(tmp_path / "part" / "last.pt")["rng"]["torch"])
