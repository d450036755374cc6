"""Deployable spiking primitives: Loihi CUBA neurons, synapse groups, joint attention, SSC encoder.

Every part here computes, in its forward pass, exactly what the chip (and the integer semantics of
``mksgn.netgraph``) computes, and describes itself for export (``export(...)`` returns the
``netgraph`` object), as slayer's blocks do.

Tensors: spikes are ``(N, C, T, V, L)`` float 0/1 with the simulation step axis last (slayer's
layout), wrapped in :class:`Spikes` together with the index of the step their first slice belongs
to. Synaptic inputs are in *a-units*: the integer ``a`` of the netgraph docstring (before the
neuron's ``<< 6``), held in integer-valued float tensors (see ``quant.exact_dtype`` for why float
sums of integers are exact).

Neurons are lava-dl slayer CUBA neurons (:class:`LoihiCuba` subclasses
``lava.lib.dl.slayer.neuron.cuba.Neuron`` and takes its parameters, fixed-point conversion and
surrogate gradient from it). The forward pass is the integer update of lava's ``PyLifModelBitAcc``
(``mksgn.loihi.Cuba``, which ``mksgn.deploy.engine`` runs too): int32 wraps of ``a << 6`` and of
the current, one 24-bit wrap of ``u``, a clipped 24-bit ``v`` and a bias ``bias_mant << 6`` added
to ``v``. Without a bias and
within the 24-bit ranges this is slayer's own CUBA dynamics (``leaky_integrator``) bit for bit;
slayer leaves out the wraps and the clip, and has no bias (Loihi adds it to the voltage).
The backward pass is slayer's: its surrogate spike derivative
(``slayer.spike.spike._spike_backward`` with slayer's ``TAU_RHO_MULT``/``SCALE_RHO_MULT``) through
the two leaky integrators, ignoring the reset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lava.lib.dl.slayer.neuron import cuba as slayer_cuba
from lava.lib.dl.slayer.spike.spike import _spike_backward

from mksgn import loihi
from mksgn.netgraph import Encoder, JointAttention, NeuronGroup, Synapse

from mksgn import quant

__all__ = [
    "Spikes", "align", "cuba_states", "LoihiCuba", "ConvSynapse", "GraphSynapse",
    "SpikingJointAttention", "PooledReadout", "SkeletonSpikingCoding", "prune_mask",
    "prune_by_cost", "SynapseLoad",
]

@dataclass
class Spikes:
    """Spikes ``s`` (N, C, T, V, L) of steps ``start .. start + L - 1`` of one neuron group."""
    s: torch.Tensor
    start: int

    @property
    def length(self) -> int:
        return self.s.shape[-1]


def align(a: torch.Tensor, src_start: int, dst_start: int, length: int, delay: int) -> torch.Tensor:
    """Deliver a synapse's output to its destination's steps.

    ``a[..., j]`` was computed from source spikes of step ``src_start + j``; the destination's step
    ``t`` receives what the source sent at ``t - 1 - delay`` (one step of synaptic delay plus
    ``delay``). Returns ``(..., length)`` for steps ``dst_start ..``; steps with no source slice get
    zero (the source did not spike before its first step).
    """
    off = dst_start - 1 - delay - src_start
    n = a.shape[-1]
    if off == 0 and n == length:
        return a
    lo, hi = max(0, -off), min(length, n - off)
    if hi <= lo:
        return a.new_zeros((*a.shape[:-1], length))
    return F.pad(a[..., lo + off:hi + off], (lo, length - hi))


# ---------------------------------------------------------------------------------------------
# The neuron

_TRACES = ("u", "v", "s", "v_pre")


def cuba_states(a: torch.Tensor, bias_eff: torch.Tensor | int, p: loihi.CubaParams,
                spiking: bool = True, traces: tuple[str, ...] = _TRACES
                ) -> tuple[torch.Tensor, ...]:
    """Integer CUBA traces from zero state: lava ``PyLifModelBitAcc``, one step per last-axis slice.

    a: (..., L) synaptic input (a-units), int64 or float64 holding integers; bias_eff:
    ``bias_mant << 6`` broadcastable to ``a[..., 0]``. Returns the requested ``traces`` (default
    all, in this order), each (..., L): ``u``, ``v`` (after the reset, as Lava and the engine
    record it) in a's dtype, bool ``s`` and ``v_pre`` (before the reset, for the surrogate
    gradient) in a's dtype.

    The update is ``loihi.Cuba``'s. When no state can leave the 24-bit range (the usual case) the
    wraps and the clip are no-ops (``loihi.CubaNoOverflow``) and the update runs in float64, which
    is exact here: every state is an integer below 2**24, a decay product ``x * (4096 - d)`` is
    below 2**37 and dividing by 4096 is exact (``loihi.scale_fraction``). That path avoids int64
    division (benchmarks/bench_student.py). Otherwise the int64 update with every wrap runs.
    """
    steps = a.shape[-1]
    amax = int(a.abs().max()) if a.numel() else 0
    bmax = int(bias_eff.abs().max()) if torch.is_tensor(bias_eff) else abs(int(bias_eff))
    if loihi.CubaNoOverflow.holds(amax, bmax, steps):
        res = _cuba_float(a.double(), bias_eff, p, spiking, traces)
    else:
        if torch.is_tensor(bias_eff):
            bias_eff = bias_eff.to(torch.int64)
        res = _cuba_wrapped(a.to(torch.int64), bias_eff, p, spiking, traces)
    return tuple(r if k == "s" else r.to(a.dtype) for k, r in zip(traces, res))


def _cuba_float(a: torch.Tensor, bias_eff, p: loihi.CubaParams, spiking: bool,
                traces: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """The update within the 24-bit range, in exact float64 (see ``cuba_states``)."""
    bias = bias_eff.double() if torch.is_tensor(bias_eff) else bias_eff
    return _cuba_traces(loihi.CubaNoOverflow, a, bias, p, spiking, traces)


def _cuba_wrapped(a: torch.Tensor, bias_eff, p: loihi.CubaParams, spiking: bool,
                  traces: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """The int64 update with the chip's 32-bit wraps, 24-bit wrap of u and clip of v."""
    return _cuba_traces(loihi.Cuba, a, bias_eff, p, spiking, traces)


