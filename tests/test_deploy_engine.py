"""The fast engine against the integer reference (deploy_reference: its own cuba_step + loop
convolutions, the deliberate second copy of mksgn.loihi's rules)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mksgn import loihi, netgraph
from mksgn.deploy import engine
from mksgn.netgraph import Network, NeuronGroup, Synapse

from deploy_reference import cuba_step, random_graph_network, simulate


def test_cuba_update_equals_loihi_cuba_step():
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = loihi.CubaParams(int(rng.integers(0, 4097)), int(rng.integers(0, 4097)),
                             int(rng.integers(0, loihi.VTH_MANT_MAX + 1)))
        u = rng.integers(-loihi.UV_MAX + 1, loihi.UV_MAX, 500)
        v = rng.integers(-loihi.UV_MAX + 1, loihi.UV_MAX, 500)
        a = rng.integers(-(1 << 17), 1 << 17, 500)          # a << 6 up to 2**23: u wraps
        b = rng.integers(loihi.BIAS_MANT_MIN, loihi.BIAS_MANT_MAX + 1, 500) << loihi.NETX_BIAS_EXP
        ru, rv, rs = cuba_step(u, v, a, b, p)
        eu, ev, es = engine.cuba_update(*(torch.as_tensor(z) for z in (u, v, a, b)), p)
        assert np.array_equal(eu.numpy(), ru) and np.array_equal(ev.numpy(), rv)
        assert np.array_equal(es.numpy(), rs)


def test_u_wraps_like_lava_int32():
    # a << 6 beyond int32 wraps first (Lava's int32 arrays), then u wraps once by 2**24.
    a = torch.tensor([51_200_000])
    u, v, _ = engine.cuba_update(torch.tensor([0]), torch.tensor([0]), a, 0,
                                 loihi.CubaParams(0, 0, 100000))
    assert u.item() == -1_001_390_080       # measured in lava 0.10.0 PyLifModelBitAcc


@pytest.mark.parametrize("seed", range(4))
def test_engine_equals_reference_every_group_every_step(seed):
    net, inp = random_graph_network(np.random.default_rng(seed), steps=10)
    ref = simulate(net, inp)
    res = engine.run(net, {k: torch.tensor(v)[None] for k, v in inp.items()},
                     record=("s", "u", "v"), device="cpu")
    active = 0
    for g in net.groups:
        for t in range(net.num_steps):
            u, v, s = ref[g.name][t]
            assert np.array_equal(res.u[g.name][0, t].numpy(), u), (g.name, t)
            assert np.array_equal(res.v[g.name][0, t].numpy(), v), (g.name, t)
            assert np.array_equal(res.spikes[g.name][0, t].numpy(), s), (g.name, t)
            active += int(s.sum())
    assert active > 0
    assert np.array_equal(res.scores[0].numpy(), ref[net.readout][-1][1])
    assert np.array_equal(res.counts["c1"][0].numpy(),
                          sum(x[2] for x in ref["c1"]).astype(np.int32))


def test_batched_equals_single_samples_and_chunking():
    rng = np.random.default_rng(7)
    net, _ = random_graph_network(rng, steps=6)
    x = torch.tensor(rng.normal(0, 2, (5, 3, 6, 5)), dtype=torch.float32)
    whole = engine.run(net, {"joint": x}, record=("s", "v"))
    chunked = engine.Engine(net).run({"joint": x}, record=("s", "v"), batch_size=2)
    for i in range(5):
        one = engine.run(net, {"joint": x[i:i + 1]}, record=("s", "v"))
        for g in whole.spikes:
            assert torch.equal(whole.spikes[g][i], one.spikes[g][0])
            assert torch.equal(whole.v[g][i], one.v[g][0])
    for g in whole.spikes:
        assert torch.equal(whole.spikes[g], chunked.spikes[g])
    assert torch.equal(whole.scores, chunked.scores)
    assert whole.predictions().shape == (5,)


def test_float64_path_for_huge_fan_in_is_exact():
    # sum |w| over 70000 inputs exceeds 2**24: the engine must switch to float64 and stay exact.
    rng = np.random.default_rng(3)
    n_in = 70_000
    src = NeuronGroup("src", (n_in,), loihi.CubaParams(0, 0, 1), bias=np.full(n_in, 100))
    big = np.where(rng.random((4, n_in)) < 0.5, 254, -256).astype(np.int32)
    dst = NeuronGroup("dst", (4,), loihi.CubaParams(0, 0, 1), readout=True)
    net = Network([src, dst], [Synapse("s", "src", "dst", "dense", big, weight_exp=-1)],
                  num_steps=3, readout="dst")
    eng = engine.Engine(net, "cpu")
    assert eng.synapses[0].dtype == torch.float64
    res = eng.run(None, record=("u",))
    a = big.astype(np.int64).sum(axis=1) >> 1          # every source spikes at step 1
    u, _, _ = cuba_step(np.zeros(4, np.int64), np.zeros(4, np.int64), a, 0, dst.params)
    assert np.array_equal(res.u["dst"][0, 1].numpy(), u)


def test_periodic_reset_and_external_drive():
    g = NeuronGroup("in", (3,), loihi.CubaParams(0, 0, 1000))
    net = Network([g], num_steps=6)
    cur = torch.full((1, 6, 3), 10, dtype=torch.int64)
    res = engine.run(net, None, record=("u",), currents={"in": cur}, reset_interval=3)
    # group 0 resets when t % 3 == 1, i.e. before steps 1 and 4 (1-based) -> u restarts there
    assert res.u["in"][0, :, 0].tolist() == [640, 1280, 1920, 640, 1280, 1920]


def test_errors_are_clear():
    net, _ = random_graph_network(np.random.default_rng(0))
    with pytest.raises(ValueError, match="modality 'joint'"):
        engine.run(net, {"bone": torch.zeros(1, 3, 6, 5)})
    with pytest.raises(ValueError, match="encodes to"):
        engine.run(net, {"joint": torch.zeros(1, 3, 7, 5)})


def test_netgraph_roundtrip_keeps_array_delays_and_sources(tmp_path):
    net, _ = random_graph_network(np.random.default_rng(2))
    net.groups.append(NeuronGroup("ext", (4,), loihi.CubaParams(0, 0, 0), source=True))
    net.synapses.append(Synapse("ext-fc", "ext", "fc", "dense", np.ones((10, 4), np.int32)))
    netgraph.save(net, tmp_path / "m.net")
    back = netgraph.load(tmp_path / "m.net")
    assert back.group("ext").source and not back.group("fc").source
    d0 = [s for s in net.synapses if s.name == "c2-fc"][0].delay
    d1 = [s for s in back.synapses if s.name == "c2-fc"][0].delay
    assert np.array_equal(d0, d1)


def test_in_range_fast_update_equals_general_update():
    rng = np.random.default_rng(11)
    for _ in range(30):
        p = loihi.CubaParams(int(rng.integers(0, 4097)), int(rng.integers(0, 4097)),
                             int(rng.integers(0, loihi.VTH_MANT_MAX + 1)))
        u = torch.as_tensor(rng.integers(-loihi.UV_MAX + 1, loihi.UV_MAX + 1, 400))
        v = torch.as_tensor(rng.integers(-loihi.UV_MAX + 1, loihi.UV_MAX, 400))
        a = torch.as_tensor(rng.integers(-(1 << 17), (1 << 17) + 1, 400))   # |a << 6| <= 2**23
        b = torch.as_tensor(rng.integers(loihi.BIAS_MANT_MIN, loihi.BIAS_MANT_MAX + 1, 400)
                            << loihi.NETX_BIAS_EXP)
        for spiking in (True, False):
            ref = engine.cuba_update(u, v, a, b, p, spiking)
            got = engine.cuba_update_in_range(u.clone(), v.clone(), a, b, p, spiking)
            for x, y in zip(ref, got):
                assert torch.equal(x, y)
