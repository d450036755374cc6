"""Stock lava-dl netx ``.net`` files <-> ``netgraph.Network``: the ``/layer/<i>`` section.

Reading covers every file ``lava.lib.dl.netx.hdf5.Network`` (lava-dl 0.6.0) builds, and gives
mksgn's own stated semantics to the layer types netx lists but cannot build. Two tables hold it:
``LAYER_TYPES`` (one ``LayerType`` per netx ``type``: how it is read into groups and synapses,
and what stock netx does with it) and ``NEURON_TYPES`` (CUBA/LOIHI -> CUBA params; SDNN ->
``neuron_models`` Delta / SigmaDelta / Sigma; RF_* -> ``Resonator``). Adding a type touches one
entry, its reader function and its test (``tests/test_netx_coverage.py``). What each type means:

========== ================= ===========================================================
type       stock netx        read as
========== ================= ===========================================================
input      builds            neuron layer (bias / current driven); no neuron: input shape
flatten    builds            nothing: dense synapses index the row-major (C, H, W) order
dense      builds            dense synapse (DelayDense with ``delay``: per output, per input
                             or per synapse); weight/real+imag: ComplexDense into RF
dense_rec  builds            input + recurrent dense synapses (jointly optimised weights;
                             with delays both lose the exponent, as netx does)
conv       builds            conv synapse (delays ignored, as netx does)
pool       NotImplemented    per-channel sum pooling, one shared integer kernel (conv)
convT      NotImplemented    transposed conv, (in, out/groups, kH, kW) weights, 32-bit sums
unpool     NotImplemented    per-channel transposed conv with one shared integer kernel
concat     NotImplemented    next layer reads the ``layers`` listed, joined along channels
average    NotImplemented    integer sums of K equal consecutive parts (graded, ``Sum``)
dense_comp AttributeError    ComplexDense, as netx builds it for a complex ``dense`` layer
========== ================= ===========================================================

``read(..., num_layers=N)`` reads only the first N entries (netx's ``num_layers``).
``Network.meta["netx"]`` is "ok" or the exception stock netx raises on the file; errors of our
own (``NetxFormatError``) are one line naming the layer index and type, with netx's own reason
where netx rejects the file too. Writing covers chain networks of CUBA groups (each fed by
exactly one dense or conv synapse from the group before it), which stock netx loads unchanged.

Axis order. netx describes a layer in (x, y, z) = (width, height, channels) order, but the file
stores what slayer wrote: ``shape`` as (C, H, W), conv weights as (out, in/groups, kH, kW), and
stride/padding/dilation as (H, W); netx reverses all of these on load (``shape[::-1]``, weight
``[:, :, ::-1, ::-1]`` flipped and transposed to (out, kW, kH, in), ``x[::-1]``). mksgn's groups
are (C, T, V) = (channels, frames, joints), so the mapping is the identity on the file:
C = z, T = H = y, V = W = x, and an array in netx's (x, y, z[, t]) order becomes ours with
``transpose(2, 1, 0[, 3])``. A ``flatten`` before a dense layer makes netx connect
``out.transpose([2, 1, 0]).flatten()``, i.e. the row-major (C, T, V) index, which is exactly the
index order of a ``dense`` synapse in ``mksgn.netgraph``; flatten is therefore implicit in our graph
and written back wherever a dense layer follows a 3-D group.

What netx does to the numbers, and how it maps (``lava/lib/dl/netx/hdf5.py``):
- neurons: ``du = iDecay - 1`` (Lava adds 1 back), ``dv = vDecay``, ``vth = vThMant``, bias
  exponent 6; so ``CubaParams(iDecay, vDecay, vThMant)`` with the bias as mantissa.
- dense weights: read with ``astype(int)``; the synapse holds the weights and exponent Lava's Dense
  really uses after netx's ``optimize_weight_bits`` and the model's clip/truncate
  (``lava_dense_weights``). For in-range weights this is a power-of-two rescaling undone exactly by
  the exponent. ``delay`` (scalar, per output or per input) becomes a per-synapse delay, clamped
  to 62. The writer refuses dense weights that this round trip would change.
- conv weights: ``astype(int)``, no exponent (Lava's Conv has none); conv ``delay`` is ignored by
  netx and therefore here.
- a dense layer without a neuron gets netx's default "non-leaky integrator" (iDecay 0, vDecay 4096,
  vThMant 2**17): it can never spike, so it becomes a non-spiking ``readout`` group; a written
  readout group stores vThMant 2**17 for the same reason.
- ``input`` with a neuron: a neuron group (driven by its bias or by an input current sequence; netx
  never connects the block's ``inp`` to it). ``input`` without a neuron: a ``source`` group.
- SDNN: netx ignores ``activation`` (always ReLU) and sets ``spike_exp = state_exp = 6``; biases
  keep their 32-bit range (``bias << 12``), no 13-bit clamp; ``reset_interval`` does not apply.
- RF / RF_IZ: only behind complex dense layers (netx's input block has no complex input); the
  12-bit sin/cos decays are those Lava derives from the file's ``sinDecay`` / ``cosDecay``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from mksgn import loihi, neuron_models
from mksgn.netgraph import Network, NeuronGroup, Synapse

NEVER_SPIKE_VTH = loihi.NEVER_SPIKE_VTH_MANT   # 2**17 << 6 = 2**23 > largest v: never spikes
NETX = "lava-dl netx 0.6.0"


class NetxFormatError(ValueError):
    """A netx file this module cannot represent; the message names the layer and the reason."""


def _str(ds) -> str:
    value = ds[()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _pair(x) -> tuple[int, int]:
    a = np.asarray(x).reshape(-1)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def _shape(layer) -> tuple[int, ...]:
    return tuple(int(s) for s in np.asarray(layer["shape"][()]).reshape(-1))


# ---------------------------------------------------------------------------------------------
# Neuron types: what a layer's ``neuron/type`` becomes (netx ``Network.get_neuron_params``).

@dataclass(frozen=True)
class Neuron:
    """A layer's neuron as read: CUBA params (``model is None``) or a ``neuron_models`` model."""
    params: loihi.CubaParams
    model: object | None = None
    spiking: bool = True


