"""The energy model: exact fan-out, hand-computed synops and joules on every profile."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from mksgn import loihi, opcount
from mksgn.hw_profiles import energy as E
from mksgn.profiles import load_profile
from mksgn.hw_profiles.teacher import TeacherLayer, teacher_energy_pj
from mksgn.netgraph import Encoder, JointAttention, Network, NeuronGroup, Synapse

CP = loihi.CubaParams(1024, 512, 10)


# --- fan-out against brute-force enumeration of every synapse ---------------------------------

def brute_conv_fanout(w, src, stride, padding, dilation, groups):
    c_dst, c_in_g, kt, kv = w.shape
    c_src, t, v = src
    dst_t = (t + 2 * padding[0] - dilation[0] * (kt - 1) - 1) // stride[0] + 1
    dst_v = (v + 2 * padding[1] - dilation[1] * (kv - 1) - 1) // stride[1] + 1
    fo = np.zeros(src, np.int64)
    out_per_group = c_dst // groups
    for o, to, vo in itertools.product(range(c_dst), range(dst_t), range(dst_v)):
        g = o // out_per_group
        for ci, a, b in itertools.product(range(c_in_g), range(kt), range(kv)):
            ti = to * stride[0] - padding[0] + a * dilation[0]
            vi = vo * stride[1] - padding[1] + b * dilation[1]
            if 0 <= ti < t and 0 <= vi < v and w[o, ci, a, b] != 0:
                fo[g * c_in_g + ci, ti, vi] += 1
    return fo, (c_dst, dst_t, dst_v)


@pytest.mark.parametrize("stride,padding,dilation,groups", [
    ((1, 1), (0, 0), (1, 1), 1), ((2, 1), (1, 0), (1, 1), 1), ((1, 2), (2, 1), (2, 1), 2),
    ((3, 1), (4, 0), (1, 1), 4)])
def test_conv_fan_out_is_exact(stride, padding, dilation, groups):
    rng = np.random.default_rng(1)
    src = (4, 9, 5)
    w = rng.integers(-3, 3, (4, 4 // groups, 3, 2)) * (rng.random((4, 4 // groups, 3, 2)) < 0.6)
    syn = Synapse("c", "a", "b", "conv", w, stride=stride, padding=padding, dilation=dilation,
                  groups=groups)
    want, dst = brute_conv_fanout(w, src, stride, padding, dilation, groups)
    got = opcount.fan_out(syn, src, dst)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


def test_dense_and_graph_fan_out_count_nonzeros():
    rng = np.random.default_rng(2)
    wd = rng.integers(-2, 3, (5, 2 * 3 * 2))
    syn = Synapse("d", "a", "b", "dense", wd)
    np.testing.assert_array_equal(opcount.fan_out(syn, (2, 3, 2), (5,)),
                                  (wd != 0).sum(0).reshape(2, 3, 2))
    wg = rng.integers(-1, 2, (3, 2, 4, 4))
    syn = Synapse("g", "a", "b", "graph", wg)
    got = opcount.fan_out(syn, (2, 5, 4), (3, 5, 4))
    want = np.zeros((2, 5, 4), np.int64)
    for o, i, v, u in itertools.product(range(3), range(2), range(4), range(4)):
        want[i, :, u] += int(wg[o, i, v, u] != 0)
    np.testing.assert_array_equal(got, want)


def test_cores_reached_counts_distinct_destination_cores():
    # dense (4 dst, 3 src): column 0 hits dst 0 and 3, column 1 hits dst 1, column 2 nothing.
    w = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 0], [5, 0, 0]])
    syn = Synapse("d", "a", "b", "dense", w)
    # 2 neurons per core: dst 0,1 on core 0, dst 2,3 on core 1
    np.testing.assert_array_equal(opcount.cores_reached(syn, (3,), (4,), 2), [2, 1, 0])
    np.testing.assert_array_equal(opcount.cores_reached(syn, (3,), (4,), 4), [1, 1, 0])
    np.testing.assert_array_equal(opcount.cores_reached(syn, (3,), (4,), 1), [2, 1, 0])


# --- the two-layer network with known spikes ----------------------------------------------------

def two_layer() -> tuple[Network, E.Activity]:
    """a (1, 2, 2) --conv k=(2,1) stride (2,1) pad (1,0)--> b (2, 2, 2) --dense--> out (3,) readout.

    conv taps: output t' reads input t = 2 t' - 1 + k, so input t=0 only meets tap k=1 (of t'=0)
    and input t=1 only meets tap k=0 (of t'=1). w[:, 0, :, 0] = [[3, 0], [5, 7]]:
    fan-out of a[0, 0, v] = #{o: w[o,0,1,0] != 0} = 1, of a[0, 1, v] = #{o: w[o,0,0,0] != 0} = 2.
    """
    w1 = np.zeros((2, 1, 2, 1), np.int64)
    w1[0, 0, :, 0] = [3, 0]
    w1[1, 0, :, 0] = [5, 7]
    w2 = np.array([[1, 0, 2, 0, 0, 0, 0, 1],        # column nonzeros: 2 0 1 1 0 2 0 3
                   [1, 0, 0, 0, 0, 4, 0, 1],
                   [0, 0, 0, 3, 0, 1, 0, 1]])
    net = Network(
        groups=[NeuronGroup("a", (1, 2, 2), CP), NeuronGroup("b", (2, 2, 2), CP),
                NeuronGroup("out", (3,), CP, readout=True)],
        synapses=[Synapse("ab", "a", "b", "conv", w1, stride=(2, 1), padding=(1, 0)),
                  Synapse("bo", "b", "out", "dense", w2)],
        num_steps=4, readout="out")
    counts = {"a": np.array([[[3, 1], [2, 0]]]),                 # 6 spikes over 2 samples
              "b": np.array([[[1, 0], [2, 4]], [[0, 0], [5, 1]]]),  # 13 spikes
              "out": np.zeros(3, np.int64)}
    return net, E.Activity(counts=counts, samples=2, num_steps=4)


def test_two_layer_counts_by_hand():
    net, act = two_layer()
    a, b, out = E.count_student(net, act, (1024, 2))
    # synops into b: (3*1 + 1*1 + 2*2 + 0*2) / 2 samples = 4
    assert b.synops == 4.0 and b.synapses == 1 + 1 + 2 + 2
    # synops into out: b flattened counts [1,0,2,4,0,0,5,1] . nonzeros [2,0,1,1,0,2,0,3] = 11 / 2
    assert out.synops == 5.5 and out.synapses == 9
    assert a.synops == 0.0 and a.synapses == 0
    assert (a.spikes, b.spikes, out.spikes) == (3.0, 6.5, 0.0)
    assert a.firing_rate == 3.0 / (4 * 4) and b.firing_rate == 6.5 / (8 * 4)
    # updates: 4 steps; active = spikes, readout all active
    assert (a.updates_active, a.updates_idle) == (3.0, 13.0)
    assert (b.updates_active, b.updates_idle) == (6.5, 25.5)
    assert (out.updates_active, out.updates_idle) == (12.0, 0.0)
    # deliveries, 1024 per core: every source with a target reaches 1 core
    assert b.deliveries[1024] == 6 / 2                       # every a spike has a target
    assert out.deliveries[1024] == (1 + 2 + 4 + 1) / 2       # b neurons 1, 4, 6 have no target
    # 2 per core: b's cores are flat {0,1}, {2,3}, {4,5}, {6,7}; a[0,0,v] -> b[1,0,v] = flat 4+v
    # (core 2); a[0,1,v] -> b[0,1,v], b[1,1,v] = flat 2+v and 6+v (cores 1 and 3)
    assert b.deliveries[2] == (3 * 1 + 1 * 1 + 2 * 2) / 2
    # out (3 neurons): cores {0,1}, {2}. columns: 0->{0,1}:1, 2->{0}:1, 3->{2}:1, 5->{1,2}:2,
    # 7->{0,1,2}:2;  counts [1,0,2,4,0,0,5,1]: 1*1 + 2*1 + 4*1 + 1*2 = 9
    assert out.deliveries[2] == 9 / 2


def test_two_layer_joules_on_every_profile():
    net, act = two_layer()
    profiles = [load_profile(name) for name in ("loihi", "loihi2", "spinnaker2", "truenorth",
                                                "cmos45nm_fp32", "cmos45nm_int8", "gpu", "cpu",
                                                "arm")]
    layers = E.count_student(net, act, (1024, 8192, 256), E.needed_placements(profiles))
    total = {p.name: [E.layer_energy(lc, p, net.num_steps).total for lc in layers]
             for p in profiles}
    # loihi: synops 23.6, active 81, idle 52, 1.7 per core delivery (1024 per core)
    assert total["loihi"] == [3 * 81 + 13 * 52,
                              4.0 * 23.6 + (6.5 * 81 + 25.5 * 52) + 3.0 * 1.7,
                              5.5 * 23.6 + 12 * 81 + 4.0 * 1.7]
    # loihi: a, b, out on cores 0, 1, 2, all on tile 0 (4 cores per tile): no mesh hops.
    # loihi2 (same per-op estimate): one core per tile, tiles 0, 1, 2 of a row: every delivery
    # into b (3 per sample) and into out (4 per sample) takes one east-west hop (3.0 pJ)
    assert total["loihi2"] == [total["loihi"][0], total["loihi"][1] + 3.0 * 3.0,
                               total["loihi"][2] + 4.0 * 3.0]
    assert total["spinnaker2"] == [16 * 2190.0, 4.0 * 450 + 32 * 2190.0, 5.5 * 450 + 12 * 2190.0]
    assert total["truenorth"] == [0.0, 4.0 * 26, 5.5 * 26]
    assert total["cmos45nm_fp32"] == [0.0, 4.0 * 0.9, 5.5 * 0.9]
    assert total["cmos45nm_int8"] == [0.0, 4.0 * 0.03, 5.5 * 0.03]
    # ann devices: dense every step: (synapses + neurons) x 4 steps x E_op
    assert total["gpu"] == [4 * 4 * 300.0, (6 + 8) * 4 * 300.0, (9 + 3) * 4 * 300.0]
    assert total["cpu"] == [4 * 4 * 8600.0, (6 + 8) * 4 * 8600.0, (9 + 3) * 4 * 8600.0]
    assert total["arm"] == [4 * 4 * 900.0, (6 + 8) * 4 * 900.0, (9 + 3) * 4 * 900.0]


def test_runs_per_sample_scale_updates_not_spikes():
    net, act = two_layer()
    act.runs = 4                         # two persons per sample: updates and encoders double
    a, b, out = E.count_student(net, act)
    assert (a.updates_active, a.updates_idle) == (3.0, 29.0)
    assert b.synops == 4.0 and a.firing_rate == 3.0 / 32


def test_attention_and_encoder_counts():
    t, v = 2, 3
    net = Network(
        groups=[NeuronGroup("q", (4, t, v), CP), NeuronGroup("k", (4, t, v), CP),
                NeuronGroup("x", (5, t, v), CP), NeuronGroup("y", (5, t, v), CP)],
        attentions=[JointAttention("att", "q", "k", "x", "y", shift=3)],
        encoders=[Encoder("e", "joint", "q", np.ones((4, 3, 3, 1), np.int64), np.zeros(4, np.int64),
                          input_frac_bits=8, shift=2, padding=(1, 0))],
        num_steps=2)
    counts = {"q": np.zeros((4, t, v), np.int64), "k": np.ones((4, t, v), np.int64),
              "x": np.zeros((5, t, v), np.int64), "y": np.zeros((5, t, v), np.int64)}
    counts["q"][0, 0, 0] = 2
    counts["x"][1, 1, 2] = 3
    q, k, x, y = E.count_student(net, E.Activity(counts, samples=1, num_steps=2))
    # each x spike adds a C=4 column, each q spike a D=5 row
    assert y.synops == 3 * 4 + 2 * 5 and y.attention_synops == y.synops
    assert y.dense_macs == 2 * 4 * 5 * v * t
    # encoder: T=2 with a 3-tap kernel, padding 1: in-bounds taps 2 + 2 per joint; x C_in 3, C_out 4
    assert q.encoder_macs == (2 + 2) * v * 3 * 4
    p = load_profile("cmos45nm_fp32")
    assert E.layer_energy(q, p, 2).input == (2 + 2) * v * 3 * 4 * 4.6


# --- the paper's 45 nm convention ----------------------------------------------------------------

def test_45nm_rule_reproduces_the_papers_arithmetic():
    """E_ANN = MACs x 4.6 pJ, E_SNN = SOPs x 0.9 pJ (Horowitz 2014, 45 nm fp32)."""
    fp32 = load_profile("cmos45nm_fp32")
    int8 = load_profile("cmos45nm_int8")
    assert (fp32.pj("mac"), fp32.pj("ac"), int8.pj("mac"), int8.pj("ac")) == (4.6, 0.9, 0.23, 0.03)
    macs = 1_000_000_000                         # 1 GMAC teacher
    assert teacher_energy_pj(TeacherLayer("t", macs), fp32) == macs * 4.6      # 4.6 mJ
    assert teacher_energy_pj(TeacherLayer("t", macs), fp32) * 1e-12 == pytest.approx(4.6e-3)
    # a student with 20 M synops: 0.9 pJ each; reduction 1 - 20e6 * 0.9 / (1e9 * 4.6)
    lc = E.LayerCounts("s", (1,), 1, 1, 0.0, 0.0, 20e6, 0.0, 0.0, 1.0, 0.0, 1)
    e = E.layer_energy(lc, fp32, 1)
    assert e.total == 20e6 * 0.9
    assert 100 * (1 - e.total / (macs * 4.6)) == 100 * (1 - 18e6 / 4.6e9)
    assert round(100 * (1 - e.total / (macs * 4.6)), 2) == 99.61
