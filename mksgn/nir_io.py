"""NIR (Neuromorphic Intermediate Representation, ``nir`` 1.0) <-> ``netgraph.Network``.

NIR is the exchange format snnTorch, Norse, Rockpool, Sinabs, spikingjelly and others read and
write: a graph of typed nodes (``nir/ir/*.py``) whose edges carry signals with no delay. This
module is the one translation between it and the converted network; ``docs/nir.md`` explains the
choices with examples. The parameter mapping is ``loihi_to_nir_cuba`` / ``nir_cuba_to_loihi``
(nothing else converts decays or thresholds).

Units and discretisation. A NIR file records no time step; we write with ``dt`` (default
``DEFAULT_DT`` = 1e-4 s, the step snnTorch's importer assumes) and read with a ``dt`` the caller
states. NIR's CubaLIF ``tau_syn I' = -I + w_in S``, ``tau_mem v' = (v_leak - v) + r I`` is taken
in forward-Euler steps of ``dt`` with a spike as one unit per step (snnTorch's and Norse's reading):

    I[t] = (1 - dt/tau_syn) I[t-1] + (dt/tau_syn) w_in x[t]
    v[t] = (1 - dt/tau_mem) v[t-1] + (dt/tau_mem) (v_leak + r I[t]);  v > v_threshold: spike, v = 0

Loihi's ``u = u (4096 - iDecay)/4096 + a << 6``, ``v = v (4096 - vDecay)/4096 + u + bias << 6``
is that recursion with ``dt/tau_syn = iDecay/4096``, ``dt/tau_mem = vDecay/4096``, unit gains
``w_in = tau_syn/dt`` and ``r = tau_mem/dt``, and states in slayer's units (real 1.0 = 64 units of
synaptic input ``a``, so ``I = u/4096``, ``v_nir = v/4096``, ``v_threshold = vThMant/64``, a weight
``mantissa * 2**exp / 64``). A decay of 0 is ``tau = inf`` with the gain written as ``inf`` (the
limit ``r = tau/dt``); a gain whose tau is infinite is 1 when it is ``inf`` and ``r * dt``
otherwise (NIR's ``IF``/``I``: ``v' = r I``). Loihi truncates each decay toward zero and floors
right shifts; NIR is real-valued: that, and nothing else, separates a float simulator from the chip.

Graph shape. Loihi delivers every synapse one step after the spike; NIR edges are instantaneous.
With the input held constant from step 1 (the encoders' bias), a group at depth d on Loihi runs
exactly the NIR network's trajectory d steps late, so the export drops the per-layer latency and
the delays that only align branches of different depth (``delay - (depth[dst] - depth[src] -
1)``), writes what remains as ``Delay`` nodes, and records ``num_steps`` and the readout's depth
(``latency``): the NIR network run for ``num_steps - latency`` steps ends where the chip does. The
import puts latency and alignment back. A population feeding itself (a recurrent edge) reads the
previous step in NIR and on Loihi alike.

Layout. NIR has no graph convolution and no reshape, and nir 1.0.8 type-checks a ``Conv2d`` with
the kernel's first size on both axes and the input channels read off the weight (no groups). So
when a network has graph synapses (or such convs) every (C, T, V) group is written joint-major
folded, ``(V*C, T)`` with neuron (c, t, v) at channel ``v*C + c`` (``fold``), and every synapse
between them is a ``Conv1d`` over frames: a graph synapse the 1-tap joint x channel matrix, a
temporal (k_t, 1) conv its kernel times the joint identity, any other conv its joint-unrolled
kernel; a dense readout is ``Flatten`` + ``Linear`` with columns in the folded order. Host encoders
are ``Input -> Conv1d`` (the folded input ``(V*C_in, T)``) into the first groups, written as
``LIF`` nodes (their input is the bias into v), the encoder's integers in the node's metadata
(its float bias carries the mean of the chip's floored shift, ``_floor_mean``; the import restores
the integers exactly).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mksgn import loihi, netgraph
from mksgn.netgraph import Encoder, Network, NeuronGroup, Synapse

__all__ = ["DEFAULT_DT", "FORMAT", "NirCuba", "NirExportError", "NirImportError",
           "loihi_to_nir_cuba", "nir_cuba_to_loihi", "fold", "unfold", "to_nir", "write",
           "graph_meta", "from_nir", "read", "ImportReport", "LayerQuant"]

DEFAULT_DT = 1e-4             # seconds; snntorch.import_nir assumes this step
FORMAT = "mksgn-nir/1"        # graph metadata "mksgn" (JSON) of files written here
_META = "mksgn"               # the metadata key (a JSON string: nir reads metadata flat)


class NirExportError(ValueError):
    """A network NIR cannot express (one line naming the node)."""


class NirImportError(ValueError):
    """A NIR graph this importer cannot turn into a Loihi network (one line naming the node)."""


# ---------------------------------------------------------------------------------------------
# The parameter mapping, once each way.

@dataclass(frozen=True)
class NirCuba:
    """One group's NIR CUBA parameters (seconds, slayer units); see the module docstring."""
    tau_syn: float
    tau_mem: float
    r: float
    w_in: float
    v_threshold: float


def _tau(decay: int, dt: float) -> float:
    return math.inf if decay == 0 else dt * loihi.DECAY_UNITY / decay


def _decay(tau: float, dt: float) -> int:
    return 0 if math.isinf(tau) else int(round(loihi.DECAY_UNITY * dt / tau))


def _gain(g: float, tau: float, dt: float) -> float:
    """The Euler coefficient ``g dt / tau`` of an input; for ``tau = inf``: 1 if g is the
    limit ``inf``, else ``g dt`` (NIR's ``IF``/``I``: ``v' = r I``)."""
    if math.isinf(tau):
        return 1.0 if math.isinf(g) else g * dt
    return g * dt / tau


def loihi_to_nir_cuba(p: loihi.CubaParams, dt: float = DEFAULT_DT) -> NirCuba:
    """Loihi's integer CUBA parameters as NIR's, with unit input and membrane gains."""
    tau_syn, tau_mem = _tau(p.i_decay, dt), _tau(p.v_decay, dt)
    return NirCuba(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, w_in=tau_syn / dt,
                   v_threshold=p.vth_mant / loihi.STATE_SCALE)


