"""The Lava process graph of a Network (fixed_pt) against the fast engine, bit for bit."""
from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pytest
import torch

pytest.importorskip("lava.proc.lif.process")

from mksgn.deploy import engine, lava_graph  # noqa: E402

from deploy_reference import random_graph_network  # noqa: E402

pytestmark = pytest.mark.lava


def _engine(net, inp, record=("s", "u", "v")):
    return engine.run(net, {k: torch.tensor(v)[None] for k, v in inp.items()}, record=record,
                      device="cpu")


@pytest.mark.parametrize("seed,wide", [(0, False), (1, False), (2, True)])
def test_lava_graph_equals_engine_every_group_every_step(seed, wide):
    # every kind: encoder bias, conv (Lava Conv and unrolled), graph, attention (custom
    # process), residual fan-in with aligned delay, per-synapse delays, readout.
    net, inp = random_graph_network(np.random.default_rng(seed), steps=10, wide_ranges=wide)
    with lava_graph.LavaNetwork(net) as ln:
        lr = ln.run(inputs=inp, record=("s", "u", "v"))
    er = _engine(net, inp)
    for g in net.groups:
        assert np.array_equal(lr.spikes[g.name], er.spikes[g.name][0].numpy()), g.name
        assert np.array_equal(lr.u[g.name], er.u[g.name][0].numpy()), g.name
        assert np.array_equal(lr.v[g.name], er.v[g.name][0].numpy()), g.name
    assert np.array_equal(lr.scores, er.scores[0].numpy())
    assert sum(int(s.sum()) for s in lr.spikes.values()) > 0


def test_lava_graph_reused_across_samples_starts_from_zero_state():
    rng = np.random.default_rng(4)
    net, inp = random_graph_network(rng, steps=8)
    other = {"joint": rng.normal(0, 2, inp["joint"].shape).astype(np.float32)}
    with lava_graph.LavaNetwork(net) as ln:
        first = ln.run(inputs=inp)
        second = ln.run(inputs=other)
        again = ln.run(inputs=inp)
    for x, lr in ((inp, first), (other, second), (inp, again)):
        er = _engine(net, x, record=("s",))
        for g in net.groups:
            assert np.array_equal(lr.spikes[g.name], er.spikes[g.name][0].numpy()), g.name
    assert not np.array_equal(first.spikes["c1"], second.spikes["c1"])


def _no_new_children(before):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [c for c in multiprocessing.active_children() if c.pid not in before]
        if not left:
            return True
        time.sleep(0.2)
    return False


def test_dying_lava_process_gives_one_clear_error_and_no_leftovers(monkeypatch):
    orig = lava_graph.PyJointAttentionModelFixed.run_spk

    def boom(self):
        if self.time_step == 3:
            raise RuntimeError("injected failure")
        return orig(self)

    monkeypatch.setattr(lava_graph.PyJointAttentionModelFixed, "run_spk", boom)
    net, inp = random_graph_network(np.random.default_rng(0), steps=6)
    before = {c.pid for c in multiprocessing.active_children()}
    with pytest.raises(lava_graph.LavaError, match="process died: RuntimeError: injected"):
        with lava_graph.LavaNetwork(net, timeout=120) as ln:
            ln.run(inputs=inp)
    assert _no_new_children(before)


@pytest.mark.slow
def test_timeout_stops_the_run_and_cleans_up(monkeypatch):
    orig = lava_graph.PyJointAttentionModelFixed.run_spk

    def slow(self):
        if self.time_step == 2:
            time.sleep(60)
        return orig(self)

    monkeypatch.setattr(lava_graph.PyJointAttentionModelFixed, "run_spk", slow)
    net, inp = random_graph_network(np.random.default_rng(0), steps=6)
    before = {c.pid for c in multiprocessing.active_children()}
    with pytest.raises(lava_graph.LavaTimeout):
        # 12 s: past the compile and the workers' start even on loaded cores (the alarm must
        # fire while the run waits, not while Python forks the workers)
        with lava_graph.LavaNetwork(net, timeout=12) as ln:
            ln.run(inputs=inp)
    assert _no_new_children(before)


def test_unrolled_matrices_equal_the_reference_synapses():
    from deploy_reference import synapse_current
    from mksgn import loihi
    from mksgn.netgraph import NeuronGroup, Synapse
    rng = np.random.default_rng(5)
    p = loihi.CubaParams(0, 0, 1)
    src = NeuronGroup("a", (4, 7, 5), p)
    cases = [
        (Synapse("c", "a", "b", "conv", rng.integers(-9, 9, (6, 2, 3, 2)), stride=(2, 1),
                 padding=(2, 1), dilation=(2, 2), groups=2), (6, 4, 5)),
        (Synapse("g", "a", "b", "graph", rng.integers(-9, 9, (3, 4, 5, 5))), (3, 7, 5)),
        (Synapse("d", "a", "b", "dense", rng.integers(-9, 9, (11, 140))), (11,)),
    ]
    for syn, shape in cases:
        dst = NeuronGroup("b", shape, p)
        m = lava_graph.unroll(syn, src, dst)
        for _ in range(3):
            s = rng.random(src.shape) < 0.5
            assert np.array_equal(m @ s.reshape(-1).astype(np.int64),
                                  synapse_current(syn, s, shape).reshape(-1)), syn.kind
