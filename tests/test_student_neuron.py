"""The student's CUBA neuron and quantiser against lava-dl slayer, the tests' reference
(deploy_reference.cuba_step) and the engine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mksgn import loihi
from mksgn import quant
from mksgn.train.spiking import LoihiCuba, align, cuba_states

from deploy_reference import cuba_step

lava_cuba = pytest.importorskip("lava.lib.dl.slayer.neuron.cuba")

PARAMS = [(1.0, 0.25, 0.03), (1.25, 0.5, 0.0), (0.5, 1.0, 0.1), (2.0, 0.0, 0.5)]


@pytest.mark.parametrize("threshold,cd,vd", PARAMS)
def test_neuron_matches_slayer_cuba(threshold, cd, vd):
    """Same input -> slayer's CUBA current/voltage (scaled by 4096) equal our integer u / v."""
    g = torch.Generator().manual_seed(1)
    a = torch.randint(-200, 300, (3, 7, 12), generator=g).double()   # a-units, 12 steps
    ours = LoihiCuba(threshold, cd, vd)
    ours.record_states = True
    s = ours(a)
    u, v, spk = ours.last_states
    ref = lava_cuba.Neuron(threshold, cd, vd)
    current, voltage = ref.dynamics((a / 64).float())
    ref_s = ref.spike(voltage)
    # slayer's voltage trace is before the reset; ours after it
    v_pre = torch.where(spk, torch.round(voltage.double() * 4096).long(), v)
    assert torch.equal(torch.round(current.double() * 4096).long(), u)
    assert torch.equal(torch.round(voltage.double() * 4096).long(), v_pre)
    assert torch.equal(ref_s.bool(), spk)
    assert torch.equal(s.s.bool(), spk)
    assert ours.params == loihi.CubaParams(ref.cx_current_decay, ref.cx_voltage_decay,
                                           ref.v_th_mant)


def test_neuron_matches_loihi_cuba_step_with_bias():
    p = loihi.CubaParams(i_decay=1024, v_decay=123, vth_mant=80)
    rng = np.random.default_rng(2)
    a = rng.integers(-300, 300, (4, 5, 10))
    bias = rng.integers(-100, 100, (4, 5))
    u_t, v_t, s_t, _ = cuba_states(torch.as_tensor(a), torch.as_tensor(bias) << 6, p)
    u = np.zeros((4, 5), np.int64)
    v = np.zeros((4, 5), np.int64)
    for t in range(10):
        u, v, s = cuba_step(u, v, a[..., t], bias << 6, p)
        assert np.array_equal(u_t[..., t].numpy(), u)
        assert np.array_equal(v_t[..., t].numpy(), v)
        assert np.array_equal(s_t[..., t].numpy(), s)


def test_neuron_matches_engine_update_including_wraps():
    """Far outside the 24-bit ranges too (int32 wraps of a << 6, u wrap, v clip)."""
    engine = pytest.importorskip("mksgn.deploy.engine")
    p = loihi.CubaParams(i_decay=300, v_decay=50, vth_mant=1000)
    rng = np.random.default_rng(3)
    a = torch.as_tensor(rng.integers(-(1 << 27), 1 << 27, (64, 16)))
    bias = torch.as_tensor(rng.integers(-4096, 4095, (64,))) << 6
    u_t, v_t, s_t, _ = cuba_states(a, bias, p)
    u = torch.zeros(64, dtype=torch.int64)
    v = torch.zeros_like(u)
    for t in range(16):
        u, v, s = engine.cuba_update(u, v, a[:, t], bias, p)
        assert torch.equal(u_t[:, t], u) and torch.equal(v_t[:, t], v) and torch.equal(s_t[:, t], s)


def test_readout_never_spikes_and_integrates():
    ro = LoihiCuba.readout()
    assert ro.params == loihi.CubaParams(4096, 0, loihi.VTH_MANT_MAX)
    a = torch.full((2, 3, 5), 1 << 14).double()     # would cross any threshold quickly
    v = ro(a)                  # a readout returns its voltage trace, never spikes
    assert ro.record_states is False and v.shape == a.shape
    expected = np.minimum(np.arange(1, 6) * ((1 << 14) << 6), loihi.UV_MAX - 1)
    assert np.array_equal(torch.round(v[0, 0] * 4096).long().numpy(), expected)


def test_surrogate_gradient_flows_through_neuron():
    ours = LoihiCuba(1.0, 0.25, 0.03, tau_grad=0.01, scale_grad=15)
    a = torch.randint(-50, 150, (2, 4, 6)).double().requires_grad_()
    s = ours(a)
    s.s.sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_quantised_weights_are_loihi_representable():
    g = torch.Generator().manual_seed(0)
    for scale in (1e-4, 0.01, 0.3, 3.0, 50.0, 1e4):
        w = torch.randn(16, 9, generator=g) * scale
        m, e = quant.quantize_weight(w)
        mi = quant.to_int(m)
        assert mi.min() >= loihi.WEIGHT_MIN and mi.max() <= loihi.WEIGHT_MAX
        assert np.all(mi % 2 == 0)
        assert quant.WEIGHT_EXP_MIN <= e <= quant.WEIGHT_EXP_MAX
        if 0.01 <= scale <= 3.0:   # exponent range not binding: error within half a step
            err = (w * 64 - m * 2.0 ** e).abs().max()
            assert err <= 2.0 ** e + 1e-6
            assert np.abs(mi).max() > 127           # the range is used (largest weight near 254)


def test_shift_floor_is_arithmetic_shift():
    acc = torch.arange(-40, 41).double()
    for e in (-3, -1, 0, 2):
        got = quant.shift_floor(acc, e).long()
        ref = acc.long() << e if e >= 0 else acc.long() >> -e
        assert torch.equal(got, ref)


def test_align_delays_and_windows():
    a = torch.arange(1, 6).double().reshape(1, 5)          # source steps 2..6
    assert torch.equal(align(a, 2, 3, 5, 0), a)             # window-aligned: identity
    full = align(a, 2, 0, 10, 1)                            # dst step t <- src step t - 2
    assert full.tolist() == [[0, 0, 0, 0, 1, 2, 3, 4, 5, 0]]
