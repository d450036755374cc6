"""SANA-FE backend: mapping, exact spike replay, parts summing to the total, latency, the CLI.

Needs the optional extra ``sanafe`` (GPL-3.0); skips cleanly without it.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mksgn import loihi, netgraph, spike_trains
from mksgn.files import sha256
from mksgn.netgraph import Encoder, JointAttention, Network, NeuronGroup, Synapse
from mksgn.opcount import fan_out
from mksgn.profiles import load_profile

sanafe = pytest.importorskip("sanafe")

from mksgn.hw_profiles import sanafe_backend as sb  # noqa: E402  (needs sanafe's presence)

T, V = 6, 5


def _w(rng, shape, lo=-40, hi=120, zeros=0.2):
    w = rng.integers(lo, hi, size=shape)
    w[rng.random(shape) < zeros] = 0
    return w.astype(np.int64)


def tiny_net(attention: bool) -> Network:
    """joint -> encoder -> a (4,T,V) -conv 3x1-> b -graph-> c -conv 1x1-> big (40,T,V: 2 cores)
    -dense-> out (3,) readout; with ``attention`` also q, k, x from a and JointAttention -> d."""
    rng = np.random.default_rng(0)
    cp = loihi.CubaParams(1024, 123, 12)
    g = lambda name, c: NeuronGroup(name, (c, T, V), cp)  # noqa: E731
    groups = [g("a", 4), g("b", 4), g("c", 4), g("big", 40)]
    syns = [Synapse("ab", "a", "b", "conv", _w(rng, (4, 4, 3, 1)), padding=(1, 0)),
            Synapse("bc", "b", "c", "graph", _w(rng, (4, 4, V, V), zeros=0.5)),
            Synapse("cbig", "c", "big", "conv", _w(rng, (40, 2, 1, 3)), padding=(0, 1),
                    groups=2),
            Synapse("out", "big", "out", "dense", _w(rng, (3, 40 * T * V), zeros=0.7))]
    atts = []
    if attention:
        groups += [g("q", 1), g("k", 1), g("x", 4), g("d", 4)]
        syns += [Synapse(n, "a", n, "conv", _w(rng, (c, 4, 1, 1), lo=0))
                 for n, c in (("q", 1), ("k", 1), ("x", 4))]
        atts = [JointAttention("att", "q", "k", "x", "d", shift=-2)]
    groups.append(NeuronGroup("out", (3,), cp, readout=True))
    enc = Encoder("e", "joint", "a", rng.integers(-20, 60, size=(4, 3, 1, 1)),
                  np.zeros(4, np.int64), input_frac_bits=6, shift=0)
    return Network(groups=groups, synapses=syns, attentions=atts, encoders=[enc],
                   num_steps=8, readout="out")


def engine_trains(net: Network, path, samples: int = 2) -> spike_trains.SpikeTrains:
    from mksgn.deploy.engine import Engine

    torch.manual_seed(0)
    x = torch.rand(samples, 3, T, V) * 4
    res = Engine(net, "cpu").run({"joint": x}, record=("active", "s"))
    return spike_trains.SpikeTrains({g: s.numpy() for g, s in res.spikes.items()},
                                    {g: a.numpy() for g, a in res.active.items()},
                                    samples=samples, num_steps=net.num_steps,
                                    network_sha256=sha256(path))


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    torch.set_num_threads(1)
    out = {}
    for attention in (False, True):
        d = tmp_path_factory.mktemp(f"att{int(attention)}")
        net = tiny_net(attention)
        netgraph.save(net, d / "model.net")
        trains = engine_trains(net, d / "model.net")
        spike_trains.write(d, trains)
        report = sb.run_backend(net, d / "model.net", d, load_profile("loihi"))
        out[attention] = (d, net, trains, report)
    return out


def test_pairs_are_exactly_the_fan_out():
    net = tiny_net(True)
    shapes = {g.name: g.shape for g in net.groups}
    projs = {p.name: p for p in sb.projections(net, 1024)}
    for syn in net.synapses:
        src, dst = projs[syn.name].pairs
        want = fan_out(syn, shapes[syn.src], shapes[syn.dst]).ravel()
        assert np.array_equal(np.bincount(src, minlength=want.size), want)
        assert dst.max() < np.prod(shapes[syn.dst])
        assert len(set(zip(src.tolist(), dst.tolist()))) == src.size      # no duplicates
    att = projs["att/x"]                  # x spikes: C = 1 accumulate each
    assert att.pairs[0].size == np.prod(shapes["x"]) * shapes["q"][0]


def test_every_neuron_placed_once_within_core_limits():
    net = tiny_net(True)
    arch, _ = sb.loihi_arch(sb._tiles_used(net, sb.loihi_arch()[0]))
    where = sb.neuron_cores(net, arch)
    slots = [(int(c), int(u)) for core, unit in where.values() for c, u in zip(core, unit)]
    assert len(slots) == sum(g.size for g in net.groups) == len(set(slots))
    cores = np.array([c for c, _ in slots])
    assert np.bincount(cores).max() <= arch.neurons_per_core
    assert max(u for _, u in slots) < arch.neurons_per_core
    assert cores.max() < arch.width * arch.height * arch.cores_per_tile
    # groups start on fresh cores: no core holds two groups
    owner = {}
    for name, (core, _) in where.items():
        for c in set(core.tolist()):
            assert owner.setdefault(c, name) == name


def test_sanafe_core_keeps_mesh_coordinates():
    arch, _ = sb.loihi_arch(40)                      # 5 rows of 8 tiles
    place = arch.placement
    for k in range(0, 160, 7):
        x, y = place.tile_xy(np.array([k]))
        tile, within = divmod(sb.sanafe_core(k, arch), arch.cores_per_tile)
        assert (tile // arch.height, tile % arch.height) == (int(x[0]), int(y[0]))
        assert within == k % arch.cores_per_tile


@pytest.mark.parametrize("attention", [False, True])
def test_replayed_spikes_equal_the_engine_and_synops_ours(replayed, attention):
    _, net, trains, rep = replayed[attention]
    c = rep.checks
    assert c["spikes_equal"] and c["spikes"] == c["engine_spikes"] > 0
    assert c["engine_spikes"] == sum(int(s.sum()) for s in trains.spikes.values())
    assert c["synaptic_events"] == c["our_synops"] > 0


def test_without_attention_messages_and_hops_are_ours(replayed):
    _, net, trains, rep = replayed[False]
    assert rep.checks["messages"] == rep.checks["our_core_deliveries"]
    # our hop counts on our placement, priced at SANA-FE's per-hop energies
    from mksgn.hw_profiles.sanafe_backend import ours_on_same_runs
    energy = ours_on_same_runs(net, "x", trains, load_profile("loihi"))
    place = sb.loihi_arch()[0].placement
    del place
    ew = sum(r.mesh_hops["loihi"]["ew"] for r in energy.student)
    ns = sum(r.mesh_hops["loihi"]["ns"] for r in energy.student)
    assert rep.energy_pj["hops"] == pytest.approx(ew * 3.0 + ns * 4.2, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("attention", [False, True])
def test_parts_sum_to_the_total_and_latency_is_positive(replayed, attention):
    _, net, trains, rep = replayed[attention]
    parts = {k: v for k, v in rep.energy_pj.items() if k != "total"}
    assert set(parts) == set(sb.PARTS)
    assert sum(parts.values()) == pytest.approx(rep.energy_pj["total"], rel=1e-12)
    assert rep.energy_pj["total"] == pytest.approx(
        rep.sanafe_total_pj + rep.energy_pj["soma_update_unseen"], rel=1e-12)
    assert abs(rep.checks["soma_check_pj"]) < 1e-3     # SANA-FE's soma = its rule, replayed
    steps = net.num_steps * neurons(net)
    assert rep.energy_pj["soma_access"] == pytest.approx(steps * 51.2, rel=1e-12)
    assert rep.latency["per_sample_s"] > 0 and rep.latency["per_step_mean_s"] > 0
    assert rep.latency["per_sample_s"] == pytest.approx(
        rep.latency["per_step_mean_s"] * net.num_steps * trains.runs / trains.samples)
    assert rep.ours["latency_per_sample_s"] > 0
    # every step's own load is at least the averaged load: the averaged model is a lower bound
    assert rep.ours["latency_per_sample_s"] >= rep.ours["latency_averaged_per_sample_s"] * (
        1 - 1e-12)
    assert len(rep.per_sample) == trains.samples
    assert sum(s.energy_pj for s in rep.per_sample) / trains.samples == pytest.approx(
        rep.energy_pj["total"], rel=1e-9)
    assert sb.SanafeReport.from_json(rep.to_json()) == rep


def neurons(net):
    return sum(g.size for g in net.groups)


def test_cli_table_fits_80_columns_and_writes_reports(replayed, tmp_path):
    from mksgn.pipeline.cli import main

    d, _, _, _ = replayed[True]
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["energy", str(d), "--activity", str(d), "--backend", "sanafe",
                                  "--out", str(out)], terminal_width=80)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if not ln.startswith(("Warning", "Executed"))]
    assert all(len(ln) <= 80 for ln in lines), max(lines, key=len)
    text = "\n".join(lines)
    for want in ("loihi (ours)", "SANA-FE", "time per sample", "equal to the engine's"):
        assert want in text
    rep = sb.SanafeReport.from_json((out / "sanafe.json").read_text())
    assert rep.checks["spikes_equal"]
    assert (out / "sanafe.csv").read_text().startswith("row,what,value,unit")


def test_missing_sanafe_is_one_line(replayed, tmp_path, monkeypatch):
    from mksgn.pipeline.cli import main

    monkeypatch.setitem(sys.modules, "sanafe", None)
    d, _, _, _ = replayed[False]
    r = CliRunner().invoke(main, ["energy", str(d), "--activity", str(d), "--backend", "sanafe",
                                  "--out", str(tmp_path / "x")])
    assert r.exit_code == 1
    assert "pip install 'mksgn[sanafe]'" in r.output and "GPL-3.0" in r.output
    assert not (tmp_path / "x").exists()


def test_foreign_spike_trains_are_refused(replayed, tmp_path):
    from mksgn.pipeline.cli import main

    d0, _, _, _ = replayed[False]
    d1, _, _, _ = replayed[True]
    r = CliRunner().invoke(main, ["energy", str(d1), "--activity", str(d0), "--backend", "sanafe",
                                  "--out", str(tmp_path / "x")])
    assert r.exit_code == 1 and "another network" in r.output


def test_profiles_quote_sanafes_loihi_file():
    """``loihi_sanafe``'s energies and both Loihi profiles' latencies are SANA-FE's numbers."""
    arch, _ = sb.loihi_arch()
    prof = load_profile("loihi_sanafe")
    soma = arch.soma
    assert prof.pj("synop") == pytest.approx(arch.synapse_energy["loihi_sparse_synapse"] * 1e12)
    assert prof.pj("neuron_update_idle") == pytest.approx(soma["energy_access_neuron"] * 1e12)
    assert prof.pj("neuron_update") == pytest.approx(
        (soma["energy_access_neuron"] + soma["energy_update_neuron"]) * 1e12)
    assert prof.pj("spike_out") == pytest.approx(soma["energy_spike_out"] * 1e12)
    assert prof.pj("spike_core") == pytest.approx(arch.message_out_energy * 1e12)
    assert (prof.pj("hop_ew"), prof.pj("hop_ns")) == pytest.approx(
        (arch.hop_energy_ew * 1e12, arch.hop_energy_ns * 1e12))
    assert sb.placement_of(prof) == arch.placement
    for name in ("loihi", "loihi_sanafe"):
        lat = load_profile(name)
        assert lat.seconds("neuron_update_idle") == pytest.approx(soma["latency_access_neuron"])
        assert lat.seconds("neuron_update") == pytest.approx(
            soma["latency_access_neuron"] + soma["latency_update_neuron"])
        assert lat.seconds("spike_out") == pytest.approx(soma["latency_spike_out"])
        assert lat.seconds("step_sync") == max(arch.sync_latency.values())


def test_slices_add_up_to_the_whole(replayed):
    """Cut into one SANA-FE run per destination core, the replay gives the same energies and
    (with every tile held in use) the same step times as one run."""
    d, net, trains, whole = replayed[False]
    cut = sb.run_backend(net, d / "model.net", d, load_profile("loihi"), max_connections=1)
    assert cut.placement["slices"] == 6 == sum(-(-g.size // 1024) for g in net.groups)
    assert cut.checks["spikes_equal"] and cut.checks["soma_check_pj"] is None
    assert cut.checks["synaptic_events"] == whole.checks["synaptic_events"]
    assert cut.checks["messages"] == whole.checks["messages"]
    for k in sb.PARTS:
        assert cut.energy_pj[k] == pytest.approx(whole.energy_pj[k], rel=1e-9, abs=1e-6), k
    assert cut.latency["per_sample_s"] == pytest.approx(whole.latency["per_sample_s"], rel=0.02)
