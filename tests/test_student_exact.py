"""Bit exactness: the student in eval mode == its converted network run by the fast engine."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mksgn.data.layouts import get_layout
from mksgn.train.student import LOGIT_SCALE, StudentConfig, build_student, fold_persons

engine = pytest.importorskip("mksgn.deploy.engine")


def inputs_for(cfg, x):
    xs = fold_persons(x)
    return {m: xs[:, k] for k, m in enumerate(cfg.modalities)}


def check_exact(model, x):
    model.eval()
    cfg = model.cfg
    net = model.to_network()
    res = engine.run(net, inputs_for(cfg, x), device="cpu")
    spikes, scores = model.simulate(x)
    assert set(spikes) | {net.readout} == {g.name for g in net.groups}
    total = 0
    for name, s in spikes.items():
        assert torch.equal(s, res.spikes[name]), name
        total += int(s.sum())
    assert total > 0
    assert torch.equal(scores, res.scores)
    out = model(x)         # the S-step-per-group forward gives the same logits
    assert torch.equal(torch.round(out.logits.double() * LOGIT_SCALE).long(), res.scores)
    assert torch.equal(out.logits.double() * LOGIT_SCALE, res.scores.double())
    return res


CONFIGS = {
    "spiking-1block": dict(channels=(6,), strides=(1,)),
    "spiking-2blocks": dict(channels=(4, 8), strides=(1, 2)),
    "static-2blocks": dict(channels=(8, 4), strides=(2, 1), attention="static"),
    "none-2blocks-noresidual": dict(channels=(4, 4), strides=(1, 1), attention="none",
                                    residual=False),
    "two-modalities": dict(channels=(4,), strides=(2,), modalities=("joint", "bone_motion")),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_student_equals_engine(name):
    torch.manual_seed(0)
    cfg = StudentConfig.small(frames=8, stem_channels=4, temporal_kernel=3, **CONFIGS[name])
    model = build_student(cfg, 5, get_layout("ntu25"))
    x = torch.randn(3, len(cfg.modalities), 3, 8, 25, 2) * 0.5
    check_exact(model, x)


def test_default_six_blocks_tiny_channels_equal_engine():
    torch.manual_seed(1)
    cfg = StudentConfig(frames=8, stem_channels=4, channels=(4, 4, 8, 8, 8, 8),
                        temporal_kernel=3)           # default strides, SSC stride, attention
    model = build_student(cfg, 6, get_layout("ntu25"))
    x = torch.randn(2, 4, 3, 8, 25, 2) * 0.5
    check_exact(model, x)


def test_chain_equals_engine_ucla_layout():
    torch.manual_seed(2)
    cfg = StudentConfig.chain_config(frames=8, stem_channels=4, channels=(4, 8, 8),
                                     strides=(1, 2, 1), temporal_kernel=3)
    model = build_student(cfg, 4, get_layout("ucla20"))
    x = torch.randn(3, 1, 3, 8, 20, 2) * 0.5
    check_exact(model, x)


def test_exact_after_training_steps_and_with_clipped_inputs():
    """Trained (BN running stats moved, weights changed) and extreme inputs (int16 / 13-bit
    bias clipping) stay exact."""
    torch.manual_seed(3)
    cfg = StudentConfig.small(frames=8, stem_channels=4, channels=(4, 8), strides=(1, 2),
                              temporal_kernel=3, input_frac_bits=14)
    model = build_student(cfg, 3, get_layout("ntu25"))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    x = torch.randn(4, 4, 3, 8, 25, 2)
    y = torch.tensor([0, 1, 2, 0])
    for _ in range(3):
        out = model(x)
        loss = F.cross_entropy(out.logits, y) + model.mi_loss(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x[0] *= 40.0          # beyond the int16 input range at 14 fractional bits
    check_exact(model, x)
