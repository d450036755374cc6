"""A slow, obvious numpy reference of the netgraph semantics, for testing the fast engine.

The deliberate second copy of the chip's arithmetic: ``mksgn.loihi`` holds the one definition
that the student, the engine, its compiled kernels and the Lava builder all run; this module
writes the same rules again, independently and in numpy (explicit loops for convolutions, its own
``cuba_step`` for the neuron, its own attention sum), so that the tests can hold the one to the
other. Keep it independent: never import the rules from ``mksgn.loihi`` here (only constants).
The neuron is valid while values stay in the 24-bit ranges (no int32 wraps), which the tests
using it keep. Also random tiny networks covering every kind, shared by the deploy tests.
"""
from __future__ import annotations

import numpy as np

from mksgn import loihi
from mksgn.netgraph import Encoder, JointAttention, Network, NeuronGroup, Synapse


def decay(x: np.ndarray, d: int) -> np.ndarray:
    """Loihi decay of a 24-bit state: ``sign(x) * (|x| * (4096 - d) >> 12)`` (toward zero)."""
    prod = x.astype(np.int64) * (loihi.DECAY_UNITY - d)
    return (np.sign(prod) * (np.abs(prod) >> loihi.DECAY_SHIFT)).astype(np.int64)


def wrap_current(u: np.ndarray) -> np.ndarray:
    """Wrap the current the way lava's bit-accurate LIF does (one wrap of 2**24 each way)."""
    u = np.where(u > loihi.UV_MAX, u - 2 * loihi.UV_MAX, u)
    return np.where(u <= -loihi.UV_MAX, u + 2 * loihi.UV_MAX, u)


