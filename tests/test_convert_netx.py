"""The stock-netx /layer section: chain lowering (joints folded into channels) is exact, a chain
student's file loads in stock ``netx.hdf5.Network`` and runs spike-identically to our loader."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from convert_helpers import (chain_student_config, exponent_zero, sample, stock_netx_matches_engine,
                             student_checkpoint)
from mksgn import loihi, netgraph, netx_io
from mksgn.convert.convert import convert
from mksgn.convert.netx_lower import fold_array, lower, unfold_array
from mksgn.deploy import engine
from mksgn.netgraph import Encoder, Network, NeuronGroup, Synapse
from mksgn.train.student import fold_persons


def _p(rng, vth=None):
    return loihi.CubaParams(int(rng.integers(0, 4097)), int(rng.integers(0, 600)),
                            vth or int(rng.integers(20, 200)))


def hand_chain(rng) -> Network:
    """input (3, 6, 5) -graph-> (4, 6, 5) -conv (3, 3) stride (2, 2) pad (1, 1)-> (4, 3, 3)
    -conv (1, 2) dilation (1, 2)-> (2, 3, 1) -graph-> (3, 3, 1) -dense-> readout (5,)."""
    g = [NeuronGroup("in", (3, 6, 5), _p(rng)),
         NeuronGroup("g1", (4, 6, 5), _p(rng)),
         NeuronGroup("c1", (4, 3, 3), _p(rng), bias=rng.integers(-50, 80, (4, 1, 1))),
         NeuronGroup("c2", (2, 3, 1), _p(rng)),
         NeuronGroup("g2", (3, 3, 1), _p(rng), bias=rng.integers(-50, 80, (3, 3, 1))),
         NeuronGroup("ro", (5,), loihi.CubaParams(4096, 0, loihi.VTH_MANT_MAX), readout=True)]

    def w(*shape):
        x = rng.integers(-60, 80, shape) * 2
        x[rng.random(shape) < 0.3] = 0
        return x.astype(np.int32)

    s = [Synapse("s1", "in", "g1", "graph", w(4, 3, 5, 5)),
         Synapse("s2", "g1", "c1", "conv", w(4, 4, 3, 3), stride=(2, 2), padding=(1, 1)),
         Synapse("s3", "c1", "c2", "conv", w(2, 4, 1, 2), dilation=(1, 2)),
         Synapse("s4", "c2", "g2", "graph", w(3, 2, 1, 1)),
         Synapse("s5", "g2", "ro", "dense", w(5, 9))]
    return Network(g, s, num_steps=10, readout="ro")


def test_fold_unfold_inverse():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    f = fold_array(x)
    assert f.shape == (2, 15, 4, 1)
    assert f[1, 2 * 5 + 3, 1, 0] == x[1, 2, 1, 3]
    assert np.array_equal(unfold_array(f, 5), x)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lowered_chain_equals_original_in_engine(seed):
    rng = np.random.default_rng(seed)
    net = hand_chain(rng)
    low, layout = lower(net, netx_io.chain_order(net))
    assert layout == {"in": "plain", "g1": "folded", "c1": "folded", "c2": "folded",
                      "g2": "folded", "ro": "flat"}
    assert all(s.kind in ("conv", "dense") and s.weight_exp == 0 for s in low.synapses)
    bias = torch.tensor(rng.integers(-100, 300, (2, 3, 6, 5)))
    a = engine.run(net, None, biases={"in": bias}, record=("s", "v"))
    b = engine.run(low, None, biases={"in": bias}, record=("s", "v"))
    total = 0
    for g in net.groups:
        sa, sb = a.spikes[g.name].numpy(), b.spikes[g.name].numpy()
        if layout[g.name] == "folded":
            sa = fold_array(sa)
        assert np.array_equal(sa, sb), g.name
        total += int(sa.sum())
    assert total > 0
    assert torch.equal(a.scores, b.scores)


def test_lower_refuses_what_netx_cannot_express():
    rng = np.random.default_rng(0)
    net = hand_chain(rng)
    net.synapses[1].weight_exp = -1
    with pytest.raises(ValueError, match="s2 has weight exponent -1"):
        lower(net, netx_io.chain_order(net))
    net = hand_chain(rng)
    net.synapses[1].delay = 2
    with pytest.raises(ValueError, match="netx ignores conv delays"):
        lower(net, netx_io.chain_order(net))
    net = hand_chain(rng)           # dense into a 3-D group followed by a conv
    net.synapses[1] = Synapse("s2", "g1", "c1", "dense", rng.integers(-9, 9, (36, 120)) * 2)
    with pytest.raises(ValueError, match="after a dense layer"):
        lower(net, netx_io.chain_order(net))


# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chain_dir(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("chain")
    cfg = chain_student_config()
    path = student_checkpoint(d / "c.pt", cfg, tweak=exponent_zero)
    res = convert(path, d / "out")
    return cfg, res, d / "out"


def test_chain_student_file_has_netx_and_graph_sections(chain_dir):
    cfg, res, out = chain_dir
    assert res.report.stock_netx and res.manifest.netx["stock_netx"]
    with h5py.File(out / "model.net", "r") as h5:
        assert "layer" in h5 and "mksgn" in h5
        types = [h5["layer"][str(i)]["type"][0].decode() for i in range(len(h5["layer"]))]
    assert types == ["input", "conv", "conv", "conv", "conv", "flatten", "dense"]
    ours = netgraph.load(out / "model.net")
    mapping = ours.meta["netx"]["layers"]
    assert [m["group"] for m in mapping] == [g.name for g in netx_io.chain_order(ours)]
    back = netx_io.read(out / "model.net")             # deploy's reader of the /layer section
    assert len(back.groups) == len(ours.groups)
    for m, g in zip(mapping, back.groups):
        ref = ours.group(m["group"])
        assert g.size == ref.size and g.params.i_decay == ref.params.i_decay
        assert g.params.v_decay == ref.params.v_decay
        if not g.readout:
            assert g.params.vth_mant == ref.params.vth_mant


def test_chain_netx_section_runs_like_graph_section_in_engine(chain_dir):
    cfg, _, out = chain_dir
    ours = netgraph.load(out / "model.net")
    back = netx_io.read(out / "model.net")
    x = fold_persons(sample(cfg, 3))[:, 0]
    a = engine.run(ours, {"joint": x}, record=("s",))
    bias = engine.encode(ours.encoders[0], x)
    b = engine.run(back, None, biases={"layer0": bias}, num_steps=ours.num_steps, record=("s",))
    total = 0
    for m, g in zip(ours.meta["netx"]["layers"], back.groups):
        sa = a.spikes[m["group"]].numpy()
        sb = b.spikes[g.name].numpy()
        if m["layout"] == "folded":
            sa = fold_array(sa)
        assert np.array_equal(sa, sb.reshape(sa.shape)), m["group"]
        total += int(sa.sum())
    assert total > 0
    assert torch.equal(a.scores, b.scores)


def test_stock_netx_builds_the_chain(chain_dir):
    netx = pytest.importorskip("lava.lib.dl.netx")
    _, _, out = chain_dir
    net = netx.hdf5.Network(net_config=str(out / "model.net"))
    ours = netgraph.load(out / "model.net")
    assert len(net.layers) == len(ours.groups)
    assert tuple(net.inp.shape) == tuple(ours.groups[0].shape[::-1])


@pytest.mark.lava
@pytest.mark.slow
def test_stock_netx_in_lava_is_spike_identical_to_our_loader(chain_dir):
    pytest.importorskip("lava.lib.dl.netx")
    cfg, _, out = chain_dir
    ours, a, lr = stock_netx_matches_engine(out / "model.net", cfg)
    last = ours.meta["netx"]["layers"][-1]
    assert np.array_equal(lr.v[f"layer{last['index']}"][-1], a.scores[0].numpy())


def test_encoder_stays_host_side(chain_dir):
    _, _, out = chain_dir
    ours = netgraph.load(out / "model.net")
    assert len(ours.encoders) == 1 and isinstance(ours.encoders[0], Encoder)
    with h5py.File(out / "model.net", "r") as h5:
        assert "bias" not in h5["layer/0"]     # the input layer's bias comes from the host
