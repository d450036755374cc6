"""The converted network: a typed, serialisable graph of CUBA neuron groups and synapse groups.

Written by ``mksgn.convert``, read by ``mksgn.deploy`` (Lava builder and fast engine) and by
``mksgn.hw_profiles`` (energy). Reading and writing live here and nowhere else.

Semantics (one time step t, all integer; constants from ``mksgn.loihi``):
- Every ``Synapse`` delivers to its ``dst`` at step t the current computed from its ``src`` spikes of
  step ``t - 1 - delay`` (one step of synaptic delay as on Loihi, plus an optional axonal delay):
  ``a = (sum_j w_ij s_j) << weight_exp`` (``>> -weight_exp`` when negative, an arithmetic shift).
  ``kind`` says how ``weight`` is laid out and applied on (C, T, V) = (channels, frames, joints):
  - ``dense``: weight (N_dst, N_src) over the flattened groups (row-major (C, T, V) order);
  - ``conv``:  weight (C_dst, C_src, k_t, k_v), 2-D convolution over (T, V) with ``stride``,
    ``padding``, ``dilation``, ``groups`` (torch ``conv2d`` semantics, cross-correlation);
  - ``convT``: weight (C_src, C_dst/groups, k_t, k_v), the transposed convolution (torch
    ``conv_transpose2d``, no output padding), the adjoint of ``conv`` with the same geometry;
  - ``graph``: weight (C_dst, C_src, V, V); ``a[o, t, v] = sum_{i, u} w[o, i, v, u] s[i, t, u]``
    (a graph convolution over joints, the same at every frame; stride 1 over T).
- A ``JointAttention`` (spiking self-attention over joints, Spikformer-style, no softmax) delivers to
  ``dst`` at step t, from spikes q, k, x of its three source groups at step ``t - 1 - delay``:
  ``a[d, t, v] = (sum_c q[c, t, v] * sum_u k[c, t, u] * x[d, t, u]) >> shift``.
- An ``Encoder`` turns one input modality (float array (C_in, T, V), real units) into the per-sample
  bias mantissa of its ``dst`` group, constant over time (the SSC input is the same at every step):
  ``x_int = clip(round(x * 2**input_frac_bits), int16)``,
  ``bias_mant = clip((conv2d(x_int, weight, padding, stride) + bias) >> shift, 13-bit signed)``,
  applied with bias exponent 6 (``loihi.NETX_BIAS_EXP``) like netx input layers.
- Every ``NeuronGroup`` then sums all currents arriving at step t and runs ``loihi.Cuba.step``
  (static ``bias`` mantissa, if any, is added to the encoder bias and the sum clipped to 13-bit
  signed; both use exponent 6).
- The network runs ``num_steps`` steps from zero state. ``readout`` names the non-spiking group whose
  voltage ``v`` after the last step is the class score vector: it integrates like any CUBA group but
  never spikes and is never reset (Lava: a threshold above the 24-bit voltage range).
- A group with a ``model`` (``mksgn.neuron_models``: sigma-delta, delta, sigma, resonate-and-fire;
  read from stock netx files only, never stored in the graph section) runs that model's step on the
  summed input instead of ``loihi.Cuba.step``; its output at step t may be graded (an integer
  message), which synapses weigh like a spike of that value.
- A ``source`` group has no neurons: its spikes at step t are given from outside (an input spike
  sequence, binary); it only feeds synapses. Used for stock netx files whose first layer is a
  synapse layer.

Integer widths, exactly as lava-nc's bit-accurate models (``mksgn.loihi`` documents the numbers):
the synaptic input ``a`` and the 6-bit-shifted ``a << 6`` are 32-bit two's complement (they wrap
modulo 2**32 in Lava's int32 arrays), ``u`` wraps once by 2**24 when it leaves the 24-bit range, and
``v`` is clipped to +/-(2**23 - 1). A ``conv`` synapse with ``weight_exp == 0`` and ``delay == 0`` is
Lava's ``Conv`` process, which wraps its sum to 24 bits; with 8-bit weights and binary spikes the
sums stay far inside these ranges unless fan-in times 2**weight_exp exceeds 2**15.
A synapse with ``port == "imag"`` delivers into the imaginary input of a resonator group (netx
complex dense layers: one synapse for the real part, one for the imaginary part).
``delay`` of a ``dense`` synapse may also be an integer array broadcastable to (N_dst, N_src)
(per-synapse / axonal delays, as netx ``delay`` datasets); each delay slot's partial sum is shifted
by ``weight_exp`` on its own, as Lava's ``DelayDense`` does.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from mksgn.files import atomic_write
from mksgn.loihi import CubaParams

FORMAT = "mksgn-net"
FORMAT_VERSION = 1

SynapseKind = Literal["dense", "conv", "convT", "graph"]


@dataclass
class NeuronGroup:
    """A group of CUBA neurons. shape: (C, T, V) for feature maps or (N,) for flat groups."""
    name: str
    shape: tuple[int, ...]
    params: CubaParams
    bias: np.ndarray | None = None     # int bias mantissa, broadcastable to shape (e.g. (C, 1, 1))
    readout: bool = False              # non-spiking output group: its v is the class score
    source: bool = False               # no neurons: spikes are given from outside (input sequence)
    model: object | None = None        # a neuron model of mksgn.neuron_models instead of CUBA
                                       # (netx files only; params is then unused)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Synapse:
    """A synapse group from one neuron group to another (see module docstring for semantics)."""
    name: str
    src: str
    dst: str
    kind: SynapseKind
    weight: np.ndarray                 # int32 mantissas in [loihi.WEIGHT_MIN, loihi.WEIGHT_MAX]
    weight_exp: int = 0
    delay: int | np.ndarray = 0        # extra steps beyond the one-step synaptic delay (dense:
                                       # may be an int array broadcastable to (N_dst, N_src))
    stride: tuple[int, int] = (1, 1)   # conv and convT only
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    port: str = ""                     # "" the dst's input; "imag": a resonator's imaginary input


@dataclass
class JointAttention:
    """Spiking self-attention over joints from three spike groups q, k, x into dst."""
    name: str
    q: str
    k: str
    x: str
    dst: str
    shift: int
    delay: int = 0


@dataclass
class Encoder:
    """Host-side integer encoding of one modality into the bias of the first spiking group."""
    name: str
    modality: str
    dst: str
    weight: np.ndarray                 # int32 (C_dst, C_in, k_t, k_v)
    bias: np.ndarray                   # int32 (C_dst,)
    input_frac_bits: int
    shift: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)


@dataclass
class Network:
    groups: list[NeuronGroup]
    synapses: list[Synapse] = field(default_factory=list)
    attentions: list[JointAttention] = field(default_factory=list)
    encoders: list[Encoder] = field(default_factory=list)
    num_steps: int = 1
    readout: str = ""
    meta: dict = field(default_factory=dict)   # free-form JSON-able provenance (config, versions)

    def group(self, name: str) -> NeuronGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no neuron group named {name!r}")

    def incoming(self, name: str) -> list[Synapse]:
        return [s for s in self.synapses if s.dst == name]

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistency (unknown group, bad shape, bad range)."""
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError("duplicate neuron group names")
        known = set(names)
        for g in self.groups:
            g.params.validate()
        for s in self.synapses:
            for end in (s.src, s.dst):
                if end not in known:
                    raise ValueError(f"synapse {s.name}: unknown group {end!r}")
            if np.min(s.delay) < 0:
                raise ValueError(f"synapse {s.name}: negative delay")
            if np.ndim(s.delay) and s.kind != "dense":
                raise ValueError(f"synapse {s.name}: per-synapse delays need kind 'dense'")
        for a in self.attentions:
            for end in (a.q, a.k, a.x, a.dst):
                if end not in known:
                    raise ValueError(f"attention {a.name}: unknown group {end!r}")
        for e in self.encoders:
            if e.dst not in known:
                raise ValueError(f"encoder {e.name}: unknown group {e.dst!r}")
        if self.readout and self.readout not in known:
            raise ValueError(f"readout {self.readout!r} is not a group")


