"""The fast engine: a converted ``netgraph.Network`` run as integer tensor arithmetic in PyTorch.

It reproduces lava-nc's bit-accurate (``fixed_pt``) models bit for bit, batched over samples, on CPU
or CUDA. The semantics are those of the ``mksgn.netgraph`` module docstring; the neuron update is
``PyLifModelBitAcc`` (lava/proc/lif/models.py) including its int32 arithmetic, the synapses are
``PyDenseModelBitAcc`` / ``PyDelayDenseModelBitAcc`` / ``PyConvModelFixed``.

Why float convolutions are exact here: spikes are 0/1 and weights are integers, so every product
and every partial sum of a convolution or matrix product is an integer no larger in magnitude than
``B = max over output neurons of sum |w|`` (times the largest input value). Floating point adds and
multiplies integers exactly while all of them stay below 2**24 (float32) or 2**53 (float64), in any
summation order. The engine picks float32 when ``B < 2**24`` on CPU (PyTorch's CPU convolutions are
direct or im2col+GEMM, no Winograd/FFT), float64 otherwise and always on CUDA (with TF32 off), and
rounds the result before converting to int64, so even a transform-based algorithm's tiny error in
float64 cannot change a bit. Everything after the synaptic sum (shifts, decays, wraps, clips) is
int64 integer arithmetic emulating Lava's int32 arrays. Groups with a neuron ``model``
(``mksgn.neuron_models``: sigma-delta, delta, sigma, resonate-and-fire) run that model's step;
their graded outputs feed synapses as integers (float64 sums, exact below 2**53). A group whose summed input provably keeps
``|a << 6| <= 2**23`` (static bound from its weights) takes ``cuba_update_in_range``, which needs no
int32 wraps; the others take the general ``cuba_update``.

Public API (kept stable; the student author tests against it)::

    run(net, inputs, *, record=("s",), device=None, ...) -> EngineResult
    record=(..., "active")                  # also count active neuron-steps (mksgn.opcount)
    Engine(net, device).run(...)            # the same, keeping prepared weights between batches
    Engine(net, device, compile=True)       # neuron updates as fused torch.compile kernels

Delayed dense synapses: delays per output neuron run one product per step into a delay line,
delays per input neuron gather each input from its own past step before one product (when the
exponent is not negative: a right shift does not distribute over Lava's per-delay partial sums),
per-synapse delays run one product per distinct delay, each shifted on its own as in Lava's
DelayDense. Lava's Dense (no delay) sums in int32 before a right shift, DelayDense in int64; the
engine follows each.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from mksgn import loihi
from mksgn.quant import exact_float_math
from mksgn.netgraph import Encoder, JointAttention, Network, NeuronGroup, Synapse

_M = loihi.UV_MAX                      # 2**23
_INT32 = 1 << 32
_F32_EXACT = 1 << 24                   # float32 holds every integer below this exactly
_F64_EXACT = 1 << 53
_BIAS_LO, _BIAS_HI = loihi.BIAS_MANT_MIN, loihi.BIAS_MANT_MAX
_INT16_LO, _INT16_HI = -(1 << 15), (1 << 15) - 1


def _in_range(x: torch.Tensor, lo: int, hi: int) -> bool:
    """One read-only pass: are all values within [lo, hi]? (cheaper than a wrap's three passes)"""
    if x.numel() == 0 or x.dtype == torch.bool:
        return True
    mn, mx = torch.aminmax(x)
    return bool(mn >= lo) and bool(mx <= hi)


def wrap32(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement wrap of an int64 tensor to int32 values (what Lava's int32 arrays do)."""
    if _in_range(x, -(1 << 31), (1 << 31) - 1):
        return x
    return ((x + (1 << 31)) & (_INT32 - 1)) - (1 << 31)


def wrap24(x: torch.Tensor) -> torch.Tensor:
    """Signed 24-bit wrap (lava.proc.conv.utils.signed_clamp(x, 24))."""
    if _in_range(x, -_M, _M - 1):
        return x
    return ((x + _M) & (2 * _M - 1)) - _M


def decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """Loihi decay ``sign(x) * (|x| * (4096 - d) >> 12)`` in int64 (``loihi.decay`` for tensors)."""
    p = x * (loihi.DECAY_UNITY - d)
    return torch.sign(p) * (p.abs() >> loihi.DECAY_SHIFT)


def shift(a: torch.Tensor, exp: int) -> torch.Tensor:
    """``a << exp`` for exp >= 0, arithmetic ``a >> -exp`` otherwise (Lava's weight exponent)."""
    if exp == 0:
        return a
    return a << exp if exp > 0 else a >> (-exp)


def cuba_update(u: torch.Tensor, v: torch.Tensor, a_in: torch.Tensor, bias: torch.Tensor | int,
                p: loihi.CubaParams, spiking: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One ``PyLifModelBitAcc`` step on int64 tensors holding int32 values.

    u, v, a_in: int64, any shape; bias: effective bias ``bias_mant << 6`` (broadcastable).
    Returns (u, v, s) with s bool. Within the 24-bit ranges this equals ``loihi.cuba_step``; beyond
    them it reproduces Lava's int32 wrap of ``a << 6``, ``u`` and the voltage sum.
    """
    cur = wrap32(decay(u, p.i_decay) + wrap32(a_in << loihi.ACT_SHIFT))
    cur = torch.where(cur > _M, cur - 2 * _M, cur)
    cur = torch.where(cur <= -_M, cur + 2 * _M, cur)
    vol = wrap32(decay(v, p.v_decay) + cur + bias).clamp_(-_M + 1, _M - 1)
    return (cur, *_fire(vol, p, spiking))


def _fire(vol: torch.Tensor, p: loihi.CubaParams, spiking: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Spike where ``v > vth_mant << 6`` and reset those voltages to 0 (a readout never spikes)."""
    if not spiking:
        return vol, torch.zeros_like(vol, dtype=torch.bool)
    s = vol > (p.vth_mant << loihi.VTH_SHIFT)
    return vol.masked_fill_(s, 0), s


def cuba_update_in_range(u: torch.Tensor, v: torch.Tensor, a_in: torch.Tensor,
                         bias: torch.Tensor | int, p: loihi.CubaParams, spiking: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``cuba_update`` for the common case |a_in << 6| <= 2**23 (and a 13-bit bias).

    Then |u| <= 2**23 after every step, so no int32 wrap can occur anywhere and fewer, in-place
    operations suffice: ``div(.., trunc)`` is ``sign(p) * (|p| >> 12)``, and the single 2**24 wrap
    of u (Lava maps u > 2**23 to u - 2**24 and u <= -2**23 to u + 2**24) is one ``remainder``
    on values within +/-2**24. Equal to ``cuba_update`` under that bound (tested).
    """
    cur = u * (loihi.DECAY_UNITY - p.i_decay)
    cur = cur.div_(loihi.DECAY_UNITY, rounding_mode="trunc").add_(a_in << loihi.ACT_SHIFT)
    cur = cur.add_(_M - 1).remainder_(2 * _M).sub_(_M - 1)
    vol = v * (loihi.DECAY_UNITY - p.v_decay)
    vol = vol.div_(loihi.DECAY_UNITY, rounding_mode="trunc").add_(cur)
    if not isinstance(bias, int) or bias:
        vol = vol.add_(bias)
    vol = vol.clamp_(-_M + 1, _M - 1)
    return (cur, *_fire(vol, p, spiking))


def encode(enc: Encoder, x: torch.Tensor) -> torch.Tensor:
    """Per-sample bias mantissa of ``enc.dst`` from one modality.

    x: float (N, C_in, T, V) in real units. Returns int64 (N, C_dst, T', V') in the 13-bit range.
    Rounding is ``torch.round`` (half to even, like ``numpy.round``); the convolution runs in float64
    on integers below 2**53, so it is exact.
    """
    x_int = torch.round(x.double() * float(1 << enc.input_frac_bits)).clamp_(_INT16_LO, _INT16_HI)
    w = torch.as_tensor(np.asarray(enc.weight), dtype=torch.float64, device=x.device)
    b = torch.as_tensor(np.asarray(enc.bias), dtype=torch.float64, device=x.device)
    with exact_float_math():
        acc = F.conv2d(x_int, w, b, stride=tuple(enc.stride), padding=tuple(enc.padding))
    acc = torch.round(acc).to(torch.int64)
    return (acc >> enc.shift if enc.shift >= 0 else acc << -enc.shift).clamp_(_BIAS_LO, _BIAS_HI)




@dataclass
class EngineResult:
    """What one engine run produced (N samples, ``num_steps`` steps).

    spikes: group -> bool (N, num_steps, *shape), for recorded groups when "s" is in ``record``
        (int64 output messages for groups whose neuron model is graded).
    u, v: group -> int64 (N, num_steps, *shape), when "u"/"v" are in ``record``.
    counts: group -> int32 (N, *shape) spikes per neuron summed over steps (always).
    active: group -> int64 (N, *shape) active steps per neuron (every group, when "active" is in
        ``record``): steps after whose update any state is non-zero or the neuron sent a message
        (the rule of ``mksgn.opcount``; a source group: its spikes).
    scores: int64 (N, *readout shape): the readout group's v after the last step (None without one).
    """
    num_steps: int
    spikes: dict[str, torch.Tensor] = field(default_factory=dict)
    u: dict[str, torch.Tensor] = field(default_factory=dict)
    v: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, torch.Tensor] = field(default_factory=dict)
    active: dict[str, torch.Tensor] = field(default_factory=dict)
    scores: torch.Tensor | None = None
    final_v: dict[str, torch.Tensor] = field(default_factory=dict)
    states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """state name -> group -> int64 (N, num_steps, *shape): every recorded state variable (u, v
    of CUBA groups and a neuron model's own states, e.g. sigma/act/residue), by Lava's names."""

    def predictions(self) -> torch.Tensor:
        """Class index per sample (argmax of the readout scores; ties go to the lowest index)."""
        if self.scores is None:
            raise ValueError("network has no readout group")
        return self.scores.reshape(self.scores.shape[0], -1).argmax(dim=1)


class _PreparedSynapse:
    """A synapse's weights on the device in the float dtype that keeps its sums exact."""

    def __init__(self, syn: Synapse, src: NeuronGroup, dst: NeuronGroup, device: torch.device,
                 max_input: int):
        self.syn = syn
        self.src, self.dst = src.name, dst.name
        self.src_shape, self.dst_shape = tuple(src.shape), tuple(dst.shape)
        w = np.asarray(syn.weight).astype(np.int64)
        rows = np.abs(w).reshape(w.shape[0], -1).sum(axis=1)
        if syn.kind == "graph":   # w (O, I, V, U): a row is an (o, v) pair summing over (i, u)
            rows = np.abs(w).sum(axis=(1, 3)).reshape(-1)
        elif syn.kind == "convT":  # w (I, O/g, kt, kv): an output sums at most all of (i, kt, kv)
            rows = np.abs(w).sum(axis=(0, 2, 3)).reshape(-1)
        bound = int(rows.max(initial=0)) * max(1, max_input)
        # largest |a| this synapse can deliver (after the exponent), for the in-range fast path
        self.a_bound = (bound << syn.weight_exp) if syn.weight_exp >= 0 \
            else -((-bound) >> -syn.weight_exp)
        if bound >= _F64_EXACT:
            raise ValueError(f"synapse {syn.name}: sums up to {bound} cannot be computed exactly")
        self.dtype = torch.float32 if (bound < _F32_EXACT and device.type == "cpu") \
            else torch.float64
        # Lava's Conv process wraps at 24 bits and has no exponent or delay; the builder uses it
        # exactly when this holds (see mksgn.netgraph), everything else wraps at 32 bits.
        is_lava_conv = (syn.kind == "conv" and syn.weight_exp == 0
                        and not np.ndim(syn.delay) and int(syn.delay) == 0)
        self.wrap = wrap24 if is_lava_conv else wrap32
        self.device = device
        self.rows_max = int(rows.max(initial=0))
        # Lava's Dense (no delay) sums in int32 before its right shift; DelayDense sums in int64
        self.prewrap = (syn.kind == "dense" and syn.weight_exp < 0 and not np.ndim(syn.delay)
                        and int(syn.delay) == 0 and bound >= 1 << 31)
        # graded sources: the static bound assumes int32 messages; at run time the real largest
        # message often allows float32 (exact while rows_max * max|x| < 2**24)
        self.graded = max_input > 1
        self.mode = "slots"
        self.slots: list[tuple[int, np.ndarray]]  # (delay, integer weight) pairs
        if syn.kind == "dense":
            w2 = w.reshape(int(np.prod(self.dst_shape)), int(np.prod(self.src_shape)))
            dl = np.asarray(syn.delay, dtype=np.int64)
            if dl.ndim and (dl == dl.flat[0]).all():
                dl = np.asarray(dl.flat[0])
            if dl.ndim == 2 and dl.shape == (w2.shape[0], 1):
                # per output neuron: one product per step, delivered through a delay line
                self.mode = "out"
                self.d_out = torch.as_tensor(dl[:, 0], device=device)
                self.slots = [(0, w2.T.copy())]
                self.line_len = int(dl.max()) + 1
            elif dl.ndim == 2 and dl.shape == (1, w2.shape[1]) and syn.weight_exp >= 0:
                # per input neuron: gather each input from its own past step, one product (a left
                # shift distributes over the delay slots' sum, a right shift would not)
                self.mode = "in"
                self.in_cols = [(int(d), torch.as_tensor(np.nonzero(dl[0] == d)[0], device=device))
                                for d in np.unique(dl)]
                self.slots = [(int(dl.max()), w2.T.copy())]
            elif dl.ndim:
                dl = np.broadcast_to(dl, w2.shape)
                self.slots = [(int(d), np.where(dl == d, w2, 0).T.copy()) for d in np.unique(dl)]
            else:
                self.slots = [(int(dl), w2.T.copy())]
        elif syn.kind in ("conv", "convT"):
            self.slots = [(int(syn.delay), w)]
        elif syn.kind == "graph":
            o, i, vv, u = w.shape
            self.slots = [(int(syn.delay), w.transpose(0, 2, 1, 3).reshape(o * vv, i * u).T.copy())]
        else:
            raise ValueError(f"synapse {syn.name}: unknown kind {syn.kind!r}")
        self.weights = {self.dtype: [torch.as_tensor(a, dtype=self.dtype, device=device)
                                     for _, a in self.slots]}
        if self.graded and self.dtype != torch.float32 and device.type == "cpu":
            self.weights[torch.float32] = [torch.as_tensor(a, dtype=torch.float32, device=device)
                                           for _, a in self.slots]
        self.max_delay = 0 if self.mode == "out" else max(d for d, _ in self.slots)
        limit = _M if is_lava_conv else 1 << 31
        self._limit = limit
        self._skip_wrap = False
        n_slots = len(self.in_cols) if self.mode == "in" else len(self.slots)
        if self.a_bound * n_slots < limit:     # no wrap can ever happen: skip it
            self.wrap = lambda a: a  # noqa: E731
        self.reset()

    def reset(self) -> None:
        """Forget the delay line of a previous run."""
        self._line: torch.Tensor | None = None
        self._ptr = 0

    def _dtype(self, xs) -> torch.dtype:
        """The float dtype for this step's product; also notes whether a wrap can happen."""
        self._skip_wrap = False
        if not self.graded:
            return self.dtype
        m = 0
        for x in xs:
            if x.dtype == torch.bool:
                m = max(m, 1)
            elif x.numel():
                lo, hi = torch.aminmax(x)
                m = max(m, -int(lo), int(hi))
        bound = self.rows_max * m        # largest |sum| of this step, before the exponent
        self._skip_wrap = bound * max(1, len(xs)) << max(0, self.syn.weight_exp) < self._limit
        return torch.float32 if bound < _F32_EXACT and self.device.type == "cpu" \
            else self.dtype

    def _product(self, x: torch.Tensor, w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """int64 (N, *dst_shape) = weight_exp-shifted sum of one slot over float input x."""
        n = x.shape[0]
        syn = self.syn
        if syn.kind == "dense":
            acc = x.reshape(n, -1) @ w
        elif syn.kind == "conv":
            acc = F.conv2d(x, w, stride=tuple(syn.stride), padding=tuple(syn.padding),
                           dilation=tuple(syn.dilation), groups=syn.groups)
        elif syn.kind == "convT":
            acc = F.conv_transpose2d(x, w, stride=tuple(syn.stride), padding=tuple(syn.padding),
                                     dilation=tuple(syn.dilation), groups=syn.groups)
        else:  # graph: (N, I, T, U) -> (N*T, I*U) @ (I*U, O*V) -> (N, O, T, V)
            _, i, tt, u = x.shape
            acc = x.permute(0, 2, 1, 3).reshape(n * tt, i * u) @ w
            acc = acc.reshape(n, tt, self.dst_shape[0], self.dst_shape[-1]).permute(0, 2, 1, 3)
        # CPU convolutions/GEMMs of integers below the exactness bound are exact already;
        # elsewhere round() absorbs any tiny error of a transform-based algorithm.
        acc = acc if acc.device.type == "cpu" and dtype == torch.float32 else torch.round(acc)
        acc = acc.to(torch.int64)
        if self.prewrap:
            acc = wrap32(acc)       # Lava's Dense: int32 weights . int32 input, then the shift
        return shift(acc, syn.weight_exp).reshape(n, *self.dst_shape)

    def current(self, history: "_History") -> torch.Tensor | None:
        """int64 (N, *dst_shape) current for this step, or None when every source step is < 0.
        Called exactly once per step (the per-output delay line advances with it)."""
        if self.mode == "out":
            return self._current_out(history)
        if self.mode == "in":
            return self._current_in(history)
        total = None
        for k, (d, _) in enumerate(self.slots):
            raw = history.get(self.src, d, None)
            if raw is None:
                continue
            dt = self._dtype([raw])
            a = self._product(history.get(self.src, d, dt), self.weights[dt][k], dt)
            wrap = (lambda x: x) if self._skip_wrap and len(self.slots) == 1 else self.wrap  # noqa: E731
            a = wrap(a)
            total = a if total is None else self.wrap(total + a)
        return total

    def _current_out(self, history: "_History") -> torch.Tensor | None:
        raw = history.get(self.src, 0, None)
        ptr, self._ptr = self._ptr, self._ptr + 1
        if raw is None and self._line is None:
            return None
        if raw is not None:
            dt = self._dtype([raw])
            y = self._product(history.get(self.src, 0, dt), self.weights[dt][0], dt)
            if self._line is None:
                self._line = torch.zeros((self.line_len, *y.shape), dtype=torch.int64,
                                         device=y.device)
            self._line[ptr % self.line_len] = y
        else:
            self._line[ptr % self.line_len] = 0
        idx = (ptr - self.d_out) % self.line_len            # (N_out,)
        out = torch.arange(self.d_out.numel(), device=self.d_out.device)
        return self.wrap(self._line[idx, :, out].T.contiguous())

    def _current_in(self, history: "_History") -> torch.Tensor | None:
        parts = [(history.get(self.src, d, None), cols) for d, cols in self.in_cols]
        parts = [(x, cols) for x, cols in parts if x is not None]
        if not parts:
            return None
        dt = self._dtype([x for x, _ in parts])
        n = parts[0][0].shape[0]
        xt = torch.zeros((n, int(np.prod(self.src_shape))), dtype=dt, device=self.device)
        for x, cols in parts:
            xt[:, cols] = x.reshape(n, -1)[:, cols].to(dt)
        return self.wrap(self._product(xt, self.weights[dt][0], dt))


class _History:
    """Ring buffers of past spikes per group: ``get(g, d)`` is the spike tensor of step t-1-d."""

    def __init__(self, depth: Mapping[str, int]):
        self.depth = dict(depth)
        self.buf: dict[str, list[dict]] = {g: [] for g in depth}

    def push(self, group: str, s: torch.Tensor) -> None:
        if group in self.buf:
            b = self.buf[group]
            b.insert(0, {None: s, s.dtype: s})   # per-dtype copies, made once per step on demand
            del b[self.depth[group] + 1:]

    def get(self, group: str, d: int, dtype: torch.dtype = torch.bool) -> torch.Tensor | None:
        b = self.buf[group]
        if d >= len(b):
            return None
        cache = b[d]
        if dtype not in cache:
            cache[dtype] = cache[None].to(dtype)   # dtype None: the tensor as pushed
        return cache[dtype]


class Engine:
    """A ``Network`` prepared for repeated batched runs on one device."""

    def __init__(self, net: Network, device: str | torch.device | None = None,
                 max_input: int = 1, compile: bool = False):
        """max_input: the largest spike value a source group may carry (1 for binary spikes).
        compile: run CUBA, sigma-delta and delta updates as fused ``torch.compile`` kernels
        (``mksgn.deploy.fused``; same integers, several times faster on CPU, tens of seconds of
        compiling once per process)."""
        net.validate()
        self.compile = compile
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.net = net
        self.max_input = max_input
        self.device = torch.device(device)
        self.groups = {g.name: g for g in net.groups}
        self.neurons = [g for g in net.groups if not g.source]
        self.sources = [g for g in net.groups if g.source]
        for g in net.groups:
            if g.bias is not None and g.model is None:
                b = np.asarray(g.bias)
                if b.min(initial=0) < _BIAS_LO or b.max(initial=0) > _BIAS_HI:
                    raise ValueError(f"group {g.name}: bias mantissa outside 13-bit range")
        for g in self.neurons:
            if g.model is not None and not hasattr(g.model, "step"):
                raise ValueError(f"group {g.name}: unknown neuron model {g.model!r}")

        def out_bound(g: NeuronGroup) -> int:
            return max(1, max_input, getattr(g.model, "max_output", 1))
        self.synapses = [_PreparedSynapse(s, self.groups[s.src], self.groups[s.dst], self.device,
                                          out_bound(self.groups[s.src]))
                         for s in net.synapses]
        self.attentions = list(net.attentions)
        depth: dict[str, int] = {}
        for ps in self.synapses:
            depth[ps.src] = max(depth.get(ps.src, 0), ps.max_delay)
        for a in self.attentions:
            for g in (a.q, a.k, a.x):
                depth[g] = max(depth.get(g, 0), a.delay)
        self.depth = depth
        self.static_bias = {
            g.name: torch.as_tensor(np.broadcast_to(np.asarray(g.bias, dtype=np.int64), g.shape)
                                    .copy(), device=self.device)
            for g in self.neurons if g.bias is not None}
        self.incoming: dict[str, list[_PreparedSynapse]] = {g.name: [] for g in net.groups}
        for ps in self.synapses:
            self.incoming[ps.dst].append(ps)
        self.att_in: dict[str, list[JointAttention]] = {g.name: [] for g in net.groups}
        for a in self.attentions:
            self.att_in[a.dst].append(a)
        for ps in self.synapses:
            if self.groups[ps.dst].source:
                raise ValueError(f"synapse {ps.syn.name} targets source group {ps.dst}")
        # groups whose total input provably keeps |a << 6| <= 2**23 take the fast update
        self.a_bound: dict[str, int] = {}
        for g in self.neurons:
            b = sum(ps.a_bound for ps in self.incoming[g.name])
            for a in self.att_in[g.name]:
                qg, xg = self.groups[a.q], self.groups[a.x]
                b += max(0, (qg.shape[0] * xg.shape[-1]) >> a.shift if a.shift >= 0 else
                         (qg.shape[0] * xg.shape[-1]) << -a.shift)
            self.a_bound[g.name] = b

    # -----------------------------------------------------------------------------------------
    def run(self, inputs: Mapping[str, torch.Tensor] | None = None, *,
            record: Iterable[str] = ("s",), groups: Iterable[str] | None = None,
            num_steps: int | None = None, biases: Mapping[str, torch.Tensor] | None = None,
            currents: Mapping[str, torch.Tensor] | None = None,
            source_spikes: Mapping[str, torch.Tensor] | None = None,
            reset_interval: int | None = None, reset_offset: int = 0,
            batch_size: int | None = None) -> EngineResult:
        """Run the network from zero state.

        inputs: modality -> float (N, C, T, V), one per encoder modality (real units).
        record: any of "s", "u", "v" (or a neuron model's states): what to keep per step for
            ``groups`` (default all); "active": count every group's active neuron-steps
            (``EngineResult.active``).
        num_steps: defaults to ``net.num_steps``.
        biases: group -> int bias mantissa (N, *shape) replacing the group's static bias (a netx
            input layer driven by bias).
        currents: group -> int (N, steps, *shape) synaptic input added to ``a_in`` at each step
            (a netx input layer driven by an input sequence; no synaptic delay).
        source_spikes: source group -> (N, steps, *shape) spikes (non-zero = spike).
        reset_interval, reset_offset: netx's periodic reset; neuron group k (in ``net.groups``
            order, sources skipped) zeroes u and v before the update of step t (1-based) when
            ``t % R == (reset_offset + 1 + k) % R`` (lava LIFReset as netx configures it).
        batch_size: split N into chunks (results are concatenated).
        """
        record = tuple(record)
        known = {"s", "u", "v", "active"} | {k for g in self.neurons if g.model is not None
                                   for k in g.model.states}
        bad = set(record) - known
        if bad:
            raise ValueError(f"record: unknown {sorted(bad)}; use {', '.join(sorted(known))}")
        steps = int(num_steps if num_steps is not None else self.net.num_steps)
        n = self._batch_len(inputs, biases, currents, source_spikes)
        if batch_size is None or batch_size >= n:
            return self._run(inputs, record, groups, steps, biases, currents, source_spikes,
                             reset_interval, reset_offset, n)
        parts = []
        for lo in range(0, n, batch_size):
            sl = lambda m: None if m is None else {k: v[lo:lo + batch_size] for k, v in m.items()}  # noqa: E731
            parts.append(self._run(sl(inputs), record, groups, steps, sl(biases), sl(currents),
                                   sl(source_spikes), reset_interval, reset_offset,
                                   min(batch_size, n - lo)))
        return _concat(parts)

    def _batch_len(self, *maps) -> int:
        sizes = {int(v.shape[0]) for m in maps if m for v in m.values()}
        if len(sizes) > 1:
            raise ValueError(f"inputs disagree on the number of samples: {sorted(sizes)}")
        return sizes.pop() if sizes else 1

    def _run(self, inputs, record, groups, steps, biases, currents, source_spikes,
             reset_interval, reset_offset, n) -> EngineResult:
        dev = self.device
        keep = set(groups) if groups is not None else set(self.groups)
        bias_mant = self._bias_mantissas(inputs, biases, n)
        bias_eff = {}
        for name, b in bias_mant.items():
            model = self.groups[name].model
            bias_eff[name] = model.bias(b) if model is not None and getattr(model, "has_bias", 0) \
                else wrap32(b.clamp(_BIAS_LO, _BIAS_HI) << loihi.NETX_BIAS_EXP)
        cuba = [g for g in self.neurons if g.model is None]
        state = {g.name: ({"u": torch.zeros((n, *g.shape), dtype=torch.int64, device=dev),
                           "v": torch.zeros((n, *g.shape), dtype=torch.int64, device=dev)}
                          if g.model is None else
                          {k: torch.zeros((n, *g.shape), dtype=torch.int64, device=dev)
                           for k in g.model.states})
                 for g in self.neurons}
        hist = _History(self.depth)
        self._full: dict[str, torch.Tensor] = {}
        for ps in self.synapses:
            ps.reset()
        res = EngineResult(num_steps=steps)
        rec_states = [k for k in record if k not in ("s", "active")]
        rec_s = "s" in record
        active = {g.name: torch.zeros((n, *g.shape), dtype=torch.int64, device=dev)
                  for g in self.net.groups} if "active" in record else None
        spikes_rec = {g: [] for g in self.groups if g in keep}
        st_rec = {k: {g.name: [] for g in self.neurons if g.name in keep and k in state[g.name]}
                  for k in rec_states}
        counts = {g.name: torch.zeros((n, *g.shape), dtype=torch.int32, device=dev)
                  for g in self.net.groups}                 # messages per neuron, all steps
        src = {}
        for g in self.sources:
            if not source_spikes or g.name not in source_spikes:
                raise ValueError(f"source group {g.name} needs an input spike sequence")
            x = torch.as_tensor(source_spikes[g.name], device=dev)
            if tuple(x.shape[2:]) != tuple(g.shape) or x.shape[1] < steps:
                raise ValueError(f"input for {g.name}: shape {tuple(x.shape)} does not match "
                                 f"(N, >={steps}, {', '.join(map(str, g.shape))})")
            src[g.name] = x != 0 if x.dtype == torch.bool or self.max_input <= 1 \
                else x.to(torch.int64)
        cur_ext = {}
        for name, x in (currents or {}).items():
            g = self.groups[name]
            x = torch.as_tensor(x, device=dev).to(torch.int64)
            if tuple(x.shape[2:]) != tuple(g.shape) or x.shape[1] < steps:
                raise ValueError(f"input for {name}: shape {tuple(x.shape)} does not match "
                                 f"(N, >={steps}, {', '.join(map(str, g.shape))})")
            cur_ext[name] = x
        readout = self.net.readout
        reset_index = {g.name: k for k, g in enumerate(self.neurons)}
        with torch.no_grad(), exact_float_math():
            for t in range(steps):
                a_in, b_in = {}, {}
                for g in self.neurons:
                    total = cur_ext[g.name][:, t] if g.name in cur_ext else None
                    imag = None
                    add = (lambda x, y: x + y) if (  # noqa: E731
                        g.name not in cur_ext and self.a_bound[g.name] < 1 << 31) \
                        else (lambda x, y: wrap32(x + y))
                    for ps in self.incoming[g.name]:
                        a = ps.current(hist)
                        if a is None:
                            continue
                        if ps.syn.port == "imag":
                            imag = a if imag is None else wrap32(imag + a)
                        else:
                            total = a if total is None else add(total, a)
                    for att in self.att_in[g.name]:
                        a = self._attention(att, hist)
                        if a is not None:
                            total = a if total is None else add(total, a)
                    a_in[g.name] = total
                    b_in[g.name] = imag
                new_s = {}
                for g in self.neurons:
                    name = g.name
                    st = state[name]
                    if g.model is not None:
                        a = a_in[name]
                        if a is None:
                            a = torch.zeros((n, *g.shape), dtype=torch.int64, device=dev)
                        if self.compile and self._fused_model(g, st, a, bias_eff.get(name, 0),
                                                              new_s):
                            continue
                        if b_in[name] is not None or getattr(g.model, "ports", None):
                            s = g.model.step(st, a, bias_eff.get(name, 0), b_in[name])
                        else:
                            s = g.model.step(st, a, bias_eff.get(name, 0))
                        new_s[name] = s
                        continue
                    if reset_interval and (t + 1) % reset_interval == \
                            (reset_offset + 1 + reset_index[name]) % reset_interval:
                        # new tensors, not zero_(): recorded steps alias the old ones
                        st["u"] = torch.zeros_like(st["u"])
                        st["v"] = torch.zeros_like(st["v"])
                    a = a_in[name]
                    if a is None:
                        a = torch.zeros(1, dtype=torch.int64, device=dev)
                    if self.compile:
                        st["u"], st["v"], s = self._fused_cuba(
                            g, st, a, bias_eff.get(name, 0),
                            spiking=not (g.readout or name == readout))
                        new_s[name] = s
                        continue
                    step = cuba_update_in_range if (
                        name not in cur_ext and self.a_bound[name] << loihi.ACT_SHIFT <= _M) \
                        else cuba_update
                    st["u"], st["v"], s = step(st["u"], st["v"], a, bias_eff.get(name, 0),
                                               g.params, spiking=not (g.readout or name == readout))
                    new_s[name] = s
                for g in self.sources:
                    new_s[g.name] = src[g.name][:, t]
                for name, s in new_s.items():
                    hist.push(name, s)
                    counts[name] += (s != 0) if s.dtype != torch.bool else s
                    if active is not None:
                        busy = s != 0
                        for x in state.get(name, {}).values():   # after this step's update
                            busy = busy | (x != 0)
                        active[name] += busy
                    if name in keep:
                        if rec_s:
                            spikes_rec[name].append(s)
                        for k in rec_states:
                            if name in st_rec[k]:
                                st_rec[k][name].append(state[name][k])
        if rec_s:
            res.spikes = {g: torch.stack(lst, dim=1) for g, lst in spikes_rec.items() if lst}
        res.states = {k: {g: torch.stack(lst, dim=1) for g, lst in per.items() if lst}
                      for k, per in st_rec.items()}
        res.u = res.states.get("u", {})
        res.v = res.states.get("v", {})
        res.counts = counts
        res.active = active or {}
        res.final_v = {g.name: state[g.name]["v"] for g in cuba}
        if readout:
            res.scores = state[readout]["v"]
        return res

    def _flat(self, x, like: torch.Tensor, key: str | None = None) -> torch.Tensor:
        """x as a full, contiguous 2-D (N, M) tensor for ``like`` (N, *shape): the fused kernels
        then see one layout whatever the layer, and compile once (a bias is made once per run,
        keyed by ``key``)."""
        if key is not None and key in self._full:
            return self._full[key]
        n = like.shape[0]
        x = torch.as_tensor(x, dtype=torch.int64, device=like.device)
        if tuple(x.shape) != tuple(like.shape):
            x = torch.broadcast_to(x.reshape(x.shape[0], *like.shape[1:]) if x.dim() ==
                                   like.dim() else x, like.shape)
        x = x.reshape(n, -1).contiguous().detach()   # detach: no view base for dynamo to guard
        if key is not None:
            self._full[key] = x
        return x

    def _fused_cuba(self, g: NeuronGroup, st: dict, a, bias, spiking: bool):
        from mksgn.deploy import fused
        dev = self.device
        p = g.params
        vth = (p.vth_mant << loihi.VTH_SHIFT) if spiking else _M   # v never exceeds 2**23 - 1
        u = st["u"]
        n = u.shape[0]
        out = fused.compiled(fused.cuba)(
            u.reshape(n, -1).detach(), st["v"].reshape(n, -1).detach(), self._flat(a, u),
            self._flat(bias, u, g.name),
            fused.scalar(loihi.DECAY_UNITY - p.i_decay, dev),
            fused.scalar(loihi.DECAY_UNITY - p.v_decay, dev), fused.scalar(vth, dev))
        return tuple(x.reshape(u.shape) for x in out)

    def _fused_model(self, g: NeuronGroup, st: dict, a, bias, new_s: dict) -> bool:
        """Run ``g``'s model as a fused kernel when there is one; False to fall back to eager."""
        from mksgn import neuron_models as nm
        from mksgn.deploy import fused
        dev = self.device
        m = g.model
        if type(m) not in (nm.SigmaDelta, nm.Delta):
            return False
        like = st["act"]
        n, shape = like.shape[0], like.shape
        flat = lambda k: st[k].reshape(n, -1).detach()  # noqa: E731
        if type(m) is nm.SigmaDelta:
            out = fused.compiled(fused.sigma_delta)(
                flat("sigma"), flat("act"), flat("residue"), self._flat(a, like),
                self._flat(bias, like, g.name), fused.scalar(m.vth, dev),
                fused.scalar(m.state_exp, dev))
            names = ("sigma", "act", "residue")
        elif type(m) is nm.Delta:
            out = fused.compiled(fused.delta)(
                flat("act"), flat("residue"), self._flat(a, like), fused.scalar(m.vth, dev),
                fused.scalar(m.spike_exp + m.state_exp, dev), fused.scalar(m.state_exp, dev))
            names = ("act", "residue")
        else:
            return False
        for k, x in zip(names, out):
            st[k] = x.reshape(shape)
        new_s[g.name] = out[-1].reshape(shape)
        return True

    def _bias_mantissas(self, inputs, biases, n) -> dict[str, torch.Tensor]:
        """Per-sample bias mantissa (N, *shape) int64 of every group that has one."""
        dev = self.device
        out: dict[str, torch.Tensor] = {}
        for e in self.net.encoders:
            if not inputs or e.modality not in inputs:
                raise ValueError(f"encoder {e.name} needs input modality {e.modality!r}; "
                                 f"got {sorted(inputs or {})}")
            x = torch.as_tensor(inputs[e.modality], device=dev)
            g = self.groups[e.dst]
            b = encode(e, x)
            if tuple(b.shape[1:]) != tuple(g.shape):
                raise ValueError(f"encoder {e.name}: input {tuple(x.shape[1:])} encodes to "
                                 f"{tuple(b.shape[1:])}, but group {g.name} is {tuple(g.shape)}")
            out[e.dst] = b if e.dst not in out else out[e.dst] + b
        for name, b in self.static_bias.items():
            out[name] = out[name] + b if name in out else b.expand(n, *b.shape)
        for name, b in (biases or {}).items():
            g = self.groups[name]
            b = torch.as_tensor(b, device=dev).to(torch.int64)
            if tuple(b.shape[1:]) != tuple(g.shape):
                raise ValueError(f"bias for {name}: shape {tuple(b.shape[1:])} does not match "
                                 f"group shape {tuple(g.shape)}")
            out[name] = b
        return out

    def _attention(self, att: JointAttention, hist: _History) -> torch.Tensor | None:
        # Sums of 0/1 products are at most C*V: exact in float32 when below 2**24.
        c, v = self.groups[att.q].shape[0], self.groups[att.x].shape[-1]
        dt = torch.float32 if c * v < _F32_EXACT and self.device.type == "cpu" else torch.float64
        q, k, x = (hist.get(g, att.delay, dt) for g in (att.q, att.k, att.x))
        if q is None:
            return None
        kx = torch.einsum("nctu,ndtu->ncdt", k, x)
        a = torch.einsum("nctv,ncdt->ndtv", q, kx)
        a = (a if dt == torch.float32 else torch.round(a)).to(torch.int64)
        return wrap32(a >> att.shift if att.shift >= 0 else a << -att.shift)


def _concat(parts: list[EngineResult]) -> EngineResult:
    cat = lambda ds: {k: torch.cat([d[k] for d in ds]) for k in ds[0]}  # noqa: E731
    r = EngineResult(num_steps=parts[0].num_steps)
    r.spikes = cat([p.spikes for p in parts]) if parts[0].spikes else {}
    r.states = {k: cat([p.states[k] for p in parts]) for k in parts[0].states}
    r.u = r.states.get("u", {})
    r.v = r.states.get("v", {})
    r.counts = cat([p.counts for p in parts])
    r.active = cat([p.active for p in parts]) if parts[0].active else {}
    r.final_v = cat([p.final_v for p in parts])
    r.scores = torch.cat([p.scores for p in parts]) if parts[0].scores is not None else None
    return r


def run(net: Network, inputs: Mapping[str, torch.Tensor] | None = None, *,
        record: Iterable[str] = ("s",), device: str | torch.device | None = None,
        **kwargs) -> EngineResult:
    """Run ``net`` on a batch: ``inputs`` maps modality -> float (N, C, T, V).

    Keyword arguments are those of ``Engine.run`` (groups, num_steps, biases, currents,
    source_spikes, reset_interval, reset_offset, batch_size). Returns an ``EngineResult`` whose
    ``spikes[g]`` is bool (N, steps, *shape) and ``scores`` the readout's final v.
    """
    return Engine(net, device).run(inputs, record=record, **kwargs)
