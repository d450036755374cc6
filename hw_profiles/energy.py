"""The energy model: operation counts of a converted student from its measured spikes, then joules.

Counting (per sample; see README.md for the reasoning):
- A *layer* is a neuron group of the network. Its work is what its cores do: the synaptic events
  delivered INTO it, its own neuron updates, the spike deliveries to its cores and their mesh hops,
  and, for the first spiking group of a stream, the MACs of the host-side encoder that drives its
  bias.
- spike-driven work (synops, attention accumulates, spike deliveries to cores, mesh hops on our
  placement): the rules of ``mksgn.opcount``, shared with energy-aware training.
- neuron updates: every neuron updates every step. Active neuron-steps are those the fast engine
  recorded by the rule of ``mksgn.opcount`` (after the step's update a state is non-zero, or the
  neuron fired); all other steps are *idle*. Activity without recorded active steps (schema
  ``mksgn-activity/1``, or a Lava run) falls back to the old lower bound: a step is active only
  when the neuron fires. The non-spiking readout integrates every step: all active.
- encoders: a real-valued input conv runs on the host once per run (its output is constant over
  the steps); MACs = output positions x in-bounds taps x input channels (dense host arithmetic,
  zero weights included, zero padding excluded).

A sample may take several network runs (``mksgn simulate`` runs each person of a two-person sample
separately, as the chip would): spike counts are summed over runs, and neuron updates and encoder
MACs are counted once per run (``runs / samples`` per sample).

Energies (pJ per sample):
- neuromorphic: synops E_synop + active E_update + idle E_update_idle (+ spikes E_spike_out,
  in the neurons part) + deliveries E_spike_core
  + east-west hops E_hop_ew + north-south hops E_hop_ns + encoder MACs E_input_mac;
- cmos (the paper's convention): synops E_ac + encoder MACs E_mac (E_input_mac if given)
  (+ all neuron updates E_neuron_update if the profile gives one);
- ann_device: the network computed densely every step: (synapses + neurons + attention MACs)
  x steps + encoder MACs, each one E_op.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mksgn import netgraph
from mksgn.activity import Activity
from mksgn.profiles import Profile
from mksgn.opcount import (Placement, encoder_macs, spike_prices, spike_terms,
                           SpikeWork, spike_work)


# ---------------------------------------------------------------------------------------------
# Activity and counts

@dataclass
class LayerCounts:
    """Operation counts of one neuron group, per sample (floats: averages over samples)."""
    name: str
    shape: tuple[int, ...]
    neurons: int
    synapses: int                      # incoming nonzero synapses (attention: none)
    spikes: float                      # spikes fired by this group per sample
    firing_rate: float                 # spikes / (neurons x steps)
    synops: float                      # synaptic events delivered into this group (incl. attention)
    attention_synops: float
    updates_active: float
    updates_idle: float
    encoder_macs: float                # host-side encoder MACs per sample
    dense_macs: int                    # MACs per step of one run if computed densely
    runs_per_sample: float = 1.0       # network runs per sample (e.g. one per person)
    readout: bool = False
    deliveries: dict[int, float] = field(default_factory=dict)  # neurons_per_core -> deliveries
    hops_ew: dict[Placement, float] = field(default_factory=dict)  # east-west mesh hops
    hops_ns: dict[Placement, float] = field(default_factory=dict)  # north-south mesh hops


def count_student(net: netgraph.Network, act: Activity, neurons_per_core: tuple[int, ...] = (),
                  placements: tuple[Placement, ...] = ()) -> list[LayerCounts]:
    """Per-layer operation counts of ``net`` driven by ``act`` (see the module docstring):
    deliveries for each core size in ``neurons_per_core``, hops for each of ``placements``."""
    steps = net.num_steps
    rps = act.runs_per_sample
    shapes = {g.name: tuple(g.shape) for g in net.groups}
    spk_total = {g.name: int(np.asarray(act.counts.get(g.name, 0)).sum()) for g in net.groups}
    layers: dict[str, LayerCounts] = {}
    for g in net.groups:
        fired = spk_total[g.name] / act.samples
        updates = g.size * steps * rps
        if g.readout:
            active = float(updates)
        elif act.active is not None:
            active = int(np.asarray(act.active[g.name]).sum()) / act.samples
        else:
            active = fired
        layers[g.name] = LayerCounts(
            name=g.name, shape=shapes[g.name], neurons=g.size, synapses=0, spikes=fired,
            firing_rate=fired / updates if updates else 0.0, synops=0.0, attention_synops=0.0,
            updates_active=active, updates_idle=updates - active, encoder_macs=0.0, dense_macs=0,
            runs_per_sample=rps, readout=g.readout, deliveries={n: 0.0 for n in neurons_per_core},
            hops_ew={p: 0.0 for p in placements}, hops_ns={p: 0.0 for p in placements})
    counts = {k: np.asarray(v, dtype=np.int64).reshape(shapes[k]) for k, v in act.counts.items()
              if k in shapes}
    terms = spike_terms(net, neurons_per_core, placements)
    for term in terms:
        if term.kind == "synapse":
            layers[term.dst].synapses += int(term.synops.sum())
            layers[term.dst].dense_macs += int(term.synops.sum())
    for dst, work in spike_work(terms, counts).items():
        layer = layers[dst]
        layer.synops += work.synops / act.samples
        layer.attention_synops += work.attention_synops / act.samples
        for npc, n in work.deliveries.items():
            layer.deliveries[npc] += n / act.samples
        for p, n in work.hops_ew.items():
            layer.hops_ew[p] += n / act.samples
        for p, n in work.hops_ns.items():
            layer.hops_ns[p] += n / act.samples
    for att in net.attentions:
        c = shapes[att.q][0]
        d, t, v = shapes[att.x]
        layers[att.dst].dense_macs += 2 * c * d * v * t   # kx: (C, D) over u; a: (D, V) over c
    for enc in net.encoders:
        layers[enc.dst].encoder_macs += encoder_macs(enc, shapes[enc.dst]) * rps
    return [layers[g.name] for g in net.groups]


# ---------------------------------------------------------------------------------------------
# Energy

@dataclass
class EnergyBreakdown:
    """Energy of one layer on one profile, pJ per sample: ``routing`` the spike deliveries to
    cores, ``mesh`` their hops between tiles."""
    synops: float = 0.0
    neurons: float = 0.0
    routing: float = 0.0
    input: float = 0.0
    mesh: float = 0.0

    @property
    def total(self) -> float:
        return self.synops + self.neurons + self.routing + self.mesh + self.input


def _input_mac_pj(profile: Profile, fallback: str | None) -> float:
    if profile.has("input_mac"):
        return profile.pj("input_mac")
    if fallback is not None:
        return profile.pj(fallback)
    raise ValueError(f"profile {profile.name} has no energy.input_mac for the network's encoders")


def layer_energy(layer: LayerCounts, profile: Profile, num_steps: int) -> EnergyBreakdown:
    """Energy of one student layer on ``profile`` (pJ per sample, see module docstring)."""
    e = EnergyBreakdown()
    if profile.kind in ("neuromorphic", "cmos"):
        price = spike_prices(profile)
        work = SpikeWork(synops=layer.synops, deliveries=layer.deliveries,
                         hops_ew=layer.hops_ew, hops_ns=layer.hops_ns)
        try:
            e.synops, e.routing, e.mesh = price.parts_pj(work)
        except ValueError as err:
            raise ValueError(f"layer {layer.name}: {err}; pass needed_neurons_per_core and "
                             "needed_placements(profiles) to count_student") from None
    if profile.kind == "neuromorphic":
        e.neurons = (layer.updates_active * profile.pj("neuron_update")
                     + layer.updates_idle * profile.pj("neuron_update_idle",
                                                       profile.pj("neuron_update"))
                     + layer.spikes * profile.pj("spike_out", 0.0))
        if layer.encoder_macs:
            e.input = layer.encoder_macs * _input_mac_pj(profile, None)
    elif profile.kind == "cmos":
        if profile.has("neuron_update"):
            e.neurons = (layer.updates_active + layer.updates_idle) * profile.pj("neuron_update")
        if layer.encoder_macs:
            e.input = layer.encoder_macs * _input_mac_pj(profile, "mac")
    elif profile.kind == "ann_device":
        runs = num_steps * layer.runs_per_sample
        e.synops = layer.dense_macs * runs * profile.pj("op")
        e.neurons = layer.neurons * runs * profile.pj("op")
        if layer.encoder_macs:
            e.input = layer.encoder_macs * _input_mac_pj(profile, "op")
    else:
        raise ValueError(f"profile {profile.name}: unknown kind {profile.kind!r}")
    return e


def _spike_priced(profiles: list[Profile]):
    return [spike_prices(p) for p in profiles if p.kind in ("neuromorphic", "cmos")]


def needed_neurons_per_core(profiles: list[Profile]) -> tuple[int, ...]:
    """The core sizes for which spike deliveries must be counted (profiles that price them)."""
    return tuple(sorted({pr.neurons_per_core for pr in _spike_priced(profiles)
                         if pr.delivery_pj and pr.neurons_per_core}))


def needed_placements(profiles: list[Profile]) -> tuple[Placement, ...]:
    """The placements on which mesh hops must be counted (profiles that price hops)."""
    out = {pr.placement for pr in _spike_priced(profiles) if pr.placement is not None}
    return tuple(sorted(out, key=lambda p: (p.neurons_per_core, p.mesh_width, p.cores_per_tile)))
