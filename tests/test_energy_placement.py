"""Mesh hops on our placement (``mksgn.opcount.Placement``) against brute-force enumeration of
every synapse, and their price on a profile."""
from __future__ import annotations

import itertools

import click
import numpy as np
import pytest

from mksgn import loihi, opcount
from mksgn.hw_profiles import energy as E
from mksgn.profiles import load_profile
from mksgn.hw_profiles.report import build_report, to_csv
from mksgn.netgraph import JointAttention, Network, NeuronGroup, Synapse

CP = loihi.CubaParams(1024, 512, 10)
NPC, WIDTH, PER_TILE = 5, 3, 2               # tiny cores, a 3-tile-wide mesh, 2 cores per tile


def small_net(rng) -> Network:
    """a (2, 3, 2) --conv k (2, 1), pad (1, 0)--> b (3, 4, 2) --dense--> c (5,) readout, and
    JointAttention(q, k, x=a) -> y: six groups on 18 cores of 5 neurons."""
    wc = rng.integers(-1, 2, (3, 2, 2, 1)) * rng.integers(1, 4, (3, 2, 2, 1))
    wd = rng.integers(-1, 2, (5, 24)) * (rng.random((5, 24)) < 0.4)
    return Network(
        groups=[NeuronGroup("a", (2, 3, 2), CP), NeuronGroup("q", (2, 3, 2), CP),
                NeuronGroup("k", (2, 3, 2), CP), NeuronGroup("b", (3, 4, 2), CP),
                NeuronGroup("c", (5,), CP, readout=True), NeuronGroup("y", (2, 3, 2), CP)],
        synapses=[Synapse("ab", "a", "b", "conv", wc, padding=(1, 0)),
                  Synapse("bc", "b", "c", "dense", wd)],
        attentions=[JointAttention("att", "q", "k", "a", "y", shift=1)],
        num_steps=4, readout="c")


def targets(syn: Synapse, src_shape, dst_shape) -> dict[int, set[int]]:
    """Flat source neuron -> flat destination neurons it has a nonzero synapse to, by loops."""
    out: dict[int, set[int]] = {i: set() for i in range(int(np.prod(src_shape)))}
    w = np.asarray(syn.weight)
    if syn.kind == "dense":
        for j, i in zip(*np.nonzero(w)):
            out[int(i)].add(int(j))
        return out
    c_dst, c_in, kt, kv = w.shape
    _, t, v = src_shape
    _, dt, dv = dst_shape
    for o, to, vo, ci, p, q in itertools.product(range(c_dst), range(dt), range(dv), range(c_in),
                                                 range(kt), range(kv)):
        ti = to * syn.stride[0] - syn.padding[0] + p * syn.dilation[0]
        vi = vo * syn.stride[1] - syn.padding[1] + q * syn.dilation[1]
        if 0 <= ti < t and 0 <= vi < v and w[o, ci, p, q] != 0:
            out[(ci * t + ti) * v + vi].add((o * dt + to) * dv + vo)
    return out


def brute_hops(net: Network) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(src, dst) -> per-source-neuron (east-west, north-south) hops of one spike, enumerated."""
    first, nxt = {}, 0
    for g in net.groups:                      # network order, each group from a fresh core
        first[g.name] = nxt
        nxt += -(-g.size // NPC)

    def xy(core):
        tile = core // PER_TILE
        return tile % WIDTH, tile // WIDTH

    shapes = {g.name: tuple(g.shape) for g in net.groups}
    links = [(s.src, s.dst, targets(s, shapes[s.src], shapes[s.dst])) for s in net.synapses]
    for att in net.attentions:                # broadcast to every core of the destination
        every = set(range(int(np.prod(shapes[att.dst]))))
        for src in (att.x, att.q):
            links.append((src, att.dst, {i: every for i in range(int(np.prod(shapes[src])))}))
    out = {}
    for src, dst, tg in links:
        ew, ns = np.zeros(len(tg), np.int64), np.zeros(len(tg), np.int64)
        for i, js in tg.items():
            sx, sy = xy(first[src] + i // NPC)
            for core in {first[dst] + j // NPC for j in js}:
                dx, dy = xy(core)
                ew[i] += abs(sx - dx)
                ns[i] += abs(sy - dy)
        out[(src, dst)] = (ew.reshape(shapes[src]), ns.reshape(shapes[src]))
    return out


PROFILE = f"""\
name: tinychip
kind: neuromorphic
description: a test chip with a small mesh
neurons_per_core: {NPC}
cores_per_tile: {PER_TILE}
mesh_width: {WIDTH}
energy:
  synop: {{value: 10, unit: pJ, source: "test"}}
  neuron_update: {{value: 1, unit: pJ, source: "test"}}
  spike_core: {{value: 2, unit: pJ, source: "test"}}
  hop_ew: {{value: 3, unit: pJ, source: "test"}}
  hop_ns: {{value: 5, unit: pJ, source: "test"}}
