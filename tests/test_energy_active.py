"""Active neuron updates: the fast engine's recorded counts against a per-step loop over u and v,
and the energy model using them (rule: ``mksgn.opcount``'s module docstring)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from mksgn import loihi, netgraph
from mksgn.deploy import engine
from mksgn.activity import ActivityFileError, read as read_activity
from mksgn.hw_profiles import energy as E
from mksgn.profiles import load_profile
from mksgn.netgraph import Network, NeuronGroup, Synapse
from mksgn.neuron_models import SigmaDelta

from deploy_reference import random_graph_network, simulate


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def brute_active(net: Network, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-neuron active steps of one sample from the reference's per-step (u, v, s): a step is
    active when, after its update, u != 0 or v != 0, or the neuron spiked."""
    trace = simulate(net, inputs)
    out = {}
    for g in net.groups:
        n = np.zeros(g.shape, np.int64)
        for u, v, s in trace[g.name]:
            n += (u != 0) | (v != 0) | s
        out[g.name] = n
    return out


@pytest.mark.parametrize("seed", [0, 3])
def test_engine_records_active_steps_exactly(seed):
    rng = np.random.default_rng(seed)
    net, inp = random_graph_network(rng, steps=10)
    inp2 = {"joint": rng.normal(0, 2, inp["joint"].shape).astype(np.float32)}
    want = [brute_active(net, x) for x in (inp, inp2)]
    x = torch.from_numpy(np.stack([inp["joint"], inp2["joint"]]))
    res = engine.run(net, {"joint": x}, record=("active",), device="cpu")
    split = engine.run(net, {"joint": x}, record=("active",), device="cpu", batch_size=1)
    assert set(res.active) == {g.name for g in net.groups}
    busy = 0
    for g in net.groups:
        got = res.active[g.name]
        assert got.dtype == torch.int64 and tuple(got.shape) == (2, *g.shape)
        for i in range(2):
            np.testing.assert_array_equal(got[i].numpy(), want[i][g.name], err_msg=g.name)
        np.testing.assert_array_equal(split.active[g.name].numpy(), got.numpy())
        # the rule counts more than spikes: silent neurons with a non-zero state are active
        assert (got >= res.counts[g.name]).all()
        busy += int((got > res.counts[g.name]).sum())
    assert busy > 0
    assert not engine.run(net, {"joint": x}, record=(), device="cpu").active


def test_active_of_a_neuron_model_and_a_source_group():
    """A graded model's neuron-step is active when any of its states is non-zero after the step
    or it sent a message; a source neuron (no state) when it spikes."""
    cp = loihi.CubaParams(1024, 512, 10)
    rng = np.random.default_rng(5)
    net = Network(
        groups=[NeuronGroup("src", (6,), cp, source=True),
                NeuronGroup("sd", (4,), cp, model=SigmaDelta(vth_mant=3)),
                NeuronGroup("out", (2,), cp, readout=True)],
        synapses=[Synapse("s-sd", "src", "sd", "dense", rng.integers(-3, 4, (4, 6))),
                  Synapse("sd-out", "sd", "out", "dense", rng.integers(-3, 4, (2, 4)))],
        num_steps=8, readout="out")
    spikes = torch.from_numpy(rng.random((3, 8, 6)) < 0.3)
    spikes[:, 5:] = False                       # silent input at the end: states decay or stay
    res = engine.run(net, None, record=("s", "sigma", "act", "residue", "u", "v", "active"),
                     device="cpu", source_spikes={"src": spikes})
    np.testing.assert_array_equal(res.active["src"].numpy(), spikes.sum(1).numpy())
    sd = res.spikes["sd"] != 0
    for k in ("sigma", "act", "residue"):
        sd = sd | (res.states[k]["sd"] != 0)
    np.testing.assert_array_equal(res.active["sd"].numpy(), sd.sum(1).numpy())
    out = (res.u["out"] != 0) | (res.v["out"] != 0)
    np.testing.assert_array_equal(res.active["out"].numpy(), out.sum(1).numpy())


