"""Lowering a chain network to layers stock lava-dl netx can load (the ``/layer`` section).

netx builds a straight chain of ``input`` / ``conv`` / ``flatten`` / ``dense`` layers; it has no
graph convolution and no way to reshape between layers (a ``dense`` layer's output is flat, so
nothing 3-D may follow it). An MK-SGN chain student is input -> graph -> conv -> graph -> conv
... -> dense readout. We make it netx-shaped by *folding the joints into the channels*: every
(C, T, V) group after the input is stored as a (C*V, T, 1) layer, neuron (c, t, v) at
(c*V + v, t, 0). In that layout

- a graph synapse w (C_out, C_in, V, V) is a 1x1 convolution with weight
  ``w'[o*V + v, i*V + u] = w[o, i, v, u]`` (the channel x joint matrix of the graph conv), or,
  straight from the (C, T, V) input layer, a (1, V) convolution with
  ``w'[o*V + v, i, 0, u] = w[o, i, v, u]``;
- a conv synapse (k_t, k_v) becomes a (k_t, 1) convolution whose weight is the joint-axis
  unrolling of the kernel (for k_v = 1: ``w'[o*V + v, i*V + u, k] = w[o, i, k] [u == v]``, the
  Kronecker product of the kernel with the V x V identity);
- a dense synapse from a folded group has its columns permuted to the folded flattening.

The lowered network computes exactly what the original does, neuron for neuron, when every synapse
has weight exponent 0 (netx conv layers have no exponent; netx derives a dense layer's exponent
from the weights, which can only rescale exactly, never shift right), has no conv delay (netx
ignores it) and no synaptic sum leaves 24 bits (Lava's Conv process wraps there, a graph
synapse at 32). ``lower`` raises ValueError naming the first synapse that breaks one of these.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from mksgn import loihi
from mksgn.netgraph import Network, NeuronGroup, Synapse, unroll_joints

__all__ = ["lower", "fold_array", "unfold_array", "FOLD_TEXT"]

FOLD_TEXT = ("joints folded into channels: a (C, T, V) group is the netx layer of shape "
             "(C*V, T, 1); neuron (c, t, v) is at (c*V + v, t, 0)")

# Lava's Conv process wraps its synaptic sum at 24 bits (signed): loihi.lava_conv
_CONV_SUM_LIMIT = 1 << (loihi.synapse_sum_bits("conv", 0, 0) - 1)


def fold_array(x: np.ndarray) -> np.ndarray:
    """(..., C, T, V) -> (..., C*V, T, 1): our group layout to the folded netx layer layout."""
    *lead, c, t, v = x.shape
    return np.swapaxes(x, -1, -2).reshape(*lead, c * v, t, 1)


def unfold_array(x: np.ndarray, joints: int) -> np.ndarray:
    """(..., C*V, T, 1) -> (..., C, T, V): the inverse of ``fold_array``."""
    *lead, cv, t, _ = x.shape
    return np.swapaxes(x.reshape(*lead, cv // joints, joints, t), -1, -2)


def _graph_unroll(w: np.ndarray) -> np.ndarray:
    """Graph weight (O, I, V, U) -> M (O, V, I, U, 1)."""
    return np.transpose(w, (0, 2, 1, 3))[..., None].astype(np.int64)


def _check_exact(net: Network) -> None:
    """Raise ValueError naming the first synapse that stock netx cannot hold exactly."""
    for s in net.synapses:
        if s.weight_exp != 0:
            raise ValueError(f"synapse {s.name} has weight exponent {s.weight_exp}: netx conv "
                             f"layers have no exponent and netx derives dense exponents from the "
                             f"weights, so only exponent-0 synapses are exact in stock netx")
        if s.kind != "dense" and np.any(np.asarray(s.delay) != 0):
            raise ValueError(f"synapse {s.name} has delay {s.delay}: netx ignores conv delays")
        if s.kind == "conv" and s.groups != 1:
            raise ValueError(f"synapse {s.name}: grouped conv (groups {s.groups}) cannot be "
                             f"folded over joints")


def _lower_group(g: NeuronGroup, first: bool, fold: bool) -> tuple[str, NeuronGroup]:
    """(layout, netx-shaped group): "flat" and "plain" groups as they are, "folded" ones as
    (C*V, T, 1) with their bias folded alike."""
    if len(g.shape) != 3:
        return "flat", g
    if first or not fold:
        return "plain", g
    c, t, v = g.shape
    bias = None
    if g.bias is not None:
        bias = fold_array(np.broadcast_to(np.asarray(g.bias), g.shape)).copy()
    return "folded", replace(g, shape=(c * v, t, 1), bias=bias)


def _folded_order(shape: tuple[int, ...]) -> np.ndarray:
    """Our flat index of every neuron of a (C, T, V) group, in the folded flattening."""
    return fold_array(np.arange(int(np.prod(shape))).reshape(shape)).reshape(-1)


def _lower_dense(s: Synapse, prev: NeuronGroup, g: NeuronGroup, src_layout: str,
                 dst_layout: str) -> Synapse:
    """A dense synapse with its columns (rows) permuted to a folded source's (target's)
    flattening."""
    w = np.asarray(s.weight)
    if src_layout == "folded":
        w = w[:, _folded_order(prev.shape)]
    if dst_layout == "folded":
        w = w[_folded_order(g.shape), :]
    return replace(s, weight=np.ascontiguousarray(w))


def _lower_to_folded(s: Synapse, prev: NeuronGroup, src_layout: str) -> Synapse:
    """A graph or conv synapse into a folded group as the netx conv of the module docstring;
    raises ValueError when its synaptic sums could leave Lava's 24-bit Conv range."""
    w = np.asarray(s.weight).astype(np.int64)
    if s.kind == "graph":
        m, st, pad, dil = _graph_unroll(w), 1, 0, 1
    else:
        v_in = prev.shape[2]
        m = unroll_joints(w, v_in, s.stride[1], s.padding[1], s.dilation[1])
        st, pad, dil = s.stride[0], s.padding[0], s.dilation[0]
    o, v_out, i, v_in, kt = m.shape
    if src_layout == "plain":        # (C_in, T, V) input layer: kernel spans all joints
        w2 = m.transpose(0, 1, 2, 4, 3).reshape(o * v_out, i, kt, v_in)
    else:                            # folded (C_in*V, T, 1)
        w2 = m.reshape(o * v_out, i * v_in, kt, 1)
    bound = int(loihi.row_sums(np.abs(w2), "conv").max(initial=0))
    if bound >= _CONV_SUM_LIMIT:
        raise ValueError(f"synapse {s.name}: synaptic sums up to {bound} would wrap in Lava's "
                         f"24-bit Conv process")
    return Synapse(name=s.name, src=s.src, dst=s.dst, kind="conv",
                   weight=w2.astype(np.int32), weight_exp=0, delay=0,
                   stride=(st, 1), padding=(pad, 0), dilation=(dil, 1))