def _cuba(n, where: str, role: str) -> Neuron:
    # netx: LIF(du = iDecay - 1, dv = vDecay, vth = vThMant, bias_exp 6); messageBits only makes
    # the next synapse read graded messages, LIF still sends 0/1.
    vth = int(n["vThMant"][()])
    spiking = vth <= loihi.VTH_MANT_MAX
    p = loihi.CubaParams(int(n["iDecay"][()]), int(n["vDecay"][()]),
                         vth if spiking else loihi.VTH_MANT_MAX)
    try:
        p.validate()
    except ValueError as e:
        raise NetxFormatError(f"{where}: {e}") from None
    return Neuron(p, None, spiking)


def _sdnn(n, where: str, role: str) -> Neuron:
    # netx: Delta for input layers, Sigma when the neuron has sigma_output, else SigmaDelta (ReLU
    # whatever ``activation`` says), all with spike_exp = state_exp = 6.
    none = loihi.CubaParams(0, 0, 0)
    if role == "input":
        return Neuron(none, neuron_models.Delta(int(n["vThMant"][()])))
    if "sigma_output" in n:
        return Neuron(none, neuron_models.Sigma())
    return Neuron(none, neuron_models.SigmaDelta(int(n["vThMant"][()])))


def _rf(n, where: str, role: str) -> Neuron:
    kind = _str(n["type"])
    if role != "complex":
        raise NetxFormatError(f"{where}: {kind} neurons need complex synapses (weight/real and "
                              f"weight/imag); {NETX} builds them only in such dense layers")
    try:
        m = neuron_models.Resonator.from_netx(int(n["vThMant"][()]), float(n["sinDecay"][()]),
                                              float(n["cosDecay"][()]), "PHASE" not in kind)
    except (KeyError, ValueError, ZeroDivisionError) as e:
        raise NetxFormatError(f"{where}: {kind} neuron: {e}") from None
    return Neuron(loihi.CubaParams(0, 0, 0), m)


@dataclass(frozen=True)
class NeuronType:
    """One family of netx neuron types: which ``type`` strings it covers and how it is read."""
    names: tuple[str, ...]
    read: Callable[[h5py.Group, str, str], Neuron]   # (neuron group, where, role) -> Neuron
    about: str

    def covers(self, kind: str) -> bool:
        # netx's own test for resonators is ``"RF" in type`` (RF_PHASE -> RF, others -> RF_IZ)
        return kind in self.names or (self.names[0] == "RF_PHASE" and "RF" in kind)


NEURON_TYPES: tuple[NeuronType, ...] = (
    NeuronType(("CUBA", "LOIHI"), _cuba, "Loihi CUBA LIF (lava.proc.lif LIF / LIFReset)"),
    NeuronType(("SDNN",), _sdnn, "sigma-delta with ReLU, graded spikes: Delta in an input "
               "layer, Sigma with sigma_output, SigmaDelta otherwise (lava.proc.sdn)"),
    NeuronType(("RF_PHASE", "RF_IZHIKEVICH"), _rf, "resonate-and-fire (lava.proc.rf RF for "
               "RF_PHASE, lava.proc.rf_iz RF_IZ for other RF types), complex dense layers only"),
)

# netx's default neuron of a dense layer without one: a "non-leaky integrator" that never spikes
_INTEGRATOR = Neuron(loihi.CubaParams(0, loihi.DECAY_UNITY, loihi.VTH_MANT_MAX), None, False)


def _neuron(layer: h5py.Group, where: str, role: str = "hidden") -> Neuron:
    if "neuron" not in layer:
        if role == "complex":
            raise NetxFormatError(f"{where}: a complex dense layer needs an RF neuron")
        return _INTEGRATOR
    n = layer["neuron"]
    kind = _str(n["type"])
    for t in NEURON_TYPES:
        if t.covers(kind):
            if role == "complex" and t.read is not _rf:
                raise NetxFormatError(f"{where}: neuron type {kind!r} has no complex input "
                                      f"({NETX} fails on it); complex layers need RF neurons")
            return t.read(n, where, role)
    known = ", ".join(x for t in NEURON_TYPES for x in t.names)
    raise NetxFormatError(f"{where}: neuron type {kind!r} is unknown to netx ({known})")


# ---------------------------------------------------------------------------------------------
def lava_dense_weights(w: np.ndarray) -> tuple[np.ndarray, int]:
    """The integer weights and exponent Lava's bit-accurate Dense really uses for netx weights.

    netx runs ``optimize_weight_bits`` (a power-of-two rescaling plus an exponent, clipping
    mixed-sign weights to [-256, 254]); the Dense model then applies ``clip_weights`` and
    ``truncate_weights`` with its own sign mode. Calling the same lava functions reproduces every
    corner (e.g. an all-non-positive matrix has -256 clipped to -255).
    """
    (w_eff,), exp, _ = lava_dense_weight_parts([w])
    return w_eff, exp


def lava_dense_weight_parts(parts: list[np.ndarray]) -> tuple[list[np.ndarray], int, int]:
    """``lava_dense_weights`` for matrices netx optimises together (``dense_rec``: input and
    recurrent weights side by side) and then hands to separate Dense processes, each of which
    clips and truncates with its own sign mode. Returns (effective weights, exponent, bits)."""
    import contextlib
    import io

    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
        w_opt, num_bits, exp, _ = optimize_weight_bits(
            np.hstack([np.asarray(p).astype(int) for p in parts]))
        out, lo = [], 0
        for p in parts:
            part = w_opt[:, lo:lo + p.shape[1]]
            lo += p.shape[1]
            mode = determine_sign_mode(part)
            out.append(np.asarray(truncate_weights(clip_weights(part, mode, num_bits=8), mode,
                                                   num_bits), dtype=np.int32))
    return out, int(exp), int(num_bits)


# ---------------------------------------------------------------------------------------------
# Layer types: one entry per netx ``type``; each reads its layer into groups and synapses.

