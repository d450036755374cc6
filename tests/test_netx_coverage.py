"""Every neuron and layer type stock lava-dl netx builds, run by the fast engine and compared
with Lava ``fixed_pt`` (through ``netx.hdf5.Network``) by exact equality of every layer's
output messages and neuron states at every step, on small random networks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mksgn import netx_io
from mksgn.deploy import engine

from netx_files import Writer, cuba, sdnn, weights

pytest.importorskip("lava.lib.dl.netx")
from mksgn.deploy import lava_graph  # noqa: E402

SDNN_STATES = ("sigma", "act", "residue")


def compare(path, steps, record, *, currents=None, bias=None, spikes=None, num_layers=None,
            input_shape=None, min_messages=1):
    """Run ``path`` in Lava (netx) and in the engine; assert equal outputs and states."""
    net = netx_io.read(path, num_layers=num_layers, input_shape=input_shape)
    first = net.groups[0]
    lr = lava_graph.run_netx(path, steps, input_current=currents, input_bias=bias,
                             input_spikes=spikes, record=("s", *record), num_layers=num_layers,
                             input_shape=input_shape)
    kw = {}
    if currents is not None:
        kw["currents"] = {first.name: torch.tensor(currents)[None]}
    if bias is not None:
        kw["biases"] = {first.name: torch.tensor(bias)[None]}
    if spikes is not None:
        kw["source_spikes"] = {first.name: torch.tensor(spikes)[None]}
    er = engine.run(net, None, num_steps=steps, record=("s", *record), device="cpu", **kw)
    assert set(lr.spikes) == {m["group"] for m in net.meta["layers"]}
    total = 0
    for g, s in lr.spikes.items():
        mine = er.spikes[g][0].numpy()
        assert s.shape == mine.shape, g
        assert np.array_equal(s, mine), f"output messages differ in {g}"
        total += int(np.count_nonzero(s))
    for k, per in lr.states.items():
        for g, x in per.items():
            assert np.array_equal(x, er.states[k][g][0].numpy()), f"{k} differs in {g}"
    assert total >= min_messages
    return net, lr, er


@pytest.mark.lava
@pytest.mark.parametrize("seed", [0, 1])
def test_sdnn_conv_dense_sigma_output(tmp_path, seed):
    """SDNN: Delta input, sigma-delta conv (channel bias) and dense (bias) layers with graded
    messages, and a Sigma output layer."""
    rng = np.random.default_rng(seed)
    path = tmp_path / "sdnn.net"
    with Writer(path) as w:
        w.input((2, 5, 4), sdnn(rng, vth=int(rng.integers(1, 8))))
        w.conv((3, 5, 4), weights(rng, (3, 2, 3, 3)), sdnn(rng), padding=(1, 1),
               bias=rng.integers(-20, 40, 3))
        w.flatten((60, 1, 1))
        w.dense(6, weights(rng, (6, 60)), sdnn(rng, vth=int(rng.integers(50, 400))),
                bias=rng.integers(-50, 80, 6))
        w.dense(3, weights(rng, (3, 6)), sdnn(rng, sigma_output=True))
    steps = 8
    cur = rng.integers(-40, 60, (steps, 2, 5, 4))
    net, lr, er = compare(path, steps, SDNN_STATES, currents=cur)
    assert [type(g.model).__name__ for g in net.groups] == ["Delta", "SigmaDelta", "SigmaDelta",
                                                            "Sigma"]
    assert np.abs(lr.spikes["layer3"]).max() > 1          # really graded


@pytest.mark.lava
def test_dense_delays_per_neuron_per_input_per_synapse(tmp_path):
    """DelayDense: delays per output neuron, per input neuron and per synapse (2-D), one of them
    with a delay above 62 (netx clamps) and a negative one (drops), CUBA neurons."""
    rng = np.random.default_rng(3)
    path = tmp_path / "delay.net"
    n0, n1, n2, n3 = 12, 10, 8, 5
    d2 = rng.integers(0, 6, (n3, n2)).astype(float)
    with Writer(path) as w:
        w.input((n0,), cuba(rng, vth=20))
        w.dense(n1, weights(rng, (n1, n0), -60, 200), cuba(rng), delay=rng.integers(0, 5, n1))
        w.dense(n2, weights(rng, (n2, n1), 0, 200), cuba(rng), delay=rng.integers(0, 4, n1),
                bias=rng.integers(-100, 300, n2))
        w.dense(n3, weights(rng, (n3, n2), -200, 200), cuba(rng), delay=d2 + 0.7)
    steps = 16
    bias = rng.integers(200, 2000, n0)
    net, lr, er = compare(path, steps, ("u", "v"), bias=bias)
    assert np.ndim(net.synapses[2].delay) == 2


@pytest.mark.lava
def test_sdnn_into_delayed_dense(tmp_path):
    """Graded sigma-delta messages through a DelayDense (per-synapse delays)."""
    rng = np.random.default_rng(4)
    path = tmp_path / "sd_delay.net"
    with Writer(path) as w:
        w.input((6,), sdnn(rng, vth=2))
        w.dense(7, weights(rng, (7, 6)), sdnn(rng, vth=60), delay=rng.integers(0, 4, (7, 6)),
                bias=rng.integers(-20, 20, 7))
        w.dense(4, weights(rng, (4, 7)), sdnn(rng, vth=30))
    steps = 10
    compare(path, steps, SDNN_STATES, currents=rng.integers(-30, 50, (steps, 6)))


@pytest.mark.lava
@pytest.mark.parametrize("delayed", [False, True])
def test_dense_rec(tmp_path, delayed):
    """RecurrentDense: input and recurrent weights optimised together; with delays netx drops
    the weight exponent of both synapses."""
    rng = np.random.default_rng(5 + delayed)
    path = tmp_path / "rec.net"
    n = 9
    with Writer(path) as w:
        w.input((n,), cuba(rng, vth=15))
        w.dense(n, weights(rng, (n, n), -100, 180), cuba(rng, vth=int(rng.integers(20, 80))),
                kind="dense_rec", weight_rec=weights(rng, (n, n), -120, 120),
                bias=rng.integers(-50, 100, n),
                delay=rng.integers(0, 3, n) if delayed else None)
        w.dense(4, weights(rng, (4, n)), sdnn(rng, sigma_output=True))
    steps = 14
    compare(path, steps, ("u", "v", "sigma"), bias=rng.integers(100, 1500, n))


@pytest.mark.lava
@pytest.mark.parametrize("kind", ["RF_PHASE", "RF_IZHIKEVICH"])
def test_resonators_in_complex_dense(tmp_path, kind):
    """netx builds RF / RF_IZ neurons behind ComplexDense (weight/real + weight/imag)."""
    rng = np.random.default_rng(7)
    path = tmp_path / "rf.net"
    with Writer(path) as w:
        w.input((8,), cuba(rng, vth=10))
        w.layer("dense", (6,), dict(kind=kind, sinDecay=int(rng.integers(300, 900)),
                                    cosDecay=int(rng.integers(3000, 3900)),
                                    vThMant=int(rng.integers(5, 40)), gradedSpike=False),
                weight__real=weights(rng, (6, 8), -100, 200).astype(np.float32),
                weight__imag=weights(rng, (6, 8), -200, 100).astype(np.float32))
    steps = 20
    compare(path, steps, ("real", "imag"), bias=rng.integers(100, 900, 8))


@pytest.mark.lava
def test_num_layers_and_source_input(tmp_path):
    """netx's num_layers, on a file whose first layer has no neuron (spike input)."""
    rng = np.random.default_rng(8)
    path = tmp_path / "src.net"
    with Writer(path) as w:
        w.input((2, 4, 4))
        w.conv((3, 4, 4), weights(rng, (3, 2, 3, 3), 0, 200), cuba(rng), padding=(1, 1))
        w.flatten((48, 1, 1))
        w.dense(5, weights(rng, (5, 48)), cuba(rng))
        w.dense(3, weights(rng, (3, 5)), cuba(rng))
    steps = 8
    spikes = rng.random((steps, 2, 4, 4)) < 0.5
    net, _, er = compare(path, steps, ("u", "v"), spikes=spikes, num_layers=4)
    assert [m["group"] for m in net.meta["layers"]] == ["layer1", "layer3"]
