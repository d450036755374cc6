"""The fast engine: a converted ``netgraph.Network`` run as integer tensor arithmetic in PyTorch.

It reproduces lava-nc's bit-accurate (``fixed_pt``) models bit for bit, batched over samples, on CPU
or CUDA. The semantics are those of the ``mksgn.netgraph`` module docstring; the neuron update is
``PyLifModelBitAcc`` (lava/proc/lif/models.py) including its int32 arithmetic, the synapses are
``PyDenseModelBitAcc`` / ``PyDelayDenseModelBitAcc`` / ``PyConvModelFixed``. The arithmetic
itself (the CUBA update, the wraps, the exponent shift, the attention's products, which synapse
wraps at 24 bits, what a destination neuron sums) is ``mksgn.loihi``'s; this module schedules it.

Why float convolutions are exact here: spikes are 0/1 and weights are integers, so every product
and every partial sum of a convolution or matrix product is an integer no larger in magnitude than
``B = max over output neurons of sum |w|`` (times the largest input value). Floating point adds and
multiplies integers exactly while all of them stay below 2**24 (float32) or 2**53 (float64), in any
summation order. The engine picks float32 when ``B < 2**24`` on CPU (PyTorch's CPU convolutions are
direct or im2col+GEMM, no Winograd/FFT), float64 otherwise and always on CUDA (with TF32 off),
``quant.exact_dtype``, and rounds the result before converting to int64, so even a
transform-based algorithm's tiny error in float64 cannot change a bit. Everything after the
synaptic sum (shifts, decays, wraps, clips) is int64 integer arithmetic emulating Lava's int32
arrays. Groups with a neuron ``model`` (``mksgn.neuron_models``: sigma-delta, delta, sigma,
resonate-and-fire) run that model's step; their graded outputs feed synapses as integers (float64
sums, exact below 2**53). A group whose summed input provably keeps ``|a << 6| <= 2**23`` (static
bound from its weights) takes ``loihi.CubaInRange``, which needs no int32 wraps; the others take
``loihi.CubaChecked``.

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
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from mksgn import loihi, quant
from mksgn.quant import exact_float_math
from mksgn.netgraph import Encoder, JointAttention, Network, NeuronGroup, Synapse

# the public names of the CUBA update (tests and the student call them)
cuba_update = loihi.CubaChecked.update
cuba_update_in_range = loihi.CubaInRange.update


def encode(enc: Encoder, x: torch.Tensor) -> torch.Tensor:
    """Per-sample bias mantissa of ``enc.dst`` from one modality.

    x: float (N, C_in, T, V) in real units. Returns int64 (N, C_dst, T', V') in the 13-bit range.
    Rounding is ``torch.round`` (half to even, like ``numpy.round``); the convolution runs in float64
    on integers below 2**53, so it is exact.
    """
    x_int = quant.quantize_input(x, enc.input_frac_bits)
    w = torch.as_tensor(np.asarray(enc.weight), dtype=torch.float64, device=x.device)
    b = torch.as_tensor(np.asarray(enc.bias), dtype=torch.float64, device=x.device)
    with exact_float_math():
        acc = F.conv2d(x_int, w, b, stride=tuple(enc.stride), padding=tuple(enc.padding))
    acc = torch.round(acc).to(torch.int64)
    return loihi.shift(acc, -enc.shift).clamp_(loihi.BIAS_MANT_MIN, loihi.BIAS_MANT_MAX)


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


# ---------------------------------------------------------------------------------------------
# Synapse kinds: how each turns its weights into products

@dataclass
class _Slots:
    """A synapse's weights as products over past spikes.

    pairs: (delay, integer weight) per product, in the layout ``SynapseKind.product`` takes.
    mode: "slots" (one product per pair, from the spikes of that delay), "out" (one product per
    step into a delay line read per output neuron at ``d_out``), or "in" (each input gathered from
    its own past step, ``in_cols``: (delay, input indices), then one product).
    """
    pairs: list[tuple[int, np.ndarray]]
    mode: str = "slots"
    d_out: np.ndarray | None = None
    in_cols: list[tuple[int, np.ndarray]] | None = None


def _dense_slots(syn: Synapse, w: np.ndarray, src_shape, dst_shape) -> _Slots:
    w2 = w.reshape(int(np.prod(dst_shape)), int(np.prod(src_shape)))
    dl = np.asarray(syn.delay, dtype=np.int64)
    if dl.ndim and (dl == dl.flat[0]).all():
        dl = np.asarray(dl.flat[0])
    if dl.ndim == 2 and dl.shape == (w2.shape[0], 1):
        # per output neuron: one product per step, delivered through a delay line
        return _Slots([(0, w2.T.copy())], "out", d_out=dl[:, 0])
    if dl.ndim == 2 and dl.shape == (1, w2.shape[1]) and syn.weight_exp >= 0:
        # per input neuron: gather each input from its own past step, one product (a left shift
        # distributes over the delay slots' sum, a right shift would not)
        cols = [(int(d), np.nonzero(dl[0] == d)[0]) for d in np.unique(dl)]
        return _Slots([(int(dl.max()), w2.T.copy())], "in", in_cols=cols)
    if dl.ndim:
        dl = np.broadcast_to(dl, w2.shape)
        return _Slots([(int(d), np.where(dl == d, w2, 0).T.copy()) for d in np.unique(dl)])
    return _Slots([(int(dl), w2.T.copy())])


def _conv_slots(syn: Synapse, w: np.ndarray, src_shape, dst_shape) -> _Slots:
    return _Slots([(int(syn.delay), w)])


def _graph_slots(syn: Synapse, w: np.ndarray, src_shape, dst_shape) -> _Slots:
    o, i, v, u = w.shape
    return _Slots([(int(syn.delay), w.transpose(0, 2, 1, 3).reshape(o * v, i * u).T.copy())])


def _dense_product(syn: Synapse, x: torch.Tensor, w: torch.Tensor, dst_shape) -> torch.Tensor:
    return x.reshape(x.shape[0], -1) @ w


def _conv_product(syn: Synapse, x: torch.Tensor, w: torch.Tensor, dst_shape) -> torch.Tensor:
    return F.conv2d(x, w, stride=tuple(syn.stride), padding=tuple(syn.padding),
                    dilation=tuple(syn.dilation), groups=syn.groups)


def _convT_product(syn: Synapse, x: torch.Tensor, w: torch.Tensor, dst_shape) -> torch.Tensor:
    return F.conv_transpose2d(x, w, stride=tuple(syn.stride), padding=tuple(syn.padding),
                              dilation=tuple(syn.dilation), groups=syn.groups)


def _graph_product(syn: Synapse, x: torch.Tensor, w: torch.Tensor, dst_shape) -> torch.Tensor:
    """(N, I, T, U) -> (N*T, I*U) @ (I*U, O*V) -> (N, O, T, V)."""
    n, i, tt, u = x.shape
    acc = x.permute(0, 2, 1, 3).reshape(n * tt, i * u) @ w
    return acc.reshape(n, tt, dst_shape[0], dst_shape[-1]).permute(0, 2, 1, 3)


@dataclass(frozen=True)
class SynapseKind:
    """One netgraph synapse ``kind``: its weights as product slots, and one slot's product.

    slots: (synapse, int64 weights, src shape, dst shape) -> ``_Slots``; product: (synapse,
    float input (N, *src shape), float weight of one slot, dst shape) -> float sums, to be
    reshaped to (N, *dst shape).
    """
    name: str
    slots: Callable[[Synapse, np.ndarray, tuple, tuple], _Slots]
    product: Callable[[Synapse, torch.Tensor, torch.Tensor, tuple], torch.Tensor]


SYNAPSE_KINDS: dict[str, SynapseKind] = {k.name: k for k in (
    SynapseKind("dense", _dense_slots, _dense_product),
    SynapseKind("conv", _conv_slots, _conv_product),
    SynapseKind("convT", _conv_slots, _convT_product),
    SynapseKind("graph", _graph_slots, _graph_product),
)}


def _ceil_shift(bound: int, exp: int) -> int:
    """The largest ``|loihi.shift(a, exp)|`` over ``|a| <= bound``."""
    return bound << exp if exp >= 0 else -((-bound) >> -exp)


class _PreparedSynapse:
    """A synapse's weights on the device in the float dtype that keeps its sums exact."""

    def __init__(self, syn: Synapse, src: NeuronGroup, dst: NeuronGroup, device: torch.device,
                 max_input: int):
        if syn.kind not in SYNAPSE_KINDS:
            raise ValueError(f"synapse {syn.name}: unknown kind {syn.kind!r}")
        self.syn, self.kind = syn, SYNAPSE_KINDS[syn.kind]
        self.src, self.dst = src.name, dst.name
        self.src_shape, self.dst_shape = tuple(src.shape), tuple(dst.shape)
        self.device = device
        w = np.asarray(syn.weight).astype(np.int64)
        self.rows_max = int(loihi.row_sums(np.abs(w), syn.kind).max(initial=0))
        bound = self.rows_max * max(1, max_input)
        if bound >= quant.F64_EXACT:
            raise ValueError(f"synapse {syn.name}: sums up to {bound} cannot be computed exactly")
        # largest |a| this synapse can deliver (after the exponent), for the in-range fast path
        self.a_bound = _ceil_shift(bound, syn.weight_exp)
        self.dtype = quant.exact_dtype(bound, device, training=False)
        # graded sources: the static bound assumes int32 messages; at run time the real largest
        # message often allows float32 (exact while rows_max * max|x| < 2**24)
        self.graded = max_input > 1
        # Lava's Dense (no delay) sums in int32 before its right shift; DelayDense sums in int64
        self.prewrap = (syn.kind == "dense" and syn.weight_exp < 0 and not np.ndim(syn.delay)
                        and int(syn.delay) == 0 and bound > loihi.INT32_MAX)
        self._set_slots(self.kind.slots(syn, w, self.src_shape, self.dst_shape))
        self._set_wrap(loihi.synapse_sum_bits(syn.kind, syn.weight_exp, syn.delay))
        self.reset()

    def _set_slots(self, plan: _Slots) -> None:
        """The products' weights on the device (and in float32 too where a graded source's real
        messages may allow it) and the delay bookkeeping of ``plan.mode``."""
        dev = self.device
        self.mode, self.slots = plan.mode, plan.pairs
        if plan.mode == "out":
            self.d_out = torch.as_tensor(plan.d_out, device=dev)
            self.line_len = int(plan.d_out.max()) + 1
        if plan.mode == "in":
            self.in_cols = [(d, torch.as_tensor(c, device=dev)) for d, c in plan.in_cols]
        dtypes = [self.dtype]
        if self.graded and self.dtype != torch.float32 and dev.type == "cpu":
            dtypes.append(torch.float32)
        self.weights = {dt: [torch.as_tensor(a, dtype=dt, device=dev) for _, a in self.slots]
                        for dt in dtypes}
        self.max_delay = 0 if self.mode == "out" else max(d for d, _ in self.slots)

    def _set_wrap(self, bits: int) -> None:
        """The wrap of the synapse's sum (24 bits for Lava's Conv, ``loihi.lava_conv``; 32 for
        the rest), skipped altogether when no sum can reach it."""
        self._limit = 1 << (bits - 1)
        self.wrap = loihi.wrap24_checked if bits == loihi.UV_BITS else loihi.wrap32_checked
        self._skip_wrap = False
        n_slots = len(self.in_cols) if self.mode == "in" else len(self.slots)
        if self.a_bound * n_slots < self._limit:     # no wrap can ever happen: skip it
            self.wrap = _unchanged

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
        return quant.exact_dtype(bound, self.device, training=False)

    def _product(self, x: torch.Tensor, w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """int64 (N, *dst_shape) = weight_exp-shifted sum of one slot over float input x."""
        n = x.shape[0]
        acc = self.kind.product(self.syn, x, w, self.dst_shape)
        # CPU convolutions/GEMMs of integers below the exactness bound are exact already;
        # elsewhere round() absorbs any tiny error of a transform-based algorithm.
        acc = acc if acc.device.type == "cpu" and dtype == torch.float32 else torch.round(acc)
        acc = acc.to(torch.int64)
        if self.prewrap:
            acc = loihi.wrap32_checked(acc)   # Lava's Dense: int32 weights . int32 input, shift
        return loihi.shift(acc, self.syn.weight_exp).reshape(n, *self.dst_shape)

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
            wrap = _unchanged if self._skip_wrap and len(self.slots) == 1 else self.wrap
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


class _Recorder:
    """What one run keeps: per-step spikes and states of the recorded groups, messages per
    neuron, active neuron-steps (``EngineResult`` documents each)."""

    def __init__(self, eng: "Engine", record: tuple[str, ...], keep: set[str],
                 state: dict[str, dict[str, torch.Tensor]], n: int):
        dev = eng.device
        self.state = state
        self.rec_s = "s" in record
        rec_states = [k for k in record if k not in ("s", "active")]
        self.spikes = {g: [] for g in eng.groups if g in keep}
        self.states = {k: {g.name: [] for g in eng.neurons if g.name in keep and k in state[g.name]}
                       for k in rec_states}
        self.counts = {g.name: torch.zeros((n, *g.shape), dtype=torch.int32, device=dev)
                       for g in eng.net.groups}
        self.active = {g.name: torch.zeros((n, *g.shape), dtype=torch.int64, device=dev)
                       for g in eng.net.groups} if "active" in record else None

    def add(self, name: str, s: torch.Tensor) -> None:
        """Group ``name`` sent ``s`` this step (its states already updated)."""
        self.counts[name] += (s != 0) if s.dtype != torch.bool else s
        if self.active is not None:
            busy = s != 0
            for x in self.state.get(name, {}).values():   # after this step's update
                busy = busy | (x != 0)
            self.active[name] += busy
        if name in self.spikes:
            if self.rec_s:
                self.spikes[name].append(s)
            for k, per in self.states.items():
                if name in per:
                    per[name].append(self.state[name][k])

    def result(self, steps: int, cuba: list[NeuronGroup], readout: str | None) -> EngineResult:
        res = EngineResult(num_steps=steps)
        if self.rec_s:
            res.spikes = {g: torch.stack(lst, dim=1) for g, lst in self.spikes.items() if lst}
        res.states = {k: {g: torch.stack(lst, dim=1) for g, lst in per.items() if lst}
                      for k, per in self.states.items()}
        res.u = res.states.get("u", {})
        res.v = res.states.get("v", {})
        res.counts = self.counts
        res.active = self.active or {}
        res.final_v = {g.name: self.state[g.name]["v"] for g in cuba}
        if readout:
            res.scores = self.state[readout]["v"]
        return res


def _add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x + y


def _add_wrapped(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return loihi.wrap32_checked(x + y)


def _unchanged(x):
    return x


def _resets(t: int, k: int, interval: int | None, offset: int) -> bool:
    """netx's periodic reset: does neuron group ``k`` zero u and v before step ``t`` (0-based)?"""
    return bool(interval) and (t + 1) % interval == (offset + 1 + k) % interval


def _check_drive(name: str, x: torch.Tensor, shape: tuple, steps: int) -> None:
    """An input sequence for group ``name`` must be (N, >= steps, *shape)."""
    if tuple(x.shape[2:]) != tuple(shape) or x.shape[1] < steps:
        raise ValueError(f"input for {name}: shape {tuple(x.shape)} does not match "
                         f"(N, >={steps}, {', '.join(map(str, shape))})")


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
        self._check_groups()
        self.synapses = [_PreparedSynapse(s, self.groups[s.src], self.groups[s.dst], self.device,
                                          self._out_bound(self.groups[s.src]))
                         for s in net.synapses]
        self.attentions = list(net.attentions)
        self.static_bias = {
            g.name: torch.as_tensor(np.broadcast_to(np.asarray(g.bias, dtype=np.int64), g.shape)
                                    .copy(), device=self.device)
            for g in self.neurons if g.bias is not None}
        self.incoming: dict[str, list[_PreparedSynapse]] = {g.name: [] for g in net.groups}
        for ps in self.synapses:
            if self.groups[ps.dst].source:
                raise ValueError(f"synapse {ps.syn.name} targets source group {ps.dst}")
            self.incoming[ps.dst].append(ps)
        self.att_in: dict[str, list[JointAttention]] = {g.name: [] for g in net.groups}
        for a in self.attentions:
            self.att_in[a.dst].append(a)
        self.depth = self._history_depths()
        # groups whose total input provably keeps |a << 6| <= 2**23 take the fast update
        self.a_bound = {g.name: self._input_bound(g.name) for g in self.neurons}

    def _check_groups(self) -> None:
        for g in self.net.groups:
            if g.bias is not None and g.model is None:
                b = np.asarray(g.bias)
                if b.min(initial=0) < loihi.BIAS_MANT_MIN or b.max(initial=0) > loihi.BIAS_MANT_MAX:
                    raise ValueError(f"group {g.name}: bias mantissa outside 13-bit range")
        for g in self.neurons:
            if g.model is not None and not hasattr(g.model, "step"):
                raise ValueError(f"group {g.name}: unknown neuron model {g.model!r}")

    def _out_bound(self, g: NeuronGroup) -> int:
        """The largest message a group sends (1: a spike)."""
        return max(1, self.max_input, getattr(g.model, "max_output", 1))

    def _history_depths(self) -> dict[str, int]:
        """How many past steps of each group's messages some synapse or attention reads."""
        depth: dict[str, int] = {}
        for ps in self.synapses:
            depth[ps.src] = max(depth.get(ps.src, 0), ps.max_delay)
        for a in self.attentions:
            for g in (a.q, a.k, a.x):
                depth[g] = max(depth.get(g, 0), a.delay)
        return depth

    def _input_bound(self, name: str) -> int:
        """The largest |summed input| group ``name`` can receive in one step (a static bound)."""
        b = sum(ps.a_bound for ps in self.incoming[name])
        for a in self.att_in[name]:
            qg, xg = self.groups[a.q], self.groups[a.x]
            b += max(0, loihi.shift(loihi.attention_bound(qg.shape[0], xg.shape[-1]), -a.shift))
        return b

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
        """One batch of ``n`` samples: the step loop (inputs, updates, messages)."""
        bias_eff = self._effective_biases(self._bias_mantissas(inputs, biases, n))
        src = self._source_drives(source_spikes, steps)
        cur_ext = self._current_drives(currents, steps)
        state = self._zero_state(n)
        keep = set(groups) if groups is not None else set(self.groups)
        rec = _Recorder(self, record, keep, state, n)
        hist = _History(self.depth)
        self._full: dict[str, torch.Tensor] = {}
        for ps in self.synapses:
            ps.reset()
        with torch.no_grad(), exact_float_math():
            for t in range(steps):
                a_in = {g.name: self._group_input(g.name, hist, cur_ext, t) for g in self.neurons}
                new_s = {}
                for k, g in enumerate(self.neurons):
                    if g.model is None and _resets(t, k, reset_interval, reset_offset):
                        # new tensors, not zero_(): recorded steps alias the old ones
                        st = state[g.name]
                        st["u"], st["v"] = torch.zeros_like(st["u"]), torch.zeros_like(st["v"])
                    new_s[g.name] = self._update(g, state[g.name], *a_in[g.name],
                                                 bias_eff.get(g.name, 0), g.name in cur_ext, n)
                for g in self.sources:
                    new_s[g.name] = src[g.name][:, t]
                for name, s in new_s.items():
                    hist.push(name, s)
                    rec.add(name, s)
        return rec.result(steps, [g for g in self.neurons if g.model is None], self.net.readout)

    def _effective_biases(self, mant: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What each group adds per step: a model's own bias rule, or CUBA's."""
        out = {}
        for name, b in mant.items():
            model = self.groups[name].model
            out[name] = model.bias(b) if model is not None and getattr(model, "has_bias", 0) \
                else loihi.effective_bias(b)
        return out

    def _source_drives(self, source_spikes, steps: int) -> dict[str, torch.Tensor]:
        """Source group -> its spikes (N, >= steps, *shape): bool, or int64 graded messages."""
        src = {}
        for g in self.sources:
            if not source_spikes or g.name not in source_spikes:
                raise ValueError(f"source group {g.name} needs an input spike sequence")
            x = torch.as_tensor(source_spikes[g.name], device=self.device)
            _check_drive(g.name, x, g.shape, steps)
            src[g.name] = x != 0 if x.dtype == torch.bool or self.max_input <= 1 \
                else x.to(torch.int64)
        return src

    def _current_drives(self, currents, steps: int) -> dict[str, torch.Tensor]:
        """Group -> external synaptic input int64 (N, >= steps, *shape)."""
        cur_ext = {}
        for name, x in (currents or {}).items():
            x = torch.as_tensor(x, device=self.device).to(torch.int64)
            _check_drive(name, x, self.groups[name].shape, steps)
            cur_ext[name] = x
        return cur_ext

    def _zero_state(self, n: int) -> dict[str, dict[str, torch.Tensor]]:
        """Group -> state name -> int64 zeros (N, *shape): u, v of CUBA, a model's own."""
        return {g.name: {k: torch.zeros((n, *g.shape), dtype=torch.int64, device=self.device)
                         for k in (("u", "v") if g.model is None else g.model.states)}
                for g in self.neurons}

    def _group_input(self, name: str, hist: "_History", cur_ext: dict, t: int
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The summed input of group ``name`` at step ``t``: (a, the imaginary port's b), each
        None when nothing arrives."""
        total = cur_ext[name][:, t] if name in cur_ext else None
        imag = None
        add = _add if name not in cur_ext and self.a_bound[name] <= loihi.INT32_MAX \
            else _add_wrapped
        for ps in self.incoming[name]:
            a = ps.current(hist)
            if a is None:
                continue
            if ps.syn.port == "imag":
                imag = a if imag is None else _add_wrapped(imag, a)
            else:
                total = a if total is None else add(total, a)
        for att in self.att_in[name]:
            a = self._attention(att, hist)
            if a is not None:
                total = a if total is None else add(total, a)
        return total, imag

    def _update(self, g: NeuronGroup, st: dict, a, b, bias, driven: bool, n: int) -> torch.Tensor:
        """Step group ``g``'s neurons (state ``st`` in place); returns its messages."""
        if g.model is not None:
            if a is None:
                a = torch.zeros((n, *g.shape), dtype=torch.int64, device=self.device)
            return self._model_step(g, st, a, b, bias)
        if a is None:
            a = torch.zeros(1, dtype=torch.int64, device=self.device)
        spiking = not (g.readout or g.name == self.net.readout)
        if self.compile:
            st["u"], st["v"], s = self._fused_cuba(g, st, a, bias, spiking)
            return s
        rule = loihi.CubaInRange if not driven and loihi.CubaInRange.holds(self.a_bound[g.name]) \
            else loihi.CubaChecked
        st["u"], st["v"], s = rule.update(st["u"], st["v"], a, bias, g.params, spiking)
        return s

    def _model_step(self, g: NeuronGroup, st: dict, a, b, bias) -> torch.Tensor:
        if self.compile:
            s = self._fused_model(g, st, a, bias)
            if s is not None:
                return s
        if b is not None or getattr(g.model, "ports", None):
            return g.model.step(st, a, bias, b)
        return g.model.step(st, a, bias)

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
        """``loihi.Cuba.step`` compiled, on flat (N, M) tensors."""
        from mksgn.deploy import fused
        dev = self.device
        p = g.params
        vth = loihi.threshold(p, spiking)
        u = st["u"]
        n = u.shape[0]
        out = fused.compiled(fused.cuba)(
            u.reshape(n, -1).detach(), st["v"].reshape(n, -1).detach(), self._flat(a, u),
            self._flat(bias, u, g.name), fused.scalar(p.i_decay, dev),
            fused.scalar(p.v_decay, dev), fused.scalar(vth, dev))
        return tuple(x.reshape(u.shape) for x in out)

    def _fused_model(self, g: NeuronGroup, st: dict, a, bias) -> torch.Tensor | None:
        """Run ``g``'s model as a fused kernel when it has one (its messages); None to fall back
        to the eager step."""
        from mksgn.deploy import fused
        kernel = fused.MODEL_KERNELS.get(type(g.model))
        if kernel is None:
            return None
        like = st["act"]
        n, shape = like.shape[0], like.shape
        states = [st[k].reshape(n, -1).detach() for k in kernel.states]
        params = [fused.scalar(x, self.device) for x in kernel.params(g.model)]
        bias = [self._flat(bias, like, g.name)] if kernel.bias else []
        out = fused.compiled(kernel.step)(*states, self._flat(a, like), *bias, *params)
        for k, x in zip(kernel.states, out):
            st[k] = x.reshape(shape)
        return out[-1].reshape(shape)

    def _bias_mantissas(self, inputs, biases, n) -> dict[str, torch.Tensor]:
        """Per-sample bias mantissa (N, *shape) int64 of every group that has one."""
        out: dict[str, torch.Tensor] = {}
        for e in self.net.encoders:
            b = self._encode(e, inputs)
            out[e.dst] = b if e.dst not in out else out[e.dst] + b
        for name, b in self.static_bias.items():
            out[name] = out[name] + b if name in out else b.expand(n, *b.shape)
        for name, b in (biases or {}).items():
            g = self.groups[name]
            b = torch.as_tensor(b, device=self.device).to(torch.int64)
            if tuple(b.shape[1:]) != tuple(g.shape):
                raise ValueError(f"bias for {name}: shape {tuple(b.shape[1:])} does not match "
                                 f"group shape {tuple(g.shape)}")
            out[name] = b
        return out

    def _encode(self, e: Encoder, inputs) -> torch.Tensor:
        """Encoder ``e``'s bias mantissa (N, *dst shape) from its modality in ``inputs``."""
        if not inputs or e.modality not in inputs:
            raise ValueError(f"encoder {e.name} needs input modality {e.modality!r}; "
                             f"got {sorted(inputs or {})}")
        x = torch.as_tensor(inputs[e.modality], device=self.device)
        g = self.groups[e.dst]
        b = encode(e, x)
        if tuple(b.shape[1:]) != tuple(g.shape):
            raise ValueError(f"encoder {e.name}: input {tuple(x.shape[1:])} encodes to "
                             f"{tuple(b.shape[1:])}, but group {g.name} is {tuple(g.shape)}")
        return b

    def _attention(self, att: JointAttention, hist: _History) -> torch.Tensor | None:
        c, v = self.groups[att.q].shape[0], self.groups[att.x].shape[-1]
        dt = quant.exact_dtype(loihi.attention_bound(c, v), self.device, training=False)
        q, k, x = (hist.get(g, att.delay, dt) for g in (att.q, att.k, att.x))
        if q is None:
            return None
        a = loihi.joint_attention(q, k, x)
        a = (a if dt == torch.float32 else torch.round(a)).to(torch.int64)
        return loihi.wrap32_checked(loihi.shift(a, -att.shift))


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