def lower(net: Network, order: list[NeuronGroup]) -> tuple[Network, dict[str, str]]:
    """A netx-shaped copy of the chain ``net`` (groups in chain ``order``, from
    ``mksgn.netx_io.chain_order``). Returns (lowered network, layout per group name:
    "plain" (as ours), "folded" (``FOLD_TEXT``) or "flat"). Raises ValueError saying why a
    synapse cannot be lowered exactly."""
    _check_exact(net)
    fold = any(s.kind == "graph" for s in net.synapses)
    layout: dict[str, str] = {}
    groups: dict[str, NeuronGroup] = {}
    for k, g in enumerate(order):
        layout[g.name], groups[g.name] = _lower_group(g, k == 0, fold)
    synapses = []
    flat_seen = False
    for prev, g in zip(order, order[1:]):
        s = net.incoming(g.name)[0]
        src_layout, dst_layout = layout[prev.name], layout[g.name]
        if flat_seen and s.kind != "dense":
            raise ValueError(f"synapse {s.name}: a {s.kind} layer after a dense layer has no netx "
                             f"form (netx cannot reshape a dense layer's flat output)")
        if s.kind == "dense":
            flat_seen = True
            synapses.append(_lower_dense(s, prev, g, src_layout, dst_layout))
        elif dst_layout != "folded":      # no graph synapse anywhere: conv chain as it is
            synapses.append(s)
        else:
            synapses.append(_lower_to_folded(s, prev, src_layout))
    lowered = Network(groups=[groups[g.name] for g in order], synapses=synapses,
                      num_steps=net.num_steps, readout=net.readout,
                      meta={"lowered_from": "mksgn graph section", "layout": layout})
    lowered.validate()
    return lowered, layout
