"""Stock lava-dl netx ``.net`` files <-> ``netgraph.Network``: the ``/layer/<i>`` section.

Reading covers netx files made of ``input`` / ``flatten`` / ``dense`` / ``conv`` layers with
``CUBA`` or ``LOIHI`` neurons (what ``slayer.block.cuba`` exports and ``netx.hdf5.Network`` loads);
writing covers chain networks (each group fed by exactly one dense or conv synapse from the group
before it), which stock ``netx.hdf5.Network`` then loads unchanged.

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
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from mksgn import loihi
from mksgn.netgraph import Network, NeuronGroup, Synapse

NEVER_SPIKE_VTH = 1 << (loihi.VTH_MANT_BITS)   # 2**17 << 6 = 2**23 > largest v: never spikes
SUPPORTED_NEURONS = ("CUBA", "LOIHI")


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


def _neuron(layer: h5py.Group, where: str) -> tuple[loihi.CubaParams, bool]:
    """(params, spiking) of a layer's neuron; a missing neuron is netx's non-leaky integrator."""
    if "neuron" not in layer:
        return loihi.CubaParams(0, loihi.DECAY_UNITY, loihi.VTH_MANT_MAX), False
    n = layer["neuron"]
    kind = _str(n["type"])
    if kind not in SUPPORTED_NEURONS:
        raise NetxFormatError(f"{where}: neuron type {kind!r} is not supported "
                              f"(only {', '.join(SUPPORTED_NEURONS)})")
    if "messageBits" in n and int(n["messageBits"][()]) > 0:
        raise NetxFormatError(f"{where}: graded spikes (messageBits > 0) are not supported")
    vth = int(n["vThMant"][()])
    spiking = vth <= loihi.VTH_MANT_MAX
    p = loihi.CubaParams(int(n["iDecay"][()]), int(n["vDecay"][()]),
                         vth if spiking else loihi.VTH_MANT_MAX)
    try:
        p.validate()
    except ValueError as e:
        raise NetxFormatError(f"{where}: {e}") from None
    return p, spiking


def lava_dense_weights(w: np.ndarray) -> tuple[np.ndarray, int]:
    """The integer weights and exponent Lava's bit-accurate Dense really uses for netx weights.

    netx runs ``optimize_weight_bits`` (a power-of-two rescaling plus an exponent, clipping
    mixed-sign weights to [-256, 254]); the Dense model then applies ``clip_weights`` and
    ``truncate_weights`` with its own sign mode. Calling the same lava functions reproduces every
    corner (e.g. an all-non-positive matrix has -256 clipped to -255).
    """
    import contextlib
    import io

    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
        w_opt, num_bits, exp, _ = optimize_weight_bits(np.asarray(w).astype(int))
        mode = determine_sign_mode(w_opt)
        w_eff = truncate_weights(clip_weights(w_opt, mode, num_bits=8), mode, num_bits)
    return np.asarray(w_eff, dtype=np.int32), int(exp)


def read(path: str | Path, input_shape: tuple[int, ...] | None = None) -> Network:
    """Read the ``/layer`` section of a netx file into a ``Network``.

    Groups are named ``layer<i>`` after the file's layer index (a neuron-less input layer, or an
    ``input_shape`` given for a file that starts with a synapse layer, becomes the source group
    ``input``). input_shape is in our (C, T, V) / (N,) order. Raises NetxFormatError for anything
    outside input/flatten/dense/conv with CUBA/LOIHI neurons.
    """
    path = Path(path)
    with h5py.File(path, "r") as h5:
        if "layer" not in h5:
            raise NetxFormatError(f"{path}: no /layer section (not a netx network file)")
        layers = h5["layer"]
        n_layers = len(layers)
        groups: list[NeuronGroup] = []
        synapses: list[Synapse] = []
        prev: NeuronGroup | None = None
        for i in range(n_layers):
            where = f"{path}: layer {i}"
            layer = layers[str(i)]
            kind = _str(layer["type"])
            if kind == "input":
                shape = tuple(int(s) for s in np.asarray(layer["shape"][()]).reshape(-1))
                if len(shape) not in (1, 3):
                    raise NetxFormatError(f"{where}: input shape {shape} is neither (C,) nor "
                                          f"(C, H, W)")
                if "neuron" in layer:
                    params, spiking = _neuron(layer, where)
                    g = NeuronGroup(f"layer{i}", shape, params, readout=not spiking)
                else:
                    g = NeuronGroup("input", shape, loihi.CubaParams(0, 0, 0), source=True)
                groups.append(g)
                prev = g
            elif kind == "flatten":
                continue   # dense synapses index the row-major (C, T, V) flattening already
            elif kind in ("dense", "conv"):
                if prev is None:
                    prev = _first_source(layer, kind, input_shape, where)
                    groups.append(prev)
                params, spiking = _neuron(layer, where)
                if kind == "dense":
                    g, syn = _read_dense(layer, i, prev, params, spiking, where)
                else:
                    g, syn = _read_conv(layer, i, prev, params, spiking, where)
                groups.append(g)
                synapses.append(syn)
                prev = g
            else:
                raise NetxFormatError(f"{where}: layer type {kind!r} is not supported "
                                      f"(only input, flatten, dense, conv)")
    if not any(not g.source for g in groups):
        raise NetxFormatError(f"{path}: no neuron layers")
    last = groups[-1]
    net = Network(groups=groups, synapses=synapses, num_steps=1,
                  readout=last.name if last.readout else "",
                  meta={"source": "netx", "file": str(path)})
    net.validate()
    return net


def _first_source(layer, kind, input_shape, where) -> NeuronGroup:
    if input_shape is None:
        if kind == "dense":
            w = np.asarray(layer["weight"][()])
            n_in = int(w.shape[1]) if w.ndim == 2 else int(layer["inFeatures"][()])
            input_shape = (n_in,)
        else:
            raise NetxFormatError(f"{where}: the network starts with a conv layer; give the input "
                                  f"shape (C, H, W)")
    return NeuronGroup("input", tuple(int(s) for s in input_shape), loihi.CubaParams(0, 0, 0),
                       source=True)


def _bias(layer, shape, where) -> np.ndarray | None:
    if "bias" not in layer:
        return None
    b = np.asarray(layer["bias"][()]).astype(int)    # netx: astype(int)
    if len(shape) == 1:
        return b.reshape(shape) if b.size == shape[0] else b.reshape(-1)[:1]
    if b.ndim == 3 and b.shape == tuple(shape[::-1]):  # full bias in netx (x, y, z) order
        return b.transpose(2, 1, 0).copy()
    if b.ndim == 1 and b.size == shape[0]:
        return b.reshape(shape[0], 1, 1)
    raise NetxFormatError(f"{where}: bias of shape {b.shape} does not fit layer shape {shape}")


def _read_dense(layer, i, prev, params, spiking, where):
    shape = (int(np.prod(np.asarray(layer["shape"][()]))),)
    w = np.asarray(layer["weight"][()]).astype(int)
    if w.ndim == 1:
        w = w.reshape(shape[0], -1)
    if w.shape != (shape[0], prev.size):
        raise NetxFormatError(f"{where}: dense weight {w.shape} does not connect "
                              f"{prev.size} inputs to {shape[0]} neurons")
    if w.max() == 0 and w.min() == 0:
        raise NetxFormatError(f"{where}: all-zero weights (netx cannot optimise them)")
    w, weight_exp = lava_dense_weights(w)
    delay: int | np.ndarray = 0
    if "delay" in layer:
        d = np.clip(np.asarray(layer["delay"][()]), 0, 62).astype(np.int64)
        if d.ndim == 0:
            delay = int(d)
        elif d.size == w.shape[0]:
            delay = d.reshape(-1, 1)
        elif d.size == w.shape[1]:
            delay = d.reshape(1, -1)
        else:
            raise NetxFormatError(f"{where}: delay of shape {d.shape} fits neither "
                                  f"{w.shape[0]} outputs nor {w.shape[1]} inputs")
    g = NeuronGroup(f"layer{i}", shape, params, bias=_bias(layer, shape, where),
                    readout=not spiking)
    syn = Synapse(f"layer{i}", prev.name, g.name, "dense", w, weight_exp=weight_exp, delay=delay)
    return g, syn


def _read_conv(layer, i, prev, params, spiking, where):
    shape = tuple(int(s) for s in np.asarray(layer["shape"][()]).reshape(-1))
    if len(shape) != 3 or len(prev.shape) != 3:
        raise NetxFormatError(f"{where}: conv needs (C, H, W) shapes, got {prev.shape} -> {shape}")
    w = np.asarray(layer["weight"][()]).astype(int)
    w = w.reshape(w.shape[:4])
    stride, padding = _pair(layer["stride"][()]), _pair(layer["padding"][()])
    dilation = _pair(layer["dilation"][()])
    groups = int(np.asarray(layer["groups"][()]).reshape(-1)[0])
    c_in = prev.shape[0]
    if w.shape[0] != shape[0] or w.shape[1] * groups != c_in:
        raise NetxFormatError(f"{where}: conv weight {w.shape} (groups {groups}) does not map "
                              f"{c_in} to {shape[0]} channels")
    out_hw = tuple((prev.shape[1 + k] + 2 * padding[k] - dilation[k] * (w.shape[2 + k] - 1) - 1)
                   // stride[k] + 1 for k in range(2))
    if out_hw != shape[1:]:
        raise NetxFormatError(f"{where}: conv output {out_hw} from input {prev.shape[1:]} does "
                              f"not match layer shape {shape[1:]}")
    g = NeuronGroup(f"layer{i}", shape, params, bias=_bias(layer, shape, where),
                    readout=not spiking)
    syn = Synapse(f"layer{i}", prev.name, g.name, "conv", w.astype(np.int32), stride=stride,
                  padding=padding, dilation=dilation, groups=groups)
    return g, syn


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
        if s.kind not in ("dense", "conv"):
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
    layers = h5.create_group("layer")
    idx = 0
    first = order[0]
    h = layers.create_group(str(idx))
    _type(h, "input")
    h.create_dataset("shape", data=np.array(first.shape))
    if not first.source:
        if first.bias is not None and np.any(first.bias):
            raise ValueError(f"group {first.name}: netx input layers have no bias")
        _neuron_ds(h, first, first.readout or net.readout == first.name)
    idx += 1
    for prev, g in zip(order, order[1:]):
        s = net.incoming(g.name)[0]
        readout = g.readout or net.readout == g.name
        if s.kind == "dense" and len(prev.shape) > 1:
            h = layers.create_group(str(idx))
            _type(h, "flatten")
            h.create_dataset("shape", data=np.array([prev.size, 1, 1]))
            idx += 1
        h = layers.create_group(str(idx))
        idx += 1
        w = np.asarray(s.weight).astype(np.float32)
        if s.kind == "dense":
            _type(h, "dense")
            h.create_dataset("shape", data=np.array([g.size]))
            h.create_dataset("inFeatures", data=prev.size)
            h.create_dataset("outFeatures", data=g.size)
            h.create_dataset("weight", data=w.reshape(g.size, prev.size))
            if np.ndim(s.delay) or int(s.delay):
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
                h.create_dataset("delay", data=d1.astype(np.float32))
        else:
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
        if g.bias is not None:
            b = np.broadcast_to(np.asarray(g.bias), g.shape)
            if len(g.shape) == 3:
                per_channel = (b == b[:, :1, :1]).all()
                b = b[:, 0, 0] if per_channel else b.transpose(2, 1, 0)
            h.create_dataset("bias", data=np.ascontiguousarray(b).astype(np.float32))
        _neuron_ds(h, g, readout)


def to_netx_array(x: np.ndarray) -> np.ndarray:
    """Our (C, T, V[, t]) array -> netx's (x, y, z[, t]) order (1-D arrays pass through)."""
    return x if x.ndim < 3 else np.ascontiguousarray(np.swapaxes(x, 0, 2))


def from_netx_array(x: np.ndarray) -> np.ndarray:
    """netx's (x, y, z[, t]) array -> our (C, T, V[, t]) order (1-D/2-D (n[, t]) pass through)."""
    return x if x.ndim < 3 else np.ascontiguousarray(np.swapaxes(x, 0, 2))