def nir_cuba_to_loihi(c: NirCuba, dt: float = DEFAULT_DT, scale: float = 1.0
                      ) -> tuple[loihi.CubaParams, float]:
    """NIR's CUBA parameters as Loihi's, and the input gain.

    scale: the group's state scale (weights, threshold and bias are multiplied by it; spikes do
    not change, only the integer resolution). Returns (params, gain): every weight into the
    group is multiplied by ``gain * scale`` before quantisation (``gain`` = 1 for a file written
    by ``loihi_to_nir_cuba``). A non-finite threshold (a readout) gives ``VTH_MANT_MAX``.
    """
    gain = _gain(c.w_in, c.tau_syn, dt) * _gain(c.r, c.tau_mem, dt)
    vth = c.v_threshold * loihi.STATE_SCALE * scale
    vth_mant = loihi.VTH_MANT_MAX if not math.isfinite(vth) else int(round(vth))
    return loihi.CubaParams(_decay(c.tau_syn, dt), _decay(c.tau_mem, dt), vth_mant), gain


# ---------------------------------------------------------------------------------------------
# The joint-major fold of (C, T, V) groups.

def fold(x: np.ndarray) -> np.ndarray:
    """(..., C, T, V) -> (..., V*C, T): neuron (c, t, v) at channel ``v*C + c``."""
    *lead, c, t, v = x.shape
    return np.moveaxis(x, -1, -3).reshape(*lead, v * c, t)