def fold_persons(x):
    """The student's input layout: bodies folded into channels, channel ``c * M + m``.

    (N, K, C, T, V, M) -> (N, K, C*M, T, V), for a numpy array or a torch tensor. Training, the
    deploy stage and the demo all feed a network's encoders through this one function.
    """
    n, k, c, t, v, m = x.shape
    order = (0, 1, 2, 5, 3, 4)
    moved = x.permute(*order) if hasattr(x, "permute") else x.transpose(order)
    return moved.reshape(n, k, c * m, t, v)


# ---------------------------------------------------------------------------------------------
# HDF5 I/O of the graph section ("/mksgn" group). The netx-layout "/layer" section that stock
# netx reads is written beside it by mksgn.netx_io.write_netx_layers for chain networks.

def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (tuple, np.ndarray)):
        return list(o)
    raise TypeError(f"cannot store {type(o).__name__} in a field")


def _put(h: h5py.Group, obj, arrays: tuple[str, ...]) -> None:
    if isinstance(obj, NeuronGroup) and obj.model is not None:
        raise ValueError(f"group {obj.name}: neuron model {type(obj.model).__name__} cannot be "
                         f"stored in the graph section (netx files hold it)")
    d = asdict(obj) if not isinstance(obj, NeuronGroup) else {
        "name": obj.name, "shape": list(obj.shape), "readout": obj.readout, "source": obj.source,
        "i_decay": obj.params.i_decay, "v_decay": obj.params.v_decay,
        "vth_mant": obj.params.vth_mant}
    if isinstance(obj, Synapse) and np.ndim(obj.delay):
        arrays = arrays + ("delay",)
    if isinstance(obj, Synapse) and not obj.port:
        d.pop("port")                  # files stay as they were for ordinary synapses
    for key in arrays:
        value = getattr(obj, key)
        d.pop(key, None)
        if value is not None:
            h.create_dataset(key, data=np.asarray(value), compression="gzip", compression_opts=1)
    h.attrs["fields"] = json.dumps(d, default=_jsonable)


