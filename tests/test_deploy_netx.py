"""Stock netx files: mksgn.netx_io + the fast engine against netx.hdf5.Network in Lava."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from mksgn import loihi, netx_io
from mksgn.deploy import engine
from mksgn.netgraph import Network, NeuronGroup, Synapse

pytest.importorskip("lava.lib.dl.netx")
from mksgn.deploy import lava_graph  # noqa: E402


def _assert_same(lr, er, steps, uv=True):
    assert set(lr.spikes) <= set(er.spikes)
    for g, s in lr.spikes.items():
        assert s.shape == tuple(er.spikes[g][0].shape), g
        assert np.array_equal(s, er.spikes[g][0].numpy()), f"spikes differ in {g}"
        if uv:
            assert np.array_equal(lr.u[g], er.u[g][0].numpy()), f"u differs in {g}"
            assert np.array_equal(lr.v[g], er.v[g][0].numpy()), f"v differs in {g}"


def _slayer_file(path, seed):
    slayer = pytest.importorskip("lava.lib.dl.slayer")
    torch.manual_seed(seed)
    p = {"threshold": 0.4, "current_decay": 0.3, "voltage_decay": 0.05}
    blocks = torch.nn.ModuleList([
        slayer.block.cuba.Input(p),
        slayer.block.cuba.Conv(p, 2, 4, (3, 3), padding=1, weight_scale=2),
        slayer.block.cuba.Conv(p, 4, 4, (3, 1), stride=(2, 1), padding=(1, 0), groups=2,
                               weight_scale=2),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Dense(p, 4 * 2 * 3, 7, weight_scale=3),
        slayer.block.cuba.Dense(p, 7, 3, weight_scale=3),
    ])
    x = torch.rand(1, 2, 4, 3, 4)
    for b in blocks:
        x = b(x)
    with h5py.File(path, "w") as h:
        lay = h.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(lay.create_group(str(i)))


@pytest.mark.lava
def test_slayer_export_runs_identically_in_netx_lava_and_engine(tmp_path):
    path = tmp_path / "slayer.net"
    _slayer_file(path, 0)
    net = netx_io.read(path)
    assert [g.name for g in net.groups] == ["layer0", "layer1", "layer2", "layer4", "layer5"]
    steps = 14
    bias = np.random.default_rng(0).integers(-200, 400, (2, 4, 3))
    lr = lava_graph.run_netx(path, steps, input_bias=bias, record=("s", "u", "v"))
    er = engine.run(net, None, num_steps=steps, record=("s", "u", "v"),
                    biases={"layer0": torch.tensor(bias)[None]})
    _assert_same(lr, er, steps)
    assert sum(int(s.sum()) for s in lr.spikes.values()) > 0


def _weights(rng, shape, mode):
    if mode == "mixed":
        return rng.integers(-256, 255, shape)
    if mode == "exc":
        return rng.integers(0, 256, shape)
    return rng.integers(-255, 0, shape)   # inhibitory: netx clips -256 to -255, mishandles 0s


def random_chain(rng, wrap: bool = False, source_input: bool = False) -> Network:
    """A random chain: input(C,H,W) -> conv -> conv -> dense (per-output delays) -> dense.

    Decays span [0, 4096] and thresholds [1, 2**17 - 1]; ``wrap`` makes one layer integrate a
    large positive current with no current decay, so u leaves the 24-bit range and wraps."""
    def params(big=False):
        vth = int(rng.integers(1, 60)) if not big else int(rng.integers(5000, loihi.VTH_MANT_MAX))
        return loihi.CubaParams(int(rng.choice([0, 1, rng.integers(0, 4097), 4096])),
                                int(rng.choice([0, rng.integers(0, 4097), 4096])), vth)
    c0, h, w = 2, 6, 4
    g0 = NeuronGroup("in", (c0, h, w), params(), source=source_input)
    g1 = NeuronGroup("c1", (4, 6, 4), params(), bias=rng.integers(-300, 300, (4, 1, 1)))
    g2 = NeuronGroup("c2", (6, 3, 4), params(), bias=rng.integers(-100, 100, (6, 3, 4)))
    g3 = NeuronGroup("d1", (9,), params(big=wrap), bias=rng.integers(-4096, 4096, 9))
    g4 = NeuronGroup("d2", (3,), params(), readout=bool(rng.integers(0, 2)))
    modes = rng.choice(["mixed", "exc", "inh"], 4, p=[0.6, 0.25, 0.15])
    d1w = _weights(rng, (9, 72), "exc" if wrap else modes[2])
    if wrap:
        g3 = NeuronGroup("d1", (9,), loihi.CubaParams(0, 4096, loihi.VTH_MANT_MAX), bias=None)
        d1w = rng.integers(200, 256, (9, 72))
    syn = [
        Synapse("c1", "in", "c1", "conv", _weights(rng, (4, 2, 3, 3), modes[0]), padding=(1, 1)),
        Synapse("c2", "c1", "c2", "conv", _weights(rng, (6, 2, 3, 1), modes[1]), stride=(2, 1),
                padding=(1, 0), groups=2),
        Synapse("d1", "c2", "d1", "dense", d1w, delay=rng.integers(0, 4, (9, 1))),
        Synapse("d2", "d1", "d2", "dense", _weights(rng, (3, 9), modes[3])),
    ]
    for s in syn:   # netx cannot load all-zero weights
        s.weight = np.asarray(s.weight, dtype=np.int32)
        if not s.weight.any():
            s.weight.flat[0] = 7
    g4_ro = g4.readout
    return Network([g0, g1, g2, g3, g4], syn, num_steps=16, readout="d2" if g4_ro else "")


def _write(net, path):
    with h5py.File(path, "w") as h5:
        netx_io.write_netx_layers(net, h5)


def test_reader_maps_layers_and_order(tmp_path):
    rng = np.random.default_rng(0)
    net = random_chain(rng)
    _write(net, tmp_path / "c.net")
    back = netx_io.read(tmp_path / "c.net")
    # input, conv, conv, (flatten), dense, dense
    assert [g.name for g in back.groups] == ["layer0", "layer1", "layer2", "layer4", "layer5"]
    assert [g.shape for g in back.groups] == [g.shape for g in net.groups]
    for a, b in zip(net.groups, back.groups):
        assert a.params.i_decay == b.params.i_decay and a.params.v_decay == b.params.v_decay
    assert np.array_equal(back.synapses[0].weight, net.synapses[0].weight)
    assert np.array_equal(np.broadcast_to(back.group("layer2").bias, (6, 3, 4)),
                          net.group("c2").bias)
    assert np.array_equal(back.synapses[2].delay, net.synapses[2].delay)


def test_engine_on_read_network_equals_engine_on_original(tmp_path):
    for seed in range(5):
        rng = np.random.default_rng(seed)
        net = random_chain(rng)
        _write(net, tmp_path / f"{seed}.net")
        back = netx_io.read(tmp_path / f"{seed}.net")
        bias = torch.tensor(rng.integers(-300, 600, (3, 2, 6, 4)))
        a = engine.run(net, None, biases={"in": bias}, record=("s", "v"))
        b = engine.run(back, None, biases={"layer0": bias}, record=("s", "v"),
                       num_steps=net.num_steps)
        for ga, gb in zip(net.groups, back.groups):
            assert torch.equal(a.spikes[ga.name], b.spikes[gb.name])
            assert torch.equal(a.v[ga.name], b.v[gb.name])


def test_writer_refuses_what_netx_cannot_hold(tmp_path):
    net = random_chain(np.random.default_rng(1))
    net.synapses[3].weight_exp = 1
    with pytest.raises(ValueError, match="weight_exp"):
        _write(net, tmp_path / "x.net")
    net = random_chain(np.random.default_rng(1))
    net.synapses[3].weight = -np.abs(net.synapses[3].weight) - 1
    net.synapses[3].weight[0, 0] = -256
    with pytest.raises(ValueError, match="netx would change"):
        _write(net, tmp_path / "y.net")
    net = random_chain(np.random.default_rng(1))
    net.synapses.append(Synapse("skip", "c1", "d2", "dense", np.ones((3, 96), np.int32)))
    with pytest.raises(ValueError, match="not a chain"):
        _write(net, tmp_path / "z.net")


@pytest.mark.lava
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_netx_in_lava_equals_engine(tmp_path, seed):
    rng = np.random.default_rng(100 + seed)
    net = random_chain(rng, wrap=(seed == 2))
    path = tmp_path / "r.net"
    _write(net, path)
    back = netx_io.read(path)
    steps = 16
    bias = rng.integers(-500, 1500, (2, 6, 4))
    lr = lava_graph.run_netx(path, steps, input_bias=bias, record=("s", "u", "v"))
    er = engine.run(back, None, num_steps=steps, record=("s", "u", "v"),
                    biases={"layer0": torch.tensor(bias)[None]})
    _assert_same(lr, er, steps)
    assert sum(int(s.sum()) for s in lr.spikes.values()) > 0
    if seed == 2:   # the wrap layer really left the 24-bit range and wrapped
        u = lr.u["layer4"]
        assert (np.diff(u, axis=0) < 0).any() and u.max() > loihi.UV_MAX // 2


@pytest.mark.lava
def test_netx_source_input_sequence_and_reset(tmp_path):
    rng = np.random.default_rng(7)
    net = random_chain(rng, source_input=True)
    path = tmp_path / "s.net"
    _write(net, path)
    back = netx_io.read(path)
    assert back.groups[0].source
    steps = 12
    spikes = rng.random((steps, 2, 6, 4)) < 0.4
    lr = lava_graph.run_netx(path, steps, input_spikes=spikes, reset_interval=4)
    er = engine.run(back, None, num_steps=steps, reset_interval=4,
                    source_spikes={"input": torch.tensor(spikes)[None]})
    _assert_same(lr, er, steps, uv=False)


@pytest.mark.lava
def test_netx_input_current_sequence(tmp_path):
    rng = np.random.default_rng(8)
    net = random_chain(rng)
    path = tmp_path / "c.net"
    _write(net, path)
    back = netx_io.read(path)
    steps = 10
    cur = rng.integers(-50, 200, (steps, 2, 6, 4))
    lr = lava_graph.run_netx(path, steps, input_current=cur)
    er = engine.run(back, None, num_steps=steps, currents={"layer0": torch.tensor(cur)[None]})
    _assert_same(lr, er, steps, uv=False)


def test_bad_files_give_clear_errors(tmp_path):
    p = tmp_path / "bad.net"
    with h5py.File(p, "w") as h:
        lay = h.create_group("layer/0")
        lay.create_dataset("type", (1,), "S10", [b"kwta"])
    with pytest.raises(netx_io.NetxFormatError, match="layer 0: layer type 'kwta'"):
        netx_io.read(p)
    with h5py.File(p, "w") as h:
        h.create_group("nothing")
    with pytest.raises(netx_io.NetxFormatError, match="no /layer section"):
        netx_io.read(p)
