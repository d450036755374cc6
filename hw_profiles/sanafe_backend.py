"""SANA-FE's Loihi model of a converted student, beside our own ``loihi`` counts.

SANA-FE (Boyle et al., "SANA-FE: Simulating Advanced Neuromorphic Architectures for Fast
Exploration", IEEE TCAD 2025; ``sanafe`` on PyPI, GPL-3.0) simulates a mapped SNN on a described
chip one time step at a time and reports energy and simulated time. Its wheel ships a Loihi
description (``sanafe/examples/loihi.yaml``: a mesh 8 tiles wide and 4 high, 4 cores per tile,
1,024 neurons per core, per-event energies and latencies, a barrier-sync table) that its authors
fitted to Loihi measurements. ``sanafe`` is imported here only, lazily: it is an optional extra
(``pip install 'mksgn[sanafe]'``), and nothing else in mksgn depends on a GPL package.

What runs, and why (where SANA-FE is silent or cannot express our network):

- **Replay, not re-simulation.** SANA-FE's LIF soma is floating point (only v is rounded, to
  1/64) and has no three-way product, so it can neither reproduce Loihi's integer CUBA update
  bit for bit nor express a ``JointAttention``. Every neuron is therefore an ``input`` soma that
  replays the spikes the fast engine recorded (``mksgn.spike_trains``), and SANA-FE prices and
  times what those spikes cause: each spike's messages to destination cores, the mesh hops, the
  synaptic look-ups there, and every neuron's soma work. Synapses carry weight 0 (an input soma
  must receive no current; the energy of a look-up does not depend on the weight).
- **The replayed soma is priced as a LIF compartment.** Loihi's file gives its ``input`` somas no
  cost; we give them ``loihi_lif``'s energies and latencies (access, update, spike out), since each
  stands for one. SANA-FE then charges every neuron-step an access, and a spiking step an update
  and a spike out. A replayed neuron that is active without spiking (state non-zero) is idle to
  SANA-FE; those updates (the engine's recorded active steps minus spikes) are priced at
  ``loihi_lif``'s update energy as a separate part, ``soma_update_unseen``, so the total is
  SANA-FE's model of the whole work. Their latency is not added (SANA-FE times the replay as it
  ran); ``latency_unseen_bound_s`` bounds what they could add per sample.
- **Placement** is ours (``mksgn.opcount.Placement`` of the ``loihi`` profile): groups take cores
  in network order, each from a fresh core, 1,024 neurons per core in flattened (C, T, V) order,
  4 cores per tile on a mesh 8 tiles wide. SANA-FE numbers tiles down the columns (tile id =
  x * height + y); each of our cores is put on SANA-FE's tile at the same (x, y), so the hops
  SANA-FE counts are those of our placement. A network needing more than Loihi's 32 tiles gets a
  taller mesh of the same tiles (as our ``loihi`` profile prices it; no chip-to-chip links).
- **Synapses** are the nonzero weights (zeros are absent synapses, as in ``mksgn.opcount``), each
  one SANA-FE connection. SANA-FE picks one synapse unit per destination neuron; a destination
  group takes the unit of its kind: ``dense`` -> ``loihi_dense_synapse``, ``conv`` ->
  ``loihi_conv_synapse``, ``graph`` and attention -> ``loihi_sparse_synapse`` (the first
  incoming synapse's kind decides when a group has several).
- **Attention** is an approximation: a spike of x (of q) is C (D) accumulates delivered to every
  core of the destination (``mksgn.opcount``); SANA-FE can only send a message where a connection
  is, so each x (q) neuron gets C (D) connections spread round-robin over the destination's cores.
  Synaptic events match ours exactly; messages do when C (D) is at least the destination's cores.
- **Per sample, not per layer**: ``SpikingChip.sim`` (2.2.9) returns chip-wide totals per time
  step (its perf trace), no per-unit figures; ours stay per layer in ``energy.json``.
- **Memory**: SANA-FE holds every connection twice; ``simulate(max_connections=N)`` cuts the
  network by destination cores into several SANA-FE runs whose figures add up (see there).
- **Runs** are simulated back to back in one SANA-FE run (a replayed soma keeps no state, and
  SANA-FE charges a spike's look-ups in the step it is sent, so no work crosses runs); per-step
  figures come from SANA-FE's perf trace and are summed per run and per sample.

Energies are pJ and times seconds, per sample (one classified sequence, all its runs).
"""
from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mksgn import netgraph
from mksgn.files import atomic_write_text
from mksgn.opcount import Placement, fan_out
from mksgn.opcount import placement as placement_of
from mksgn.spike_trains import SpikeTrains

