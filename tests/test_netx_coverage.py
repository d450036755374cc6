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
            input_shape=None, min_messages=1, netx=True, compile=False):
    """Run ``path`` in Lava (through netx, or for what netx cannot build through our
    LavaNetwork of Lava processes) and in the engine; assert equal outputs and states."""
    net = netx_io.read(path, num_layers=num_layers, input_shape=input_shape)
    first = net.groups[0]
    lava_run = lava_graph.run_netx if netx else lava_graph.run_netx_graph
    lr = lava_run(path, steps, input_current=currents, input_bias=bias,
                             input_spikes=spikes, record=("s", *record), num_layers=num_layers,
                             input_shape=input_shape)
    kw = {}
    if currents is not None:
        kw["currents"] = {first.name: torch.tensor(currents)[None]}
    if bias is not None:
        kw["biases"] = {first.name: torch.tensor(bias)[None]}
    if spikes is not None:
        kw["source_spikes"] = {first.name: torch.tensor(spikes)[None]}
    er = engine.Engine(net, "cpu", compile=compile).run(None, num_steps=steps,
                                                       record=("s", *record), **kw)
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
    # the engine's three delay paths: delay line per output, gathered inputs, per-delay slots
    assert [ps.mode for ps in engine.Engine(net, "cpu").synapses] == ["out", "in", "slots"]


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


@pytest.mark.lava
def test_pool_convT_unpool_concat_in_lava_processes(tmp_path):
    """netx raises NotImplementedError for pool, convT, unpool and concat; mksgn's semantics
    (netx_io) run in the engine and, as Lava Conv/Sparse/Dense + LIF processes, in Lava."""
    rng = np.random.default_rng(9)
    path = tmp_path / "pool.net"
    with Writer(path) as w:
        w.input((2, 6, 4), cuba(rng, vth=8))                                   # 0
        w.layer("pool", (2, 3, 2), cuba(rng, vth=5), kernelSize=(2, 2), stride=(2, 2),
                padding=(0, 0), dilation=(1, 1), weight=np.full((1, 1, 2, 2), 3.0))   # 1
        w.layer("convT", (4, 6, 4), cuba(rng), weight=weights(rng, (2, 2, 2, 2), -80, 200),
                stride=(2, 2), padding=(0, 0), dilation=(1, 1), groups=2,
                bias=rng.integers(-50, 50, 4))                                  # 2
        w.layer("unpool", (4, 12, 8), dict(cuba(rng), iDecay=1024, vDecay=128, vThMant=2),
                kernelSize=(2, 2), stride=(2, 2),
                weight=np.array([[[[2.0, 1.0], [1.0, 2.0]]]]))                  # 3
        w.layer("pool", (4, 6, 4), cuba(rng, vth=4), kernelSize=(2, 2), stride=(2, 2),
                weight=np.ones((1, 1, 2, 2)))                                   # 4
        w.layer("concat", (6, 6, 4), layers=np.array([4, 0]))                   # 5
        w.conv((3, 6, 4), weights(rng, (3, 6, 3, 3), -100, 200), cuba(rng), padding=(1, 1))  # 6
        w.flatten((72, 1, 1))                                                   # 7
        w.dense(4, weights(rng, (4, 72)), cuba(rng))                            # 8
    steps = 12
    net, lr, er = compare(path, steps, ("u", "v"), bias=rng.integers(300, 1500, (2, 6, 4)),
                          netx=False)
    assert "NotImplementedError: pool is not implemented." in net.meta["netx"]
    assert {g: int(s.sum()) > 0 for g, s in lr.spikes.items()} == {g: True for g in lr.spikes}


def test_average_is_the_sum_of_equal_parts(tmp_path):
    """average: output k at step t = sum of part k's messages at step t - 1 (own semantics)."""
    rng = np.random.default_rng(10)
    path = tmp_path / "avg.net"
    with Writer(path) as w:
        w.input((12,), sdnn(rng, vth=1))
        w.dense(6, weights(rng, (6, 12)), sdnn(rng, vth=20))
        w.layer("average", (3, 1, 1))
    net = netx_io.read(path)
    steps = 9
    cur = torch.tensor(rng.integers(-30, 50, (1, steps, 12)))
    er = engine.run(net, None, num_steps=steps, currents={"layer0": cur}, device="cpu")
    x = er.spikes["layer1"][0].numpy()                      # (steps, 6) graded
    want = np.zeros((steps, 3), np.int64)
    want[1:] = x[:-1].reshape(steps - 1, 3, 2).sum(-1)
    assert np.array_equal(er.spikes["layer2"][0].numpy(), want)
    assert np.abs(want).sum() > 0


