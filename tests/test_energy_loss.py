"""Energy-aware training: the differentiable estimate counts exactly what `mksgn energy` counts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mksgn import opcount
from mksgn.data.layouts import get_layout
from mksgn.hw_profiles import energy as E
from mksgn.profiles import load_profile
from mksgn.train.config import ConfigError, from_dict
from mksgn.train.energy_loss import EnergyConfig, EnergyLoss, probe_batch, synapse_loads
from mksgn.train.spiking import ConvSynapse, GraphSynapse, SynapseLoad, prune_by_cost
from mksgn.train.student import StudentConfig, build_student, fold_persons

engine = pytest.importorskip("mksgn.deploy.engine")

CONFIGS = {
    "spiking-attention": dict(channels=(4, 8), strides=(1, 2)),
    "static-attention": dict(channels=(8, 4), strides=(2, 1), attention="static"),
}


def tiny(name: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = StudentConfig.small(frames=8, stem_channels=4, temporal_kernel=3, **CONFIGS[name])
    model = build_student(cfg, 5, get_layout("ucla20"))
    x = torch.randn(3, len(cfg.modalities), 3, 8, 20, 2) * 0.5
    return model, x


def _reported(model, x, neurons_per_core=()):
    """(network, {layer: `mksgn energy`'s counts}) of the student in eval mode, run on the fast
    engine."""
    model.eval()
    net = model.to_network()
    xs = fold_persons(x)
    res = engine.run(net, {m: xs[:, k] for k, m in enumerate(model.cfg.modalities)}, device="cpu")
    counts = {g: s.sum(dim=(0, 1)).numpy().astype(np.int64) for g, s in res.spikes.items()}
    act = E.Activity(counts=counts, samples=len(x), num_steps=net.num_steps)
    layers = E.count_student(net, act, neurons_per_core=neurons_per_core)
    return net, {lc.name: lc for lc in layers}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_estimate_on_full_run_spikes_equals_mksgn_energy_counts(name):
    """Training's torch path on the student's own full-run spikes == `mksgn energy`'s integer
    counts on the fast engine's spikes, per destination group, synops and core deliveries."""
    model, x = tiny(name)
    net, layers = _reported(model, x, neurons_per_core=(64,))

    with torch.no_grad():
        out, _, _ = model._run(x, full=True)                  # (N, *shape) per group, float
    terms = opcount.spike_terms(net, (64,))
    work = opcount.spike_work(terms, {k: v.double().sum(-1) for k, v in out.spikes.items()})
    assert sum(float(w.synops.sum()) for w in work.values()) > 0
    for dst, w in work.items():
        synops = w.synops.sum().item()
        assert synops == int(synops)
        assert int(synops) == round(layers[dst].synops * len(x)), dst
        assert int(w.deliveries[64].sum().item()) == round(layers[dst].deliveries[64] * len(x))
        assert int(w.attention_synops.sum().item() if torch.is_tensor(w.attention_synops)
                   else w.attention_synops) == round(layers[dst].attention_synops * len(x))


def test_energy_loss_prices_spikes_like_the_energy_report():
    """EnergyLoss without extrapolation on full-run spikes == the report's synop, routing and
    mesh pJ."""
    model, x = tiny("spiking-attention", seed=3)
    model.eval()
    loss = EnergyLoss(EnergyConfig(mode="energy", weight=1.0, profile="loihi"),
                      model.cfg.time_steps)
    loss.refresh(model)
    net = model.to_network()
    prof = load_profile("loihi")
    with torch.no_grad():
        out, _, _ = model._run(x, full=True)
        e = loss.estimate_pj(out.spikes, extrapolate=False)
    counts = {k: v.sum((0, -1)).round().long().numpy() for k, v in out.spikes.items()}
    act = E.Activity(counts=counts, samples=len(x), num_steps=net.num_steps)
    want = mesh = 0.0
    for lc in E.count_student(net, act, E.needed_neurons_per_core([prof]),
                              E.needed_placements([prof])):
        b = E.layer_energy(lc, prof, net.num_steps)
        want += b.synops + b.routing + b.mesh
        mesh += b.mesh
    assert mesh > 0
    assert float(e.mean()) == pytest.approx(want, rel=1e-12)


def test_energy_term_has_gradients_and_lowers_the_estimate():
    model, x = tiny("static-attention", seed=1)
    model.train()
    loss = EnergyLoss(EnergyConfig(mode="energy", weight=1.0, profile="cmos45nm_fp32"),
                      model.cfg.time_steps)
    loss.refresh(model)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    first = None
    for _ in range(8):
        term, parts = loss(model(x))
        first = parts["energy_uj"] if first is None else first
        opt.zero_grad()
        term.backward()
        opt.step()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.ssc.parameters())
    loss.refresh(model)
    with torch.no_grad():
        _, parts = loss(model(x))
    assert 0 <= parts["energy_rate"] <= 1
    assert parts["energy_uj"] < 0.7 * first


def test_rate_mode_is_zero_below_target_and_positive_above():
    model, x = tiny("spiking-attention")
    model.train()
    out = model(x)
    rate = EnergyLoss(EnergyConfig(mode="rate", weight=1.0, target_rate=0.999),
                      model.cfg.time_steps)(out)
    assert float(rate[0].detach()) == 0.0 and 0 < rate[1]["rate"] < 0.999
    low = EnergyLoss(EnergyConfig(mode="rate", weight=2.0, target_rate=1e-4),
                     model.cfg.time_steps)(out)
    r = low[1]["rate"]
    assert float(low[0].detach()) == pytest.approx(2.0 * ((r - 1e-4) / 1e-4) ** 2, rel=1e-5)


def test_config_reads_a_bare_off_and_rejects_dense_profiles_and_teacher_runs():
    assert from_dict({"kind": "student", "model": {}, "energy": {"mode": False}}).energy.mode == "off"
    with pytest.raises(ConfigError, match="energy: .*computes densely"):
        from_dict({"kind": "student", "model": {}, "energy": {"mode": "energy", "weight": 1,
                                                               "profile": "gpu"}})
    with pytest.raises(ConfigError, match="only student runs"):
        from_dict({"kind": "teacher", "energy": {"mode": "rate", "weight": 1}})
    with pytest.raises(ConfigError, match="weight must be >= 0"):
        from_dict({"kind": "student", "model": {}, "energy": {"mode": "rate", "weight": -1}})


def _graph_joints(syn) -> np.ndarray:
    """(u, v) -> any non-zero quantised weight from source joint u to destination joint v."""
    return (np.asarray(syn.weight) != 0).any(axis=(0, 1)).T


def test_graph_pruning_keeps_the_strongest_sources_and_cuts_the_counted_fanout():
    model, x = tiny("static-attention")
    graph = model.blocks[0].graph
    with torch.no_grad():
        graph.B.normal_(0.0, 0.1)                         # as after training: no ties
    v = graph.keep.shape[0]
    before = model.to_network()
    syn0 = next(s for s in before.synapses if s.kind == "graph")
    assert _graph_joints(syn0).all()                      # trained-dense: every pair connected
    with torch.no_grad():
        norm = graph.real_weight().pow(2).sum((0, 1)).T.numpy()     # (u, v)
    model.prune_graph(3)
    keep = graph.keep.numpy().astype(bool)
    assert (keep.sum(0) == 3).all()
    for col in range(v):
        assert set(np.flatnonzero(keep[:, col])) == set(np.argsort(-norm[:, col])[:3])
    after = model.to_network()
    syn = next(s for s in after.synapses if s.name == syn0.name)
    assert not (_graph_joints(syn) & ~keep).any()         # a pruned pair has no synapse
    shape = {g.name: g.shape for g in after.groups}
    ones = np.ones(shape[syn.dst])
    fan_before = opcount.transpose_apply(syn0, shape[syn.src], shape[syn.dst], ones)
    fan_after = opcount.transpose_apply(syn, shape[syn.src], shape[syn.dst], ones)
    nz_before = np.count_nonzero(syn0.weight)
    nz_after = np.count_nonzero(syn.weight)
    assert nz_after <= np.asarray(syn.weight).size * 3 / v    # at most K of V sources
    # the counted fan-out falls with the synapses: every kept weight is one op per spike
    assert fan_after.sum() * nz_before == fan_before.sum() * nz_after
    assert fan_after.sum() < fan_before.sum() * 3 / v * 1.25
    model.prune_graph(5)                                  # pruning never reconnects
    assert (graph.keep.numpy().astype(bool) == keep).all()
    state = {k: t for k, t in model.state_dict().items() if not k.endswith(".keep")}
    fresh, _ = tiny("static-attention", seed=1)
    fresh.load_state_dict(state)                          # a checkpoint from before pruning
    assert (fresh.blocks[0].graph.keep == 1).all()


def test_graph_keep_schedule_and_config_errors():
    cfg = EnergyConfig(graph_keep=4)
    assert [cfg.graph_sources(e, 10, 20) for e in range(10)] == [17, 14, 10, 7, 4, 4, 4, 4, 4, 4]
    assert [cfg.graph_sources(e, 1, 20) for e in range(1)] == [4]
    assert EnergyConfig().graph_sources(0, 10, 20) is None
    assert from_dict({"kind": "student", "model": {},
                      "energy": {"graph_keep": 4}}).energy.graph_keep == 4
    for bad, says in ((0, "whole number >= 1"), (-2, "whole number >= 1"),
                      (2.5, "expected int"), (True, "expected int|whole number")):
        with pytest.raises(ConfigError, match=f"graph_keep.*({says})"):
            from_dict({"kind": "student", "model": {}, "energy": {"graph_keep": bad}})
    with pytest.raises(ConfigError, match="only student runs"):
        from_dict({"kind": "teacher", "energy": {"graph_keep": 4}})


def test_weight_pruning_keeps_the_largest_weights_and_cuts_the_counted_fanout():
    """synapse_keep: every conv and graph synapse group keeps its largest weights; the converted
    network lacks exactly the pruned synapses, and each spike's counted fan-out loses them."""
    model, x = tiny("static-attention")
    with torch.no_grad():
        model.blocks[0].graph.B.normal_(0.0, 0.1)
    model.prune_graph(10)                               # the two cuts compose
    tcn = model.blocks[0].tcn
    graph = model.blocks[0].graph
    w_tcn = tcn.weight.detach().abs().clone()
    w_graph = graph.real_weight().detach().abs().clone()
    pairs = (graph.keep.T > 0).expand_as(w_graph)
    before = model.to_network()
    assert tcn.mask is None and graph.mask is None      # unpruned: no mask, none saved
    assert not any(k.endswith(".mask") for k in model.state_dict())
    model.prune_weights(0.3)
    # conv: exactly round(0.3 n) weights kept, and no dropped weight outweighs a kept one
    m = tcn.mask
    assert int(m.sum()) == round(0.3 * m.numel())
    assert w_tcn[~m].max() <= w_tcn[m].min()
    # graph: the fraction counts the joint pairs still connected, and only those are kept
    g = graph.mask
    assert int(g.sum()) == round(0.3 * int(pairs.sum()))
    assert not (g & ~pairs).any()
    assert w_graph[pairs & ~g].max() <= w_graph[g].min()
    after = model.to_network()
    shape = {grp.name: grp.shape for grp in after.groups}
    for syn0, syn in zip(before.synapses, after.synapses):
        if syn.kind not in ("conv", "graph"):
            continue
        mine = tcn if syn.name == "b1/tcn" else graph if syn.name == "b1/graph" else None
        if mine is not None:                            # zero exactly where the mask is off
            off = ~mine.mask.numpy()
            assert not np.asarray(syn.weight)[off].any()
        nz0, nz = np.count_nonzero(syn0.weight), np.count_nonzero(syn.weight)
        assert nz < nz0
        if syn.kind == "graph":                          # every source joint reaches all frames:
            ones = np.ones(shape[syn.dst])               # each nonzero is one op per spike
            f0 = opcount.fan_out(syn0, shape[syn.src], shape[syn.dst]).sum()
            f1 = opcount.fan_out(syn, shape[syn.src], shape[syn.dst]).sum()
            assert f1 * nz0 == f0 * nz
            assert f1 == opcount.transpose_apply(syn, shape[syn.src], shape[syn.dst], ones).sum()
    kept = tcn.mask.clone()
    model.prune_weights(0.6)                             # pruning never regrows a weight
    assert torch.equal(tcn.mask, kept)
    model.prune_weights(0.1)
    assert int(tcn.mask.sum()) == round(0.1 * tcn.mask.numel())
    assert not (tcn.mask & ~kept).any()
    state = {k: t for k, t in model.state_dict().items() if not k.endswith(".mask")}
    fresh, _ = tiny("static-attention", seed=1)
    fresh.load_state_dict(state)                         # a checkpoint from before this cut
    assert all(b.tcn.mask is None and b.graph.mask is None for b in fresh.blocks)
    fresh.load_state_dict(model.state_dict())            # and one after it
    assert torch.equal(fresh.blocks[0].tcn.mask, tcn.mask)
    assert torch.equal(fresh.blocks[0].graph.real_weight(), graph.real_weight())
    fresh.load_state_dict(state)                         # an unpruned one drops the masks again
    assert fresh.blocks[0].tcn.mask is None


def test_synapse_keep_schedule_and_config_errors():
    cfg = EnergyConfig(synapse_keep=0.2)
    assert [round(cfg.synapse_fraction(e, 8), 6) for e in range(8)] == \
        [0.8, 0.6, 0.4, 0.2, 0.2, 0.2, 0.2, 0.2]
    assert EnergyConfig().synapse_fraction(0, 8) is None
    assert from_dict({"kind": "student", "model": {},
                      "energy": {"synapse_keep": 0.5}}).energy.synapse_keep == 0.5
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ConfigError, match="synapse_keep must be a fraction"):
            from_dict({"kind": "student", "model": {}, "energy": {"synapse_keep": bad}})
    with pytest.raises(ConfigError, match="only student runs"):
        from_dict({"kind": "teacher", "energy": {"synapse_keep": 0.5}})