"""


@pytest.mark.parametrize("seed", [0, 1])
def test_hops_equal_brute_force_enumeration(seed, tmp_path):
    rng = np.random.default_rng(seed)
    net = small_net(rng)
    place = opcount.Placement(NPC, WIDTH, PER_TILE)
    want = brute_hops(net)
    terms = opcount.spike_terms(net, (NPC,), (place,))
    assert len(terms) == 4
    for t in terms:
        np.testing.assert_array_equal(t.hops_ew[place], want[(t.src, t.dst)][0], err_msg=t.name)
        np.testing.assert_array_equal(t.hops_ns[place], want[(t.src, t.dst)][1], err_msg=t.name)
    assert any(t.hops_ns[place].any() for t in terms)       # both directions are exercised
    # counts: hops into a group = sum over its sources of spikes x per-spike hops, per sample
    samples = 3
    counts = {g.name: rng.integers(0, 4 * samples, g.shape) for g in net.groups}
    path = tmp_path / "tiny.yaml"
    path.write_text(PROFILE)
    prof = load_profile(str(path))
    assert opcount.placement(prof) == place and E.needed_placements([prof]) == (place,)
    act = E.Activity(counts, samples=samples, num_steps=4)
    layers = {lc.name: lc for lc in E.count_student(net, act, (NPC,), (place,))}
    for dst in ("b", "c", "y"):
        ew = sum(int((counts[s] * h[0]).sum()) for (s, d), h in want.items() if d == dst)
        ns = sum(int((counts[s] * h[1]).sum()) for (s, d), h in want.items() if d == dst)
        assert (layers[dst].hops_ew[place], layers[dst].hops_ns[place]) == (ew / samples,
                                                                            ns / samples)
        e = E.layer_energy(layers[dst], prof, net.num_steps)
        assert e.mesh == ew / samples * 3.0 + ns / samples * 5.0
        assert e.total == e.synops + e.neurons + e.routing + e.mesh + e.input
    assert layers["a"].hops_ew[place] == layers["a"].hops_ns[place] == 0.0
    rep = build_report(net, "m.net", act, "test", [prof])
    row = {r.name: r for r in rep.student}["y"]
    assert row.mesh_hops["tinychip"] == {"ew": layers["y"].hops_ew[place],
                                         "ns": layers["y"].hops_ns[place]}
    assert row.energy_pj["tinychip"]["mesh"] == E.layer_energy(layers["y"], prof, 4).mesh > 0
    assert "mesh_pj" in to_csv(rep).splitlines()[0]


def test_placement_numbers_cores_in_network_order():
    net = small_net(np.random.default_rng(0))
    place = opcount.Placement(NPC, WIDTH, PER_TILE)
    assert place.first_cores(net) == {"a": 0, "q": 3, "k": 6, "b": 9, "c": 14, "y": 15}
    x, y = place.tile_xy(np.array([0, 1, 2, 5, 6, 13, 17]))
    assert list(x) == [0, 0, 1, 2, 0, 0, 2] and list(y) == [0, 0, 0, 0, 1, 2, 2]
    with pytest.raises(ValueError, match="mesh_width must be positive"):
        opcount.Placement(NPC, 0)


def test_hops_need_a_mesh_in_the_profile(tmp_path):
    path = tmp_path / "nomesh.yaml"
    path.write_text(PROFILE.replace(f"mesh_width: {WIDTH}\n", ""))
    with pytest.raises(click.ClickException) as exc:
        load_profile(str(path))
    assert exc.value.message == ("nomesh.yaml:1: mesh_width: missing field (energy.hop_ew is "
                                 "priced on our placement, which needs neurons_per_core and "
                                 "mesh_width)")


def test_bundled_loihi_meshes():
    lo, l2 = load_profile("loihi"), load_profile("loihi2")
    assert opcount.placement(lo) == opcount.Placement(loihi.LOIHI_NEURONS_PER_CORE, 8, 4)
    assert lo.mesh_width * 4 * lo.cores_per_tile == lo.cores_per_chip      # 8 x 4 tiles of 4
    assert opcount.placement(l2) == opcount.Placement(loihi.LOIHI2_NEURONS_PER_CORE, 16, 1)
    assert l2.has("hop_ew") and "ESTIMATE" in l2.energy["hop_ew"].source
    assert lo.to_dict()["mesh_width"] == 8 and lo.to_dict()["cores_per_tile"] == 4