@pytest.mark.lava
def test_dense_comp_is_netx_complex_dense(tmp_path):
    """netx lists dense_comp but cannot build it (its create_complex_dense is missing); mksgn
    runs it as the ComplexDense block netx builds for a complex 'dense' layer, checked against
    Lava through that equivalent file."""
    rng = np.random.default_rng(11)
    wr, wi = weights(rng, (5, 6), -90, 200), weights(rng, (5, 6), -200, 90)
    rf = dict(kind="RF_IZHIKEVICH", sinDecay=600, cosDecay=3600, vThMant=12, gradedSpike=False)
    files = {}
    for kind in ("dense", "dense_comp"):
        files[kind] = tmp_path / f"{kind}.net"
        with Writer(files[kind]) as w:
            w.input((6,), cuba(rng, vth=10))
            w.layer(kind, (5,), rf, weight__real=wr.astype(np.float32),
                    weight__imag=wi.astype(np.float32))
    with pytest.raises(lava_graph.LavaError, match="create_complex_dense"):
        lava_graph.run_netx(files["dense_comp"], 2)
    steps, bias = 16, rng.integers(200, 900, 6)
    lr = lava_graph.run_netx(files["dense"], steps, input_bias=bias, record=("s", "real", "imag"))
    net = netx_io.read(files["dense_comp"])
    assert "create_complex_dense" in net.meta["netx"]
    er = engine.run(net, None, num_steps=steps, record=("s", "real", "imag"), device="cpu",
                    biases={"layer0": torch.tensor(bias)[None]})
    for g, s in lr.spikes.items():
        assert np.array_equal(s, er.spikes[g][0].numpy())
    for k in ("real", "imag"):
        assert np.array_equal(lr.states[k]["layer1"], er.states[k]["layer1"][0].numpy())
    assert lr.spikes["layer1"].sum() > 0


def _bad(tmp_path, name, build):
    path = tmp_path / f"{name}.net"
    with Writer(path) as w:
        build(w)
    return path


@pytest.mark.lava
def test_errors_name_layer_and_follow_netx(tmp_path):
    """Files netx rejects are rejected with netx's reason, naming the layer index and type.
    Each case holds what stock netx raises (lava-dl 0.6.0), so a netx that changes its reason
    fails here; for an unknown neuron type netx fails without one (a None ``.pop``)."""
    from lava.lib.dl import netx
    rng = np.random.default_rng(12)
    cases = {
        "delay": (lambda w: (w.input((4,), cuba(rng)),
                             w.dense(3, weights(rng, (3, 4)), cuba(rng), delay=np.ones(5))),
                  (RuntimeError, r"^Found invalid delay of shape \(5,\) to be incompatible "
                                 r"with weight of shape \(3, 4\)\.$"),
                  r"layer 1 \(dense\): Found invalid delay of shape \(5,\)"),
        "convfirst": (lambda w: w.conv((2, 3, 3), weights(rng, (2, 1, 1, 1)), cuba(rng)),
                      (RuntimeError, r"^Input shape could not be inferred\."),
                      r"layer 0 \(conv\): .*Input shape could not be inferred"),
        "convshape": (lambda w: (w.input((1, 4, 4), cuba(rng)),
                                 w.conv((2, 3, 3), weights(rng, (2, 1, 3, 3)), cuba(rng))),
                      (RuntimeError, r"^Expected synapse output shape to be \(3, 3, 2\), "
                                     r"found \(2, 2, 2\)\.$"),
                      r"layer 1 \(conv\): Expected synapse output shape to be \(3, 3, 2\)"),
        "neuron": (lambda w: (w.input((4,), cuba(rng)),
                              w.dense(3, weights(rng, (3, 4)), dict(kind="ALIF", vThMant=3))),
                   (AttributeError, r"^'NoneType' object has no attribute 'pop'$"),
                   r"layer 1 \(dense\): neuron type 'ALIF' is unknown to netx"),
    }
    for name, (build, (netx_error, netx_reason), pattern) in cases.items():
        path = _bad(tmp_path, name, build)
        with pytest.raises(netx_error, match=netx_reason):
            netx.hdf5.Network(net_config=str(path))
        with pytest.raises(netx_io.NetxFormatError, match=pattern) as e:
            netx_io.read(path)
        assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    path = _bad(tmp_path, "type", lambda w: (w.input((4,), cuba(rng)), w.layer("kwta", (3,))))
    with pytest.raises(netx_io.NetxFormatError, match=r"layer 1: layer type 'kwta' is not "):
        netx_io.read(path)


