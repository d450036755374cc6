"""kd.teacher_draws: the teacher's outputs kept per augmentation draw (train.teacher_cache)."""
from __future__ import annotations

import pytest
import torch
from train_fakes import (fake_splits, stable, tiny_student_config, tiny_teacher_config,
                         train_tiny_teacher)

from mksgn.data.layouts import get_layout
from mksgn.train.checkpoint import build_model, load_checkpoint, load_model
from mksgn.train.config import ConfigError
from mksgn.train.distill import Distiller, freeze
from mksgn.train.loop import train
from mksgn.train.teacher_cache import TeacherCache


_data, _stable = fake_splits, stable


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    return train_tiny_teacher(tmp_path_factory.mktemp("teacher"))


def _cache(teacher_run, draws: int = 2):
    torch.manual_seed(0)
    cfg = tiny_student_config(teacher=str(teacher_run))
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
    for draw in (1, 0):
        ds.set_epoch(draw)
        cache.keep(draw, ds)
    assert cache.has(0) and cache.has(1) and not cache.has(2)
    idx = torch.tensor([7, 2, 19])
    ds.set_epoch(1)                     # epoch 3 trains on draw 1: the data of epoch 1
    x = torch.stack([ds[int(i)][0] for i in idx])
    with torch.no_grad():
        want = distiller.teach(teacher(x))
    got = cache.outputs(1, idx)
    assert len(got.targets) == 2
    for g, w in zip([got.logits, *got.targets], [want.logits, *want.targets]):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    other = cache.outputs(0, idx)       # another draw: other noise, other outputs
    assert not torch.allclose(other.logits, got.logits)


@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_teacher_draws_config_errors(kind):
    cfg = tiny_student_config() if kind == "student" else tiny_teacher_config()
    cfg.kd.teacher_draws = -1 if kind == "student" else 2
    want = "must be >= 0" if kind == "student" else "only student runs have a teacher"
    with pytest.raises(ConfigError, match=f"kd.teacher_draws.*{want}"):
        cfg.validate()


def _cycling(ds, draws: int):
    """``ds`` drawing as epoch ``e mod draws`` by itself (what the kept run does)."""
    set_epoch = ds.set_epoch
    ds.set_epoch = lambda epoch: set_epoch(epoch % draws)
    return ds


def _real_data(root):
    from train_fakes import write_prepared
    write_prepared(root)
    cfg = tiny_student_config()
    cfg.data.prepared = str(root)
    cfg.data.benchmark = "xsub"
    return (cfg.data.dataset("train", cfg.modalities, seed=0),
            cfg.data.dataset("test", cfg.modalities))


@pytest.mark.slow
@pytest.mark.parametrize("data,soft,ftm", [("fake", True, True), ("fake", True, False),
                                           ("fake", False, True), ("real", True, True)])
def test_kept_teacher_trains_as_the_live_one_on_the_same_draws(tmp_path, teacher_run, data,
                                                                soft, ftm):
    """Four epochs over two draws: every epoch's loss terms equal (up to the teacher's float
    rounding in other batches) those of a live-teacher run on data that cycles through the
    same two draws by itself, and differ from a run whose epochs draw afresh. "real": the data
    stage's SkeletonDataset (which counts a sample's reads within an epoch)."""
    torch.set_num_threads(1)

    def datasets():
        return _data() if data == "fake" else _real_data(tmp_path / "prep")

    def run(draws: int, cycle: bool):
        cfg = tiny_student_config(teacher=str(teacher_run), soft_labels=soft, ftm=ftm,
                                  teacher_draws=draws)
        tr, te = datasets()
        return train(cfg, None, datasets=(_cycling(tr, 2) if cycle else tr, te),
                     progress=False).metrics

    kept, cycled, fresh = run(2, False), run(0, True), run(0, False)
    terms = [k for k in kept[0] if k.startswith("train_") and k != "train_firing_rate"]
    assert {"train_soft", "train_ftm"} & set(terms)
    for a, b in zip(kept, cycled):
        for k in terms:
            assert a[k] == pytest.approx(b[k], rel=1e-4), (a["epoch"], k)
    assert kept[3]["train_loss"] != pytest.approx(fresh[3]["train_loss"], rel=1e-4)


@pytest.mark.slow
def test_kept_teacher_run_resumes_exactly(tmp_path, teacher_run):
    """Stopped after three epochs of two draws and resumed (draw 1 computed anew), the run ends
    with the unbroken run's metrics, weights and random state exactly."""
    torch.set_num_threads(1)
    cfg = tiny_student_config(teacher=str(teacher_run), teacher_draws=2)
    full = train(cfg, tmp_path / "full", datasets=_data(), progress=False)
    train(cfg, tmp_path / "part", datasets=_data(), progress=False, stop_after=3)
    resumed = train(cfg, tmp_path / "part", datasets=_data(), progress=False, resume=True)
    assert _stable(resumed.metrics) == _stable(full.metrics)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "part" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