def cuba_step(u: np.ndarray, v: np.ndarray, a_in: np.ndarray, bias: np.ndarray | int,
              p: loihi.CubaParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of Loihi's CUBA neuron in integers, within the 24-bit ranges.

    u, v: int64 state arrays; a_in: summed synaptic input (already weight-exponent scaled);
    bias: effective bias (``bias_mant << bias_exp``). Returns the new (u, v, spikes).
    """
    u = wrap_current(decay(u, p.i_decay) + (a_in.astype(np.int64) << loihi.ACT_SHIFT))
    v = np.clip(decay(v, p.v_decay) + u + bias, -loihi.UV_MAX + 1, loihi.UV_MAX - 1)
    s = v > (p.vth_mant << loihi.VTH_SHIFT)
    v = np.where(s, 0, v)
    return u, v, s


def conv2d_int(x: np.ndarray, w: np.ndarray, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
               groups=1) -> np.ndarray:
    """Cross-correlation of x (C, H, W) with w (O, C/groups, kh, kw) in int64, by loops."""
    c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.zeros((c, h + 2 * padding[0], wd + 2 * padding[1]), dtype=np.int64)
    xp[:, padding[0]:padding[0] + h, padding[1]:padding[1] + wd] = x
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((o, ho, wo), dtype=np.int64)
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(ho):
            for j in range(wo):
                acc = 0
                for ic in range(cg):
                    for a in range(kh):
                        for b in range(kw):
                            acc += int(w[oc, ic, a, b]) * int(
                                xp[g * cg + ic, i * stride[0] + a * dilation[0],
                                   j * stride[1] + b * dilation[1]])
                out[oc, i, j] = acc
    return out


def _shift(a, e):
    return a << e if e >= 0 else a >> -e


def synapse_current(s: Synapse, x: np.ndarray, dst_shape) -> np.ndarray:
    w = np.asarray(s.weight).astype(np.int64)
    if s.kind == "dense":
        a = w.reshape(int(np.prod(dst_shape)), -1) @ x.reshape(-1).astype(np.int64)
    elif s.kind == "conv":
        a = conv2d_int(x, w, s.stride, s.padding, s.dilation, s.groups)
    else:
        a = np.einsum("oivu,itu->otv", w, x.astype(np.int64))
    return _shift(a, s.weight_exp).reshape(dst_shape)


def encode(e: Encoder, x: np.ndarray) -> np.ndarray:
    xi = np.clip(np.round(x.astype(np.float64) * 2.0 ** e.input_frac_bits), -32768, 32767)
    acc = conv2d_int(xi.astype(np.int64), np.asarray(e.weight), e.stride, e.padding)
    acc = acc + np.asarray(e.bias, dtype=np.int64)[:, None, None]
    return np.clip(_shift(acc, -e.shift), loihi.BIAS_MANT_MIN, loihi.BIAS_MANT_MAX)


def simulate(net: Network, inputs: dict[str, np.ndarray] | None = None):
    """One sample. inputs: modality -> (C, T, V). Returns per group lists of (u, v, s) per step."""
    groups = {g.name: g for g in net.groups}
    bias = {}
    for e in net.encoders:
        bias[e.dst] = bias.get(e.dst, 0) + encode(e, inputs[e.modality])
    for g in net.groups:
        if g.bias is not None:
            bias[g.name] = bias.get(g.name, 0) + np.broadcast_to(g.bias, g.shape)
    bias = {k: np.clip(b, loihi.BIAS_MANT_MIN, loihi.BIAS_MANT_MAX).astype(np.int64)
            << loihi.NETX_BIAS_EXP for k, b in bias.items()}
    u = {g.name: np.zeros(g.shape, np.int64) for g in net.groups}
    v = {g.name: np.zeros(g.shape, np.int64) for g in net.groups}
    spikes: dict[str, list[np.ndarray]] = {g.name: [] for g in net.groups}
    trace = {g.name: [] for g in net.groups}
    for t in range(net.num_steps):
        def past(name, d):
            k = t - 1 - d
            return spikes[name][k] if k >= 0 else np.zeros(groups[name].shape, bool)
        new = {}
        for g in net.groups:
            a = np.zeros(g.shape, np.int64)
            for s in net.synapses:
                if s.dst != g.name:
                    continue
                if np.ndim(s.delay):
                    w = np.asarray(s.weight).reshape(g.size, -1)
                    dl = np.broadcast_to(s.delay, w.shape)
                    for d in np.unique(dl):
                        sub = Synapse(s.name, s.src, s.dst, "dense", np.where(dl == d, w, 0),
                                      s.weight_exp)
                        a = a + synapse_current(sub, past(s.src, int(d)), g.shape)
                else:
                    a = a + synapse_current(s, past(s.src, int(s.delay)), g.shape)
            for at in net.attentions:
                if at.dst != g.name:
                    continue
                q, k, x = (past(n, at.delay).astype(np.int64) for n in (at.q, at.k, at.x))
                kx = np.einsum("ctu,dtu->cdt", k, x)
                a = a + (np.einsum("ctv,cdt->dtv", q, kx) >> at.shift)
            p = g.params
            if g.readout or g.name == net.readout:
                p = loihi.CubaParams(p.i_decay, p.v_decay, loihi.VTH_MANT_MAX + 1)
            u[g.name], v[g.name], s_ = cuba_step(u[g.name], v[g.name], a,
                                                        bias.get(g.name, 0), p)
            new[g.name] = s_
            trace[g.name].append((u[g.name].copy(), v[g.name].copy(), s_.copy()))
        for k, s_ in new.items():
            spikes[k].append(s_)
    return trace


def random_graph_network(rng: np.random.Generator, steps: int = 8, wide_ranges: bool = False
                         ) -> tuple[Network, dict[str, np.ndarray]]:
    """A tiny network with every kind: encoder, conv (stride/pad/dil/groups), graph with delay,
    attention, residual fan-in, dense with per-synapse delays, readout. Returns (net, inputs)
    with inputs modality -> (C, T, V) for one sample."""
    V, T = 5, 6
    def cp():  # decays across [0, 4096]; thresholds low enough that deep groups still spike
        hi = 4097 if wide_ranges else 2048
        return loihi.CubaParams(int(rng.integers(0, hi)), int(rng.integers(0, hi)),
                                int(rng.integers(1, 4000 if wide_ranges else 60)))
    w = lambda *shape, lo=-120, hi=120: rng.integers(lo, hi + 1, shape).astype(np.int32)  # noqa
    groups = [
        NeuronGroup("enc", (4, T, V), cp()),
        NeuronGroup("c1", (6, T, V), cp(), bias=rng.integers(-50, 50, (6, 1, 1))),
        NeuronGroup("g1", (6, T, V), cp()),
        NeuronGroup("q", (3, T, V), cp()), NeuronGroup("k", (3, T, V), cp()),
        NeuronGroup("att", (6, T, V), cp()),
        NeuronGroup("c2", (4, 3, V), cp()),
        NeuronGroup("fc", (10,), cp()),
        NeuronGroup("out", (4,), cp(), readout=True),
    ]
    syn = [
        Synapse("enc-c1", "enc", "c1", "conv", w(6, 2, 3, 3), padding=(1, 1), groups=2,
                weight_exp=1),
        Synapse("c1-g1", "c1", "g1", "graph", w(6, 6, V, V), weight_exp=-2, delay=1),
        Synapse("enc-g1", "enc", "g1", "conv", w(6, 4, 1, 1), delay=3),        # residual, aligned
        Synapse("g1-q", "g1", "q", "conv", w(3, 6, 1, 1)),
        Synapse("g1-k", "g1", "k", "conv", w(3, 6, 1, 1)),
        Synapse("g1-att", "g1", "att", "conv", w(6, 6, 1, 1), delay=1),
        Synapse("att-c2", "att", "c2", "conv", w(4, 6, 3, 1), stride=(2, 1), padding=(2, 0),
                dilation=(2, 1)),
        Synapse("c2-fc", "c2", "fc", "dense", w(10, 4 * 3 * V),
                delay=rng.integers(0, 4, (10, 1))),
        Synapse("fc-out", "fc", "out", "dense", w(4, 10, lo=-256, hi=254), weight_exp=2),
    ]
    att = [JointAttention("sa", q="q", k="k", x="g1", dst="att", shift=1)]
    enc = [Encoder("e0", "joint", "enc", w(4, 3, 3, 1, lo=-60, hi=60),
                   rng.integers(-2000, 2000, 4).astype(np.int32), input_frac_bits=6, shift=4,
                   padding=(1, 0))]
    net = Network(groups, syn, att, enc, num_steps=steps, readout="out")
    net.validate()
    inputs = {"joint": rng.normal(0, 2, (3, T, V)).astype(np.float32)}
    return net, inputs