SCHEMA = "mksgn-sanafe/1"
PIN = "sanafe==2.2.9"
INSTALL = f"the sanafe backend needs SANA-FE: pip install 'mksgn[sanafe]' ({PIN}, GPL-3.0)"
ARCH_FILE = "loihi.yaml"               # in the wheel's sanafe/examples
SOMA_COSTS = ("energy_access_neuron", "latency_access_neuron", "energy_update_neuron",
              "latency_update_neuron", "energy_spike_out", "latency_spike_out")
UNIT = {"dense": "loihi_dense_synapse", "conv": "loihi_conv_synapse",
        "graph": "loihi_sparse_synapse", "attention": "loihi_sparse_synapse"}
PARTS = ("synapse", "soma_access", "soma_update", "soma_spike_out", "soma_update_unseen",
         "messages", "hops")


def import_sanafe():
    """The ``sanafe`` module, or ImportError with one line telling how to install it."""
    try:
        import sanafe
    except ImportError:
        raise ImportError(INSTALL) from None
    return sanafe


# ---------------------------------------------------------------------------------------------
# The chip: SANA-FE's Loihi description, tall enough, with LIF-priced replay somas

@dataclass(frozen=True)
class LoihiArch:
    """What the backend read from SANA-FE's ``loihi.yaml`` (energies J, latencies s) and the
    mesh it simulates: ``height`` tiles high (>= the file's), ``width`` wide."""
    width: int
    height: int
    cores_per_tile: int
    neurons_per_core: int
    soma: dict[str, float]             # loihi_lif: SOMA_COSTS
    synapse_energy: dict[str, float]   # unit name -> J per look-up
    message_out_energy: float
    hop_energy_ew: float
    hop_energy_ns: float
    sync_latency: dict[int, float]     # tiles in use -> s per step (the file's table)

    @property
    def placement(self) -> Placement:
        return Placement(self.neurons_per_core, self.width, self.cores_per_tile)


def _shipped_arch() -> dict:
    import yaml
    from importlib.resources import files

    import_sanafe()
    return yaml.safe_load((files("sanafe.examples") / ARCH_FILE).read_text())


def _units(core: dict, section: str) -> dict[str, dict]:
    return {u["name"]: u.get("attributes", {}) for u in core[section]}


def loihi_arch(tiles: int = 1) -> tuple[LoihiArch, dict]:
    """SANA-FE's Loihi description with a mesh at least ``tiles`` tiles large and its ``input``
    somas priced as ``loihi_lif``; returns the facts read and the YAML document to load."""
    doc = _shipped_arch()
    top = doc["architecture"]
    width, height = int(top["attributes"]["width"]), int(top["attributes"]["height"])
    height = max(height, math.ceil(tiles / width))
    top["attributes"]["height"] = height
    tile = top["tile"][0]
    tile["name"] = f"loihi_tile[0..{width * height - 1}]"
    core = tile["core"][0]
    somas = core["soma"]
    lif = next(u for u in somas if u["name"] == "loihi_lif")["attributes"]
    for u in somas:
        if u["attributes"].get("model") == "input":
            u["attributes"].update({k: lif[k] for k in SOMA_COSTS})
    t = tile["attributes"]
    arch = LoihiArch(
        width=width, height=height, cores_per_tile=_range_len(core["name"]),
        neurons_per_core=int(core["attributes"]["max_neurons_supported"]),
        soma={k: float(lif[k]) for k in SOMA_COSTS},
        synapse_energy={n: float(a["energy_process_spike"])
                        for n, a in _units(core, "synapse").items()},
        message_out_energy=float(core["axon_out"][0]["attributes"]["energy_message_out"]),
        hop_energy_ew=float(t["energy_east_hop"]), hop_energy_ns=float(t["energy_north_hop"]),
        sync_latency={int(k): float(v) for k, v in top["attributes"]["latency_sync"].items()})
    return arch, doc


def _range_len(name: str) -> int:
    """``loihi_core[0..3]`` -> 4."""
    lo, hi = name[name.index("[") + 1:-1].split("..")
    return int(hi) - int(lo) + 1


def sanafe_core(core: int, arch: LoihiArch) -> int:
    """SANA-FE's index (``Architecture.cores()`` order) of our placement's core ``core``: the
    core at the same place in the tile at the same mesh (x, y); SANA-FE numbers tiles down the
    columns."""
    tile, within = divmod(core, arch.cores_per_tile)
    x, y = tile % arch.width, tile // arch.width
    return (x * arch.height + y) * arch.cores_per_tile + within


# ---------------------------------------------------------------------------------------------
# The network as connections