@pytest.mark.parametrize("name", list(CONFIGS))
def test_synapses_are_the_prunable_groups_named_as_exported(name):
    """Student.synapses(): every conv and graph synapse group once, with the name, source and
    destination of its synapse in to_network() (all of them but the readout's)."""
    model, _ = tiny(name)
    mods = [m for m in model.modules() if isinstance(m, (ConvSynapse, GraphSynapse))]
    syns = model.synapses()
    assert sorted(map(id, mods)) == sorted(id(m) for _, m, _, _ in syns)
    net = model.to_network()
    assert [(s.name, s.src, s.dst) for s in net.synapses if s.dst != net.readout] == \
        [(n, s, d) for n, _, s, d in syns]
    if name == "spiking-attention":                      # the wiring, written out once
        block = [("graph", "{i}", "sgc"), ("q", "{i}", "q"), ("k", "{i}", "k"),
                 ("x", "{i}", "x"), ("tcn", "sgc", "stc"), ("residual", "{i}", "stc")]
        want = [(f"smf/{m}", f"ssc_{m}", "smf") for m in model.cfg.modalities]
        for b, src in (("b1", "smf"), ("b2", "b1_stc")):
            want += [(f"{b}/{n}", src if s == "{i}" else f"{b}_{s}", f"{b}_{d}")
                     for n, s, d in block]
        assert [(n, s, d) for n, _, s, d in syns] == want