def unfold(x: np.ndarray, joints: int) -> np.ndarray:
    """(..., V*C, T[, 1]) -> (..., C, T, V): the inverse of ``fold``."""
    if x.shape[-1] == 1 and x.ndim >= 3:
        x = x[..., 0]
    *lead, vc, t = x.shape
    return np.moveaxis(x.reshape(*lead, joints, vc // joints, t), -3, -1)


def _nir_shape(g: NeuronGroup, folded: bool) -> tuple[int, ...]:
    if folded and len(g.shape) == 3:
        c, t, v = g.shape
        return (v * c, t)
    return tuple(g.shape)


# ---------------------------------------------------------------------------------------------
# Export

def _depths(net: Network) -> dict[str, int]:
    """Longest synapse path from a group with no forward input (self-loops ignored)."""
    return _longest([g.name for g in net.groups], [(s.src, s.dst) for s in net.synapses],
                    NirExportError, "export")


def _own_delay(s: Synapse, depth: dict[str, int]) -> int:
    """The synapse's delay beyond what aligning branches of different depth needs."""
    d = np.asarray(s.delay)
    if d.ndim and np.unique(d).size > 1:
        raise NirExportError(f"export nir: synapse {s.name} has per-synapse delays; NIR's Delay "
                             f"node delays a whole signal")
    d = int(d.max()) if d.size else 0
    own = d if s.src == s.dst else d - (depth[s.dst] - depth[s.src] - 1)
    if own < 0:
        raise NirExportError(f"export nir: synapse {s.name} arrives {-own} step(s) before its "
                             f"branch partners; without Loihi's per-layer latency NIR cannot "
                             f"express that")
    return own


def _folded_conv(w: np.ndarray, kind: str, s, v_in: int) -> dict:
    """Conv1d arguments (over frames) for a graph/conv synapse between folded groups."""
    if kind == "graph":
        m = np.transpose(w, (0, 2, 1, 3))[..., None]              # (O, V, I, U, 1)
        st, pad, dil = 1, 0, 1
    else:
        if s.groups != 1:
            raise NirExportError(f"export nir: synapse {s.name}: a grouped conv (nir 1.0 type-"
                                 f"checks convolutions without groups)")
        m = netgraph.unroll_joints(w, v_in, s.stride[1], s.padding[1], s.dilation[1])
        st, pad, dil = s.stride[0], s.padding[0], s.dilation[0]
    o, v_out, i, _, kt = m.shape
    # w'[vo*O + o, vi*I + i, k] = m[o, vo, i, vi, k]
    w2 = np.ascontiguousarray(m.transpose(1, 0, 3, 2, 4).reshape(v_out * o, v_in * i, kt))
    return dict(weight=w2, stride=st, padding=pad, dilation=dil, groups=1)


def _odd_conv(s: Synapse) -> bool:
    """A conv nir 1.0's Conv2d type inference gets wrong: it takes the kernel's first size for
    both axes (``nir/ir/conv.py``) and the input channels from the weight, ignoring groups."""
    return s.weight.shape[2] != s.weight.shape[3] or s.groups != 1


def _conv_node(s: Synapse, w: np.ndarray, src: NeuronGroup, folded: bool, shape, meta: dict):
    import nir

    if folded:
        kw = _folded_conv(w.astype(np.float32), s.kind, s, src.shape[2])
        return nir.Conv1d(input_shape=int(shape[1]), bias=np.zeros(kw["weight"].shape[0]),
                          metadata=meta, **kw)
    return nir.Conv2d(input_shape=tuple(int(n) for n in shape[1:]), weight=w.astype(np.float32),
                      stride=tuple(s.stride), padding=tuple(s.padding),
                      dilation=tuple(s.dilation), groups=s.groups,
                      bias=np.zeros(w.shape[0]), metadata=meta)


def _dense_weight(w: np.ndarray, src: NeuronGroup, folded: bool) -> np.ndarray:
    if folded and len(src.shape) == 3:
        idx = np.arange(src.size).reshape(src.shape)
        return w[:, fold(idx).reshape(-1)]
    return w


def _node_key(name: str, taken: set[str]) -> str:
    key = name.replace("/", "__").replace(".", "_")
    base, k = key, 1
    while key in taken:
        key, k = f"{base}_{k}", k + 1
    taken.add(key)
    return key


def _real_weight(s: Synapse) -> np.ndarray:
    """The synapse's weights in slayer units: ``mantissa * 2**exp / 64``."""
    return np.asarray(s.weight, dtype=np.float64) * 2.0 ** s.weight_exp / loihi.STATE_SCALE


def _neuron_node(g: NeuronGroup, shape, dt: float, driven_by_encoder: bool):
    import nir

    c = loihi_to_nir_cuba(g.params, dt)
    full = lambda x: np.full(shape, x, dtype=np.float64)  # noqa: E731
    meta = {_META: json.dumps({"name": g.name, "shape": list(g.shape)})}
    p = g.params
    if g.readout:
        if p.i_decay == loihi.DECAY_UNITY and p.v_decay == 0:
            return nir.I(r=full(1.0 / dt), metadata=meta)
        if p.i_decay == loihi.DECAY_UNITY:
            return nir.LI(tau=full(c.tau_mem), r=full(c.r), v_leak=full(0.0), metadata=meta)
        return nir.CubaLI(tau_syn=full(c.tau_syn), tau_mem=full(c.tau_mem), r=full(c.r),
                          v_leak=full(0.0), w_in=full(c.w_in), metadata=meta)
    if driven_by_encoder:       # the encoder's output is the bias into v: no synaptic current
        return nir.LIF(tau=full(c.tau_mem), r=full(c.r), v_leak=full(0.0),
                       v_threshold=full(c.v_threshold), v_reset=full(0.0), metadata=meta)
    if p.i_decay == 0:
        raise NirExportError(f"export nir: group {g.name} has iDecay 0 (a current that never "
                             f"decays), which NIR's CubaLIF cannot express")
    return nir.CubaLIF(tau_syn=full(c.tau_syn), tau_mem=full(c.tau_mem), r=full(c.r),
                       v_leak=full(0.0), v_threshold=full(c.v_threshold), v_reset=full(0.0),
                       w_in=full(c.w_in), metadata=meta)


def _check_exportable(net: Network) -> None:
    for a in net.attentions:
        raise NirExportError(f"export nir: {a.name} is spiking joint attention (q k^T x of three "
                             f"spike groups), which no NIR node expresses; static attention "
                             f"exports")
    for g in net.groups:
        if g.model is not None:
            raise NirExportError(f"export nir: group {g.name} is a {type(g.model).__name__} "
                                 f"neuron; only CUBA groups map to NIR")
        if g.bias is not None and np.any(np.asarray(g.bias) != 0):
            raise NirExportError(f"export nir: group {g.name} has a static bias; NIR's v_leak "
                                 f"is written as 0 (encoders are the input side)")
    enc_dst = {e.dst for e in net.encoders}
    for s in net.synapses:
        if s.dst in enc_dst:
            raise NirExportError(f"export nir: group {s.dst} takes both an encoder (bias into v) "
                                 f"and synapse {s.name} (current): NIR has no such neuron")
        if s.kind == "convT":
            raise NirExportError(f"export nir: synapse {s.name} is a transposed conv; NIR 1.0 "
                                 f"has no such node")
        if s.port:
            raise NirExportError(f"export nir: synapse {s.name} feeds a resonator port")


@dataclass
class _Graph:
    """The NIR graph being written: nodes under unique keys, edges, the group layout."""
    folded: bool
    shapes: dict[str, tuple[int, ...]]          # group -> its NIR shape
    nodes: dict = field(default_factory=dict)
    edges: list = field(default_factory=list)
    key: dict[str, str] = field(default_factory=dict)   # group -> node key
    taken: set[str] = field(default_factory=set)

    def add(self, name: str, node) -> str:
        k = _node_key(name, self.taken)
        self.nodes[k] = node
        return k


def to_nir(net: Network, dt: float = DEFAULT_DT):
    """``net`` as a ``nir.NIRGraph`` (see the module docstring); raises ``NirExportError``."""
    import nir

    _check_exportable(net)
    depth = _depths(net)
    folded = any(s.kind == "graph" or (s.kind == "conv" and _odd_conv(s)) for s in net.synapses)
    out = _Graph(folded, {g.name: _nir_shape(g, folded) for g in net.groups})
    groups = {g.name: g for g in net.groups}
    enc_dst = {e.dst for e in net.encoders}
    for g in net.groups:
        shape = out.shapes[g.name]
        out.key[g.name] = out.add(g.name, nir.Input(input_type=np.array(shape)) if g.source else
                                  _neuron_node(g, shape, dt, g.name in enc_dst))
    for e in net.encoders:
        _export_encoder(e, groups[e.dst], net.meta.get("window"), out)
    for s in net.synapses:
        _export_synapse(s, groups[s.src], _own_delay(s, depth), dt, out)
    ends = [net.readout] if net.readout else [
        g.name for g in net.groups if not any(s.src == g.name for s in net.synapses)]
    for name in ends:
        out.edges.append((out.key[name], out.add(f"{name}.out", nir.Output(
            output_type=np.array(out.shapes[name])))))
    latency = depth[net.readout] if net.readout else max(depth.values(), default=0)
    meta = {"format": FORMAT, "dt": dt, "num_steps": net.num_steps, "latency": latency,
            "steps": net.num_steps - latency, "layout": "folded" if folded else "plain",
            "units": "slayer", "readout": net.readout,
            "logit_scale": net.meta.get("logit_scale"),
            # how the converter fed the encoders (manifest.json's "input": modalities, window,
            # pre-processing), so that an import evaluates on the same inputs
            "input": net.meta.get("input_manifest")}
    return nir.NIRGraph(nodes=out.nodes, edges=out.edges, metadata={_META: json.dumps(meta)})


def _export_synapse(s: Synapse, src: NeuronGroup, own_delay: int, dt: float, out: _Graph) -> None:
    """[Flatten ->] Linear or Conv [-> Delay] from the src group's node to the dst's."""
    import nir

    meta = {_META: json.dumps({"name": s.name, "weight_exp": s.weight_exp})}
    w = _real_weight(s)
    node_in = out.key[s.src]
    if s.kind == "dense":
        if len(out.shapes[s.dst]) > 1:
            raise NirExportError(f"export nir: synapse {s.name} is dense into the 3-D group "
                                 f"{s.dst}; NIR has no reshape back")
        if len(out.shapes[s.src]) > 1:
            flat = f"{out.key[s.src]}.flat"
            if flat not in out.nodes:
                out.nodes[flat] = nir.Flatten(input_type={"input": np.array(out.shapes[s.src])},
                                              start_dim=0, end_dim=-1)
                out.edges.append((node_in, flat))
            node_in = flat
        k = out.add(s.name, nir.Linear(weight=_dense_weight(w, src, out.folded), metadata=meta))
    else:
        k = out.add(s.name, _conv_node(s, w, src, out.folded, out.shapes[s.src], meta))
    out.edges.append((node_in, k))
    if own_delay:
        d = out.add(f"{s.name}.delay", nir.Delay(delay=np.full(out.shapes[s.dst], own_delay * dt)))
        out.edges.append((k, d))
        k = d
    out.edges.append((k, out.key[s.dst]))


def _export_encoder(e: Encoder, dst: NeuronGroup, window: int | None, out: _Graph) -> None:
    """Input (C_in, T, V) -> Conv (real weights; the integers in metadata) -> dst.
    window: the input's frames T (``meta["window"]`` of a converted network; without it the
    smallest T that gives the group's frames)."""
    import nir

    c_in = e.weight.shape[1]
    w = np.asarray(e.weight, np.float64) * (2.0 ** (e.input_frac_bits - e.shift)
                                            / loihi.STATE_SCALE)
    # the chip floors (conv + bias) >> shift: on average (2**shift - 1) / 2**(shift + 1) below
    # the real quotient; the float bias carries that mean so a float simulator is not biased
    b = (np.asarray(e.bias, np.float64) - _floor_mean(e.shift)) * 2.0 ** -e.shift \
        / loihi.STATE_SCALE
    c, t_out, v = dst.shape
    t_in = window or (t_out - 1) * e.stride[0] + w.shape[2] - 2 * e.padding[0]
    v_in = (v - 1) * e.stride[1] + w.shape[3] - 2 * e.padding[1]
    if out.folded:       # input (V*C_in, T) -> Conv1d with the joint-unrolled kernel
        s = Synapse(e.name, "input", e.dst, "conv", w, stride=tuple(e.stride),
                    padding=tuple(e.padding))
        inp = nir.Input(input_type=np.array((v_in * c_in, t_in)))
        conv, kw = nir.Conv1d, dict(input_shape=t_in, bias=np.tile(b, v),
                                    **_folded_conv(w, "conv", s, v_in))
    else:
        inp = nir.Input(input_type=np.array((c_in, t_in, v_in)))
        conv, kw = nir.Conv2d, dict(input_shape=(t_in, v_in), weight=w, bias=b,
                                    stride=tuple(e.stride), padding=tuple(e.padding),
                                    dilation=(1, 1), groups=1)
    meta = {_META: json.dumps({"name": e.name, "encoder": {
        "modality": e.modality, "input_frac_bits": e.input_frac_bits, "shift": e.shift,
        "joints": v_in if out.folded else None, "window": t_in}})}
    ik = out.add(f"in_{e.modality}", inp)
    ck = out.add(e.name, conv(metadata=meta, **kw))
    out.edges += [(ik, ck), (ck, out.key[e.dst])]


def _floor_mean(shift: int) -> float:
    """Mean of ``n/2**shift - floor(n/2**shift)`` over integers n, times ``2**shift``."""
    return (2.0 ** shift - 1) / 2 if shift > 0 else 0.0


def write(net: Network, path: str | Path, dt: float = DEFAULT_DT):
    """Export ``net`` and write it atomically with ``nir.write``; returns the graph."""
    import nir

    from mksgn.files import atomic_write

    graph = to_nir(net, dt)
    atomic_write(path, lambda tmp: nir.write(tmp, graph))
    return graph


def graph_meta(graph) -> dict:
    """The ``mksgn`` metadata of a graph written here ({} for other files)."""
    return _meta_of(graph)


def _meta_of(node) -> dict:
    raw = (getattr(node, "metadata", None) or {}).get(_META)
    if raw is None:
        return {}
    if isinstance(raw, (bytes, np.bytes_)):
        raw = raw.decode()
    try:
        return json.loads(str(raw))
    except ValueError:
        return {}


# ---------------------------------------------------------------------------------------------
# Import

@dataclass
class LayerQuant:
    """Quantisation of one imported synapse group: weights into Loihi's 8-bit mantissas."""
    name: str
    src: str
    dst: str
    kind: str
    weight_exp: int
    rel_l2: float          # ||m 2**e - 64 s g W|| / ||64 s g W|| (s: the dst's scale)
    max_abs_err: float     # in a-units


@dataclass
class ImportReport:
    """What ``from_nir`` assumed and what quantisation cost."""
    dt: float
    steps: int
    latency: int
    layers: list[LayerQuant] = field(default_factory=list)
    thresholds: dict[str, dict] = field(default_factory=dict)   # group -> vth_mant, rel_err
    assumed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


# node classes, filled on first use (nir is an optional package)
def _kinds():
    import nir
    return dict(neuron=(nir.CubaLIF, nir.LIF, nir.IF, nir.CubaLI, nir.LI, nir.I),
                readout=(nir.CubaLI, nir.LI, nir.I),
                linear=(nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d, nir.Flatten,
                        nir.SumPool2d, nir.Scale),
                delay=(nir.Delay,))


def _inline(graph, prefix: str = ""):
    """Nodes and edges with nested NIRGraph nodes inlined (their Input/Output dropped)."""
    import nir

    nodes, edges = {}, []
    entry, exit_ = {}, {}
    for k, n in graph.nodes.items():
        if isinstance(n, nir.NIRGraph):
            sub_nodes, sub_edges = _inline(n, f"{prefix}{k}.")
            ins = [f"{prefix}{k}.{a}" for a, x in n.nodes.items() if isinstance(x, nir.Input)]
            outs = [f"{prefix}{k}.{a}" for a, x in n.nodes.items() if isinstance(x, nir.Output)]
            entry[f"{prefix}{k}"] = [b for a, b in sub_edges if a in ins]
            exit_[f"{prefix}{k}"] = [a for a, b in sub_edges if b in outs]
            nodes.update({a: x for a, x in sub_nodes.items() if a not in ins + outs})
            edges += [(a, b) for a, b in sub_edges if a not in ins and b not in outs]
        else:
            nodes[f"{prefix}{k}"] = n
    for a, b in graph.edges:
        a, b = f"{prefix}{a}", f"{prefix}{b}"
        for x in exit_.get(a, [a]):
            for y in entry.get(b, [b]):
                edges.append((x, y))
    return nodes, edges


@dataclass
class _Path:
    src: str
    dst: str
    ops: list                 # linear and Delay nodes from src to dst, in order
    names: list[str]


def _paths(nodes: dict, edges: list) -> list[_Path]:
    """Every path from a population (neuron or Input) through linear/Delay nodes to the next
    population or Output."""
    import nir

    k = _kinds()
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        succ[a].append(b)
    pops = [n for n, x in nodes.items() if isinstance(x, k["neuron"] + (nir.Input,))]
    out = []

    def walk(src, at, ops, names, seen):
        for nxt in succ[at]:
            x = nodes[nxt]
            if isinstance(x, k["neuron"] + (nir.Output,)):
                out.append(_Path(src, nxt, ops, names))
            elif isinstance(x, k["linear"] + k["delay"]):
                if nxt in seen:
                    raise NirImportError(f"import nir: node {nxt} lies on a cycle with no "
                                         f"neuron in it")
                walk(src, nxt, ops + [x], names + [nxt], seen | {nxt})
            else:
                raise NirImportError(f"import nir: node {nxt} ({type(x).__name__}) is not "
                                     f"supported (neurons: CubaLIF, LIF, IF, CubaLI, LI, I; "
                                     f"Affine, Linear, Conv2d, Flatten, SumPool2d, Scale, Delay)")
    for p in pops:
        walk(p, p, [], [], frozenset())
    return out


def _uniform(node_key: str, node, fields: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for f in fields:
        a = np.asarray(getattr(node, f), dtype=np.float64)
        vals = np.unique(a)
        if vals.size > 1 and not np.allclose(vals, vals[0], rtol=1e-6, atol=0):
            raise NirImportError(f"import nir: node {node_key}: {f} differs between neurons; "
                                 f"a Loihi group shares one value")
        out[f] = float(vals[0]) if vals.size else 0.0
    return out


def _neuron_params(key: str, x, dt: float, assumed: list[str]) -> tuple[NirCuba, bool, float]:
    """(NirCuba, spiking, v_leak) of a neuron node in the CubaLIF form."""
    import nir

    inf = math.inf
    if isinstance(x, (nir.CubaLIF, nir.LIF, nir.IF)):
        reset = getattr(x, "v_reset", None)
        if reset is not None and np.any(np.asarray(reset) != 0):
            raise NirImportError(f"import nir: node {key}: v_reset is not 0; Loihi resets v to 0")
        if reset is None:
            assumed.append(f"{key}: no v_reset recorded, taken as 0 (reset to zero)")
    if isinstance(x, nir.CubaLIF):
        f = _uniform(key, x, ("tau_syn", "tau_mem", "r", "w_in", "v_threshold", "v_leak"))
        return NirCuba(f["tau_syn"], f["tau_mem"], f["r"], f["w_in"], f["v_threshold"]), True, \
            f["v_leak"]
    if isinstance(x, nir.LIF):
        f = _uniform(key, x, ("tau", "r", "v_threshold", "v_leak"))
        return NirCuba(dt, f["tau"], f["r"], 1.0, f["v_threshold"]), True, f["v_leak"]
    if isinstance(x, nir.IF):
        f = _uniform(key, x, ("r", "v_threshold"))
        return NirCuba(dt, inf, f["r"], 1.0, f["v_threshold"]), True, 0.0
    if isinstance(x, nir.CubaLI):
        f = _uniform(key, x, ("tau_syn", "tau_mem", "r", "w_in", "v_leak"))
        return NirCuba(f["tau_syn"], f["tau_mem"], f["r"], f["w_in"], inf), False, f["v_leak"]
    if isinstance(x, nir.LI):
        f = _uniform(key, x, ("tau", "r", "v_leak"))
        return NirCuba(dt, f["tau"], f["r"], 1.0, inf), False, f["v_leak"]
    f = _uniform(key, x, ("r",))                                   # nir.I
    return NirCuba(dt, inf, f["r"], 1.0, inf), False, 0.0


def _shape_of(x) -> tuple[int, ...]:
    """A population's shape; a 2-D (C, L) one (Conv1d's layout) as the group (C, L, 1)."""
    import nir

    if isinstance(x, nir.Input):
        shape = tuple(int(n) for n in np.asarray(x.input_type["input"]).reshape(-1))
    else:
        f = next(f for f in ("v_threshold", "r", "tau") if hasattr(x, f))
        shape = tuple(np.asarray(getattr(x, f)).shape)
    return shape + (1,) if len(shape) == 2 else shape


def _conv_args(op) -> dict:
    """A Conv1d/Conv2d node's geometry as 2-D conv arguments (Conv1d: a (k, 1) kernel)."""
    import nir

    two = lambda v, pad: tuple(int(a) for a in np.broadcast_to(v, 2)) if not isinstance(  # noqa
        op, nir.Conv1d) else (int(np.asarray(v).reshape(-1)[0]), pad)
    if isinstance(op.padding, str):
        raise NirImportError(f"import nir: {type(op).__name__} padding {op.padding!r}; give it "
                             f"in numbers")
    w = np.asarray(op.weight, np.float64)
    return dict(weight=w[..., None] if isinstance(op, nir.Conv1d) else w,
                stride=two(op.stride, 1), padding=two(op.padding, 0),
                dilation=two(op.dilation, 1), groups=int(op.groups))


def _apply(ops: list, x, bias: bool = False):
    """Run linear NIR ops (torch, float64, no batch axis) on ``x``, with their biases or not."""
    import nir
    import torch
    import torch.nn.functional as F

    for op in ops:
        if isinstance(op, (nir.Affine, nir.Linear)):
            x = torch.as_tensor(np.asarray(op.weight, np.float64)) @ x.reshape(-1)
            if bias and isinstance(op, nir.Affine):  # noqa: SIM102
                x = x + torch.as_tensor(np.asarray(op.bias, np.float64))
        elif isinstance(op, (nir.Conv1d, nir.Conv2d)):
            a = _conv_args(op)
            x = F.conv2d(x.reshape(x.shape[0], x.shape[1], -1)[None],
                         torch.as_tensor(a.pop("weight")), **a)[0]
            if bias:
                x = x + torch.as_tensor(np.asarray(op.bias, np.float64)).reshape(-1, 1, 1)
        elif isinstance(op, nir.SumPool2d):
            k = tuple(int(v) for v in np.broadcast_to(op.kernel_size, 2))
            x = F.avg_pool2d(x[None], k, tuple(int(v) for v in np.broadcast_to(op.stride, 2)),
                             tuple(int(v) for v in np.broadcast_to(op.padding, 2)),
                             divisor_override=1)[0]
        elif isinstance(op, nir.Flatten):
            x = x.reshape(-1)
        elif isinstance(op, nir.Scale):
            x = x * torch.as_tensor(np.asarray(op.scale, np.float64))
    return x


_DENSE_LIMIT = 1 << 24        # entries of a dense matrix composed from a chain of linear ops


@dataclass
class _Syn:
    name: str
    src: str
    dst: str
    kind: str
    weight: np.ndarray              # real (slayer units), before the dst's gain and scale
    delay_steps: int = 0
    bias: np.ndarray | float = 0.0  # real current bias per dst neuron (Affine/Conv2d bias)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


def _synapse(p: _Path, src_shape, dst_shape, dt: float) -> _Syn:
    """One synapse group from a path of linear/Delay ops (bias and delay split off)."""
    import nir
    import torch

    delays = [op for op in p.ops if isinstance(op, nir.Delay)]
    lin = [op for op in p.ops if not isinstance(op, nir.Delay)]
    steps = 0
    for d in delays:
        vals = np.unique(np.asarray(d.delay, np.float64))
        if vals.size > 1:
            raise NirImportError(f"import nir: a Delay on the path {p.src} -> {p.dst} differs "
                                 f"between neurons; one delay per synapse group")
        steps += int(round(float(vals[0]) / dt)) if vals.size else 0
    name = "/".join(p.names) or f"{p.src}->{p.dst}"
    bias = 0.0
    if _has_bias(lin):
        zero = torch.zeros(src_shape, dtype=torch.float64)
        bias = _apply(lin, zero, bias=True).numpy().reshape(dst_shape)
    core = [op for op in lin if not isinstance(op, nir.Flatten)]
    if len(core) == 1 and isinstance(core[0], (nir.Conv1d, nir.Conv2d)) and len(src_shape) == 3:
        a = _conv_args(core[0])
        return _Syn(name, p.src, p.dst, "conv", a["weight"], steps, bias, a["stride"],
                    a["padding"], a["dilation"], a["groups"])
    if len(core) == 1 and isinstance(core[0], nir.SumPool2d) and len(src_shape) == 3:
        c = core[0]
        k = tuple(int(v) for v in np.broadcast_to(c.kernel_size, 2))
        return _Syn(name, p.src, p.dst, "conv", np.ones((src_shape[0], 1, *k)), steps, bias,
                    tuple(int(v) for v in np.broadcast_to(c.stride, 2)),
                    tuple(int(v) for v in np.broadcast_to(c.padding, 2)), (1, 1), src_shape[0])
    if len(core) == 1 and isinstance(core[0], (nir.Affine, nir.Linear)):
        return _Syn(name, p.src, p.dst, "dense", np.asarray(core[0].weight, np.float64), steps,
                    bias)
    n_src, n_dst = int(np.prod(src_shape)), int(np.prod(dst_shape))
    if n_src * n_dst > _DENSE_LIMIT:
        raise NirImportError(f"import nir: the ops {', '.join(p.names)} compose to a "
                             f"{n_dst} x {n_src} matrix, too large for one dense synapse")
    basis = torch.eye(n_src, dtype=torch.float64).reshape(n_src, *src_shape)
    cols = [_apply(lin, b).reshape(-1) for b in basis]
    return _Syn(name, p.src, p.dst, "dense", torch.stack(cols, 1).numpy(), steps, bias)


def _has_bias(ops) -> bool:
    import nir
    return any(isinstance(op, (nir.Affine, nir.Conv1d, nir.Conv2d))
               and np.any(np.asarray(op.bias) != 0)
               for op in ops)

def _longest(names, edges, exc: type[ValueError], verb: str) -> dict[str, int]:
    """Depth of every name: the longest path over ``edges`` (self-loops ignored)."""
    preds: dict[str, set[str]] = {n: set() for n in names}
    for a, b in edges:
        if a != b:
            preds[b].add(a)
    depth: dict[str, int] = {}

    def visit(n: str, stack: tuple[str, ...]) -> int:
        if n not in depth:
            if n in stack:
                raise exc(f"{verb} nir: {n} lies on a cycle through other populations; only a "
                          f"population feeding itself has one reading in both NIR and Loihi")
            depth[n] = max((visit(p, stack + (n,)) + 1 for p in preds[n]), default=0)
        return depth[n]
    for n in names:
        visit(n, ())
    return depth


def _auto_scale(cuba: NirCuba, spiking: bool, wmax: float, rowsum: float, steps: int,
                exp_zero: bool = False) -> float:
    """A power-of-two state scale: threshold near 2**12 units of ``vThMant`` (spiking), or the
    largest weight at mantissa ~254 (readout, or every group with ``exp_zero``: weight exponent
    0, what stock netx holds), while a readout's ``steps`` full-fan-in steps fit 24 bits."""
    if spiking and not exp_zero:
        k = math.floor(math.log2((1 << 12) / (loihi.STATE_SCALE * cuba.v_threshold)))
        if wmax > 0:       # keep every weight exponent within the chip's 4 bits
            k = min(k, math.floor(math.log2(loihi.WEIGHT_MAX * 2 ** loihi.WEIGHT_EXP_MAX
                                            / wmax)))
        return 2.0 ** k
    if wmax <= 0:
        return 1.0
    k = math.floor(math.log2(loihi.WEIGHT_MAX / wmax))
    if spiking:
        return 2.0 ** k
    room = loihi.UV_MAX / (loihi.STATE_SCALE * max(rowsum, 1e-30) * max(steps, 1))
    return 2.0 ** min(k, math.floor(math.log2(room)))


def _quantise(s: _Syn, scale: float, gain: float, exp: int | None
              ) -> tuple[np.ndarray, int, LayerQuant]:
    import torch

    from mksgn import quant

    wa = s.weight * (scale * gain)
    m, e = quant.quantize_weight(torch.as_tensor(wa), exp)
    mi = quant.to_int(m)
    exact = wa * loihi.STATE_SCALE
    err = mi.astype(np.float64) * 2.0 ** e - exact
    norm = float(np.linalg.norm(exact))
    return mi, e, LayerQuant(s.name, s.src, s.dst, s.kind, e,
                             float(np.linalg.norm(err) / norm) if norm else 0.0,
                             float(np.abs(err).max(initial=0.0)))


def _encoder_of(p: _Path, dst: str) -> Encoder:
    """The integer encoder a path Input -> Conv2d (written by ``to_nir``) came from."""
    c = p.ops[0]
    m = _meta_of(c)
    em = m["encoder"]
    fb, sh = int(em["input_frac_bits"]), int(em["shift"])
    a = _conv_args(c)
    w = a["weight"] * (2.0 ** (sh - fb) * loihi.STATE_SCALE)
    b = np.asarray(c.bias, np.float64) * (2.0 ** sh * loihi.STATE_SCALE) + _floor_mean(sh)
    stride, padding = a["stride"], a["padding"]
    if em.get("joints"):
        # the folded kernel (V*C, V*C_in, k_t, 1) as one over the natural (C_in, T, V) input:
        # (V*C, C_in, k_t, V), the joints a kernel axis (what the dataset and `simulate` give)
        o, vi, kt = w.shape[0], int(em["joints"]), w.shape[2]
        w = w[..., 0].reshape(o, vi, -1, kt).transpose(0, 2, 3, 1)
    return Encoder(name=m.get("name", p.names[0]), modality=em["modality"], dst=dst,
                   weight=np.round(w).astype(np.int32), bias=np.round(b).astype(np.int32),
                   input_frac_bits=fb, shift=sh, stride=stride, padding=padding)


@dataclass
class _Pop:
    name: str
    shape: tuple[int, ...]
    cuba: NirCuba | None = None      # None: an input (source group)
    spiking: bool = True
    v_leak: float = 0.0


def _run_settings(meta: dict, dt: float | None, steps: int | None,
                  scale: str | None) -> tuple[float, int, str, list[str]]:
    """(dt, steps, scale, what was assumed) of ``from_nir``: the arguments, else the file's."""
    assumed: list[str] = []
    if dt is None:
        dt = float(meta.get("dt", DEFAULT_DT))
        if "dt" not in meta:
            assumed.append(f"time step dt = {dt:g} s (NIR records none; --dt sets it)")
    if steps is None:
        if "steps" not in meta:
            raise NirImportError("import nir: the graph records no run length; pass --steps")
        steps = int(meta["steps"])
    scale = scale or ("keep" if meta.get("units") == "slayer" else "auto")
    if scale != "keep":
        assumed.append("units: a power-of-two state scale per group (" + (
            "weight exponent 0" if scale == "netx" else "thresholds near 4096 vThMant units")
            + "); spikes do not depend on it")
    return dt, steps, scale, assumed


def from_nir(graph, dt: float | None = None, steps: int | None = None,
             scale: str | None = None) -> tuple[Network, ImportReport]:
    """A NIR graph as a Loihi ``Network`` and what its quantisation cost.

    dt: the step the graph's time constants are read with (default: the file's, for files
    written here, else ``DEFAULT_DT``; the report says which). steps: the NIR run length the
    network is for (``num_steps = steps + latency``; default the file's). scale: "keep" (the
    graph's units are slayer's: 1.0 = 64 units of synaptic input; files written here), "auto"
    (a power-of-two state scale per group, ``_auto_scale``; other files) or "netx" (the scale
    that makes every weight exponent 0, what a stock netx ``/layer`` section can hold).
    """
    import nir

    meta = _meta_of(graph)
    dt, steps, scale, assumed = _run_settings(meta, dt, steps, scale)
    nodes, edges = _inline(graph)
    kinds = _kinds()
    paths = _paths(nodes, edges)
    name = {k: _meta_of(x).get("name", k) for k, x in nodes.items()}
    enc = {p.src: p for p in paths if isinstance(nodes[p.src], nir.Input) and len(p.ops) == 1
           and "encoder" in _meta_of(p.ops[0])}
    pops: dict[str, _Pop] = {}
    for k, x in nodes.items():
        if isinstance(x, kinds["neuron"]):
            cuba, spiking, v_leak = _neuron_params(k, x, dt, assumed)
            pops[k] = _Pop(name[k], _shape_of(x), cuba, spiking, v_leak)
        elif isinstance(x, nir.Input) and k not in enc:
            pops[k] = _Pop(name[k], _shape_of(x))
    syns, outputs = [], []
    for p in paths:
        if p.src in enc:
            continue
        if isinstance(nodes[p.dst], nir.Output):
            if not p.ops:
                outputs.append(p.src)
                continue
            # a linear output: the readout integrates its current over the steps (NIR's I)
            pops[p.dst] = _Pop(name[p.dst], tuple(int(n) for n in np.asarray(
                nodes[p.dst].output_type["output"]).reshape(-1)),
                NirCuba(dt, math.inf, 1.0 / dt, 1.0, math.inf), False)
            outputs.append(p.dst)
            assumed.append(f"{p.dst}: the graph ends in {type(p.ops[-1]).__name__}; its current "
                           f"is summed over the steps by a non-spiking readout group")
        syn = _synapse(p, pops[p.src].shape, pops[p.dst].shape, dt)
        core = [name[n] for n in p.names if not isinstance(nodes[n], (nir.Flatten, nir.Delay))]
        syn.name = "+".join(core) or f"{pops[p.src].name}->{pops[p.dst].name}"
        syns.append(syn)
    return _build(pops, syns, outputs, enc, nodes, dt, steps, scale, meta, assumed)


def _row_sum(s: _Syn) -> float:
    return float(loihi.row_sums(np.abs(s.weight), s.kind).max(initial=0.0))


def _scales(pops, syns, dt, mode, total) -> dict[str, tuple[loihi.CubaParams, float, float]]:
    """Per neuron population: (Loihi params, input gain, state scale)."""
    out = {}
    for k, pop in pops.items():
        if pop.cuba is None:
            continue
        _, gain = nir_cuba_to_loihi(pop.cuba, dt)
        lam = 1.0
        if mode != "keep":
            inc = [s for s in syns if s.dst == k]
            unit = loihi.STATE_SCALE * abs(gain)
            wmax = max((float(np.abs(s.weight).max(initial=0.0)) * unit for s in inc), default=0.0)
            lam = _auto_scale(pop.cuba, pop.spiking, wmax,
                              sum(_row_sum(s) for s in inc) * unit, total, mode == "netx")
        params, gain = nir_cuba_to_loihi(pop.cuba, dt, lam)
        try:
            params.validate()
        except ValueError as e:
            raise NirImportError(f"import nir: node {k}: {e}") from None
        out[k] = (params, gain, lam)
    return out


def _bias(k: str, pop: _Pop, syns, p: loihi.CubaParams, gain: float, lam: float, dt: float,
          assumed: list[str], duty: float) -> np.ndarray | None:
    """The 13-bit bias mantissa that Affine/Conv2d biases and v_leak become (None: none).
    duty: steps / num_steps for an integrating readout (its bias must add up over the NIR run's
    steps, not the latency too), else 1."""
    cur = sum((np.broadcast_to(s.bias, pop.shape) for s in syns
               if s.dst == k and np.any(s.bias != 0)), np.zeros(pop.shape))
    if np.any(cur != 0) and p.i_decay != loihi.DECAY_UNITY:
        if p.i_decay == 0:
            raise NirImportError(f"import nir: node {k}: a constant input into a current that "
                                 f"never decays grows without bound")
        assumed.append(f"{k}: its input bias is applied to v at its steady state (x 4096/iDecay "
                       f"= {loihi.DECAY_UNITY / p.i_decay:g}); exact only after the current "
                       f"settles")
        cur = cur * (loihi.DECAY_UNITY / p.i_decay)
    vb = gain * cur
    if duty != 1 and np.any(vb != 0):
        assumed.append(f"{k}: its bias is spread over all {round(1 / duty, 3):g} x the NIR "
                       f"steps (the readout integrates through the latency too)")
        vb = vb * duty
    if pop.v_leak and not math.isinf(pop.cuba.tau_mem):
        vb = vb + pop.v_leak * dt / pop.cuba.tau_mem
    if not np.any(vb != 0):
        return None
    m = np.round(vb * loihi.STATE_SCALE * lam)
    if m.min() < loihi.BIAS_MANT_MIN or m.max() > loihi.BIAS_MANT_MAX:
        assumed.append(f"{k}: bias clipped to the 13-bit mantissa range")
    return np.clip(m, loihi.BIAS_MANT_MIN, loihi.BIAS_MANT_MAX).astype(np.int32)


def _build(pops, syns, outputs, enc, nodes, dt, steps, mode, meta, assumed):
    readouts = [k for k in outputs if not pops[k].spiking]
    for k, pop in pops.items():
        if pop.cuba is not None and not pop.spiking and k not in readouts:
            raise NirImportError(f"import nir: non-spiking node {k} does not feed the output; "
                                 f"only a readout may be non-spiking")
    if len(readouts) > 1:
        raise NirImportError(f"import nir: non-spiking outputs {', '.join(readouts)}; a Loihi "
                             f"network has one readout group")
    depth = _longest(list(pops), [(s.src, s.dst) for s in syns], NirImportError, "import")
    ends = readouts or outputs or list(pops)
    latency = max(depth[k] for k in ends)
    total = steps + latency
    prm = _scales(pops, syns, dt, mode, total)
    report = ImportReport(dt=dt, steps=steps, latency=latency, assumed=assumed)
    groups = []
    for k, pop in pops.items():
        if pop.cuba is None:
            groups.append(NeuronGroup(pop.name, pop.shape, loihi.CubaParams(0, 0, 0),
                                      source=True))
            continue
        p, gain, lam = prm[k]
        if pop.spiking:
            want = pop.cuba.v_threshold * loihi.STATE_SCALE * lam
            report.thresholds[pop.name] = {"vth_mant": p.vth_mant, "scale": lam,
                                           "rel_err": abs(p.vth_mant - want) / want if want
                                           else 0.0}
        duty = steps / total if k in readouts and p.v_decay == 0 else 1.0
        groups.append(NeuronGroup(pop.name, pop.shape, p, readout=k in readouts,
                                  bias=_bias(k, pop, syns, p, gain, lam, dt, assumed, duty)))
    synapses, taken = [], set()
    for s in syns:
        _, gain, lam = prm[s.dst]
        m, e, q = _quantise(s, lam, gain, 0 if mode == "netx" else None)
        own = s.delay_steps + (0 if s.src == s.dst else depth[s.dst] - depth[s.src] - 1)
        sname, n = s.name, 1
        while sname in taken:
            sname, n = f"{s.name}_{n}", n + 1
        taken.add(sname)
        q.name, q.src, q.dst = sname, pops[s.src].name, pops[s.dst].name
        report.layers.append(q)
        synapses.append(Synapse(sname, pops[s.src].name, pops[s.dst].name, s.kind, m,
                                weight_exp=e, delay=own, stride=s.stride, padding=s.padding,
                                dilation=s.dilation, groups=s.groups))
    encoders = [_encoder_of(p, pops[p.dst].name) for p in enc.values()]
    net = Network(groups=groups, synapses=synapses, encoders=encoders, num_steps=total,
                  readout=pops[readouts[0]].name if readouts else "",
                  meta={"imported_from": "nir", "dt": dt, "steps": steps, "latency": latency,
                        "window": next((_meta_of(p.ops[0])["encoder"].get("window")
                                        for p in enc.values()), None),
                        "outputs": [pops[k].name for k in outputs],
                        "sources": [pops[k].name for k, x in pops.items() if x.cuba is None],
                        "logit_scale": meta.get("logit_scale"), "nir_meta": meta})
    try:
        net.validate()
    except ValueError as e:
        raise NirImportError(f"import nir: {e}") from None
    return net, report


def read(path: str | Path, dt: float | None = None, steps: int | None = None,
         scale: str | None = None) -> tuple[Network, ImportReport]:
    """``nir.read`` (type-checked) and ``from_nir``; errors name the file."""
    import nir

    try:
        graph = nir.read(str(path))
    except Exception as e:  # noqa: BLE001 - h5py/nir raise many kinds
        raise NirImportError(f"{path}: not a readable NIR graph ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return from_nir(graph, dt=dt, steps=steps, scale=scale)
