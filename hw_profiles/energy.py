"""The energy model: operation counts of a converted student from its measured spikes, then joules.

Counting (per sample; see README.md for the reasoning):
- A *layer* is a neuron group of the network. Its work is what its cores do: the synaptic events
  delivered INTO it, its own neuron updates, the spike deliveries to its cores, and, for the first
  spiking group of a stream, the MACs of the host-side encoder that drives its bias.
- synops of a synapse group = sum over presynaptic neurons of (spike count x fan-out), where the
  fan-out of a neuron is its exact number of nonzero outgoing synapses (borders, stride, dilation
  and groups included): the transposed operation applied to ones with the weights' nonzero mask.
- JointAttention ``a[d,v] = sum_c q[c,v] sum_u k[c,u] x[d,u]`` counted as the accumulates of its
  event-driven form: each x spike at (d, u) adds the column k[:, u] into kx[:, d] (C adds), each q
  spike at (c, v) adds the row kx[c, :] into a[:, v] (D adds): synops = spikes(x) C + spikes(q) D.
- neuron updates: every neuron updates every step. A step in which it fires is an *active* update,
  all other steps are *idle* (a lower bound on active work: the activity files hold spike counts,
  not per-step input activity). The non-spiking readout integrates every step: all active.
- spike routing: neurons are placed on cores in the group's flattened (C, T, V) order,
  ``neurons_per_core`` per core; each spike is delivered once to every distinct core holding one of
  its targets (exact from the connectivity). Mesh hops are not counted (no placement): a lower bound.
- encoders: a real-valued input conv runs on the host once per run (its output is constant over
  the steps); MACs = output positions x in-bounds taps x input channels (dense host arithmetic,
  zero weights included, zero padding excluded).

A sample may take several network runs (``mksgn simulate`` runs each person of a two-person sample
separately, as the chip would): spike counts are summed over runs, and neuron updates and encoder
MACs are counted once per run (``runs / samples`` per sample).

Energies (pJ per sample):
- neuromorphic: synops E_synop + active E_update + idle E_update_idle + deliveries E_spike_core
  + encoder MACs E_input_mac;
- cmos (the paper's convention): synops E_ac + encoder MACs E_mac (E_input_mac if given)
  (+ all neuron updates E_neuron_update if the profile gives one);
- ann_device: the network computed densely every step: (synapses + neurons + attention MACs)
  x steps + encoder MACs, each one E_op.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from mksgn import netgraph
from mksgn.hw_profiles.profiles import Profile


# ---------------------------------------------------------------------------------------------
# Connectivity: the transposed operation of a synapse group on its nonzero mask

def _conv_dst_shape(syn: netgraph.Synapse, src_shape: tuple[int, ...]) -> tuple[int, int, int]:
    _, t, v = src_shape
    kt, kv = syn.weight.shape[2:]
    out = []
    for size, k, s, p, d in zip((t, v), (kt, kv), syn.stride, syn.padding, syn.dilation):
        out.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
    return (syn.weight.shape[0], out[0], out[1])


def transpose_apply(syn: netgraph.Synapse, src_shape: tuple[int, ...], dst_shape: tuple[int, ...],
                    y: np.ndarray) -> np.ndarray:
    """Apply the transpose of ``syn``'s connectivity (weights replaced by ``weight != 0``) to ``y``.

    y: float64 array of the destination group's shape (a batch axis in front is allowed:
    (B, *dst_shape)). Returns (B, *src_shape) (or src_shape): entry i is the sum of y over the
    targets of source neuron i. With ``y = 1`` this is the fan-out.
    """
    batched = y.ndim == len(dst_shape) + 1
    yb = y if batched else y[None]
    mask = (np.asarray(syn.weight) != 0).astype(np.float64)
    b = yb.shape[0]
    if syn.kind == "dense":
        out = yb.reshape(b, -1) @ mask                               # (B, N_src)
        out = out.reshape((b,) + tuple(src_shape))
    elif syn.kind == "conv":
        if len(src_shape) != 3 or len(dst_shape) != 3:
            raise ValueError(f"synapse {syn.name}: conv needs (C, T, V) groups")
        expect = _conv_dst_shape(syn, src_shape)
        if tuple(dst_shape) != expect:
            raise ValueError(f"synapse {syn.name}: conv maps {tuple(src_shape)} to {expect}, "
                             f"but the destination group is {tuple(dst_shape)}")
        out = torch.nn.grad.conv2d_input(
            (b,) + tuple(src_shape), torch.from_numpy(mask), torch.from_numpy(np.ascontiguousarray(yb)),
            stride=syn.stride, padding=syn.padding, dilation=syn.dilation, groups=syn.groups).numpy()
    elif syn.kind == "graph":
        # a[o, t, v] = sum_{i, u} w[o, i, v, u] s[i, t, u]  ->  s-side: sum_{o, v} m[o, i, v, u] y[o, t, v]
        out = np.einsum("oivu,botv->bitu", mask, yb.reshape((b,) + tuple(dst_shape)))
    else:
        raise ValueError(f"synapse {syn.name}: unknown kind {syn.kind!r}")
    return out if batched else out[0]


def fan_out(syn: netgraph.Synapse, src_shape, dst_shape) -> np.ndarray:
    """Exact number of nonzero outgoing synapses of each source neuron, int64 of ``src_shape``."""
    f = transpose_apply(syn, src_shape, dst_shape, np.ones(dst_shape, dtype=np.float64))
    return np.rint(f).astype(np.int64)


def cores_reached(syn: netgraph.Synapse, src_shape, dst_shape, neurons_per_core: int) -> np.ndarray:
    """Number of distinct destination cores each source neuron has targets on, int64 of src_shape.

    Destination neurons sit on cores in flattened (C, T, V) order, ``neurons_per_core`` each.
    """
    n_dst = int(np.prod(dst_shape))
    n_cores = math.ceil(n_dst / neurons_per_core)
    reached = np.zeros(src_shape, dtype=np.int64)
    chunk = 16                                    # cores per batched transpose (bounds memory)
    for c0 in range(0, n_cores, chunk):
        c1 = min(n_cores, c0 + chunk)
        ind = np.zeros((c1 - c0, n_dst), dtype=np.float64)
        for j, c in enumerate(range(c0, c1)):
            ind[j, c * neurons_per_core:(c + 1) * neurons_per_core] = 1.0
        hit = transpose_apply(syn, src_shape, dst_shape, ind.reshape((c1 - c0,) + tuple(dst_shape)))
        reached += (hit > 0.5).sum(axis=0)
    return reached


def encoder_macs(enc: netgraph.Encoder, dst_shape: tuple[int, ...]) -> int:
    """MACs of one host-side encoder conv per sample: in-bounds taps x C_in, summed over outputs."""
    c_out, c_in, kt, kv = enc.weight.shape
    _, t_out, v_out = dst_shape
    # input extent implied by the output shape; in-bounds taps of each output position counted by
    # convolving a ones input with a ones kernel (zero padding contributes nothing).
    t_in = (t_out - 1) * enc.stride[0] + kt - 2 * enc.padding[0]
    v_in = (v_out - 1) * enc.stride[1] + kv - 2 * enc.padding[1]
    ones = torch.ones((1, 1, t_in, v_in), dtype=torch.float64)
    taps = torch.nn.functional.conv2d(ones, torch.ones((1, 1, kt, kv), dtype=torch.float64),
                                      stride=enc.stride, padding=enc.padding)
    if tuple(taps.shape[2:]) != (t_out, v_out):
        raise ValueError(f"encoder {enc.name}: output {tuple(taps.shape[2:])} does not match "
                         f"group shape {dst_shape}")
    return int(round(taps.sum().item())) * c_in * c_out


# ---------------------------------------------------------------------------------------------
# Activity and counts

@dataclass
class Activity:
    """Measured spikes: per group, per-neuron spike counts summed over ``samples`` samples."""
    counts: dict[str, np.ndarray]      # group name -> int64 (group shape)
    samples: int
    num_steps: int
    runs: int | None = None            # network runs (samples x persons run); default: samples
    engine: str = ""
    network_sha256: str = ""

    @property
    def runs_per_sample(self) -> float:
        return (self.runs if self.runs is not None else self.samples) / self.samples


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


def count_student(net: netgraph.Network, act: Activity,
                  neurons_per_core: tuple[int, ...] = ()) -> list[LayerCounts]:
    """Per-layer operation counts of ``net`` driven by ``act`` (see the module docstring)."""
    steps = net.num_steps
    rps = act.runs_per_sample
    shapes = {g.name: tuple(g.shape) for g in net.groups}
    spk_total = {g.name: int(np.asarray(act.counts.get(g.name, 0)).sum()) for g in net.groups}
    layers: dict[str, LayerCounts] = {}
    for g in net.groups:
        fired = spk_total[g.name] / act.samples
        updates = g.size * steps * rps
        active = float(updates) if g.readout else fired
        layers[g.name] = LayerCounts(
            name=g.name, shape=shapes[g.name], neurons=g.size, synapses=0, spikes=fired,
            firing_rate=fired / updates if updates else 0.0, synops=0.0, attention_synops=0.0,
            updates_active=active, updates_idle=updates - active, encoder_macs=0.0, dense_macs=0,
            runs_per_sample=rps, readout=g.readout, deliveries={n: 0.0 for n in neurons_per_core})
    for syn in net.synapses:
        src, dst = shapes[syn.src], shapes[syn.dst]
        fo = fan_out(syn, src, dst)
        counts = np.asarray(act.counts[syn.src], dtype=np.int64).reshape(src)
        layer = layers[syn.dst]
        layer.synapses += int(fo.sum())
        layer.dense_macs += int(fo.sum())
        layer.synops += int((counts * fo).sum()) / act.samples
        for npc in neurons_per_core:
            reach = cores_reached(syn, src, dst, npc)
            layer.deliveries[npc] += int((counts * reach).sum()) / act.samples
    for att in net.attentions:
        c = shapes[att.q][0]
        d, t, v = shapes[att.x]
        ev = spk_total[att.x] * c + spk_total[att.q] * d
        layer = layers[att.dst]
        layer.synops += ev / act.samples
        layer.attention_synops += ev / act.samples
        layer.dense_macs += 2 * c * d * v * t       # kx: (C, D) over u; a: (D, V) over c; per frame
        for npc in neurons_per_core:
            # each q/x spike is broadcast to every core of the attention's destination group
            # (its targets depend on the other operands' spikes): one delivery per core.
            cores = math.ceil(int(np.prod(shapes[att.dst])) / npc)
            layer.deliveries[npc] += (spk_total[att.x] + spk_total[att.q]) * cores / act.samples
    for enc in net.encoders:
        layers[enc.dst].encoder_macs += encoder_macs(enc, shapes[enc.dst]) * rps
    return [layers[g.name] for g in net.groups]


# ---------------------------------------------------------------------------------------------
# Energy

@dataclass
class EnergyBreakdown:
    """Energy of one layer on one profile, pJ per sample."""
    synops: float = 0.0
    neurons: float = 0.0
    routing: float = 0.0
    input: float = 0.0

    @property
    def total(self) -> float:
        return self.synops + self.neurons + self.routing + self.input


def _input_mac_pj(profile: Profile, fallback: str | None) -> float:
    if profile.has("input_mac"):
        return profile.pj("input_mac")
    if fallback is not None:
        return profile.pj(fallback)
    raise ValueError(f"profile {profile.name} has no energy.input_mac for the network's encoders")


def layer_energy(layer: LayerCounts, profile: Profile, num_steps: int) -> EnergyBreakdown:
    """Energy of one student layer on ``profile`` (pJ per sample, see module docstring)."""
    e = EnergyBreakdown()
    if profile.kind == "neuromorphic":
        e.synops = layer.synops * profile.pj("synop")
        e.neurons = (layer.updates_active * profile.pj("neuron_update")
                     + layer.updates_idle * profile.pj("neuron_update_idle",
                                                       profile.pj("neuron_update")))
        if profile.has("spike_core") and profile.neurons_per_core:
            e.routing = layer.deliveries[profile.neurons_per_core] * profile.pj("spike_core")
        if layer.encoder_macs:
            e.input = layer.encoder_macs * _input_mac_pj(profile, None)
    elif profile.kind == "cmos":
        e.synops = layer.synops * profile.pj("ac")
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


def needed_neurons_per_core(profiles: list[Profile]) -> tuple[int, ...]:
    """The core sizes for which spike deliveries must be counted."""
    return tuple(sorted({p.neurons_per_core for p in profiles
                         if p.kind == "neuromorphic" and p.neurons_per_core and p.has("spike_core")}))