@pytest.mark.parametrize("name", list(CONFIGS))
def test_synapse_loads_are_the_energy_reports_events(name):
    """synapse_loads' events summed over a group's inputs are exactly `mksgn energy`'s synaptic
    event count (attention operands aside) on the fast engine's spikes; its synapses are the
    converted network's non-zero weights."""
    model, x = tiny(name)
    loads = synapse_loads(model, x)
    assert model.training                                # left as it was
    net, layers = _reported(model, x)
    into: dict[str, float] = {}
    for n, _, _, dst in model.synapses():
        into[dst] = into.get(dst, 0.0) + loads[n].events * len(x)
    assert sum(into.values()) > 0 and len({ld.events for ld in loads.values()}) > 2
    for dst, ev in into.items():
        assert ev == int(ev)
        assert int(ev) == round((layers[dst].synops - layers[dst].attention_synops) * len(x)), dst
    for syn in net.synapses:
        if syn.name in loads:
            assert loads[syn.name].synapses == np.count_nonzero(syn.weight)


def test_probe_spreads_over_the_split_without_using_a_draw():
    """The probe takes samples spread over the split (every class of a sorted split) and reads
    them without consuming a training draw."""
    from train_fakes import FakeSkeletons
    ds = FakeSkeletons(40, 4, 8, 2, train=True, seed=0)
    x = probe_batch(ds, 5)
    assert torch.equal(x, torch.stack([ds[i][0] for i in (0, 10, 20, 29, 39)]))
    assert len(probe_batch(ds, 100)) == 40