@pytest.mark.lava
@pytest.mark.slow
def test_compiled_engine_equals_lava(tmp_path):
    """Engine(compile=True): fused CUBA / sigma-delta / delta kernels give Lava's integers."""
    rng = np.random.default_rng(13)
    path = tmp_path / "mix.net"
    with Writer(path) as w:
        w.input((2, 4, 4), sdnn(rng, vth=3))
        w.conv((3, 4, 4), weights(rng, (3, 2, 3, 3)), sdnn(rng), padding=(1, 1),
               bias=rng.integers(-20, 40, 3))
        w.flatten((48, 1, 1))
        w.dense(6, weights(rng, (6, 48)), cuba(rng, vth=int(rng.integers(20, 90))),
                delay=rng.integers(0, 3, 6))
        w.dense(3, weights(rng, (3, 6)), sdnn(rng, vth=2))
    steps = 10
    compare(path, steps, ("u", "v") + SDNN_STATES, compile=True,
            currents=rng.integers(-40, 60, (steps, 2, 4, 4)))


@pytest.mark.lava
def test_slayer_sigma_delta_export(tmp_path):
    """A network exported by slayer's own sigma_delta blocks (Input, Conv, Flatten, Dense,
    Output with sigma_output) runs identically."""
    import h5py
    slayer = pytest.importorskip("lava.lib.dl.slayer")
    torch.manual_seed(0)
    p = {"threshold": 0.1, "activation": torch.nn.functional.relu}
    blocks = torch.nn.ModuleList([
        slayer.block.sigma_delta.Input(p),
        slayer.block.sigma_delta.Conv(p, 2, 4, 3, padding=1, weight_scale=2),
        slayer.block.sigma_delta.Flatten(),
        slayer.block.sigma_delta.Dense(p, 4 * 4 * 3, 6, weight_scale=2),
        slayer.block.sigma_delta.Output(p, 6, 3),
    ])
    x = torch.rand(1, 2, 4, 3, 4)
    for b in blocks:
        x = b(x)
    path = tmp_path / "slayer_sdnn.net"
    with h5py.File(path, "w") as h:
        lay = h.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(lay.create_group(str(i)))
    rng = np.random.default_rng(14)
    net, _, _ = compare(path, 8, SDNN_STATES, currents=rng.integers(-40, 60, (8, 2, 4, 3)))
    assert [type(g.model).__name__ for g in net.groups] == ["Delta", "SigmaDelta", "SigmaDelta",
                                                            "Sigma"]


@pytest.mark.lava
def test_graded_dense_overflow_wraps_like_lava(tmp_path):
    """Large graded messages into a dense layer with a negative weight exponent: Lava's Dense
    sums in int32 (wrapping) before its right shift, and so does the engine."""
    rng = np.random.default_rng(15)
    path = tmp_path / "wrap.net"
    with Writer(path) as w:
        w.input((32,), sdnn(rng, vth=1))
        w.dense(4, weights(rng, (4, 32), 0, 11) * np.array([[1], [-1], [1], [-1]]),
                sdnn(rng, vth=1))
    net = netx_io.read(path)
    assert net.synapses[0].weight_exp < 0
    steps = 6
    cur = rng.integers(60000, 120000, (steps, 32)) * np.array([1, -1, 1, -1, 1, -1])[:, None]
    compare(path, steps, SDNN_STATES, currents=cur)
    er = engine.run(net, None, num_steps=steps, currents={"layer0": torch.tensor(cur)[None]})
    x = er.spikes["layer0"][0].numpy().astype(np.int64)
    assert np.abs(x).max() * np.abs(net.synapses[0].weight).sum(1).max() >= 1 << 31


def test_cuba_bias_beyond_13_bits_is_refused(tmp_path):
    rng = np.random.default_rng(16)
    path = _bad(tmp_path, "bias", lambda w: (
        w.input((4,), cuba(rng)),
        w.dense(3, weights(rng, (3, 4)), cuba(rng), bias=np.array([6000, 0, 1]))))
    with pytest.raises(netx_io.NetxFormatError, match=r"layer 1 \(dense\): bias mantissa outside"):
        netx_io.read(path)