def synapse_pairs(syn: netgraph.Synapse, src_shape, dst_shape) -> tuple[np.ndarray, np.ndarray]:
    """Every nonzero synapse of ``syn`` as flat (source, destination) neuron indices (int64,
    row-major (C, T, V) order). Their count per source is ``mksgn.opcount.fan_out``."""
    mask = np.asarray(syn.weight) != 0
    if syn.kind == "dense":
        dst, src = np.nonzero(mask.reshape(int(np.prod(dst_shape)), int(np.prod(src_shape))))
        return src.astype(np.int64), dst.astype(np.int64)
    if syn.kind == "graph":
        _, t, v = src_shape
        o, i, vv, u = np.nonzero(mask)
        steps = np.arange(t, dtype=np.int64)[:, None]
        src = (i * t * v + u)[None] + steps * v
        dst = (o * t * v + vv)[None] + steps * v
        return src.ravel(), dst.ravel()
    if syn.kind == "conv":
        return _conv_pairs(syn, mask, src_shape, dst_shape)
    raise ValueError(f"synapse {syn.name}: kind {syn.kind!r} is not supported by the SANA-FE "
                     "backend")


def _conv_pairs(syn, mask, src_shape, dst_shape):
    c_in, t_in, v_in = src_shape
    c_out, t_out, v_out = dst_shape
    per_out, per_in = c_out // syn.groups, c_in // syn.groups
    srcs, dsts = [], []
    for a, b in zip(*np.nonzero(mask.any(axis=(0, 1)))):
        ti = np.arange(t_out) * syn.stride[0] - syn.padding[0] + a * syn.dilation[0]
        vi = np.arange(v_out) * syn.stride[1] - syn.padding[1] + b * syn.dilation[1]
        tok, vok = np.nonzero((ti >= 0) & (ti < t_in))[0], np.nonzero((vi >= 0) & (vi < v_in))[0]
        pos_out = (tok[:, None] * v_out + vok[None]).ravel()
        pos_in = (ti[tok][:, None] * v_in + vi[vok][None]).ravel()
        o, il = np.nonzero(mask[:, :, a, b])
        i = (o // per_out) * per_in + il
        srcs.append(((i * t_in * v_in)[:, None] + pos_in[None]).ravel())
        dsts.append(((o * t_out * v_out)[:, None] + pos_out[None]).ravel())
    if not srcs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(srcs).astype(np.int64), np.concatenate(dsts).astype(np.int64)


def attention_pairs(n_src: int, per_spike: int, n_dst: int, neurons_per_core: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``per_spike`` connections from each of ``n_src`` neurons, spread round-robin over the
    destination's cores (see the module docstring): flat (source, destination) indices."""
    cores = math.ceil(n_dst / neurons_per_core)
    src = np.repeat(np.arange(n_src, dtype=np.int64), per_spike)
    j = np.tile(np.arange(per_spike, dtype=np.int64), n_src)
    core = j % cores
    size = np.minimum(neurons_per_core, n_dst - core * neurons_per_core)
    return src, core * neurons_per_core + (src + j // cores) % size


@dataclass
class Projection:
    """One group of connections: ``name``, source and destination groups, the kind that picks
    the synapse unit, and flat (source, destination) indices."""
    name: str
    src: str
    dst: str
    kind: str
    pairs: tuple[np.ndarray, np.ndarray]


def projections(net: netgraph.Network, neurons_per_core: int) -> list[Projection]:
    """Every synapse group and attention operand of ``net`` as SANA-FE connections."""
    shapes = {g.name: tuple(g.shape) for g in net.groups}
    out = [Projection(s.name, s.src, s.dst, s.kind, synapse_pairs(s, shapes[s.src], shapes[s.dst]))
           for s in net.synapses]
    for att in net.attentions:
        c, d = shapes[att.q][0], shapes[att.x][0]
        n_dst = int(np.prod(shapes[att.dst]))
        for src, per in ((att.x, c), (att.q, d)):
            out.append(Projection(f"{att.name}/{src}", src, att.dst, "attention",
                                  attention_pairs(int(np.prod(shapes[src])), per, n_dst,
                                                  neurons_per_core)))
    return out


def check_fan_out(net: netgraph.Network, projs: list[Projection]) -> None:
    """Raise unless every synapse group's connections per source neuron equal ``fan_out``."""
    shapes = {g.name: tuple(g.shape) for g in net.groups}
    by_name = {p.name: p for p in projs}
    for syn in net.synapses:
        src = by_name[syn.name].pairs[0]
        want = fan_out(syn, shapes[syn.src], shapes[syn.dst]).ravel()
        got = np.bincount(src, minlength=want.size)
        if not np.array_equal(got, want):
            raise AssertionError(f"synapse {syn.name}: connections per source differ from fan_out")


# ---------------------------------------------------------------------------------------------
# Build, map and run

def _write_arch(doc: dict, tmp: Path) -> Path:
    import yaml

    path = tmp / "loihi_mksgn.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _group_units(net: netgraph.Network, projs: list[Projection]) -> dict[str, str]:
    """Destination group -> its synapse unit (the first incoming projection's kind decides)."""
    out: dict[str, str] = {}
    for p in projs:
        out.setdefault(p.dst, UNIT[p.kind])
    return out


def neuron_cores(net: netgraph.Network, arch: LoihiArch
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Where every neuron goes: group -> (SANA-FE core index, replay soma unit on that core),
    int64 (group size,) each; our placement, one soma unit per neuron of a core."""
    first = arch.placement.first_cores(net)
    npc = arch.neurons_per_core
    out = {}
    for g in net.groups:
        i = np.arange(g.size, dtype=np.int64)
        ours = first[g.name] + i // npc
        out[g.name] = (np.array([sanafe_core(int(k), arch) for k in ours], np.int64), i % npc)
    return out


def _map_neurons(snet, cores, net: netgraph.Network, trains: SpikeTrains,
                 where: dict[str, tuple[np.ndarray, np.ndarray]], names: set[str],
                 units: dict[str, str]) -> dict[str, object]:
    """Create the groups ``names`` as replay somas on our placement's cores (``where``);
    returns name -> SANA-FE group."""
    groups = {}
    for g in net.groups:
        if g.name not in names:
            continue
        sg = snet.create_neuron_group(g.name, g.size, model_attributes={})
        flat = trains.spikes[g.name].reshape(trains.runs * net.num_steps, g.size)
        core, unit = where[g.name]
        for i in range(g.size):
            sg[i].set_attributes(soma_hw_name=f"loihi_inputs[{unit[i]}]", log_spikes=True,
                                 default_synapse_hw_name=units.get(g.name, UNIT["dense"]))
            sg[i].map_to_core(cores[int(core[i])])
        for i in np.flatnonzero(flat.any(axis=0)):
            sg[int(i)].set_attributes(model_attributes={"spikes": flat[:, i].tolist()})
        groups[g.name] = sg
    return groups


def _hold_tiles(snet, cores, arch: LoihiArch, tiles: set[int]) -> None:
    """One idle replay soma on the first core of each of ``tiles`` (SANA-FE tile ids): a slice
    then has as many tiles in use as the whole network, so SANA-FE's barrier time is the same."""
    if not tiles:
        return
    hold = snet.create_neuron_group("_tiles_in_use", len(tiles), model_attributes={})
    for i, tile in enumerate(sorted(tiles)):
        hold[i].set_attributes(soma_hw_name="loihi_inputs[0]")
        hold[i].map_to_core(cores[tile * arch.cores_per_tile])


def _connect(groups: dict[str, object], projs: list[Projection], chunk: int = 1 << 20) -> int:
    """Every projection as weight-0 connections (in chunks, to bound the Python lists)."""
    n = 0
    for p in projs:
        src, dst = p.pairs
        for lo in range(0, src.size, chunk):
            s, d = src[lo:lo + chunk], dst[lo:lo + chunk]
            groups[p.src].connect_neurons_sparse(groups[p.dst], {"weight": [0.0] * s.size},
                                                 list(zip(s.tolist(), d.tolist())))
        n += src.size
    return n


def slices(net: netgraph.Network, projs: list[Projection], arch: LoihiArch,
           max_connections: int | None) -> list[np.ndarray]:
    """Our destination cores, packed in order into slices of at most ``max_connections``
    incoming connections (a core with more is a slice of its own); one slice when None."""
    first = arch.placement.first_cores(net)
    n_cores = sum(math.ceil(g.size / arch.neurons_per_core) for g in net.groups)
    load = np.zeros(n_cores, np.int64)
    for p in projs:
        np.add.at(load, first[p.dst] + p.pairs[1] // arch.neurons_per_core, 1)
    if max_connections is None:
        return [np.arange(n_cores)]
    out, cur, held = [], [], 0
    for c in range(n_cores):
        if cur and held + load[c] > max_connections:
            out.append(np.array(cur))
            cur, held = [], 0
        cur.append(c)
        held += int(load[c])
    return out + [np.array(cur)]


def _slice_projections(net: netgraph.Network, projs: list[Projection], arch: LoihiArch,
                       cores: np.ndarray) -> list[Projection]:
    """The connections of ``projs`` whose destination neuron sits on one of ``cores``."""
    first = arch.placement.first_cores(net)
    out = []
    for p in projs:
        keep = np.isin(first[p.dst] + p.pairs[1] // arch.neurons_per_core, cores)
        if keep.any():
            out.append(Projection(p.name, p.src, p.dst, p.kind,
                                  (p.pairs[0][keep], p.pairs[1][keep])))
    return out


@dataclass
class SanafeRun:
    """What SANA-FE reported for a replay of ``runs`` runs of ``num_steps`` steps: per step (all
    runs back to back) energies J, simulated time s, hops, synaptic events; totals of messages;
    fired neurons per group from its spike traces (-1 where two slices disagreed); ``slices``:
    how many SANA-FE runs the network was cut into (see ``simulate``)."""
    perf: dict[str, list[float]]
    messages: int
    fired_per_group: dict[str, int]
    connections: int
    tiles_used: int
    slices: int = 1


def _run_slice(sanafe, sarch, net: netgraph.Network, trains: SpikeTrains, arch: LoihiArch,
               projs: list[Projection], names: set[str], timing_model: str, threads: int):
    """One SANA-FE run holding the groups ``names`` and the connections ``projs``: (perf trace,
    messages, fired per group, connections)."""
    cores = sarch.cores()
    where = neuron_cores(net, arch)
    snet = sanafe.Network()
    groups = _map_neurons(snet, cores, net, trains, where, names, _group_units(net, projs))
    used = {int(c) // arch.cores_per_tile for g in net.groups for c in np.unique(where[g.name][0])}
    mine = {int(c) // arch.cores_per_tile for n in names for c in np.unique(where[n][0])}
    _hold_tiles(snet, cores, arch, used - mine)
    n_con = _connect(groups, projs)
    chip = sanafe.SpikingChip(sarch)
    chip.load(snet)
    res = chip.sim(trains.runs * net.num_steps, timing_model=timing_model,
                   processing_threads=threads, spike_trace=True, perf_trace=True)
    fired = {n: 0 for n in names}
    for step in res["spike_trace"]:
        for addr in step:
            if addr.group_name in fired:
                fired[addr.group_name] += 1
    return ({k: np.asarray(v, dtype=np.float64) for k, v in res["perf_trace"].items()},
            int(res["packets_sent"]), fired, n_con)


def simulate(net: netgraph.Network, trains: SpikeTrains, arch: LoihiArch, doc: dict,
             threads: int = 1, timing_model: str = "detailed",
             max_connections: int | None = None) -> SanafeRun:
    """Replay ``trains`` on SANA-FE's Loihi (see the module docstring); ``timing_model``:
    SANA-FE's "detailed" (its default) or "simple".

    ``max_connections`` bounds SANA-FE's memory (it holds every connection twice, as a network
    edge and as a mapped one): the destination cores are cut into slices of at most that many
    incoming connections, each replayed in its own SANA-FE run with every group it touches (and
    one idle soma on every other tile the network uses, so the barrier time is the whole
    chip's). Every connection, message, hop and synaptic event belongs to exactly one slice, so
    those energies add up; a core's work (its neurons and the messages it receives) is whole in
    the slice holding it as a destination, so a step's time is the slowest slice's.
    """
    sanafe = import_sanafe()
    projs = projections(net, arch.neurons_per_core)
    check_fan_out(net, projs)
    with tempfile.TemporaryDirectory(prefix="mksgn-sanafe-") as tmp:
        sarch = sanafe.load_arch(str(_write_arch(doc, Path(tmp))))
    perf, messages, n_con = None, 0, 0
    fired: dict[str, int] = {}
    cuts = slices(net, projs, arch, max_connections)
    for k, cores in enumerate(cuts):
        part = _slice_projections(net, projs, arch, cores) if len(cuts) > 1 else projs
        names = {p.src for p in part} | {p.dst for p in part} | set(
            g.name for g in net.groups if k == 0)
        pf, msg, fd, nc = _run_slice(sanafe, sarch, net, trains, arch, part, names,
                                     timing_model, threads)
        messages, n_con = messages + msg, n_con + nc
        for g, c in fd.items():
            fired[g] = c if fired.get(g, c) == c else -1
        perf = pf if perf is None else {
            key: np.maximum(perf[key], v) if key == "sim_time" else perf[key] + v
            for key, v in pf.items()}
    perf["timestep"] = np.arange(1, trains.runs * net.num_steps + 1, dtype=np.float64)
    return SanafeRun(perf={k: v.tolist() for k, v in perf.items()}, messages=messages,
                     fired_per_group=fired, connections=n_con,
                     tiles_used=_tiles_used(net, arch), slices=len(cuts))


def _tiles_used(net: netgraph.Network, arch: LoihiArch) -> int:
    cores = sum(math.ceil(g.size / arch.neurons_per_core) for g in net.groups)
    return math.ceil(cores / arch.cores_per_tile)


# ---------------------------------------------------------------------------------------------
# The report

@dataclass
class SampleFigures:
    """One sample (all its runs): total energy pJ (with the unseen updates) and simulated s."""
    sample: int
    energy_pj: float
    latency_s: float


@dataclass
class SanafeReport:
    """SANA-FE's Loihi figures for the replayed samples, per sample on average (pJ, s).

    energy_pj: PARTS and "total" (SANA-FE's total plus ``soma_update_unseen``);
    sanafe_total_pj: SANA-FE's own total (what its run charges); latency: "per_step_mean_s",
    "per_step_max_s" (over every step of every run), "per_sample_s"; latency_unseen_bound_s: the most the unseen
    updates could add per sample (their serial update latency on the busiest core); checks:
    the counts SANA-FE saw beside ours (spikes per group exactly equal, synaptic events, messages
    vs our core deliveries); placement: cores and tiles used, mesh; arch: the costs read from
    SANA-FE's loihi.yaml (J, s)."""
    network: str
    network_sha256: str
    spike_trains: str
    samples: int
    runs: int
    num_steps: int
    sanafe_version: str
    placement: dict
    arch: dict
    connections: int
    energy_pj: dict[str, float]
    sanafe_total_pj: float
    latency: dict[str, float]
    latency_unseen_bound_s: float
    per_sample: list[SampleFigures]
    checks: dict
    ours: dict = field(default_factory=dict)   # our loihi profile on the same runs (see CLI)
    schema: str = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "SanafeReport":
        d = json.loads(text)
        d["per_sample"] = [SampleFigures(**s) for s in d["per_sample"]]
        return cls(**d)


def _per_run(perf: dict[str, list[float]], key: str, runs: int) -> np.ndarray:
    return np.asarray(perf[key], dtype=np.float64).reshape(runs, -1).sum(axis=1)


def _unseen(net: netgraph.Network, trains: SpikeTrains, arch: LoihiArch
            ) -> tuple[np.ndarray, float]:
    """Active-but-silent neuron-steps per run (int64 (runs,)), and the most of them on one core
    in one sample on average (for the latency bound)."""
    per_run = np.zeros(trains.runs, np.int64)
    worst = 0.0
    for g in net.groups:
        gap = (trains.active[g.name] - trains.spikes[g.name].sum(axis=1)).reshape(trains.runs, -1)
        per_run += gap.sum(axis=1)
        per_core = np.add.reduceat(gap.sum(axis=0),
                                   np.arange(0, g.size, arch.neurons_per_core))
        worst = max(worst, float(per_core.max()) / trains.samples)
    return per_run, worst


def _energy_parts(net: netgraph.Network, trains: SpikeTrains, arch: LoihiArch,
                  run: SanafeRun) -> tuple[dict[str, np.ndarray], float | None]:
    """Per run, pJ: every part of ``PARTS`` and "total"; and the soma check (SANA-FE's reported
    soma energy minus its rule applied to the replayed spikes, pJ per sample; None when the run
    was sliced, since then each slice charges its source groups' somas again).

    SANA-FE's rule for a replayed soma (checked): every neuron-step one access; a spiking step
    also an update and a spike out. Synapse and network energies are SANA-FE's, summed over
    slices; the network's is its messages (one ``energy_message_out`` each) plus their hops.
    """
    runs, pj, soma = trains.runs, 1e12, arch.soma
    fired = np.array([sum(int(x[r].sum()) for x in trains.spikes.values())
                      for r in range(runs)], dtype=np.float64)
    access = sum(g.size for g in net.groups) * net.num_steps * soma["energy_access_neuron"] * pj
    unseen_steps, _ = _unseen(net, trains, arch)
    network = _per_run(run.perf, "network_energy", runs) * pj
    messages = np.full(runs, run.messages * arch.message_out_energy * pj / runs)
    parts = {"synapse": _per_run(run.perf, "synapse_energy", runs) * pj,
             "soma_access": np.full(runs, access),
             "soma_update": fired * soma["energy_update_neuron"] * pj,
             "soma_spike_out": fired * soma["energy_spike_out"] * pj,
             "soma_update_unseen": unseen_steps * soma["energy_update_neuron"] * pj,
             "messages": messages, "hops": network - messages}
    parts["total"] = sum(parts[k] for k in PARTS)
    check = None
    if run.slices == 1:
        reported = _per_run(run.perf, "soma_energy", runs) * pj
        check = float((reported - access - parts["soma_update"] - parts["soma_spike_out"]).sum()
                      / trains.samples)
    return parts, check


def _per_sample(trains: SpikeTrains, per_run_e: np.ndarray, run_t: np.ndarray
                ) -> list[SampleFigures]:
    k = trains.runs // trains.samples                   # runs of one sample, consecutive
    return [SampleFigures(i, float(per_run_e[i * k:(i + 1) * k].sum()),
                          float(run_t[i * k:(i + 1) * k].sum())) for i in range(trains.samples)]


def build_report(net: netgraph.Network, net_path: str, trains: SpikeTrains, trains_path: str,
                 arch: LoihiArch, run: SanafeRun, our_synops: int, our_deliveries: int
                 ) -> SanafeReport:
    """SANA-FE's figures per sample, split into parts (see ``SanafeReport``); ``our_synops`` and
    ``our_deliveries``: ``mksgn.opcount``'s totals for the same runs, for the checks."""
    import importlib.metadata

    s = trains.samples
    parts, soma_check = _energy_parts(net, trains, arch, run)
    _, worst_core = _unseen(net, trains, arch)
    step_t = np.asarray(run.perf["sim_time"], dtype=np.float64)
    run_t = step_t.reshape(trains.runs, -1).sum(axis=1)
    counts = trains.counts()
    return SanafeReport(
        network=net_path, network_sha256=trains.network_sha256, spike_trains=trains_path,
        samples=s, runs=trains.runs, num_steps=net.num_steps,
        sanafe_version=importlib.metadata.version("sanafe"),
        placement={"neurons_per_core": arch.neurons_per_core,
                   "cores_per_tile": arch.cores_per_tile, "mesh_width": arch.width,
                   "mesh_height": arch.height, "tiles_used": run.tiles_used,
                   "cores_used": sum(math.ceil(g.size / arch.neurons_per_core)
                                     for g in net.groups), "slices": run.slices},
        arch={**asdict(arch), "sync_latency": {str(k): v for k, v in arch.sync_latency.items()}},
        connections=run.connections,
        energy_pj={k: float(v.sum()) / s for k, v in parts.items()},
        sanafe_total_pj=float((parts["total"] - parts["soma_update_unseen"]).sum()) / s,
        latency={"per_step_mean_s": float(step_t.mean()), "per_step_max_s": float(step_t.max()),
                 "per_sample_s": float(run_t.sum()) / s},
        latency_unseen_bound_s=worst_core * arch.soma["latency_update_neuron"],
        per_sample=_per_sample(trains, parts["total"], run_t),
        checks={"spikes_equal": all(run.fired_per_group.get(g) == int(c.sum())
                                    for g, c in counts.items()),
                "spikes": int(sum(run.fired_per_group.get(g, 0) for g in counts)),
                "engine_spikes": int(sum(int(c.sum()) for c in counts.values())),
                "synaptic_events": int(sum(run.perf["spikes"])), "our_synops": int(our_synops),
                "messages": run.messages, "our_core_deliveries": int(our_deliveries),
                "soma_check_pj": soma_check})


def to_csv(report: SanafeReport) -> str:
    """One row per replayed sample, then a row ``mean`` per part (energy) and latency."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("row", "what", "value", "unit"))
    for s in report.per_sample:
        w.writerow((f"sample {s.sample}", "energy", repr(s.energy_pj), "pJ"))
        w.writerow((f"sample {s.sample}", "latency", repr(s.latency_s), "s"))
    for k, v in report.energy_pj.items():
        w.writerow(("mean", f"energy {k}", repr(v), "pJ"))
    for k, v in report.latency.items():
        w.writerow(("mean", f"latency {k}", repr(v), "s"))
    return buf.getvalue()


def write_outputs(report: SanafeReport, out: Path) -> list[Path]:
    """OUT/sanafe.json and OUT/sanafe.csv, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "sanafe.json", out / "sanafe.csv"]
    atomic_write_text(paths[0], report.to_json())
    atomic_write_text(paths[1], to_csv(report))
    return paths


# ---------------------------------------------------------------------------------------------
# Beside our own loihi profile

def ours_on_same_runs(net: netgraph.Network, net_path: str, trains: SpikeTrains, profile):
    """Our energy report (``mksgn.hw_profiles.report``) on ``profile`` for exactly the replayed
    runs: counts and active steps from the spike-trains file."""
    from mksgn.activity import Activity
    from mksgn.hw_profiles.report import build_report as energy_report

    act = Activity(counts=trains.counts(), samples=trains.samples, num_steps=net.num_steps,
                   runs=trains.runs, engine="fast", network_sha256=trains.network_sha256,
                   active=trains.active_totals())
    return energy_report(net, net_path, act, "spike trains", [profile])


def ours_summary(energy, profile: str) -> dict:
    """Our figures for the side-by-side: parts and total (pJ per sample), the on-chip total
    (without the host encoder), and the latency per sample when the profile states one."""
    parts = {k: sum(r.energy_pj[profile].get(k, 0.0) for r in energy.student)
             for k in ("synops", "neurons", "routing", "mesh", "input")}
    out = {"profile": profile, "parts_pj": parts, "total_pj": energy.student_total_pj[profile],
           "on_chip_pj": energy.student_total_pj[profile] - parts["input"],
           "synops": sum(r.synops for r in energy.student),
           "core_deliveries": sum(r.core_deliveries.get("1024", 0.0) for r in energy.student)}
    if profile in energy.student_latency:
        out["latency_averaged_per_sample_s"] = energy.student_latency[profile]["per_sample_s"]
    return out


def side_by_side(report: SanafeReport) -> list[tuple[str, float | None, float | None]]:
    """Rows (what, ours, SANA-FE) in pJ per sample, then latency in s: the parts that price the
    same work on both sides."""
    e, o = report.energy_pj, report.ours
    p = o["parts_pj"]
    rows = [("synaptic events", p["synops"], e["synapse"]),
            ("neurons (soma)", p["neurons"], e["soma_access"] + e["soma_update"]
             + e["soma_update_unseen"] + e["soma_spike_out"]),
            ("spike messages", p["routing"], e["messages"]),
            ("mesh hops", p["mesh"], e["hops"]),
            ("on chip, total", o["on_chip_pj"], e["total"]),
            ("host encoder", p["input"], None)]
    return rows


def time_rows(report: SanafeReport) -> list[tuple[str, float | None, float | None]]:
    """Rows (what, ours, SANA-FE) in s: per sample from every step's load (ours: the model of
    ``latency_from_trains``), per sample from loads averaged over the steps (ours only: what the
    energy report states), the mean and the slowest step."""
    o, lat = report.ours, report.latency
    per_step = o.get("latency_per_sample_s")
    steps = report.num_steps * report.runs / report.samples
    return [("time per sample", per_step, lat["per_sample_s"]),
            (" (averaged loads)", o.get("latency_averaged_per_sample_s"), None),
            ("time per step", None if per_step is None else per_step / steps,
             lat["per_step_mean_s"]),
            ("slowest step", o.get("latency_per_step_max_s"), lat["per_step_max_s"])]


def print_side_by_side(report: SanafeReport, console) -> None:
    """One table in 80 columns: our loihi figures beside SANA-FE's, per sample."""
    from rich.table import Table

    from mksgn.hw_profiles.report import si_energy, si_time

    t = Table(title=f"Energy and time per sample: our {report.ours['profile']} beside SANA-FE's "
                    f"Loihi ({report.samples} samples replayed)", title_justify="left")
    for col in ("", f"{report.ours['profile']} (ours)", "SANA-FE", "SANA-FE/ours"):
        t.add_column(col, justify="left" if not col else "right", overflow="fold")
    for what, ours, theirs in side_by_side(report):
        ratio = f"{theirs / ours:.2f}x" if ours and theirs is not None else "-"
        t.add_row(what, "-" if ours is None else si_energy(ours),
                  "-" if theirs is None else si_energy(theirs), ratio)
    for what, ours, theirs in time_rows(report):
        ratio = f"{theirs / ours:.2f}x" if ours and theirs is not None else "-"
        t.add_row(what, "-" if ours is None else si_time(ours),
                  "-" if theirs is None else si_time(theirs), ratio)
    console.print(t)
    c = report.checks
    console.print(f"spikes SANA-FE replayed: {c['spikes']:,} "
                  f"({'equal to' if c['spikes_equal'] else 'DIFFERENT from'} the engine's "
                  f"{c['engine_spikes']:,}); synaptic events {c['synaptic_events']:,} "
                  f"(ours {c['our_synops']:,}); messages {c['messages']:,} "
                  f"(our core deliveries {c['our_core_deliveries']:,})")
    console.print(f"SANA-FE {report.sanafe_version}, Loihi mesh {report.placement['mesh_width']}"
                  f" x {report.placement['mesh_height']} tiles, "
                  f"{report.placement['cores_used']} cores on {report.placement['tiles_used']} "
                  f"tiles; silent active updates could add up to "
                  f"{si_time(report.latency_unseen_bound_s)} per sample")



def run_backend(net: netgraph.Network, net_path: Path, trains_path: Path, profile,
                threads: int = 1, timing_model: str = "detailed",
                max_connections: int | None = None) -> SanafeReport:
    """Replay ``trains_path`` (a ``mksgn simulate --spike-trains`` output) on SANA-FE's Loihi and
    price the same runs on our ``profile`` (whose placement must be SANA-FE's Loihi mesh)."""
    from mksgn import spike_trains
    from mksgn.hw_profiles.latency import latency_from_trains

    trains = spike_trains.read(trains_path, net, net_path)
    arch, doc = loihi_arch(_tiles_used(net, loihi_arch()[0]))
    if placement_of(profile) != arch.placement:
        raise ValueError(f"profile {profile.name} places the network on "
                         f"{placement_of(profile)}, SANA-FE's Loihi on {arch.placement}: they "
                         "would not be comparable")
    run = simulate(net, trains, arch, doc, threads, timing_model, max_connections)
    ours = ours_summary(ours_on_same_runs(net, str(net_path), trains, profile), profile.name)
    stepwise = latency_from_trains(net, trains, profile)
    if stepwise is not None:
        ours["latency_per_sample_s"] = stepwise.per_sample_s
        ours["latency_per_step_max_s"] = stepwise.step_sync_s + stepwise.busiest_core_s
    report = build_report(net, str(net_path), trains, str(trains_path), arch, run,
                          our_synops=round(ours["synops"] * trains.samples),
                          our_deliveries=round(ours["core_deliveries"] * trains.samples))
    report.ours = ours
    return report