@dataclass
class _Reader:
    path: Path
    input_shape: tuple[int, ...] | None
    groups: list[NeuronGroup] = field(default_factory=list)
    synapses: list[Synapse] = field(default_factory=list)
    layers: list[dict] = field(default_factory=list)      # per block: index, type, group
    prev: NeuronGroup | None = None
    concat: list[NeuronGroup] | None = None               # parts of a pending concat layer

    def source(self, layer, kind: str, where: str, n_in: int | None = None) -> NeuronGroup:
        """The group feeding this layer: the previous block, or a source made for the input."""
        if self.prev is None:
            shape = self.input_shape
            if shape is None and n_in is not None:
                shape = (n_in,)
            if shape is None:
                raise NetxFormatError(f"{where}: the network starts with a {kind} layer; give "
                                      f"the input shape (C, H, W) (netx: Input shape could not "
                                      f"be inferred)")
            self.prev = NeuronGroup("input", tuple(int(s) for s in shape),
                                    loihi.CubaParams(0, 0, 0), source=True)
            self.groups.append(self.prev)
        return self.prev

    def add(self, i: int, kind: str, g: NeuronGroup, *syns: Synapse) -> None:
        self.groups.append(g)
        for syn in syns:
            src = self.concat if syn.src == _CONCAT else None
            self.synapses.extend(_split(syn, src) if src is not None else [syn])
        if any(syn.src == _CONCAT for syn in syns):
            self.concat = None
        self.layers.append({"index": i, "type": kind, "group": g.name})
        self.prev = g


def _group(i: int, shape, n: Neuron, bias=None) -> NeuronGroup:
    return NeuronGroup(f"layer{i}", tuple(shape), n.params, bias=bias,
                       readout=n.model is None and not n.spiking, model=n.model)


def _bias(layer, shape, where, n: Neuron) -> np.ndarray | None:
    if "bias" not in layer:
        return None
    if n.model is not None and not getattr(n.model, "has_bias", False):
        return None                                     # Sigma / RF: netx gives them no bias
    b = np.asarray(layer["bias"][()]).astype(int)    # netx: astype(int)
    if len(shape) == 1:
        out = b.reshape(shape) if b.size == shape[0] else b.reshape(-1)[:1]
    elif b.ndim == 3 and b.shape == tuple(shape[::-1]):  # full bias in netx (x, y, z) order
        out = b.transpose(2, 1, 0).copy()
    elif b.ndim == 1 and b.size == shape[0]:
        out = b.reshape(shape[0], 1, 1)
    else:
        raise NetxFormatError(f"{where}: bias of shape {b.shape} could not be broadcast to "
                              f"neuron of shape {tuple(shape[::-1])} (x, y, z)")
    out = out.astype(np.int32).astype(np.int64)       # netx: bias_mant.astype(np.int32)
    if n.model is None and (out.min() < loihi.BIAS_MANT_MIN or out.max() > loihi.BIAS_MANT_MAX):
        raise NetxFormatError(f"{where}: bias mantissa outside Loihi's 13-bit range "
                              f"[{loihi.BIAS_MANT_MIN}, {loihi.BIAS_MANT_MAX}] (Lava's CPU "
                              f"model would use it unclipped; the chip cannot)")
    return out


def _read_input(r: _Reader, layer, i: int, where: str) -> None:
    shape = _shape(layer)
    if len(shape) not in (1, 3):
        raise NetxFormatError(f"{where}: input shape {shape} is neither (C,) nor (C, H, W)")
    if "neuron" not in layer:                 # netx: only sets the input shape
        if r.prev is None:
            r.input_shape = shape
            r.source(layer, "input", where)
        return
    if "bias" in layer and np.asarray(layer["bias"][()]).size != 1:
        raise NetxFormatError(f"{where}: input bias of {np.asarray(layer['bias'][()]).size} "
                              f"values (netx: int(bias) needs a single value)")
    n = _neuron(layer, where, role="input")
    r.add(i, "input", _group(i, shape, n))     # netx ignores an input layer's bias/weight


def _delay(layer, w_shape, where) -> np.ndarray | None:
    """netx's delay handling: clamp to [0, 62] only when some delay exceeds 62, truncate to int,
    expand per output / per input; a negative delay matches no slot of DelayDense and drops."""
    if "delay" not in layer:
        return None
    d = np.asarray(layer["delay"][()])
    if d.max() > loihi.MAX_AXON_DELAY:
        d = np.clip(d, 0, loihi.MAX_AXON_DELAY)
    if d.ndim == 0:
        d = np.full(w_shape, d)
    elif d.ndim == 1:
        if d.size == w_shape[0]:
            d = np.repeat(d.reshape(-1, 1), w_shape[1], axis=1)
        elif d.size == w_shape[1]:
            d = np.repeat(d.reshape(1, -1), w_shape[0], axis=0)
        else:
            raise NetxFormatError(f"{where}: Found invalid delay of shape {d.shape} to be "
                                  f"incompatible with weight of shape {w_shape}.")
    if d.shape != tuple(w_shape):
        raise NetxFormatError(f"{where}: delay of shape {d.shape} does not match weight of "
                              f"shape {w_shape}")
    return d.astype(int)


def _dense_weight(layer, key, n_out, where) -> np.ndarray:
    w = np.asarray(layer[key][()]).astype(int)
    return w.reshape(n_out, -1) if w.ndim == 1 else w


def _delay_synapse(name, src, dst, w, exp, d, port="") -> Synapse:
    if d is None:
        return Synapse(name, src, dst, "dense", w, weight_exp=exp, port=port)
    w = np.where(d >= 0, w, 0).astype(np.int32)       # negative delays never deliver
    d = np.maximum(d, 0)
    if (d == d.flat[0]).all():
        return Synapse(name, src, dst, "dense", w, weight_exp=exp, delay=int(d.flat[0]),
                       port=port)
    if (d == d[:, :1]).all():
        d = d[:, :1]                                   # per output neuron
    elif (d == d[:1, :]).all():
        d = d[:1, :]                                   # per input neuron
    return Synapse(name, src, dst, "dense", w, weight_exp=exp, delay=d.astype(np.int64),
                   port=port)


