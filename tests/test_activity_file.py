"""The activity file (``mksgn.activity``): what ``write`` writes, ``read`` gives back and checks."""
from __future__ import annotations

import numpy as np
import pytest

from mksgn import activity, loihi, netgraph
from mksgn.files import sha256
from mksgn.netgraph import Network, NeuronGroup, Synapse


def tiny(tmp_path, steps=4):
    cp = loihi.CubaParams(1024, 512, 10)
    net = Network(groups=[NeuronGroup("a", (2, 1, 3), cp), NeuronGroup("out", (2,), cp,
                                                                       readout=True)],
                  synapses=[Synapse("ao", "a", "out", "dense", np.ones((2, 6), np.int64))],
                  num_steps=steps, readout="out")
    path = tmp_path / f"model{steps}.net"
    netgraph.save(net, path)
    return net, path


def measured(net, path, active=True):
    counts = {"a": np.arange(6).reshape(2, 1, 3), "out": np.array([0, 2])}
    act = activity.Activity(counts=counts, samples=2, num_steps=net.num_steps, runs=3,
                            engine="fast", network_sha256=sha256(path),
                            active={g: c + 1 for g, c in counts.items()} if active else None)
    report = activity.ActivityReport(
        network_file=str(path), network_sha256=act.network_sha256, engine="fast", samples=2,
        runs=3, num_steps=net.num_steps, split="test", dataset="d", persons="fold",
        accuracy=0.5, correct=1, groups=activity.group_summary(net, act),
        active_updates=act.active_rule)
    return report, act


@pytest.mark.parametrize("active", [True, False])
def test_write_then_read_round_trips(tmp_path, active):
    net, path = tiny(tmp_path)
    report, act = measured(net, path, active)
    jpath, npath = activity.write(tmp_path / "sim", report, act, np.array([1, 0]),
                                  np.array([1, 1]))
    assert activity.ActivityReport.from_json(jpath.read_text()) == report
    assert report.schema == activity.SCHEMA == "mksgn-activity/2"
    assert report.groups["a"].spikes_per_sample == 15 / 2
    assert report.groups["a"].firing_rate == 15 / (3 * 6 * 4)
    got = activity.read(tmp_path / "sim", net, path)
    assert (got.samples, got.runs, got.num_steps, got.engine) == (2, 3, 4, "fast")
    for g, c in act.counts.items():
        assert got.counts[g].dtype == np.int64 and np.array_equal(got.counts[g], c)
    assert got.active_rule == act.active_rule
    if active:
        assert all(np.array_equal(got.active[g], a) for g, a in act.active.items())
    assert sorted(p.name for p in (tmp_path / "sim").iterdir()) == [jpath.name, npath.name]


def test_read_refuses_another_network_in_one_line(tmp_path):
    net, path = tiny(tmp_path)
    report, act = measured(net, path)
    activity.write(tmp_path / "sim", report, act, np.zeros(2), np.zeros(2))
    other, other_path = tiny(tmp_path, steps=5)
    with pytest.raises(activity.ActivityFileError, match=r"activity.json: activity report is "
                       r"from another network \(network_sha256 differs"):
        activity.read(tmp_path / "sim", other, other_path)
    with pytest.raises(activity.ActivityFileError, match=r"nothing/activity.json: no such file"):
        activity.read(tmp_path / "nothing", net, path)