def _cuba_traces(rule: type[loihi.Cuba], a: torch.Tensor, bias, p: loihi.CubaParams,
                 spiking: bool, traces: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """``rule``'s update from zero state over a's last axis; the ``traces`` (..., L)."""
    steps = a.shape[-1]
    vth = loihi.threshold(p, spiking)
    a_steps = a.movedim(-1, 0)                                    # (L, ...)
    shape = a_steps.shape[1:]
    out = {k: torch.empty((steps, *shape), dtype=torch.bool if k == "s" else a.dtype,
                          device=a.device) for k in traces}
    u = torch.zeros(shape, dtype=a.dtype, device=a.device)
    v = torch.zeros_like(u)
    for t in range(steps):
        u, v = rule.subthreshold(u, v, a_steps[t], bias, p.i_decay, p.v_decay)
        if "v_pre" in out:
            out["v_pre"][t] = v
        v, s = loihi.fire(v, vth)
        for k, x in (("u", u), ("v", v), ("s", s)):
            if k in out:
                out[k][t] = x
    return tuple(out[k].movedim(0, -1) for k in traces)


def _leaky_backward(grad: torch.Tensor, d: int) -> torch.Tensor:
    """Gradient of a leaky integrator ``y[t] = (1 - d/4096) y[t-1] + x[t]`` w.r.t. x
    (slayer ``leaky_integrator._li_dynamics_bwd``, without the decay gradient)."""
    keep = 1.0 - d / loihi.DECAY_UNITY
    out = torch.empty_like(grad)
    acc = torch.zeros_like(grad[..., 0])
    for t in range(grad.shape[-1] - 1, -1, -1):
        acc = keep * acc + grad[..., t]
        out[..., t] = acc
    return out


class _CubaFn(torch.autograd.Function):
    """Chip-exact CUBA forward, slayer backward. x, bias in real units (a / 64)."""

    @staticmethod
    def forward(ctx, x, bias, neuron):
        p = neuron.params
        a = torch.round(x.detach().double() * loihi.STATE_SCALE)   # integers, float64
        b = 0
        if bias is not None:
            b = loihi.effective_bias(
                torch.round(bias.detach().double() * loihi.STATE_SCALE).to(torch.int64))
        traces = _TRACES if neuron.record_states else \
            ("s", "v_pre") if neuron.spiking else ("v",)
        res = dict(zip(traces, cuba_states(a, b, p, spiking=neuron.spiking, traces=traces)))
        if neuron.record_states:
            neuron.last_states = (res["u"].to(torch.int64), res["v"].to(torch.int64), res["s"])
        scale = float(loihi.STATE_SCALE * (1 << loihi.ACT_SHIFT))   # slayer's s_scale: 4096
        ctx.neuron = neuron
        ctx.bias_shape = None if bias is None else bias.shape
        if neuron.spiking:
            # the surrogate gradient needs v before the reset, slayer units
            ctx.save_for_backward(res["v_pre"].to(torch.float32) / scale)
            return res["s"].to(x.dtype)
        # non-spiking (readout): v is the output; |v| < 2**23, exact in float32
        ctx.save_for_backward(None)
        return (res["v"].to(torch.float64) / scale).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        (v_pre,) = ctx.saved_tensors
        n = ctx.neuron
        p = n.params
        if n.spiking:
            g = _spike_backward(v_pre, n.threshold + n.threshold_eps,
                                n.tau_rho * slayer_cuba.TAU_RHO_MULT,
                                n.scale_rho * slayer_cuba.SCALE_RHO_MULT) * grad_out.float()
        else:   # the readout's v: its derivative w.r.t. v is 1 (clip by STE)
            g = grad_out
        g_vin = _leaky_backward(g, p.v_decay)
        g_x = _leaky_backward(g_vin, p.i_decay)
        g_b = None
        if ctx.bias_shape is not None and ctx.needs_input_grad[1]:
            g_b = g_vin.sum(-1).sum_to_size(ctx.bias_shape)
        return g_x, g_b, None


class LoihiCuba(slayer_cuba.Neuron):
    """A group of Loihi CUBA neurons (slayer's CUBA neuron, run with the chip's integer update).

    threshold: in slayer units (``vth_mant = int(threshold * 64)``); current_decay, voltage_decay:
    fractions per step (``iDecay = round(4096 * current_decay)``). ``spiking=False`` makes a readout
    group: it integrates but never spikes or resets (netgraph ``readout``).
    """

    def __init__(self, threshold: float, current_decay: float, voltage_decay: float,
                 tau_grad: float = 1.0, scale_grad: float = 1.0, spiking: bool = True):
        super().__init__(threshold=threshold, current_decay=current_decay,
                         voltage_decay=voltage_decay, tau_grad=tau_grad, scale_grad=scale_grad,
                         requires_grad=False)
        self.spiking = spiking
        self.record_states = False   # keep the integer (u, v, s) traces of the last forward
        self.last_states = None

    @classmethod
    def readout(cls) -> "LoihiCuba":
        """The non-spiking readout: u forgets every step (iDecay 4096), v keeps all (vDecay 0)."""
        return cls(threshold=loihi.VTH_MANT_MAX / loihi.STATE_SCALE, current_decay=1.0,
                   voltage_decay=0.0, spiking=False)

    @property
    def params(self) -> loihi.CubaParams:
        return loihi.CubaParams(i_decay=int(self.cx_current_decay),
                                v_decay=int(self.cx_voltage_decay), vth_mant=int(self.v_th_mant))

    def forward(self, a: torch.Tensor, bias: torch.Tensor | None = None, start: int = 0
                ) -> Spikes | torch.Tensor:
        """a: (N, C, T, V, L) synaptic input in a-units; bias: bias mantissa (a-units)
        broadcastable to (N, C, T, V). Returns the spikes of a spiking group, (N, C, T, V, L);
        for a non-spiking (readout) group the voltage trace ``v / 4096`` (slayer units) instead."""
        x = a / float(loihi.STATE_SCALE)
        b = None if bias is None else bias / float(loihi.STATE_SCALE)
        out = _CubaFn.apply(x, b, self)
        return Spikes(out, start) if self.spiking else out

    def export(self, name: str, shape: tuple[int, ...], readout: bool = False) -> NeuronGroup:
        return NeuronGroup(name=name, shape=tuple(int(d) for d in shape), params=self.params,
                           readout=readout or not self.spiking)


# ---------------------------------------------------------------------------------------------
# Synapses

def _row_bound(m: torch.Tensor, kind: str) -> float:
    """Largest sum of |mantissa| over one destination neuron's inputs (binary spikes)."""
    return float(loihi.row_sums(m.detach().abs(), kind).max())


@torch.no_grad()
def prune_mask(mask: torch.Tensor, magnitude: torch.Tensor, eligible: torch.Tensor,
               fraction: float) -> None:
    """Magnitude pruning of one synapse group, in place on its boolean weight ``mask``.

    Keeps the ``round(fraction * eligible.sum())`` (at least 1 while any is left) entries of
    largest ``magnitude`` among those still set and eligible and clears the rest; an entry once
    cleared is never set again (a later, larger fraction keeps what is left). Every cleared
    entry is a zero weight: a synapse the converted network does not have, so each spike's
    fan-out (``mksgn.opcount``) loses it.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    _keep_largest(mask, magnitude, eligible, round(fraction * int(eligible.sum())))


def _keep_largest(mask: torch.Tensor, magnitude: torch.Tensor, eligible: torch.Tensor,
                  n: int) -> None:
    """Keep the ``n`` (at least 1, at most all) live eligible entries of largest ``magnitude``;
    clear the rest of ``mask``, never setting an entry that was cleared."""
    live = mask & eligible
    n = min(int(live.sum()), max(1, n))
    score = torch.where(live, magnitude.to(torch.float64), -1.0)
    kept = torch.zeros(mask.numel(), dtype=torch.bool, device=mask.device)
    kept[score.flatten().topk(n).indices] = True
    mask.copy_(kept.view_as(mask))


class _Pruned(nn.Module):
    """A synapse group's weight mask (``prune_mask``): ``None``, every weight kept, until the
    first cut; only then a boolean buffer of the real weight's shape, saved in checkpoints. A
    checkpoint without one loads as unpruned."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mask", None)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "mask")
        device = next(self.parameters()).device
        self.mask = None if saved is None else torch.zeros(saved.shape, dtype=torch.bool,
                                                             device=device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _masked(self, w: torch.Tensor) -> torch.Tensor:
        return w if self.mask is None else w * self.mask

    def saliency(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(magnitude, eligible) over the real weight's entries: what pruning ranks and which
        entries it may keep."""
        raise NotImplementedError

    def live_mask(self, like: torch.Tensor) -> torch.Tensor:
        """The weight mask (the shape of ``like``), created with every weight kept at the first
        cut."""
        if self.mask is None:
            self.mask = torch.ones(like.shape, dtype=torch.bool, device=like.device)
        return self.mask

    @torch.no_grad()
    def prune_weights(self, fraction: float) -> None:
        """Keep the ``round(fraction * n)`` largest-magnitude of the n eligible weights
        (``prune_mask``)."""
        magnitude, eligible = self.saliency()
        prune_mask(self.live_mask(magnitude), magnitude, eligible, fraction)


@dataclass(frozen=True)
class SynapseLoad:
    """What a synapse group carries now: synaptic events per sample and its synapses (non-zero
    quantised weights, what ``mksgn.opcount`` counts a spike's fan-out over)."""
    events: float
    synapses: int


@torch.no_grad()
def prune_by_cost(groups: list[tuple[_Pruned, SynapseLoad]], fraction: float,
                  power: float = 0.5) -> None:
    """Energy-aware magnitude pruning across synapse groups, in place on their masks.

    ``groups``: (synapse group, its load, ``train.energy_loss.synapse_loads``). A weight's cost
    is its group's events per synapse; its worth, its squared magnitude over the mean of its
    group's live ones. Over all groups together, weights are kept in order of
    ``worth / cost**power`` (kept iff ``worth >= lam * cost**power`` for one ``lam``) while
    their summed cost stays within ``fraction`` of the events the groups would carry with every
    eligible weight (today's events scaled by eligible / live weights: the fraction is of the
    unpruned group, as ``prune_mask``'s), so the cut falls hardest where weights carry the most
    events. ``power`` 1 ranks by worth per event, 0 by worth alone (the events set only the
    budget). Weights quantised to zero are the smallest and cost as much as the rest here, so
    the kept synapses carry at most the budget. A group keeps at least one weight; a cleared
    weight never returns.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not 0 <= power <= 1:
        raise ValueError(f"power must be in [0, 1], got {power}")
    scores, costs, sizes, budget = [], [], [], 0.0
    for mod, load in groups:
        if not (load.events >= 0 and load.synapses >= 0):
            raise ValueError(f"a synapse group's load must be >= 0, got {load}")
        magnitude, eligible = mod.saliency()
        live = mod.live_mask(magnitude) & eligible
        n_live = int(live.sum())
        cost = float(load.events) / max(1, load.synapses)
        worth = magnitude.to(torch.float64).pow(2)
        worth = worth / worth[live].mean().clamp_min(1e-300) if n_live else worth
        per = cost ** power if cost > 0 else 0.0
        scores.append(torch.where(live, worth / per if per > 0 else math.inf, -1.0).flatten())
        costs.append(torch.full((live.numel(),), cost, dtype=torch.float64, device=live.device))
        sizes.append(live.numel())
        budget += fraction * float(load.events) * int(eligible.sum()) / max(1, n_live)
    score, cost = torch.cat(scores), torch.cat(costs)
    order = score.float().argsort(descending=True)          # float32: ~2x faster, ties only
    spent = torch.where(score[order] >= 0, cost[order], math.inf).cumsum(0)
    kept = torch.zeros_like(score, dtype=torch.bool)
    kept[order[spent <= budget * (1 + 1e-12)]] = True
    # within a group the order is by magnitude (one cost each): keep that many of its largest
    for (mod, _), k in zip(groups, kept.split(sizes)):
        magnitude, eligible = mod.saliency()
        _keep_largest(mod.mask, magnitude, eligible, int(k.sum()))


class ConvSynapse(_Pruned):
    """A ``conv`` synapse group: 2-D convolution over (T, V) at every step, 8-bit weights.

    weight: real (C_out, C_in, k_t, k_v), times ``mask`` once pruned (``prune_weights``).
    ``delay`` is set by the owner once depths are known.
    weight_exp: the group's weight exponent; None chooses it from the weights' range
    (``quant.quantize_weight``).
    """

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int] = (1, 1),
                 stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                 gain: float = 1.0, weight_exp: int | None = None):
        super().__init__()
        self.weight_exp = weight_exp
        self.kernel, self.stride, self.padding = tuple(kernel), tuple(stride), tuple(padding)
        self.weight = nn.Parameter(torch.empty(c_out, c_in, *kernel))
        fan_in = c_in * kernel[0] * kernel[1]
        nn.init.normal_(self.weight, 0.0, gain / fan_in ** 0.5)
        self.delay = 0

    def real_weight(self, scale: torch.Tensor | None = None) -> torch.Tensor:
        w = self._masked(self.weight)
        return w if scale is None else w * scale

    @torch.no_grad()
    def saliency(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(|weight|, all entries eligible)."""
        w = self.weight.abs()
        return w, torch.ones_like(w, dtype=torch.bool)

    def quantized(self, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        return quant.quantize_weight(self.real_weight(scale), self.weight_exp)

    def forward(self, src: Spikes, scale: torch.Tensor | None = None) -> torch.Tensor:
        """src (N, C_in, T, V, L) -> a (N, C_out, T', V', L) a-units, src's step indexing."""
        m, e = self.quantized(scale)
        dtype = quant.exact_dtype(_row_bound(m, "conv"), src.s.device, self.training)
        s = src.s.to(dtype)
        n, c, t, v, L = s.shape
        # (N*L, C, T, V): one 2-D convolution per step
        x = s.permute(0, 4, 1, 2, 3).reshape(n * L, c, t, v)
        acc = F.conv2d(x, m.to(dtype), stride=self.stride, padding=self.padding)
        acc = acc.reshape(n, L, *acc.shape[1:]).permute(0, 2, 3, 4, 1)
        # lava's Conv process (no exponent, no delay) wraps its sum at 24 bits; Dense at 32
        return quant.wrap(quant.shift_floor(acc, e), loihi.synapse_sum_bits("conv", e, self.delay))

    def export(self, name: str, src: str, dst: str, scale: torch.Tensor | None = None) -> Synapse:
        m, e = self.quantized(scale)
        return Synapse(name=name, src=src, dst=dst, kind="conv", weight=quant.to_int(m),
                       weight_exp=e, delay=int(self.delay), stride=self.stride,
                       padding=self.padding)


class GraphSynapse(_Pruned):
    """A ``graph`` synapse group: spatial graph convolution over joints, the same at every frame.

    Real weight ``w[o, i, v, u] = sum_k W[k, o, i] * (A[k] + B[k])[u, v] * keep[u, v]`` (times
    ``mask[o, i, v, u]`` once its weights are pruned, ``prune_weights``) with A the layout's
    partitions (3, V, V) (plus, with ``static_attention``, a global all-to-all partition
    ``1/V``), B learned adjacency offsets (zero at init, 2s-AGCN's "B"), W learned channel
    mixing and ``keep`` the joint pairs still connected (all at init; ``prune``). The whole
    (C_out, C_in, V, V) tensor is quantised with one exponent (``weight_exp``; None: chosen
    from the weights' range).
    """

    def __init__(self, c_in: int, c_out: int, partitions: np.ndarray,
                 static_attention: bool = False, gain: float = 1.0,
                 weight_exp: int | None = None):
        super().__init__()
        self.weight_exp = weight_exp
        a = np.asarray(partitions, dtype=np.float32)
        v = a.shape[-1]
        if static_attention:
            a = np.concatenate([a, np.full((1, v, v), 1.0 / v, np.float32)])
        self.register_buffer("A", torch.from_numpy(a))
        k = a.shape[0]
        self.B = nn.Parameter(torch.zeros(k, v, v))
        self.W = nn.Parameter(torch.empty(k, c_out, c_in))
        nn.init.normal_(self.W, 0.0, gain / (c_in * k) ** 0.5)
        self.register_buffer("keep", torch.ones(v, v))
        self.delay = 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before pruning existed have every joint pair connected
        state_dict.setdefault(prefix + "keep", torch.ones_like(self.keep))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def real_weight(self) -> torch.Tensor:
        return self._masked(torch.einsum("koi,kuv->oivu", self.W, (self.A + self.B) * self.keep))

    @torch.no_grad()
    def saliency(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(|real weight|, the joint pairs still connected (``keep``)): the two cuts compose."""
        w = self.real_weight().abs()
        return w, (self.keep.T > 0).expand_as(w)                          # (o, i, v, u)

    @torch.no_grad()
    def prune(self, sources: int) -> None:
        """Keep, for every destination joint v, the ``sources`` connected source joints u whose
        weights ``w[:, :, v, u]`` are largest (Frobenius norm); disconnect the rest. A spike of
        joint u then reaches only the joints that kept it: the synapse's fan-out, and so its
        synaptic events, shrink by about ``V / sources``. Pruning only removes pairs."""
        v = self.keep.shape[0]
        if sources >= v:
            return
        norm = self.real_weight().pow(2).sum((0, 1)).T                  # (u, v)
        norm = torch.where(self.keep > 0, norm, torch.full_like(norm, -1.0))
        top = norm.topk(max(1, sources), dim=0).indices                  # (sources, v)
        self.keep.mul_(torch.zeros_like(self.keep).scatter_(0, top, 1.0))

    def quantized(self) -> tuple[torch.Tensor, int]:
        return quant.quantize_weight(self.real_weight(), self.weight_exp)

    def forward(self, src: Spikes) -> torch.Tensor:
        m, e = self.quantized()
        dtype = quant.exact_dtype(_row_bound(m, "graph"), src.s.device, self.training)
        s = src.s.to(dtype)
        n, c, t, u, L = s.shape
        o, _, v, _ = m.shape
        x = s.permute(0, 2, 4, 1, 3).reshape(n * t * L, c * u)
        w = m.to(dtype).permute(1, 3, 0, 2).reshape(c * u, o * v)
        acc = (x @ w).reshape(n, t, L, o, v).permute(0, 3, 1, 4, 2)
        return quant.wrap32(quant.shift_floor(acc, e))

    def export(self, name: str, src: str, dst: str) -> Synapse:
        m, e = self.quantized()
        return Synapse(name=name, src=src, dst=dst, kind="graph", weight=quant.to_int(m),
                       weight_exp=e, delay=int(self.delay))


class SpikingJointAttention(nn.Module):
    """Spatial global spiking attention over joints (netgraph ``JointAttention``, no softmax).

    ``a[d, t, v] = (sum_c q[c, t, v] * sum_u k[c, t, u] * x[d, t, u]) >> shift`` from binary q, k
    (C_qk channels) and x (the destination's channels): integer products of spikes and a
    power-of-two scale, computable by the chip's neurons and synapses; a negative ``shift`` is a
    left shift.
    """

    def __init__(self, shift: int):
        super().__init__()
        self.shift = int(shift)
        self.delay = 0

    def forward(self, q: Spikes, k: Spikes, x: Spikes) -> torch.Tensor:
        bound = loihi.attention_bound(q.s.shape[1], q.s.shape[3])
        dtype = quant.exact_dtype(bound, q.s.device, self.training)
        acc = loihi.joint_attention(q.s.to(dtype), k.s.to(dtype), x.s.to(dtype))
        return quant.wrap32(quant.shift_floor(acc, -self.shift))

    def export(self, name: str, q: str, k: str, x: str, dst: str) -> JointAttention:
        return JointAttention(name=name, q=q, k=k, x=x, dst=dst, shift=self.shift,
                              delay=int(self.delay))


class PooledReadout(nn.Module):
    """Global pooling + linear classifier as one ``dense`` synapse into the readout group.

    Every source neuron (c, t, v) connects to class o with the same mantissa ``m[o, c]``, so the
    step's input is ``a[o] = (sum_c m[o, c] * count_c) << e`` with ``count_c`` the channel's spikes
    in the step. The real weight of one spike is ``W / pool``:

    - ``weight_exp=None`` (exponent chosen from the range): average pooling, ``pool = T V``, so
      ``W`` acts on firing rates; ``W ~ N(0, 1/C)``.
    - a fixed ``weight_exp = e`` (stock netx: e = 0): **sum pooling**, ``pool = 1``, ``W`` is the
      real weight of one spike. Averaging would put ``W / (T V)`` below the finest weight the
      exponent can hold (one mantissa step, ``2**(e+1) / 64`` real; 1/32 at e = 0) and round it
      to 0. The logits keep their definition (``v / LOGIT_SCALE``: the summed readout input over
      the S steps), so they are ``T V`` times those of the averaging readout with the same ``W``
      (the chip cannot scale them down: a CUBA neuron only integrates, and netx cannot shift a
      dense sum right). ``W ~ N(0, step**2)`` with ``step = 2**(e+1) / 64``: mantissas of about
      +/-2 a-units at init, the smallest non-zero logits, still ~60 % non-zero; and with ``W`` in
      real per-spike units an optimiser step of ~1e-2 moves a mantissa by ~1/3 of a step.
    """

    def __init__(self, c_in: int, num_classes: int, frames: int, joints: int,
                 weight_exp: int | None = None):
        super().__init__()
        self.positions = frames * joints
        self.weight_exp = weight_exp
        self.pool = self.positions if weight_exp is None else 1
        self.W = nn.Parameter(torch.empty(num_classes, c_in))
        std = 1.0 / c_in ** 0.5 if weight_exp is None else \
            2.0 ** (weight_exp + 1) / loihi.STATE_SCALE
        nn.init.normal_(self.W, 0.0, std)
        self.delay = 0

    def real_weight(self) -> torch.Tensor:
        """(classes, C) real weight of one spike of channel c."""
        return self.W / self.pool

    def quantized(self) -> tuple[torch.Tensor, int]:
        return quant.quantize_weight(self.real_weight(), self.weight_exp)

    def forward(self, src: Spikes) -> torch.Tensor:
        """src (N, C, T, V, L) -> a (N, classes, L) a-units (float64: sums can pass 2**24)."""
        m, e = self.quantized()
        counts = src.s.double().sum(dim=(2, 3))
        acc = torch.einsum("ncl,oc->nol", counts, m.double())
        return quant.wrap32(quant.shift_floor(acc, e))

    def export(self, name: str, src: str, dst: str) -> Synapse:
        m, e = self.quantized()
        w = np.repeat(quant.to_int(m), self.positions, axis=1)   # (O, C*T*V), row-major (C, T, V)
        return Synapse(name=name, src=src, dst=dst, kind="dense", weight=w, weight_exp=e,
                       delay=int(self.delay))


class SkeletonSpikingCoding(nn.Module):
    """SSC: one modality's (C_in, T, V) frame block -> conv k_t x k_v -> BN -> the first CUBA group.

    The same input is presented at every simulation step, so the conv + BN output is a constant
    per-sample bias of the first spiking group (netgraph ``Encoder``). BN is folded into the conv
    before quantisation in training and eval alike (Jacob et al., CVPR 2018, "folded BN"): in
    training with the batch's statistics (running statistics are updated as by ``BatchNorm2d``),
    in eval with the running ones; the folded conv is then quantised to the integer encoder
    (``quant.quantize_encoder``) and evaluated with the integer formula of ``mksgn.netgraph``.
    """

    def __init__(self, c_in: int, c_out: int, kernel=(3, 3), stride=(1, 1),
                 input_frac_bits: int = 12, gain: float = 1.0):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.padding = (kernel[0] // 2, kernel[1] // 2)
        self.input_frac_bits = int(input_frac_bits)
        self.weight = nn.Parameter(torch.empty(c_out, c_in, *kernel))
        nn.init.kaiming_normal_(self.weight)
        self.bn = nn.BatchNorm2d(c_out)
        nn.init.constant_(self.bn.weight, gain)

    def folded(self, x: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The BN-folded real conv (w, b). x (float (N, C_in, T, V)) supplies batch statistics in
        training mode."""
        bn = self.bn
        if self.training and x is not None:
            # float32 statistics under autocast too: the running ones are float32, and a
            # bfloat16 mean/var would fold a coarser BN than the eval path's
            with torch.autocast(x.device.type, enabled=False):
                y = F.conv2d(x.float(), self.weight, stride=self.stride, padding=self.padding)
            mean = y.mean(dim=(0, 2, 3))
            var = y.var(dim=(0, 2, 3), unbiased=False)
            with torch.no_grad():
                n = y.numel() / y.shape[1]
                bn.num_batches_tracked += 1
                # a cumulative average until it is as fast as the EMA: no bias from the (0, 1)
                # initial statistics (input modalities differ in variance by 10**4)
                mom = max(bn.momentum, 1.0 / float(bn.num_batches_tracked))
                bn.running_mean.lerp_(mean.detach(), mom)
                bn.running_var.lerp_(var.detach() * n / max(n - 1, 1), mom)
        else:
            mean, var = bn.running_mean, bn.running_var
        g = bn.weight / torch.sqrt(var + bn.eps)
        return self.weight * g[:, None, None, None], bn.bias - mean * g

    def quantized(self, x: torch.Tensor | None = None):
        w, b = self.folded(x)
        return quant.quantize_encoder(w, b, self.input_frac_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x float (N, C_in, T, V), real units -> bias mantissa (N, C_out, T', V), a-units,
        float64."""
        w_int, b_int, shift = self.quantized(x)
        x_int = quant.quantize_input(x, self.input_frac_bits)
        with quant.exact_float_math():
            acc = F.conv2d(x_int, w_int, b_int, stride=self.stride, padding=self.padding)
        bias = quant.shift_floor(acc, -shift)
        return quant.clamp_ste(bias, loihi.BIAS_MANT_MIN, loihi.BIAS_MANT_MAX)

    def export(self, name: str, modality: str, dst: str) -> Encoder:
        w_int, b_int, shift = self.quantized(None)
        return Encoder(name=name, modality=modality, dst=dst, weight=quant.to_int(w_int),
                       bias=quant.to_int(b_int), input_frac_bits=self.input_frac_bits,
                       shift=int(shift), stride=self.stride, padding=self.padding)