def _read_dense(r: _Reader, layer, i: int, where: str, kind: str = "dense") -> None:
    shape = (int(np.prod(np.asarray(layer["shape"][()]))),)
    if "weight/imag" in layer:                         # netx's own test for ComplexDense
        return _read_complex(r, layer, i, where, kind)
    rec = kind == "dense_rec"
    w = _dense_weight(layer, "weight", shape[0], where)
    prev = r.source(layer, kind, where, n_in=w.shape[1])
    if w.shape != (shape[0], prev.size):
        raise NetxFormatError(f"{where}: dense weight {w.shape} does not connect "
                              f"{prev.size} inputs to {shape[0]} neurons")
    parts = [w]
    if rec:
        if "weight_rec" not in layer:
            raise NetxFormatError(f"{where}: dense_rec layer without weight_rec")
        parts.append(_dense_weight(layer, "weight_rec", shape[0], where))
        if parts[1].shape != (shape[0], shape[0]):
            raise NetxFormatError(f"{where}: weight_rec {parts[1].shape} is not "
                                  f"({shape[0]}, {shape[0]})")
    if not any(p.any() for p in parts):
        raise NetxFormatError(f"{where}: all-zero weights (netx cannot optimise them)")
    effs, exp, _ = lava_dense_weight_parts(parts)
    n = _neuron(layer, where)
    d = _delay(layer, w.shape, where)
    g = _group(i, shape, n, _bias(layer, shape, where, n))
    syns = []
    if rec and d is not None:
        # netx's RecurrentDense builds both DelayDense synapses with the same delay matrix and
        # without the weight exponent: the optimised weights act unscaled.
        if d.shape != (shape[0], shape[0]):
            raise NetxFormatError(f"{where}: dense_rec delays {d.shape} cannot serve the "
                                  f"recurrent weights ({shape[0]}, {shape[0]}) (netx fails)")
        exp = 0
    syns.append(_delay_synapse(g.name, prev.name, g.name, effs[0], exp, d))
    if rec:
        syns.append(_delay_synapse(g.name + "/rec", g.name, g.name, effs[1], exp, d))
    r.add(i, kind, g, *syns)


def _read_complex(r: _Reader, layer, i: int, where: str, kind: str) -> None:
    """netx ComplexDense: real and imaginary dense synapses into an RF neuron's two inputs, each
    weight matrix optimised on its own; no bias, no delay."""
    shape = (int(np.prod(np.asarray(layer["shape"][()]))),)
    if "weight/imag" not in layer:
        raise NetxFormatError(f"{where}: weight/real without weight/imag")
    wr = _dense_weight(layer, "weight/real", shape[0], where)
    wi = _dense_weight(layer, "weight/imag", shape[0], where)
    prev = r.source(layer, kind, where, n_in=wr.shape[1])
    for w in (wr, wi):
        if w.shape != (shape[0], prev.size):
            raise NetxFormatError(f"{where}: complex weight {w.shape} does not connect "
                                  f"{prev.size} inputs to {shape[0]} neurons")
        if not w.any():
            raise NetxFormatError(f"{where}: all-zero weights (netx cannot optimise them)")
    n = _neuron(layer, where, role="complex")
    (er,), exp_r, _ = lava_dense_weight_parts([wr])
    (ei,), exp_i, _ = lava_dense_weight_parts([wi])
    g = _group(i, shape, n)
    r.add(i, kind, g, Synapse(g.name, prev.name, g.name, "dense", er, weight_exp=exp_r),
          Synapse(g.name + "/imag", prev.name, g.name, "dense", ei, weight_exp=exp_i,
                  port="imag"))


def _read_dense_comp(r: _Reader, layer, i: int, where: str) -> None:
    if "weight/real" not in layer:
        raise NetxFormatError(f"{where}: dense_comp layer without weight/real, weight/imag")
    _read_complex(r, layer, i, where, "dense_comp")


def _conv_out(in_hw, k, stride, padding, dilation) -> tuple[int, int]:
    return tuple((in_hw[j] + 2 * padding[j] - dilation[j] * (k[j] - 1) - 1) // stride[j] + 1
                 for j in range(2))


def _geometry(layer) -> tuple[tuple[int, int], ...]:
    get = lambda key, dflt: _pair(layer[key][()]) if key in layer else (dflt, dflt)  # noqa: E731
    return get("stride", 1), get("padding", 0), get("dilation", 1)


def _read_conv(r: _Reader, layer, i: int, where: str) -> None:
    shape = _shape(layer)
    prev = r.source(layer, "conv", where)
    if len(shape) != 3 or len(prev.shape) != 3:
        raise NetxFormatError(f"{where}: conv needs (C, H, W) shapes, got {prev.shape} -> {shape}")
    w = np.asarray(layer["weight"][()]).astype(int)
    w = w.reshape(w.shape[:4])
    stride, padding, dilation = _geometry(layer)
    groups = int(np.asarray(layer["groups"][()]).reshape(-1)[0]) if "groups" in layer else 1
    c_in = prev.shape[0]
    if w.shape[0] != shape[0] or w.shape[1] * groups != c_in:
        raise NetxFormatError(f"{where}: conv weight {w.shape} (groups {groups}) does not map "
                              f"{c_in} to {shape[0]} channels")
    out_hw = _conv_out(prev.shape[1:], w.shape[2:], stride, padding, dilation)
    if out_hw != shape[1:]:
        raise NetxFormatError(f"{where}: Expected synapse output shape to be "
                              f"{tuple(shape[::-1])}, found {(*out_hw[::-1], shape[0])} (x, y, z)")
    n = _neuron(layer, where)
    g = _group(i, shape, n, _bias(layer, shape, where, n))
    r.add(i, "conv", g, Synapse(g.name, prev.name, g.name, "conv", w.astype(np.int32),
                                stride=stride, padding=padding, dilation=dilation, groups=groups))


