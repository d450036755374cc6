"""Distillation: FTM shapes, loss terms, switches, frozen teacher."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from train_fakes import StandInStudent, global_batch

from mksgn.train.common import ModelOutput
from mksgn.train.config import KDConfig
from mksgn.train.distill import Distiller, feature_loss, freeze, soft_label_loss


def _student_out(n=4, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.rand(n, 6, 8, 20, generator=g), torch.rand(n, 8, 4, 20, generator=g)]
    return ModelOutput(torch.randn(n, classes, generator=g), [f.requires_grad_() for f in feats])


def _distiller(**kd):
    # student stages: (6 ch, 8 frames), (8 ch, 4 frames); teacher: (12, 8), (16, 8), (24, 4)
    cfg = KDConfig(stages=((0, 0), (1, 1)), w_mi=0.0, **kd)
    return Distiller(cfg, [(6, 8), (8, 4)], [(12, 8), (16, 8), (24, 4)]).eval()


def test_kd_terms_are_zero_when_student_equals_teacher_projection():
    d = _distiller()
    s = _student_out()
    with torch.no_grad():
        proj = d.translate(s.features)                 # (4, 12, 8, 20), (4, 16, 4, 20)
    # teacher stage 1 has 8 frames where the student's has 4: each frame repeated, so the
    # FTM's temporal pooling of the target returns the projection exactly
    t_feats = [proj[0], proj[1].repeat_interleave(2, dim=2), torch.zeros(4, 24, 4, 20)]
    t = ModelOutput(s.logits.detach().clone(), t_feats)
    y = torch.tensor([0, 1, 2, 3])
    total, parts = d.loss(s, t, y)
    assert parts["soft"] == 0.0
    assert parts["ftm"] == 0.0
    assert total.item() == F.cross_entropy(s.logits, y).item()
    assert soft_label_loss(s.logits, s.logits.clone(), 4.0).item() == 0.0
    assert feature_loss(proj, [p.clone() for p in proj]).item() == 0.0


def test_kd_terms_positive_and_gradients_reach_student_and_ftm_only():
    d = _distiller().train()
    s = _student_out()
    teacher = torch.nn.Linear(3, 3)
    freeze(teacher)
    t = ModelOutput(torch.randn(4, 5), [torch.rand(4, 12, 8, 20), torch.rand(4, 16, 8, 20)])
    total, parts = d.loss(s, t, torch.tensor([0, 1, 2, 3]))
    assert parts["soft"] > 0 and parts["ftm"] > 0
    total.backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in s.features)
    assert all(p.grad is not None for p in d.parameters())
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training


def test_soft_label_loss_is_hintons():
    zs, zt, temp = torch.randn(3, 6), torch.randn(3, 6), 3.0
    pt = F.softmax(zt / temp, 1)
    manual = (pt * (pt.log() - F.log_softmax(zs / temp, 1))).sum(1).mean() * temp ** 2
    assert torch.allclose(soft_label_loss(zs, zt, temp), manual, rtol=1e-5)


@pytest.mark.parametrize("kd,terms", [
    ({"soft_labels": False, "ftm": False}, {"ce"}),
    ({"ftm": False}, {"ce", "soft"}),
    ({"w_soft": 0.0}, {"ce", "ftm"}),
    ({}, {"ce", "soft", "ftm"}),
])
def test_each_term_switches_off(kd, terms):
    d = _distiller(**kd)
    s = _student_out()
    t = ModelOutput(torch.randn(4, 5), [torch.rand(4, 12, 8, 20), torch.rand(4, 16, 8, 20)])
    y = torch.tensor([0, 1, 2, 3])
    total, parts = d.loss(s, t, y)
    assert set(parts) == terms
    if terms == {"ce"}:
        assert total.item() == F.cross_entropy(s.logits, y).item()
        assert len(d.ftm) == 0


def test_distiller_from_model_shapes_and_bad_stage():
    from mksgn.data.layouts import get_layout
    from mksgn.train.teacher import TeacherConfig, build_teacher
    torch.manual_seed(0)
    teacher = freeze(build_teacher(TeacherConfig(modalities=("joint", "bone"), base_channels=4,
                                                 widths=(1, 2, 4), strides=(1, 2, 2)),
                                   4, get_layout("ucla20")))
    student = StandInStudent(4)
    x, y = global_batch()
    d = Distiller.for_models(KDConfig(stages=((0, 0), (1, 1), (2, 2))), student, teacher, x[:2])
    s_out, t_out = student(x), teacher(x)
    for p, q in zip(d.translate(s_out.features), d.targets(t_out.features)):
        assert p.shape == q.shape
    assert [tuple(p.shape[1:3]) for p in d.targets(t_out.features)] == [(4, 8), (8, 4), (16, 2)]
    with pytest.raises(ValueError, match="out of range"):
        Distiller.for_models(KDConfig(stages=((0, 7),)), student, teacher, x[:2])


def test_a_teacher_of_fewer_modalities_sees_its_own_of_the_students_input():
    from mksgn.data.layouts import get_layout
    from mksgn.train.distill import ModalitySubset, teacher_view
    from mksgn.train.teacher import TeacherConfig, build_teacher

    def tiny(modalities):
        torch.manual_seed(0)
        return freeze(build_teacher(TeacherConfig(modalities=modalities, base_channels=4,
                                                  widths=(1, 2), strides=(1, 2)),
                                    4, get_layout("ucla20")))
    both = tiny(("joint", "bone"))
    assert teacher_view(both, ("joint", "bone")) is both
    bone = tiny(("bone",))
    x, _ = global_batch(n=3)                       # (3, 2, 3, 8, 20, 2): joint, bone
    seen = teacher_view(bone, ("joint", "bone"))
    assert isinstance(seen, ModalitySubset) and len(seen.streams) == 1
    with torch.no_grad():
        got, want = seen(x), bone(x[:, 1:2])
    assert torch.equal(got.logits, want.logits)
    assert all(torch.equal(a, b) for a, b in zip(got.features, want.features))
    reordered = teacher_view(both, ("bone", "joint"))
    with torch.no_grad():
        assert torch.equal(reordered(x.flip(1)).logits, both(x).logits)
    with pytest.raises(ValueError, match=r"need \['bone'\], which the student's \['joint'\] lack"):
        teacher_view(bone, ("joint",))
