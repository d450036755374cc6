"""What a spike costs on the chip: the counting rules shared by ``mksgn energy`` and training.

One home for the rules (``hw_profiles/README.md`` explains them to users; ``mksgn energy`` prices
them per layer; energy-aware training differentiates them):

- A synapse group ``src -> dst`` delivers, for every spike of source neuron i, one synaptic event
  (a *synop*) to each of its nonzero outgoing synapses: ``synops = sum_i spikes_i * fanout_i``.
  The fan-out is exact: the transposed operation applied to ones with the weights' nonzero mask
  (dense: nonzeros per column; conv: output positions reached through nonzero taps with stride,
  padding, dilation, groups and borders; graph: nonzeros of ``w[:, i, :, u]``).
- A JointAttention ``a[d,v] = sum_c q[c,v] sum_u k[c,u] x[d,u]`` is counted as the accumulates of
  its event-driven form: a spike of x at (d, u) adds the column k[:, u] into kx[:, d] (C adds), a
  spike of q at (c, v) adds the row kx[c, :] into a[:, v] (D adds): ``spikes(x) C + spikes(q) D``.
  Its spikes are broadcast to every core of the destination group.
- Spike routing: a group's neurons sit on cores in flattened (C, T, V) order, ``neurons_per_core``
  each; a spike is delivered once to every distinct core holding one of its targets.
- Mesh hops (``Placement``): groups take cores in network order (``net.groups``), each group from
  a fresh core; core k sits on tile ``k // cores_per_tile`` of a 2-D mesh ``mesh_width`` tiles
  wide, filled row by row. Each delivery travels from the source neuron's tile to the destination
  core's tile in |dx| east-west and |dy| north-south hops (the Manhattan distance: a
  dimension-order route). Our placement, not a compiler's; one mesh, no chip-to-chip links.
- Neuron updates (``mksgn simulate`` records them with the fast engine): a neuron-step is
  *active* when, after that step's update, any state of the neuron is non-zero (u or v of a
  CUBA neuron; every state of a ``neuron_models`` neuron) or the neuron sent a message (a spike;
  a source group's neuron has no state, so it is active exactly when it spikes). All other
  neuron-steps are idle.

All spike-driven work is linear in the spike counts: each is ``sum_i spikes_i * w_i`` with an
integer per-neuron weight ``w`` that depends only on the network (``SpikeTerm``). So the same
terms give exact integer counts from measured spikes (numpy int64) and a differentiable estimate
from a training forward's spikes (torch float64): ``spike_work`` does both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from mksgn import netgraph

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


def _core_hits(syn: netgraph.Synapse, src_shape, dst_shape, neurons_per_core: int):
    """Yield ``(cores, hit)`` over the destination group's cores in chunks: ``cores`` int64 (k,)
    are the group's own core indices, ``hit`` bool (k, *src_shape) says whether source neuron i
    has a target on core ``cores[j]``. Destination neurons sit on cores in flattened (C, T, V)
    order, ``neurons_per_core`` each."""
    n_dst = int(np.prod(dst_shape))
    n_cores = math.ceil(n_dst / neurons_per_core)
    chunk = 16                                    # cores per batched transpose (bounds memory)
    for c0 in range(0, n_cores, chunk):
        c1 = min(n_cores, c0 + chunk)
        ind = np.zeros((c1 - c0, n_dst), dtype=np.float64)
        for j, c in enumerate(range(c0, c1)):
            ind[j, c * neurons_per_core:(c + 1) * neurons_per_core] = 1.0
        hit = transpose_apply(syn, src_shape, dst_shape, ind.reshape((c1 - c0,) + tuple(dst_shape)))
        yield np.arange(c0, c1, dtype=np.int64), hit > 0.5


def cores_reached(syn: netgraph.Synapse, src_shape, dst_shape, neurons_per_core: int) -> np.ndarray:
    """Number of distinct destination cores each source neuron has targets on, int64 of src_shape.

    Destination neurons sit on cores in flattened (C, T, V) order, ``neurons_per_core`` each.
    """
    reached = np.zeros(src_shape, dtype=np.int64)
    for _, hit in _core_hits(syn, src_shape, dst_shape, neurons_per_core):
        reached += hit.sum(axis=0)
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
# Placement on a 2-D mesh of tiles

@dataclass(frozen=True)
class Placement:
    """Where our placement puts every neuron on the chip's 2-D mesh (not a compiler's placement).

    Groups take cores in network order (``net.groups``), each group from a fresh core,
    ``neurons_per_core`` neurons per core in flattened (C, T, V) order. Core k sits on tile
    ``k // cores_per_tile``; tile j at column ``j % mesh_width`` (x, east-west) and row
    ``j // mesh_width`` (y, north-south). Rows continue past one chip's mesh: chip-to-chip links
    are not modelled, every hop is priced as an on-chip hop.
    """
    neurons_per_core: int
    mesh_width: int                    # tiles per mesh row
    cores_per_tile: int = 1

    def __post_init__(self):
        for key in ("neurons_per_core", "mesh_width", "cores_per_tile"):
            if int(getattr(self, key)) <= 0:
                raise ValueError(f"placement: {key} must be positive, got {getattr(self, key)}")

    def first_cores(self, net: netgraph.Network) -> dict[str, int]:
        """Group name -> index of its first core."""
        out, nxt = {}, 0
        for g in net.groups:
            out[g.name] = nxt
            nxt += math.ceil(int(np.prod(g.shape)) / self.neurons_per_core)
        return out

    def tile_xy(self, cores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mesh column and row (int64) of the tiles holding ``cores`` (global core indices)."""
        tile = np.asarray(cores, dtype=np.int64) // self.cores_per_tile
        return tile % self.mesh_width, tile // self.mesh_width

    def neuron_xy(self, first_core: int, shape) -> tuple[np.ndarray, np.ndarray]:
        """Mesh column and row (int64, ``shape``) of every neuron of a group whose first core is
        ``first_core``."""
        n = int(np.prod(shape))
        x, y = self.tile_xy(first_core + np.arange(n, dtype=np.int64) // self.neurons_per_core)
        return x.reshape(shape), y.reshape(shape)


def placement(profile) -> Placement | None:
    """The placement a hardware profile states (``neurons_per_core``, ``mesh_width``,
    ``cores_per_tile``), or None when it states no mesh."""
    npc, width = getattr(profile, "neurons_per_core", None), getattr(profile, "mesh_width", None)
    if not npc or not width:
        return None
    return Placement(int(npc), int(width), int(getattr(profile, "cores_per_tile", None) or 1))


def mesh_hops(syn: netgraph.Synapse, src_shape, dst_shape, place: Placement, src_first: int,
              dst_first: int) -> tuple[np.ndarray, np.ndarray]:
    """East-west and north-south hops of one spike of each source neuron (int64, src_shape).

    The spike is delivered to every distinct destination core holding one of its targets (as
    ``cores_reached``); each delivery takes |dx| + |dy| hops from the source neuron's tile to
    the core's tile. ``src_first``, ``dst_first``: the groups' first cores (``first_cores``).
    """
    sx, sy = place.neuron_xy(src_first, src_shape)
    ew = np.zeros(src_shape, dtype=np.int64)
    ns = np.zeros(src_shape, dtype=np.int64)
    expand = (slice(None),) + (None,) * len(src_shape)
    for cores, hit in _core_hits(syn, src_shape, dst_shape, place.neurons_per_core):
        dx, dy = place.tile_xy(dst_first + cores)
        ew += (hit * np.abs(sx[None] - dx[expand])).sum(axis=0)
        ns += (hit * np.abs(sy[None] - dy[expand])).sum(axis=0)
    return ew, ns


def _broadcast_hops(src_shape, dst_shape, place: Placement, src_first: int, dst_first: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Hops of a spike delivered to every core of the destination group (attention operands)."""
    sx, sy = place.neuron_xy(src_first, src_shape)
    n_cores = math.ceil(int(np.prod(dst_shape)) / place.neurons_per_core)
    dx, dy = place.tile_xy(dst_first + np.arange(n_cores, dtype=np.int64))
    ew = np.abs(sx.reshape(-1, 1) - dx[None]).sum(axis=1).reshape(src_shape)
    ns = np.abs(sy.reshape(-1, 1) - dy[None]).sum(axis=1).reshape(src_shape)
    return ew, ns


# ---------------------------------------------------------------------------------------------
# Spike-driven work as linear terms

@dataclass
class SpikeTerm:
    """The work one spike of each neuron of ``src`` causes in ``dst`` (int64 arrays, src shape).

    synops: synaptic events per spike (the fan-out; for an attention operand C or D);
    cores: neurons_per_core -> destination cores the spike is delivered to;
    hops_ew, hops_ns: placement -> east-west / north-south mesh hops of those deliveries.
    """
    name: str
    src: str
    dst: str
    kind: str                          # "synapse" | "attention"
    synops: np.ndarray
    cores: dict[int, np.ndarray] = field(default_factory=dict)
    hops_ew: dict[Placement, np.ndarray] = field(default_factory=dict)
    hops_ns: dict[Placement, np.ndarray] = field(default_factory=dict)


def spike_terms(net: netgraph.Network, neurons_per_core: tuple[int, ...] = (),
                placements: tuple[Placement, ...] = ()) -> list[SpikeTerm]:
    """Every synapse group's and attention operand's per-spike work in ``net``: deliveries for
    each core size in ``neurons_per_core``, mesh hops for each of ``placements``."""
    shapes = {g.name: tuple(g.shape) for g in net.groups}
    first = {p: p.first_cores(net) for p in placements}
    terms = []
    for syn in net.synapses:
        src, dst = shapes[syn.src], shapes[syn.dst]
        t = SpikeTerm(syn.name, syn.src, syn.dst, "synapse", fan_out(syn, src, dst),
                      {n: cores_reached(syn, src, dst, n) for n in neurons_per_core})
        for p in placements:
            t.hops_ew[p], t.hops_ns[p] = mesh_hops(syn, src, dst, p, first[p][syn.src],
                                                   first[p][syn.dst])
        terms.append(t)
    for att in net.attentions:
        c, d = shapes[att.q][0], shapes[att.x][0]
        n_dst = int(np.prod(shapes[att.dst]))
        for src, per in ((att.x, c), (att.q, d)):
            full = lambda v: np.full(shapes[src], v, dtype=np.int64)  # noqa: E731
            t = SpikeTerm(att.name, src, att.dst, "attention", full(per),
                          {n: full(math.ceil(n_dst / n)) for n in neurons_per_core})
            for p in placements:
                t.hops_ew[p], t.hops_ns[p] = _broadcast_hops(shapes[src], shapes[att.dst], p,
                                                             first[p][src], first[p][att.dst])
            terms.append(t)
    return terms


def weigh(counts, per_spike: np.ndarray):
    """``sum_i counts_i * per_spike_i`` over a group's neurons.

    counts: numpy integers of the group's shape (-> Python int, exact), or a torch tensor of the
    group's shape with optional leading batch axes (-> tensor of the batch shape, differentiable,
    in counts' dtype; float64 keeps integer counts exact up to 2**53).
    """
    if torch.is_tensor(counts):
        w = torch.as_tensor(per_spike, dtype=counts.dtype, device=counts.device)
        return (counts * w).flatten(counts.dim() - w.dim()).sum(-1)
    c = np.asarray(counts)
    if not np.issubdtype(c.dtype, np.integer):
        raise TypeError(f"spike counts must be integers for exact counting, got {c.dtype}")
    return int((c.astype(np.int64) * per_spike).sum())


@dataclass
class SpikeWork:
    """Spike-driven work delivered into one group: synops, core deliveries and mesh hops (per the
    counts' batch entry, or totals for numpy counts)."""
    synops: object = 0
    attention_synops: object = 0
    deliveries: dict[int, object] = field(default_factory=dict)
    hops_ew: dict[Placement, object] = field(default_factory=dict)
    hops_ns: dict[Placement, object] = field(default_factory=dict)


def spike_work(terms: list[SpikeTerm], counts) -> dict[str, SpikeWork]:
    """Work per destination group from per-group spike counts (a mapping group -> counts, see
    ``weigh``). Groups absent from ``counts`` are taken as silent."""
    out: dict[str, SpikeWork] = {}
    for t in terms:
        w = out.setdefault(t.dst, SpikeWork())
        if t.src not in counts:
            continue
        c = counts[t.src]
        n = weigh(c, t.synops)
        w.synops = w.synops + n
        if t.kind == "attention":
            w.attention_synops = w.attention_synops + n
        for npc, per in t.cores.items():
            w.deliveries[npc] = w.deliveries.get(npc, 0) + weigh(c, per)
        for p, per in t.hops_ew.items():
            w.hops_ew[p] = w.hops_ew.get(p, 0) + weigh(c, per)
        for p, per in t.hops_ns.items():
            w.hops_ns[p] = w.hops_ns.get(p, 0) + weigh(c, per)
    return out


# ---------------------------------------------------------------------------------------------
# Prices of spike-driven work

@dataclass(frozen=True)
class SpikePrices:
    """pJ of spike-driven work on one profile (0 / None: not priced there): per synaptic event,
    per delivery to a core (for ``neurons_per_core``), per east-west / north-south mesh hop (on
    ``placement``)."""
    profile: str
    synop_pj: float
    delivery_pj: float = 0.0
    neurons_per_core: int | None = None
    hop_ew_pj: float = 0.0
    hop_ns_pj: float = 0.0
    placement: Placement | None = None

    def parts_pj(self, work: SpikeWork) -> tuple:
        """(synops, routing, mesh) pJ of ``work`` (numbers or tensors, as ``spike_work`` made
        them); raises if ``work`` lacks a count these prices need."""
        synops = work.synops * self.synop_pj
        routing = mesh = 0
        if self.delivery_pj:
            if self.neurons_per_core not in work.deliveries:
                raise ValueError(f"{self.profile}: deliveries for {self.neurons_per_core} neurons "
                                 "per core were not counted")
            routing = work.deliveries[self.neurons_per_core] * self.delivery_pj
        if self.placement is not None:
            if self.placement not in work.hops_ew:
                raise ValueError(f"{self.profile}: mesh hops on {self.placement} were not counted")
            mesh = (work.hops_ew[self.placement] * self.hop_ew_pj
                    + work.hops_ns[self.placement] * self.hop_ns_pj)
        return synops, routing, mesh

    def energy_pj(self, work: SpikeWork):
        """Total pJ of ``work``."""
        synops, routing, mesh = self.parts_pj(work)
        return synops + routing + mesh


def spike_prices(profile) -> SpikePrices:
    """The prices of spike-driven work on a hardware profile (``mksgn.profiles``):
    neuromorphic: synop, spike_core per delivery when the profile has a core size, hop_ew/hop_ns
    per mesh hop on its placement; cmos: AC per synop (the paper's convention). ann_device
    profiles compute densely: spikes cost nothing extra there."""
    if profile.kind == "neuromorphic":
        routed = profile.has("spike_core") and profile.neurons_per_core
        place = None
        if profile.has("hop_ew") or profile.has("hop_ns"):
            place = placement(profile)
            if place is None:
                raise ValueError(f"profile {profile.name} prices mesh hops but states no "
                                 "neurons_per_core and mesh_width to place the network")
        return SpikePrices(profile.name, profile.pj("synop"),
                           profile.pj("spike_core") if routed else 0.0,
                           profile.neurons_per_core if routed else None,
                           profile.pj("hop_ew", 0.0), profile.pj("hop_ns", 0.0), place)
    if profile.kind == "cmos":
        return SpikePrices(profile.name, profile.pj("ac"))
    raise ValueError(f"profile {profile.name} ({profile.kind}) computes densely: its energy does "
                     "not depend on spikes")