def _kernel(layer, where) -> tuple[int, int]:
    if "kernelSize" in layer:
        return _pair(layer["kernelSize"][()])
    if "weight" in layer:
        w = np.asarray(layer["weight"][()])
        if w.ndim >= 4:
            return int(w.shape[2]), int(w.shape[3])
    raise NetxFormatError(f"{where}: no kernelSize")


def _read_pool(r: _Reader, layer, i: int, where: str, kind: str = "pool") -> None:
    """pool / unpool (mksgn's semantics; netx raises NotImplementedError): slayer's per-channel
    sum pooling (a conv) or unpooling (a transposed conv) with one integer kernel shared by every
    channel: weight scalar or (kH, kW) (slayer writes (1, 1, kH, kW)), default 1."""
    shape = _shape(layer)
    prev = r.source(layer, kind, where)
    if len(shape) != 3 or len(prev.shape) != 3:
        raise NetxFormatError(f"{where}: {kind} needs (C, H, W) shapes, got {prev.shape} -> "
                              f"{shape}")
    k = _kernel(layer, where)
    stride = _pair(layer["stride"][()]) if "stride" in layer else k
    _, padding, dilation = _geometry(layer)
    w = np.asarray(layer["weight"][()]).astype(int).reshape(-1) if "weight" in layer \
        else np.ones(1, int)
    if w.size not in (1, k[0] * k[1]):
        raise NetxFormatError(f"{where}: {kind} weight of {w.size} values fits neither one "
                              f"shared value nor the {k[0]}x{k[1]} kernel")
    c = prev.shape[0]
    if shape[0] != c:
        raise NetxFormatError(f"{where}: {kind} keeps channels: {c} in, {shape[0]} out")
    weight = np.ascontiguousarray(np.broadcast_to(w.reshape(k) if w.size > 1 else w[0],
                                                  (c, 1, *k))).astype(np.int32)
    transposed = kind == "unpool"
    out_hw = _convT_out(prev.shape[1:], k, stride, padding, dilation) if transposed \
        else _conv_out(prev.shape[1:], k, stride, padding, dilation)
    if out_hw != shape[1:]:
        raise NetxFormatError(f"{where}: {kind} output {out_hw} from input {prev.shape[1:]} does "
                              f"not match layer shape {shape[1:]}")
    n = _neuron(layer, where)
    g = _group(i, shape, n, _bias(layer, shape, where, n))
    r.add(i, kind, g, Synapse(g.name, prev.name, g.name, "convT" if transposed else "conv",
                              weight, stride=stride, padding=padding, dilation=dilation,
                              groups=c))


def _convT_out(in_hw, k, stride, padding, dilation) -> tuple[int, int]:
    return tuple((in_hw[j] - 1) * stride[j] - 2 * padding[j] + dilation[j] * (k[j] - 1) + 1
                 for j in range(2))


def _read_convT(r: _Reader, layer, i: int, where: str) -> None:
    """convT (mksgn's semantics; netx raises NotImplementedError): slayer's transposed
    convolution, weight (in, out/groups, kH, kW) as slayer writes it, integer as netx reads conv
    weights; the 32-bit sum of ``torch.conv_transpose2d`` (no output padding)."""
    shape = _shape(layer)
    prev = r.source(layer, "convT", where)
    if len(shape) != 3 or len(prev.shape) != 3:
        raise NetxFormatError(f"{where}: convT needs (C, H, W) shapes, got {prev.shape} -> "
                              f"{shape}")
    w = np.asarray(layer["weight"][()]).astype(int)
    w = w.reshape(w.shape[:4])
    stride, padding, dilation = _geometry(layer)
    groups = int(np.asarray(layer["groups"][()]).reshape(-1)[0]) if "groups" in layer else 1
    if w.shape[0] != prev.shape[0] or w.shape[1] * groups != shape[0]:
        raise NetxFormatError(f"{where}: convT weight {w.shape} (groups {groups}) does not map "
                              f"{prev.shape[0]} to {shape[0]} channels")
    out_hw = _convT_out(prev.shape[1:], w.shape[2:], stride, padding, dilation)
    if out_hw != shape[1:]:
        raise NetxFormatError(f"{where}: convT output {out_hw} from input {prev.shape[1:]} does "
                              f"not match layer shape {shape[1:]}")
    n = _neuron(layer, where)
    g = _group(i, shape, n, _bias(layer, shape, where, n))
    r.add(i, "convT", g, Synapse(g.name, prev.name, g.name, "convT", w.astype(np.int32),
                                 stride=stride, padding=padding, dilation=dilation,
                                 groups=groups))


_CONCAT = "<concat>"


def _read_concat(r: _Reader, layer, i: int, where: str) -> None:
    """concat (mksgn's semantics; netx raises NotImplementedError): the next layer reads the
    outputs of the earlier layers listed in the ``layers`` dataset (file indices), in that order,
    concatenated along channels when all are (C, H, W) with one (H, W), else as one flat vector
    (row-major per part). It adds no neurons and no delay: the next layer's synapse is split into
    one synapse per part."""
    if "layers" not in layer:
        raise NetxFormatError(f"{where}: concat needs a 'layers' dataset (indices of the layers "
                              f"it joins)")
    by_index = {m["index"]: m["group"] for m in r.layers}
    parts = []
    for j in np.asarray(layer["layers"][()]).reshape(-1):
        if int(j) not in by_index:
            raise NetxFormatError(f"{where}: concat of layer {int(j)}, which is not an earlier "
                                  f"neuron layer")
        parts.append(next(g for g in r.groups if g.name == by_index[int(j)]))
    if len(parts) < 1:
        raise NetxFormatError(f"{where}: concat of no layers")
    hw = {tuple(g.shape[1:]) for g in parts if len(g.shape) == 3}
    if all(len(g.shape) == 3 for g in parts) and len(hw) == 1:
        shape = (sum(g.shape[0] for g in parts), *hw.pop())
    else:
        shape = (sum(g.size for g in parts),)
    if "shape" in layer and int(np.prod(_shape(layer))) != int(np.prod(shape)):
        raise NetxFormatError(f"{where}: concat shape {_shape(layer)} does not hold its parts "
                              f"{[g.shape for g in parts]}")
    r.concat = parts
    r.prev = NeuronGroup(_CONCAT, shape, loihi.CubaParams(0, 0, 0), source=True)


