"""mksgn.loihi's chip rules: the update's variants agree where they hold, and each rule against
a direct statement of it (deploy_reference, numpy casts, explicit loops)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mksgn import loihi, quant

from deploy_reference import cuba_step


def _random_state(rng, n, a_max):
    u = torch.as_tensor(rng.integers(-loihi.UV_MAX + 1, loihi.UV_MAX, n))
    v = torch.as_tensor(rng.integers(-loihi.UV_MAX + 1, loihi.UV_MAX, n))
    a = torch.as_tensor(rng.integers(-a_max, a_max + 1, n))
    b = torch.as_tensor(rng.integers(loihi.BIAS_MANT_MIN, loihi.BIAS_MANT_MAX + 1, n))
    return u, v, a, loihi.effective_bias(b)


@pytest.mark.parametrize("seed", range(3))
def test_update_variants_equal_the_reference_where_they_hold(seed):
    rng = np.random.default_rng(seed)
    p = loihi.CubaParams(int(rng.integers(0, 4097)), int(rng.integers(0, 4097)),
                         int(rng.integers(0, loihi.VTH_MANT_MAX + 1)))
    a_max = loihi.UV_MAX >> loihi.ACT_SHIFT
    assert loihi.CubaInRange.holds(a_max) and not loihi.CubaInRange.holds(a_max + 1)
    u, v, a, b = _random_state(rng, 1000, a_max)
    ref = cuba_step(u.numpy(), v.numpy(), a.numpy(), b.numpy(), p)
    for rule in (loihi.Cuba, loihi.CubaChecked, loihi.CubaInRange):
        got = rule.update(u.clone(), v.clone(), a, b, p)
        assert all(np.array_equal(x.numpy(), y) for x, y in zip(got, ref)), rule.__name__


def test_no_overflow_variant_in_float64_equals_the_integer_update():
    rng = np.random.default_rng(5)
    p = loihi.CubaParams(700, 90, 40)
    steps, a_max, b_max = 8, 300, 50 << loihi.NETX_BIAS_EXP
    assert loihi.CubaNoOverflow.holds(a_max, b_max, steps)
    a = torch.as_tensor(rng.integers(-a_max, a_max + 1, (steps, 500)))
    b = torch.as_tensor(rng.integers(-b_max, b_max + 1, 500))
    ui = vi = torch.zeros(500, dtype=torch.int64)
    uf = vf = torch.zeros(500, dtype=torch.float64)
    for t in range(steps):
        ui, vi, si = loihi.Cuba.update(ui, vi, a[t], b, p)
        uf, vf, sf = loihi.CubaNoOverflow.update(uf, vf, a[t].double(), b.double(), p)
        assert torch.equal(uf.long(), ui) and torch.equal(vf.long(), vi) and torch.equal(sf, si)


def test_a_readout_never_spikes():
    p = loihi.CubaParams(0, 0, 1)
    zero = torch.zeros(3, dtype=torch.int64)
    u, v, s = loihi.Cuba.update(zero, torch.full((3,), loihi.UV_MAX - 1), zero, 0, p,
                                spiking=False)
    assert not s.any() and torch.equal(v, torch.full((3,), loihi.UV_MAX - 1))


def test_wraps_equal_numpy_integer_casts():
    x = np.random.default_rng(0).integers(-(1 << 40), 1 << 40, 2000)
    assert np.array_equal(loihi.wrap32(x), x.astype(np.int32))
    assert np.array_equal(loihi.wrap32_checked(torch.as_tensor(x)).numpy(), x.astype(np.int32))
    w24 = ((x.astype(np.int32) << 8) >> 8)                      # sign-extend the low 24 bits
    assert np.array_equal(loihi.wrap24(x), w24)
    assert np.array_equal(quant.wrap32(torch.as_tensor(x, dtype=torch.float64)).numpy(),
                          x.astype(np.int32))


def test_decay_and_scale_fraction_round_toward_zero():
    x = torch.tensor([-4097, -4096, -1, 0, 1, 4095, 4097, 1 << 23])
    assert torch.equal(loihi.decay(x, 2048), torch.tensor([-2048, -2048, 0, 0, 0, 2047, 2048,
                                                           1 << 22]))
    assert torch.equal(loihi.decay(x.double(), 2048).long(), loihi.decay(x, 2048))
    assert torch.equal(loihi.scale_fraction(x, -1024), -(x.abs() >> 2) * x.sign())


def test_joint_attention_equals_its_definition():
    rng = np.random.default_rng(2)
    q, k = (rng.integers(0, 2, (2, 3, 4, 5)) for _ in range(2))
    x = rng.integers(0, 2, (2, 6, 4, 5))
    ref = np.zeros((2, 6, 4, 5), np.int64)
    for n, d, t, v in np.ndindex(*ref.shape):
        ref[n, d, t, v] = sum(q[n, c, t, v] * k[n, c, t, u] * x[n, d, t, u]
                              for c in range(3) for u in range(5))
    assert np.array_equal(loihi.joint_attention(q, k, x), ref)
    got = loihi.joint_attention(*(torch.as_tensor(z, dtype=torch.float32) for z in (q, k, x)))
    assert np.array_equal(got.numpy(), ref)
    assert ref.max() <= loihi.attention_bound(3, 5)


def test_row_sums_per_kind_and_lava_conv_rule():
    w = np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    assert np.array_equal(loihi.row_sums(w, "conv"), w.reshape(2, -1).sum(1))
    graph = loihi.row_sums(w, "graph")                      # rows (o, v) over (i, u)
    assert graph.shape == (8,) and graph[1] == w[0, :, 1, :].sum()
    assert np.array_equal(loihi.row_sums(w, "convT"), w.sum(axis=(0, 2, 3)))
    assert loihi.row_sums(torch.as_tensor(w), "graph").tolist() == graph.tolist()
    assert loihi.lava_conv("conv", 0, 0) and loihi.synapse_sum_bits("conv", 0, 0) == 24
    for kind, exp, delay in (("conv", 1, 0), ("conv", 0, 2), ("conv", 0, np.zeros(3)),
                             ("dense", 0, 0), ("graph", 0, 0)):
        assert not loihi.lava_conv(kind, exp, delay)
        assert loihi.synapse_sum_bits(kind, exp, delay) == 32