def _fields(h: h5py.Group) -> dict:
    return json.loads(h.attrs["fields"])


def write_graph(net: Network, h5: h5py.File) -> None:
    """Write the graph section of a network into an open HDF5 file."""
    root = h5.create_group("mksgn")
    root.attrs["format"] = FORMAT
    root.attrs["version"] = FORMAT_VERSION
    root.attrs["num_steps"] = net.num_steps
    root.attrs["readout"] = net.readout
    root.attrs["meta"] = json.dumps(net.meta)
    for section, items, arrays in (("groups", net.groups, ("bias",)),
                                   ("synapses", net.synapses, ("weight",)),
                                   ("attentions", net.attentions, ()),
                                   ("encoders", net.encoders, ("weight", "bias"))):
        sec = root.create_group(section)
        sec.attrs["count"] = len(items)
        for i, item in enumerate(items):
            _put(sec.create_group(str(i)), item, arrays)


def read_graph(h5: h5py.File) -> Network:
    if "mksgn" not in h5:
        raise ValueError("no /mksgn graph section (not written by mksgn convert)")
    root = h5["mksgn"]
    if root.attrs.get("format") != FORMAT:
        raise ValueError(f"/mksgn has format {root.attrs.get('format')!r}, expected {FORMAT!r}")
    if int(root.attrs["version"]) > FORMAT_VERSION:
        raise ValueError(f"graph format version {root.attrs['version']} is newer than this mksgn")

    def items(section):
        sec = root[section]
        return [sec[str(i)] for i in range(int(sec.attrs["count"]))]

    groups = []
    for h in items("groups"):
        f = _fields(h)
        groups.append(NeuronGroup(
            name=f["name"], shape=tuple(f["shape"]), readout=bool(f["readout"]),
            source=bool(f.get("source", False)),
            params=CubaParams(int(f["i_decay"]), int(f["v_decay"]), int(f["vth_mant"])),
            bias=np.asarray(h["bias"]) if "bias" in h else None))
    tuples = ("stride", "padding", "dilation")
    synapses = []
    for h in items("synapses"):
        f = _fields(h)
        f.update({k: tuple(f[k]) for k in tuples if k in f})
        if "delay" in h:
            f["delay"] = np.asarray(h["delay"])
        synapses.append(Synapse(weight=np.asarray(h["weight"]), **f))
    attentions = [JointAttention(**_fields(h)) for h in items("attentions")]
    encoders = []
    for h in items("encoders"):
        f = _fields(h)
        f.update({k: tuple(f[k]) for k in ("stride", "padding")})
        encoders.append(Encoder(weight=np.asarray(h["weight"]), bias=np.asarray(h["bias"]), **f))
    return Network(groups=groups, synapses=synapses, attentions=attentions, encoders=encoders,
                   num_steps=int(root.attrs["num_steps"]), readout=str(root.attrs["readout"]),
                   meta=json.loads(root.attrs["meta"]))


def save(net: Network, path: str | Path, extra_writer=None) -> None:
    """Write ``net`` to ``path`` atomically. ``extra_writer(h5)`` may add sections (netx layers)."""
    net.validate()

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as h5:
            if extra_writer is not None:
                extra_writer(h5)
            write_graph(net, h5)
    atomic_write(path, write)


def load(path: str | Path) -> Network:
    with h5py.File(path, "r") as h5:
        net = read_graph(h5)
    net.validate()
    return net


def unroll_joints(w: np.ndarray, v_in: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """A conv kernel over (frames, joints) as a dense map over joints: w (O, I, k_t, k_v) ->
    M (O, V_out, I, V_in, k_t), w's dtype, so that output joint v_out takes input joint u through
    M[:, v_out, :, u]. The layout the folded channel x joint forms (netx chains, NIR) share."""
    o, i, kt, kv = w.shape
    v_out = (v_in + 2 * pad - dil * (kv - 1) - 1) // stride + 1
    m = np.zeros((o, v_out, i, v_in, kt), dtype=w.dtype)
    for vo in range(v_out):
        for j in range(kv):
            u = vo * stride - pad + j * dil
            if 0 <= u < v_in:
                m[:, vo, :, u, :] += w[:, :, :, j]
    return m
