"""The throughput benchmark's FLOP counting, and a bfloat16-autocast training step of the student."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mksgn.data.layouts import get_layout
from mksgn.train.student import StudentConfig, build_student

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"
_spec = importlib.util.spec_from_file_location("train_throughput", _PATH)
tt = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tt          # its dataclasses look their module up
_spec.loader.exec_module(tt)


def test_flops_of_a_known_module_fwd_and_bwd():
    torch.manual_seed(0)
    lin = nn.Linear(8, 4, bias=False)
    conv = nn.Conv2d(2, 3, (3, 1), padding=(1, 0), bias=False)
    x = torch.randn(5, 8, requires_grad=True)     # its gradient is computed too
    img = torch.randn(1, 2, 6, 4)                 # no gradient: backward gives the weight's only

    def step():
        (lin(x).sum() + conv(img).sum()).backward()

    linear = 2 * 5 * 8 * 4                        # one (5, 8) @ (8, 4) product
    conv_fwd = 2 * (3 * 6 * 4) * (2 * 3)          # 2 x outputs x (C_in k_t k_v)
    assert tt.count_flops(step) == 3 * linear + 2 * conv_fwd


def test_peak_rate_counts_a_square_product():
    r = tt.matmul_peak(torch.float32, repeats=1, max_n=64)
    n = int(r.name.split("n=")[1])
    a, b = torch.randn(n, n), torch.randn(n, n)
    assert r.flops == 2 * n ** 3 == tt.count_flops(lambda: a @ b)
    assert len(r.seconds) == 1 and r.flop_s > 0


def test_counted_share_splits_matmuls_from_element_wise_work():
    a, b = torch.randn(16, 16), torch.randn(16, 16)
    assert tt.counted_share(lambda: a @ b) == 1.0
    assert tt.counted_share(lambda: a + b) == 0.0
    assert 0.0 < tt.counted_share(lambda: (a @ b).exp()) < 1.0


def _tiny_student():
    cfg = StudentConfig.small(frames=8, stem_channels=4, channels=(4, 8), strides=(1, 2),
                              temporal_kernel=3, persons=1)
    torch.manual_seed(0)
    return build_student(cfg, 5, get_layout("ucla"))


def _step(model, x, y, autocast: bool):
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(x)
        loss = F.cross_entropy(out.logits, y) + 0.1 * model.mi_loss(out, y)
    loss.backward()
    return loss


def test_bf16_autocast_student_step_is_finite_and_keeps_float32_bn_statistics():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 3, 8, 20, 1, generator=g) * 0.5
    y = torch.tensor([0, 1, 4])
    ref, model = _tiny_student(), _tiny_student()
    _step(ref, x, y, autocast=False)
    loss = _step(model, x, y, autocast=True)
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
    assert any(gr.abs().sum() > 0 for gr in grads)
    # the folded BN's batch statistics are taken in float32 under autocast too
    for m in model.cfg.modalities:
        bn, bn_ref = model.ssc[m].bn, ref.ssc[m].bn
        assert bn.running_mean.dtype == bn.running_var.dtype == torch.float32
        assert torch.equal(bn.running_mean, bn_ref.running_mean)
        assert torch.equal(bn.running_var, bn_ref.running_var)