def _split(syn: Synapse, parts: list[NeuronGroup]) -> list[Synapse]:
    """One synapse per concatenated part: slices of the input axis of the weights (grouped
    convolutions are first written out as full, zero-filled ones)."""
    w = np.asarray(syn.weight)
    if syn.kind in ("conv", "convT") and syn.groups > 1:
        g = syn.groups
        if syn.kind == "conv":      # (O, I/g, k, k) -> (O, I, k, k)
            o, ig = w.shape[:2]
            full = np.zeros((o, ig * g, *w.shape[2:]), w.dtype)
            for gi in range(g):
                full[gi * (o // g):(gi + 1) * (o // g), gi * ig:(gi + 1) * ig] = \
                    w[gi * (o // g):(gi + 1) * (o // g)]
        else:                        # (I, O/g, k, k) -> (I, O, k, k)
            i_, og = w.shape[:2]
            full = np.zeros((i_, og * g, *w.shape[2:]), w.dtype)
            for gi in range(g):
                full[gi * (i_ // g):(gi + 1) * (i_ // g), gi * og:(gi + 1) * og] = \
                    w[gi * (i_ // g):(gi + 1) * (i_ // g)]
        w = full
    out, lo = [], 0
    for k, p in enumerate(parts):
        if syn.kind == "dense":
            hi = lo + p.size
            piece = w[:, lo:hi]
            d = np.asarray(syn.delay)
            delay = d[:, lo:hi] if d.ndim == 2 and d.shape[1] > 1 else syn.delay
        else:
            if len(p.shape) != 3:
                raise NetxFormatError(f"synapse {syn.name}: a {syn.kind} layer after a concat "
                                      f"needs (C, H, W) parts")
            hi = lo + p.shape[0]
            piece = w[:, lo:hi] if syn.kind == "conv" else w[lo:hi]
            delay = syn.delay
        lo = hi
        out.append(Synapse(f"{syn.name}/{k}", p.name, syn.dst, syn.kind,
                           np.ascontiguousarray(piece), weight_exp=syn.weight_exp, delay=delay,
                           stride=syn.stride, padding=syn.padding, dilation=syn.dilation,
                           groups=1 if syn.kind != "dense" else syn.groups, port=syn.port))
    return out


def _read_average(r: _Reader, layer, i: int, where: str) -> None:
    """average (mksgn's semantics; netx raises NotImplementedError): slayer's ``Average`` block
    as integers. The previous layer's N outputs (row-major) form K equal consecutive parts (K =
    the layer's size); output k at step t is the SUM of part k's messages of step t - 1 (the
    usual synaptic step), sent as a graded message: slayer's mean times N / K, exact. No
    neuron dynamics (``neuron_models.Sum``)."""
    k = int(np.prod(_shape(layer)))
    prev = r.source(layer, "average", where)
    if k < 1 or prev.size % k:
        raise NetxFormatError(f"{where}: {prev.size} inputs do not split into {k} equal parts")
    w = (np.arange(prev.size)[None, :] // (prev.size // k) == np.arange(k)[:, None])
    g = NeuronGroup(f"layer{i}", (k,), loihi.CubaParams(0, 0, 0), model=neuron_models.Sum())
    r.add(i, "average", g, Synapse(g.name, prev.name, g.name, "dense", w.astype(np.int32)))


def _not_in_netx(kind: str, reason: str):
    def read(r: _Reader, layer, i: int, where: str) -> None:
        raise NetxFormatError(f"{where}: layer type {kind!r} is not supported: {reason}")
    return read


@dataclass(frozen=True)
class LayerType:
    """One netx layer ``type``: how it is read, and what stock netx does with it.

    netx: "block" (netx builds a Lava block for it), "flatten" (netx reshapes the next
    connection), or the exception stock netx raises on it (then ``mksgn run --engine lava``
    runs the graph through ``deploy.lava_graph.LavaNetwork`` instead of netx)."""
    name: str
    read: Callable[[_Reader, h5py.Group, int, str], None]
    netx: str
    about: str


def _netx_missing(kind: str) -> str:
    return f"NotImplementedError: {kind} is not implemented."


def _read_flatten(r: _Reader, layer, i: int, where: str) -> None:
    pass   # dense synapses index the row-major (C, T, V) flattening already


LAYER_TYPES: dict[str, LayerType] = {t.name: t for t in (
    LayerType("input", _read_input, "block",
              "with a neuron: a neuron layer driven by its input currents (or bias); without: "
              "the input shape of the first synapse layer's spikes"),
    LayerType("flatten", _read_flatten, "flatten", "the next dense layer reads (C, H, W) "
              "row-major; implicit in our dense synapses"),
    LayerType("dense", _read_dense, "block", "Dense (DelayDense with a delay dataset); "
              "weight/real + weight/imag: ComplexDense into RF neurons"),
    LayerType("dense_rec", lambda r, la, i, w: _read_dense(r, la, i, w, "dense_rec"), "block",
              "RecurrentDense: input and recurrent dense synapses into one neuron layer"),
    LayerType("conv", _read_conv, "block", "Conv (delays ignored, as netx does)"),
    LayerType("pool", _read_pool, _netx_missing("pool"),
              "our semantics: per-channel sum pooling with one shared integer kernel (a conv)"),
    LayerType("convT", _read_convT, _netx_missing("convT"),
              "our semantics: transposed convolution (torch conv_transpose2d), 32-bit sums"),
    LayerType("unpool", lambda r, la, i, w: _read_pool(r, la, i, w, "unpool"),
              _netx_missing("unpool"), "our semantics: per-channel transposed conv with one "
              "shared integer kernel"),
    LayerType("average", _read_average, _netx_missing("average"),
              "our semantics: integer sums of K equal consecutive parts, graded messages"),
    LayerType("concat", _read_concat, _netx_missing("concat"),
              "our semantics: the next layer reads the listed layers' outputs joined along "
              "channels (or flat)"),
    LayerType("dense_comp", _read_dense_comp,
              "AttributeError: 'Network' object has no attribute 'create_complex_dense'",
              "our semantics: the ComplexDense block netx builds for a complex dense layer"),
)}


def read(path: str | Path, input_shape: tuple[int, ...] | None = None,
         num_layers: int | None = None) -> Network:
    """Read the ``/layer`` section of a netx file into a ``Network``.

    Groups are named ``layer<i>`` after the file's layer index (a neuron-less input layer, or an
    ``input_shape`` given for a file that starts with a synapse layer, becomes the source group
    ``input``). input_shape is in our (C, T, V) / (N,) order; num_layers reads only the first N
    layer entries (netx's ``num_layers``). ``meta["layers"]`` lists the blocks in order (index,
    type, group), ``meta["netx"]`` what stock netx does with the file ("ok" or its exception).
    Raises NetxFormatError (naming the layer index and type) for what neither netx nor mksgn
    defines.
    """
    path = Path(path)
    with h5py.File(path, "r") as h5:
        if "layer" not in h5:
            raise NetxFormatError(f"{path}: no /layer section (not a netx network file)")
        layers = h5["layer"]
        n_layers = len(layers)
        if num_layers is not None:
            n_layers = min(n_layers, int(num_layers))
        r = _Reader(path, tuple(input_shape) if input_shape is not None else None)
        netx_says = "ok"
        for i in range(n_layers):
            if str(i) not in layers or "type" not in layers[str(i)]:
                raise NetxFormatError(f"{path}: layer {i}: missing (layers must be numbered "
                                      f"0..{len(layers) - 1}, each with a type)")
            layer = layers[str(i)]
            kind = _str(layer["type"])
            where = f"{path}: layer {i} ({kind})"
            entry = LAYER_TYPES.get(kind)
            if entry is None:
                known = ", ".join(LAYER_TYPES)
                raise NetxFormatError(f"{path}: layer {i}: layer type {kind!r} is not supported "
                                      f"(known: {known})")
            try:
                entry.read(r, layer, i, where)
            except KeyError as e:
                raise NetxFormatError(f"{where}: missing dataset {e}") from None
            if entry.netx not in ("block", "flatten") and netx_says == "ok":
                netx_says = f"layer {i} ({kind}): {entry.netx}"
    if not any(not g.source for g in r.groups):
        raise NetxFormatError(f"{path}: no neuron layers")
    last = r.groups[-1]
    net = Network(groups=r.groups, synapses=r.synapses, num_steps=1,
                  readout=last.name if last.readout else "",
                  meta={"source": "netx", "file": str(path), "layers": r.layers,
                        "netx": netx_says})
    net.validate()
    return net


# ---------------------------------------------------------------------------------------------
def chain_order(net: Network) -> list[NeuronGroup]:
    """The groups of a chain network in order, or ValueError saying why it is not a chain."""
    if net.attentions:
        raise ValueError("not a chain: has joint attention")
    incoming = {g.name: net.incoming(g.name) for g in net.groups}
    heads = [g for g in net.groups if not incoming[g.name]]
    if len(heads) != 1:
        raise ValueError(f"not a chain: {len(heads)} groups without input")
    order = [heads[0]]
    outgoing = {g.name: [s for s in net.synapses if s.src == g.name] for g in net.groups}
    while outgoing[order[-1].name]:
        out = outgoing[order[-1].name]
        if len(out) != 1:
            raise ValueError(f"not a chain: group {order[-1].name} feeds {len(out)} synapses")
        nxt = net.group(out[0].dst)
        if len(incoming[nxt.name]) != 1:
            raise ValueError(f"not a chain: group {nxt.name} has {len(incoming[nxt.name])} inputs")
        order.append(nxt)
    if len(order) != len(net.groups):
        raise ValueError("not a chain: some groups are not on the path from the input")
    return order


def _neuron_ds(h: h5py.Group, g: NeuronGroup, readout: bool) -> None:
    p = g.params
    h.create_dataset("neuron/type", data="CUBA")
    h.create_dataset("neuron/iDecay", data=p.i_decay)
    h.create_dataset("neuron/vDecay", data=p.v_decay)
    h.create_dataset("neuron/vThMant", data=NEVER_SPIKE_VTH if readout else p.vth_mant)
    h.create_dataset("neuron/refDelay", data=1)
    h.create_dataset("neuron/gradedSpike", data=False)


def _type(h: h5py.Group, name: str) -> None:
    h.create_dataset("type", (1,), "S10", [name.encode("ascii")])


def _check_netx_synapse(s: Synapse) -> None:
    """Raise ValueError when netx cannot hold synapse ``s`` exactly (``write_netx_layers``)."""
    if s.kind not in _SYNAPSE_LAYERS:
        raise ValueError(f"synapse {s.name}: kind {s.kind!r} has no netx layer")
    if s.weight_exp != 0:
        raise ValueError(f"synapse {s.name}: weight_exp {s.weight_exp} cannot be stored in "
                         f"netx (it derives the exponent from the weights)")
    w = np.asarray(s.weight).astype(np.int64)
    if not w.any():
        raise ValueError(f"synapse {s.name}: all-zero weights (netx cannot load them)")
    if w.min() < -256 or w.max() > 255:
        raise ValueError(f"synapse {s.name}: weights outside netx's 8-bit range")
    if s.kind == "dense":
        w_eff, exp = lava_dense_weights(w.reshape(w.shape[0], -1))
        if exp > 0 or not np.array_equal(w_eff, w.reshape(w_eff.shape) << -exp):
            raise ValueError(f"synapse {s.name}: netx would change these weights "
                             f"(its 8-bit sign modes); keep mixed-sign weights in "
                             f"[-256, 254] and all-negative ones above -256")
    if s.kind == "conv" and np.any(np.asarray(s.delay) != 0):
        raise ValueError(f"synapse {s.name}: netx ignores conv delays")


def _dense_delay(s: Synapse, prev: NeuronGroup, g: NeuronGroup) -> np.ndarray:
    """A dense synapse's delays as netx stores them: one per output (or per input) neuron."""
    d = np.broadcast_to(np.asarray(s.delay), (g.size, prev.size))
    if (d == d[:, :1]).all():
        d1 = d[:, 0]
    elif (d == d[:1, :]).all():
        d1 = d[0, :]
    else:
        raise ValueError(f"synapse {s.name}: netx delays are per output or per "
                         f"input, not per synapse")
    if d1.max() > 62:
        raise ValueError(f"synapse {s.name}: delay above netx's limit of 62")
    return d1.astype(np.float32)


def _write_dense(h: h5py.Group, s: Synapse, prev: NeuronGroup, g: NeuronGroup) -> None:
    w = np.asarray(s.weight).astype(np.float32)
    _type(h, "dense")
    h.create_dataset("shape", data=np.array([g.size]))
    h.create_dataset("inFeatures", data=prev.size)
    h.create_dataset("outFeatures", data=g.size)
    h.create_dataset("weight", data=w.reshape(g.size, prev.size))
    if np.ndim(s.delay) or int(s.delay):
        h.create_dataset("delay", data=_dense_delay(s, prev, g))


def _write_conv(h: h5py.Group, s: Synapse, prev: NeuronGroup, g: NeuronGroup) -> None:
    w = np.asarray(s.weight).astype(np.float32)
    _type(h, "conv")
    h.create_dataset("shape", data=np.array(g.shape))
    h.create_dataset("inChannels", data=prev.shape[0])
    h.create_dataset("outChannels", data=g.shape[0])
    h.create_dataset("kernelSize", data=np.array(w.shape[2:]))
    h.create_dataset("stride", data=np.array(s.stride))
    h.create_dataset("padding", data=np.array(s.padding))
    h.create_dataset("dilation", data=np.array(s.dilation))
    h.create_dataset("groups", data=s.groups)
    h.create_dataset("weight", data=w)


# synapse kind -> writer of the netx layer (its synapse part) that holds it
_SYNAPSE_LAYERS: dict[str, Callable[[h5py.Group, Synapse, NeuronGroup, NeuronGroup], None]] = {
    "dense": _write_dense,
    "conv": _write_conv,
}


def _write_bias(h: h5py.Group, g: NeuronGroup) -> None:
    """A group's static bias: per channel when it is, else the whole (x, y, z) array."""
    b = np.broadcast_to(np.asarray(g.bias), g.shape)
    if len(g.shape) == 3:
        per_channel = (b == b[:, :1, :1]).all()
        b = b[:, 0, 0] if per_channel else b.transpose(2, 1, 0)
    h.create_dataset("bias", data=np.ascontiguousarray(b).astype(np.float32))


def _write_input_layer(h: h5py.Group, first: NeuronGroup, readout: bool) -> None:
    _type(h, "input")
    h.create_dataset("shape", data=np.array(first.shape))
    if not first.source:
        if first.bias is not None and np.any(first.bias):
            raise ValueError(f"group {first.name}: netx input layers have no bias")
        _neuron_ds(h, first, readout)


def write_netx_layers(net: Network, h5: h5py.File | h5py.Group) -> None:
    """Write a chain ``Network`` as a stock netx ``/layer`` section into an open HDF5 file.

    The first group becomes an ``input`` layer (with its neuron when it is a neuron group; its
    static bias cannot be stored there, netx ignores input biases, so it must be zero or
    driven at run time), every following group a ``conv`` or ``dense`` layer, with a ``flatten``
    layer before a dense layer fed by a 3-D group. Raises ValueError when the network is not a
    chain or uses what netx cannot express (graph synapses, weight exponents, conv delays,
    encoders are fine: they stay host-side).
    """
    order = chain_order(net)
    for s in net.synapses:
        _check_netx_synapse(s)
    layers = h5.create_group("layer")
    first = order[0]
    _write_input_layer(layers.create_group("0"), first, first.readout or net.readout == first.name)
    idx = 1
    for prev, g in zip(order, order[1:]):
        s = net.incoming(g.name)[0]
        if s.kind == "dense" and len(prev.shape) > 1:
            h = layers.create_group(str(idx))
            _type(h, "flatten")
            h.create_dataset("shape", data=np.array([prev.size, 1, 1]))
            idx += 1
        h = layers.create_group(str(idx))
        idx += 1
        _SYNAPSE_LAYERS[s.kind](h, s, prev, g)
        if g.bias is not None:
            _write_bias(h, g)
        _neuron_ds(h, g, g.readout or net.readout == g.name)


def to_netx_array(x: np.ndarray) -> np.ndarray:
    """Our (C, T, V[, t]) array -> netx's (x, y, z[, t]) order (1-D arrays pass through)."""
    return x if x.ndim < 3 else np.ascontiguousarray(np.swapaxes(x, 0, 2))


def from_netx_array(x: np.ndarray) -> np.ndarray:
    """netx's (x, y, z[, t]) array -> our (C, T, V[, t]) order (1-D/2-D (n[, t]) pass through)."""
    return x if x.ndim < 3 else np.ascontiguousarray(np.swapaxes(x, 0, 2))


def to_netx_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Our (C, T, V) group shape -> netx's layer shape (x, y, z); (N,) passes through."""
    return tuple(shape[::-1]) if len(shape) == 3 else tuple(shape)


def input_port_shape(net: Network) -> tuple[int, ...]:
    """The shape of ``hdf5.Network.inp`` that netx builds from the file ``read`` gave as ``net``
    (the first block's input port, netx order). A neuron-less input layer ahead of ``flatten``
    and ``dense`` leaves the dense block's flat (N,) port (``Dense.inp``), which indexes our
    (C, H, W) row-major; otherwise it is the first layer's own shape (``to_netx_shape``)."""
    first = net.groups[0]
    fed = [s for s in net.synapses if s.src == first.name]
    if first.source and fed and all(s.kind == "dense" for s in fed):
        return (first.size,)
    return to_netx_shape(first.shape)
