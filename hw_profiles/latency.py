"""How long a sample takes on a neuromorphic chip: a per-step barrier plus the busiest core's work.

The model (a profile's ``latency`` entries, ``mksgn.profiles.LATENCY_KEYS``; the numbers of the
bundled ``loihi`` profile are SANA-FE's Loihi description, see ``hw_profiles/loihi.yaml``):

- Loihi runs in lock-step time steps: every core works through its own neurons and the spike
  messages it received, serially, then all cores meet at a barrier (Davies et al., IEEE Micro
  2018). A step takes ``step_sync + max over cores of the core's work``; a sample takes that
  for each of its ``num_steps`` steps in each of its runs.
- A core's work in one step: ``active x neuron_update + idle x neuron_update_idle + synops_in x
  synop + messages_in x spike_core + spikes_out x spike_out``, on our placement
  (``mksgn.opcount.Placement``: groups on fresh cores in network order, ``neurons_per_core`` each).
- ``student_latency`` (the energy report, from per-neuron totals) takes each core's load
  averaged over the sample's steps: a lower bound when activity comes in bursts (a wave through
  the layers), since the slowest core of each step is then slower than the average.
  ``latency_from_trains`` (``mksgn.spike_trains``: who fired at which step) takes every step's
  own load, the model proper; active neuron-steps are then a run's average per step. Per core,
  neurons, active steps and spikes are exact; synaptic events and messages into a group are
  split over its cores in proportion to the neurons each holds.
- Not modelled: the mesh's transit time (overlapped with the cores' work), host I/O, the
  host-side encoder.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mksgn import netgraph
from mksgn.activity import Activity
from mksgn.profiles import Profile


@dataclass
class LatencyEstimate:
    """Time on one profile: s per time step and per sample, and where the busiest core is."""
    profile: str
    per_step_s: float
    per_sample_s: float
    step_sync_s: float
    busiest_layer: str
    busiest_core_s: float              # that core's work per step


def _core_sizes(size: int, per_core: int) -> np.ndarray:
    n = math.ceil(size / per_core)
    return np.minimum(per_core, size - per_core * np.arange(n))


def _per_core(counts: np.ndarray, per_core: int) -> np.ndarray:
    flat = np.asarray(counts, dtype=np.float64).ravel()
    return np.add.reduceat(flat, np.arange(0, flat.size, per_core))


def student_latency(net: netgraph.Network, act: Activity, layers, profile: Profile
                    ) -> LatencyEstimate | None:
    """The model above for ``profile`` (None when it states no latency or no core size);
    ``layers``: ``mksgn.hw_profiles.energy.count_student``'s per-layer counts of ``act``."""
    if not profile.latency or not profile.neurons_per_core:
        return None
    npc = int(profile.neurons_per_core)
    run_steps = act.runs_per_sample * net.num_steps * act.samples   # run-steps measured
    t = {k: profile.seconds(k, 0.0) for k in ("neuron_update", "synop", "spike_core",
                                              "spike_out")}
    t_idle = profile.seconds("neuron_update_idle", t["neuron_update"])
    by_name = {lc.name: lc for lc in layers}
    worst, worst_layer = 0.0, ""
    for g in net.groups:
        lc = by_name[g.name]
        sizes = _core_sizes(g.size, npc)
        share = sizes / g.size
        spikes = _per_core(act.counts[g.name], npc) / run_steps
        if g.readout:
            active = sizes.astype(np.float64)
        elif act.active is not None:
            active = _per_core(act.active[g.name], npc) / run_steps
        else:
            active = spikes
        per_step = act.samples / run_steps          # per-sample counts -> per run-step
        work = (active * t["neuron_update"] + (sizes - active) * t_idle
                + share * lc.synops * per_step * t["synop"]
                + share * lc.deliveries.get(npc, 0.0) * per_step * t["spike_core"]
                + spikes * t["spike_out"])
        if work.max() > worst:
            worst, worst_layer = float(work.max()), g.name
    step = profile.seconds("step_sync") + worst
    return LatencyEstimate(profile.name, step, step * net.num_steps * act.runs_per_sample,
                           profile.seconds("step_sync"), worst_layer, worst)


def latency_from_trains(net: netgraph.Network, trains, profile: Profile
                        ) -> LatencyEstimate | None:
    """The model with every step's own load, from ``trains`` (a ``mksgn.spike_trains``
    ``SpikeTrains``): per sample, the sum over its steps of the barrier plus that step's
    busiest core. None when ``profile`` states no latency or no core size."""
    from mksgn.opcount import spike_terms

    if not profile.latency or not profile.neurons_per_core:
        return None
    npc, steps = int(profile.neurons_per_core), trains.runs * net.num_steps
    t = {k: profile.seconds(k, 0.0) for k in ("neuron_update", "synop", "spike_core",
                                              "spike_out")}
    t_idle = profile.seconds("neuron_update_idle", t["neuron_update"])
    work, share = {}, {}
    for g in net.groups:
        sizes = _core_sizes(g.size, npc)
        share[g.name] = sizes / g.size
        fired = trains.spikes[g.name].reshape(steps, g.size).astype(np.float64)
        spikes = np.add.reduceat(fired, np.arange(0, g.size, npc), axis=1)       # (steps, cores)
        active = np.add.reduceat(trains.active[g.name].reshape(trains.runs, g.size)
                                 .astype(np.float64), np.arange(0, g.size, npc), axis=1)
        active = np.repeat(active / net.num_steps, net.num_steps, axis=0)
        if g.readout:
            active = np.broadcast_to(sizes, active.shape).astype(np.float64)
        work[g.name] = (active * t["neuron_update"] + (sizes - active) * t_idle
                        + spikes * t["spike_out"])
    for term in spike_terms(net, (npc,)):
        fired = trains.spikes[term.src].reshape(steps, -1).astype(np.float64)
        load = (fired @ term.synops.ravel() * t["synop"]
                + fired @ term.cores[npc].ravel() * t["spike_core"])
        work[term.dst] = work[term.dst] + np.outer(load, share[term.dst])
    busiest = np.stack([w.max(axis=1) for w in work.values()])               # (groups, steps)
    sync = profile.seconds("step_sync")
    step = sync + busiest.max(axis=0)
    worst = int(busiest.max(axis=1).argmax())
    return LatencyEstimate(profile.name, float(step.mean()), float(step.sum()) / trains.samples,
                           sync, net.groups[worst].name, float(busiest[worst].max()))