def _conv_pair():
    torch.manual_seed(0)
    a, b = ConvSynapse(6, 5), ConvSynapse(6, 5)
    with torch.no_grad():
        b.weight.copy_(a.weight)
    return a, b


def test_prune_by_cost_cuts_where_weights_cost_most():
    """Two groups with the same weights, one 10x as costly per weight: the costly one loses
    more; kept weights carry at most the fraction of the events, each group keeps its largest,
    and no dropped weight is worth more per cost than a kept one (one threshold)."""
    cheap, dear = _conv_pair()
    n = cheap.weight.numel()
    w = cheap.weight.detach().abs().double()
    prune_by_cost([(cheap, SynapseLoad(1.0 * n, n)), (dear, SynapseLoad(10.0 * n, n))], 0.4,
                  power=1.0)
    kc, kd = cheap.mask, dear.mask
    assert kd.sum() < round(0.4 * n) < kc.sum()
    spent = float(kc.sum() + 10 * kd.sum())
    assert spent <= 0.4 * 11 * n < spent + 10
    for m in (kc, kd):
        assert w[~m].max() <= w[m].min()
    worth = w.pow(2) / w.pow(2).mean()
    kept = torch.cat([worth[kc], worth[kd] / 10])
    dropped = torch.cat([worth[~kc], worth[~kd] / 10])
    assert dropped.max() <= kept.min() * (1 + 1e-6)      # ranked in float32
    before = (kc.clone(), kd.clone())
    c, d = int(kc.sum()), int(kd.sum())
    # the same costs per synapse, a larger fraction: what is left stays, nothing regrows
    prune_by_cost([(cheap, SynapseLoad(1.0 * c, c)), (dear, SynapseLoad(10.0 * d, d))], 0.9,
                  power=1.0)
    assert torch.equal(cheap.mask, before[0]) and torch.equal(dear.mask, before[1])
    prune_by_cost([(cheap, SynapseLoad(1.0 * c, c)), (dear, SynapseLoad(1e9, d))], 0.01)
    assert int(dear.mask.sum()) == 1 and not (dear.mask & ~before[1]).any()   # at least one
    free, other = _conv_pair()
    prune_by_cost([(free, SynapseLoad(0.0, n)), (other, SynapseLoad(1.0 * n, n))], 0.5)
    assert free.mask.all() and int(other.mask.sum()) == round(0.5 * n)   # silent: free
    half, _ = _conv_pair()                       # half the weights quantise to zero: the
    prune_by_cost([(half, SynapseLoad(1.0 * n / 2, n // 2))], 0.4)       # kept synapses carry
    assert int(half.mask.sum()) == round(0.4 * n / 2)                     # 40% of the events
    flat, _ = _conv_pair()                       # power 0: the events set only the budget
    prune_by_cost([(flat, SynapseLoad(1.0 * n, n))], 0.2, power=0.0)
    assert int(flat.mask.sum()) == 6 and w[~flat.mask].max() <= w[flat.mask].min()
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            prune_by_cost([(free, SynapseLoad(1.0, 1))], bad)
    with pytest.raises(ValueError, match="power"):
        prune_by_cost([(free, SynapseLoad(1.0, 1))], 0.5, power=2.0)
    with pytest.raises(ValueError, match="load"):
        prune_by_cost([(free, SynapseLoad(-1.0, 1))], 0.5)


def test_student_prunes_by_cost_on_all_groups():
    """Through the student: the groups together keep at most the fraction of their events (at
    each group's events per synapse), and one threshold on worth / cost ** 0.5 (the default
    power) splits kept from cut over all groups."""
    model, x = tiny("spiking-attention")
    with torch.no_grad():
        for blk in model.blocks:                         # a trained graph is dense
            blk.graph.B.normal_(0.0, 0.1)
    loads = synapse_loads(model, x)
    with pytest.raises(KeyError, match="no synaptic load"):
        model.prune_weights(0.5, {k: v for k, v in list(loads.items())[1:]})
    mods = {n: m for n, m, _, _ in model.synapses()}
    sal = {n: m.saliency() for n, m in mods.items()}
    per = {n: loads[n].events / loads[n].synapses for n in mods}
    score = {n: (w.double() ** 2 / (w.double()[e] ** 2).mean() / per[n] ** 0.5, e)
             for n, (w, e) in sal.items()}
    model.prune_weights(0.5, loads)
    kept = {n: int(m.mask.sum()) for n, m in mods.items()}
    assert sum(per[n] * kept[n] for n in mods) <= 0.5 * sum(ld.events for ld in loads.values())
    assert len({round(kept[n] / int(sal[n][1].sum()), 2) for n in mods}) > 3   # shares differ
    lo = min(float(sc[mods[n].mask].min()) for n, (sc, _) in score.items())
    hi = max(float(sc[e & ~mods[n].mask].max()) for n, (sc, e) in score.items()
             if (e & ~mods[n].mask).any())
    assert hi <= lo * (1 + 1e-6)                          # ranked in float32


def test_energy_aware_config_and_its_schedule():
    """The cut is made only where the schedule lowers the fraction; keep_by: energy needs a
    fraction; cost_power is in [0, 1]."""
    cfg = EnergyConfig(synapse_keep=0.5, synapse_keep_by="energy")
    assert [cfg.synapse_cut(e, 4) for e in range(4)] == [0.75, 0.5, None, None]
    assert EnergyConfig().synapse_cut(0, 4) is None
    assert from_dict({"kind": "student", "model": {}, "energy": {
        "synapse_keep": 0.5, "synapse_keep_by": "energy"}}).energy.synapse_keep_by == "energy"
    with pytest.raises(ConfigError, match="synapse_keep_by"):
        from_dict({"kind": "student", "model": {}, "energy": {"synapse_keep_by": "joules"}})
    with pytest.raises(ConfigError, match="needs energy.synapse_keep"):
        from_dict({"kind": "student", "model": {}, "energy": {"synapse_keep_by": "energy"}})
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ConfigError, match="cost_power"):
            from_dict({"kind": "student", "model": {}, "energy": {"cost_power": bad}})