def test_energy_counts_recorded_active_steps():
    """count_student: active = recorded active steps per sample, idle = the rest; the readout is
    all active; without recorded steps the old lower bound (spikes) is used."""
    cp = loihi.CubaParams(1024, 512, 10)
    net = Network(groups=[NeuronGroup("a", (2, 3), cp), NeuronGroup("out", (2,), cp, readout=True)],
                  synapses=[Synapse("ao", "a", "out", "dense", np.ones((2, 6), np.int64))],
                  num_steps=5, readout="out")
    counts = {"a": np.array([[1, 0, 2], [0, 0, 3]]), "out": np.zeros(2, np.int64)}
    active = {"a": np.array([[4, 0, 6], [1, 0, 9]]), "out": np.array([3, 7])}
    rec = E.Activity(counts, samples=2, num_steps=5, runs=2, active=active)
    low = E.Activity(counts, samples=2, num_steps=5, runs=2)
    assert (rec.active_rule, low.active_rule) == ("recorded", "spikes")
    loihi_p = load_profile("loihi")
    where = (E.needed_neurons_per_core([loihi_p]), E.needed_placements([loihi_p]))
    a, out = E.count_student(net, rec, *where)
    assert (a.updates_active, a.updates_idle) == (20 / 2, 6 * 5 - 10.0)
    assert (out.updates_active, out.updates_idle) == (10.0, 0.0)
    la, _ = E.count_student(net, low, *where)
    assert (la.updates_active, la.updates_idle) == (6 / 2, 6 * 5 - 3.0)
    e = E.layer_energy(a, loihi_p, 5)
    assert e.neurons == 10.0 * 81 + 20.0 * 52
    assert e.neurons - E.layer_energy(la, loihi_p, 5).neurons == (10.0 - 3.0) * (81 - 52)


def test_activity_files_carry_the_rule(tmp_path):
    """Schema /2 with ``active_updates: recorded`` gives ``Activity.active``; /1 files and Lava's
    /2 files ("spikes") fall back to the lower bound; recorded steps below spikes are refused."""
    cp = loihi.CubaParams(1024, 512, 10)
    net = Network(groups=[NeuronGroup("a", (3,), cp), NeuronGroup("out", (2,), cp, readout=True)],
                  synapses=[Synapse("ao", "a", "out", "dense", np.ones((2, 3), np.int64))],
                  num_steps=4, readout="out")
    path = tmp_path / "model.net"
    netgraph.save(net, path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    spikes = {"spikes/a": np.array([1, 0, 2]), "spikes/out": np.zeros(2, np.int64)}
    active = {"active/a": np.array([3, 1, 2]), "active/out": np.array([4, 4])}

    def write(name, schema, rule, arrays):
        d = tmp_path / name
        d.mkdir()
        meta = {"schema": schema, "network_sha256": sha, "engine": "fast", "samples": 1,
                "runs": 1, "num_steps": 4, "groups": {}}
        if rule:
            meta["active_updates"] = rule
        (d / "activity.json").write_text(json.dumps(meta))
        np.savez(d / "activity.npz", samples=np.int64(1), **arrays)
        return d

    got = read_activity(write("fast", "mksgn-activity/2", "recorded", {**spikes, **active}),
                        net, path)
    assert got.active_rule == "recorded"
    np.testing.assert_array_equal(got.active["a"], [3, 1, 2])
    for d in (write("old", "mksgn-activity/1", "", spikes),
              write("lava", "mksgn-activity/2", "spikes", spikes)):
        assert read_activity(d, net, path).active is None
    bad = {**spikes, **active, "active/a": np.array([0, 1, 2])}
    with pytest.raises(ActivityFileError, match="active/a: fewer active steps than spikes"):
        read_activity(write("bad", "mksgn-activity/2", "recorded", bad), net, path)
