"""NIR export and import (mksgn.nir_io, `mksgn export nir` / `mksgn import nir`, issue 22)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

nir = pytest.importorskip("nir")

from convert_helpers import make_student, sample, tiny_student_config  # noqa: E402
from mksgn import loihi, netgraph, nir_io  # noqa: E402
from mksgn.deploy import engine  # noqa: E402
from mksgn.pipeline.cli import main  # noqa: E402

DT = nir_io.DEFAULT_DT


@pytest.fixture(scope="module")
def static_net():
    cfg = tiny_student_config(attention="static")
    net = make_student(cfg).to_network()
    net.meta["window"] = cfg.frames
    return cfg, net


def _inputs(cfg, n=3):
    x = netgraph.fold_persons(sample(cfg, n))
    return {m: x[:, k] for k, m in enumerate(cfg.modalities)}


@pytest.mark.parametrize("p", [loihi.CubaParams(1024, 123, 64), loihi.CubaParams(4096, 0, 1),
                               loihi.CubaParams(1, 4096, 131071), loihi.CubaParams(3000, 7, 200)])
def test_parameter_mapping_round_trips(p):
    c = nir_io.loihi_to_nir_cuba(p, DT)
    back, gain = nir_io.nir_cuba_to_loihi(c, DT)
    assert back == p
    assert gain == pytest.approx(1.0, rel=1e-12)


def test_mapping_reads_snntorch_style_gains():
    """A group whose w_in is 1 (not tau_syn/dt) scales its inputs by dt/tau_syn."""
    c = nir_io.NirCuba(tau_syn=4 * DT, tau_mem=10 * DT, r=10.0, w_in=1.0, v_threshold=1.0)
    p, gain = nir_io.nir_cuba_to_loihi(c, DT)
    assert (p.i_decay, p.v_decay, p.vth_mant) == (1024, 410, 64)
    assert gain == pytest.approx(0.25)


def test_round_trip_spikes_equal_exactly(static_net, tmp_path):
    cfg, net = static_net
    path = tmp_path / "s.nir"
    nir_io.write(net, path)
    graph = nir.read(str(path))            # type-checked (the default)
    assert {type(n).__name__ for n in graph.nodes.values()} >= {"CubaLIF", "LIF", "I", "Conv1d"}
    back, report = nir_io.from_nir(graph)
    assert back.num_steps == net.num_steps
    assert all(q.rel_l2 == 0.0 for q in report.layers)
    a = engine.run(net, _inputs(cfg), device="cpu")
    b = engine.run(back, _inputs(cfg), device="cpu")          # encoders read (C, T, V) again
    assert torch.equal(a.scores, b.scores)
    for name, s in a.spikes.items():
        t = b.spikes[name].numpy()
        if s.dim() == 5:
            t = nir_io.unfold(t, s.shape[-1])
        assert np.array_equal(s.numpy(), t), name
    assert sum(int(s.sum()) for s in a.spikes.values()) > 0


def test_latency_dropped_and_recorded(static_net):
    _, net = static_net
    meta = nir_io.graph_meta(nir_io.to_nir(net))
    assert meta["latency"] == net.meta["depth"]["readout"]
    assert meta["steps"] == net.num_steps - meta["latency"]
    assert not any(isinstance(n, nir.Delay) for n in nir_io.to_nir(net).nodes.values())


def test_spiking_attention_refused_naming_the_node():
    net = make_student(tiny_student_config()).to_network()
    with pytest.raises(nir_io.NirExportError, match=r"b1/attention is spiking joint attention"):
        nir_io.to_nir(net)


def test_cli_export_refuses_attention_in_one_line(tmp_path):
    net = make_student(tiny_student_config()).to_network()
    netgraph.save(net, tmp_path / "model.net")
    r = CliRunner().invoke(main, ["export", "nir", str(tmp_path), "--out",
                                  str(tmp_path / "x.nir")])
    assert r.exit_code == 2
    assert "b1/attention" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.nir").exists()


def test_cli_export_then_import(static_net, tmp_path):
    _, net = static_net
    netgraph.save(net, tmp_path / "model.net")
    r = CliRunner().invoke(main, ["export", "nir", str(tmp_path), "--out", str(tmp_path / "s.nir")])
    assert r.exit_code == 0, r.output
    assert "type check ok" in r.output
    r = CliRunner().invoke(main, ["import", "nir", str(tmp_path / "s.nir"), "--out",
                                  str(tmp_path / "imp")])
    assert r.exit_code == 0, r.output
    back = netgraph.load(tmp_path / "imp" / "model.net")
    assert back.readout == "readout" and (tmp_path / "imp" / "import.json").is_file()


def _foreign_graph(rng):
    """An snnTorch-style graph: spike input -> Conv2d -> CubaLIF -> SumPool2d -> LIF ->
    Flatten -> Affine -> recurrent CubaLIF (a population feeding itself) -> Linear -> LI."""
    f = lambda s, x: np.full(s, x)  # noqa: E731
    cuba = lambda s: dict(tau_syn=f(s, 5e-4), tau_mem=f(s, 2e-3), r=f(s, 20.0),  # noqa: E731
                          v_leak=f(s, 0.0), v_threshold=f(s, 1.0), w_in=f(s, 5.0))
    nodes = {
        "input": nir.Input(input_type=np.array([2, 6, 6])),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=rng.normal(0, 0.6, (3, 2, 3, 3)),
                           stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(3)),
        "lif1": nir.CubaLIF(**cuba((3, 6, 6))),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                              padding=np.array([0, 0])),
        "lif2": nir.LIF(tau=f((3, 3, 3), 1e-3), r=f((3, 3, 3), 10.0), v_leak=f((3, 3, 3), 0.0),
                        v_threshold=f((3, 3, 3), 1.5)),
        "flat": nir.Flatten(input_type={"input": np.array([3, 3, 3])}, start_dim=0),
        "fc": nir.Affine(weight=rng.normal(0, 0.5, (8, 27)), bias=f(8, 0.05)),
        "rec": nir.CubaLIF(**cuba(8)),
        "w_rec": nir.Linear(weight=rng.normal(0, 0.4, (8, 8))),
        "out_fc": nir.Linear(weight=rng.normal(0, 1.0, (4, 8))),
        "li": nir.LI(tau=f(4, 2e-3), r=f(4, 20.0), v_leak=f(4, 0.0)),
        "output": nir.Output(output_type=np.array([4])),
    }
    edges = [("input", "conv"), ("conv", "lif1"), ("lif1", "pool"), ("pool", "lif2"),
             ("lif2", "flat"), ("flat", "fc"), ("fc", "rec"), ("rec", "w_rec"),
             ("w_rec", "rec"), ("rec", "out_fc"), ("out_fc", "li"), ("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_import_recurrent_sumpool_flatten(tmp_path):
    graph = _foreign_graph(np.random.default_rng(0))
    nir.write(tmp_path / "f.nir", graph)
    net, report = nir_io.read(tmp_path / "f.nir", steps=6)
    syn = {s.name: s for s in net.synapses}
    assert syn["pool"].kind == "conv" and syn["pool"].groups == 3
    assert syn["fc"].kind == "dense" and syn["fc"].weight.shape == (8, 27)
    assert syn["w_rec"].src == syn["w_rec"].dst == "rec" and syn["w_rec"].delay == 0
    assert net.group("lif2").params.i_decay == loihi.DECAY_UNITY       # LIF: no current
    assert net.group("rec").params == loihi.CubaParams(819, 205, net.group("rec").params.vth_mant)
    assert net.group("rec").bias is not None                            # the Affine's bias
    assert net.readout == "li" and report.latency == 4 and net.num_steps == 6 + 4
    assert any("dt = 0.0001" in a for a in report.assumed)
    assert all(q.rel_l2 < 0.02 for q in report.layers)      # 8-bit mantissas
    x = torch.from_numpy(np.random.default_rng(1).random((2, net.num_steps, 2, 6, 6)) < 0.3)
    r = engine.run(net, None, source_spikes={"input": x}, device="cpu")
    assert int(r.counts["rec"].sum()) > 0


def test_import_refuses_nonzero_reset():
    g = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
                               nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2),
                                       v_threshold=np.ones(2), v_reset=np.full(2, 0.5)))
    with pytest.raises(nir_io.NirImportError, match="v_reset"):
        nir_io.from_nir(g, steps=3)


@pytest.mark.slow
@pytest.mark.lava
def test_imported_network_engine_equals_lava():
    pytest.importorskip("lava.proc.lif.process")
    from mksgn.deploy.lava_graph import LavaNetwork

    net, _ = nir_io.from_nir(_foreign_graph(np.random.default_rng(0)), steps=6)
    x = np.random.default_rng(1).random((2, net.num_steps, 2, 6, 6)) < 0.3
    r = engine.run(net, None, source_spikes={"input": torch.from_numpy(x)}, device="cpu")
    with LavaNetwork(net, timeout=120) as ln:
        for i in range(2):
            lr = ln.run(source_spikes={"input": x[i]})
            assert np.array_equal(lr.scores, r.scores[i].numpy())
            for g, s in lr.spikes.items():
                assert np.array_equal(s, r.spikes[g][i].numpy()), g


def test_import_netx_scale_writes_a_stock_netx_chain(tmp_path):
    """--scale netx: every weight exponent 0 and a /layer section that runs like /mksgn."""
    from mksgn import netx_io

    rng = np.random.default_rng(3)
    f = lambda s, x: np.full(s, x)  # noqa: E731
    g = nir.NIRGraph.from_list(
        nir.Linear(weight=rng.normal(0, 0.5, (5, 6))),
        nir.CubaLIF(tau_syn=f(5, 4e-4), tau_mem=f(5, 1e-3), r=f(5, 10.0), v_leak=f(5, 0.0),
                    v_threshold=f(5, 1.0), w_in=f(5, 4.0)),
        nir.Affine(weight=rng.normal(0, 1.0, (3, 5)), bias=f(3, 0.1)))
    nir.write(tmp_path / "c.nir", g)
    r = CliRunner().invoke(main, ["import", "nir", str(tmp_path / "c.nir"), "--out",
                                  str(tmp_path / "imp"), "--steps", "8", "--scale", "netx"])
    assert r.exit_code == 0, r.output
    net = netgraph.load(tmp_path / "imp" / "model.net")
    assert {s.weight_exp for s in net.synapses} == {0}
    chain = netx_io.read(tmp_path / "imp" / "model.net")
    x = torch.from_numpy(rng.random((1, net.num_steps, 6)) < 0.5)
    a = engine.run(net, None, source_spikes={"input": x}, record=("s", "v"), device="cpu")
    assert a.v["output"].abs().max() > 64 * 8                    # more than the bias alone
    b = engine.run(chain, None, source_spikes={"input": x}, record=("s", "v"),
                   num_steps=net.num_steps, device="cpu")       # netx files record no steps
    assert int(a.counts["cubalif"].sum()) > 0
    assert np.array_equal(a.v["output"].numpy(), b.v[chain.groups[-1].name].numpy())


def test_import_snntorch_recurrent_export(tmp_path):
    """snnTorch's own export of an RSynaptic layer: a population feeding itself."""
    snn = pytest.importorskip("snntorch")
    import contextlib
    import io

    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 5, bias=False),
        snn.RSynaptic(alpha=torch.full((5,), 0.75), beta=torch.full((5,), 0.9),
                      threshold=torch.ones(5), linear_features=5, all_to_all=True,
                      init_hidden=True, reset_mechanism="zero"),
        torch.nn.Linear(5, 3))
    with contextlib.redirect_stdout(io.StringIO()):
        graph = export_to_nir(model, torch.zeros(1, 6), ignore_dims=[0])
    nir.write(tmp_path / "r.nir", graph)
    net, report = nir_io.read(tmp_path / "r.nir", steps=5)
    rec = [s for s in net.synapses if s.src == s.dst]
    assert len(rec) == 1 and rec[0].delay == 0 and rec[0].weight.shape == (5, 5)
    assert net.group(rec[0].src).params.i_decay == 1024                # alpha 0.75
    assert net.readout == "output" and report.latency == 2


def _nir_snntorch_script():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "nir_snntorch.py"
    spec = importlib.util.spec_from_file_location("nir_snntorch", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_check_script_floors_the_readout_as_the_chip(static_net):
    """The check's chip readout: the float current of a step back to the integer sum, floored by
    the readout synapse's exponent read from the exported graph."""
    bench = _nir_snntorch_script()
    _, net = static_net
    fc = next(s for s in net.synapses if s.dst == net.readout)
    assert bench.readout_as_output(nir_io.to_nir(net)) == fc.weight_exp
    sums = torch.arange(-600, 600, 7, dtype=torch.int64)           # sum of mantissas x spikes
    for e in (-8, -3, 0, 2):
        cur = (sums.double() * 2.0 ** e / loihi.STATE_SCALE).float()    # snnTorch's float32
        got = bench.chip_current(cur, e) * loihi.STATE_SCALE
        assert torch.equal(got, loihi.shift(sums, e).double())
