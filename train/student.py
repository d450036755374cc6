"""The MK-SGN spiking student (Zheng et al. 2024, arXiv 2404.10210), deployable to Loihi exactly.

Architecture (each arrow a synapse group, each box a group of Loihi CUBA neurons)::

    x (N, K, 3, T, V, 2) --fold persons--> per modality (N, 6, T, V)
      SSC per modality: host integer conv k_t x k_v (+ folded BN) -> bias of [ssc_<m>]   depth 0
      SMF: 1x1 conv from every [ssc_<m>] (scaled by a learned modality gate) -> [smf]      depth 1
      6 blocks, each:
        SA-SGC: graph conv from the block input B ----------------------------+
                1x1 conv B -> [q], [k] (C/4 ch.), [x] (C ch.); JointAttention -+-> [sgc]
        STC:    conv (k_t, 1), temporal stride, from [sgc] ---------------------+
                residual 1x1 (strided) conv from B, delayed to arrive together -+-> [stc]
      global average pooling + linear = one dense synapse -> [readout] (non-spiking; its v = scores)

Mapping to the chip, and why:

- Time. Spikes are (N, C, T, V, L), L simulation steps last (slayer's layout). The skeleton
  sequence is *space* here: T frames are neurons, as in MK-SGN's SSC which repeats the (C, T, V)
  sequence over S spike steps. Every synapse delivers one step later (Loihi's synaptic delay), so a
  group at depth d first receives input at step d. All paths into a group are aligned: the
  attention's q/k/x groups sit one layer deeper than the block input, so the graph conv into [sgc]
  gets ``delay = 1``; the residual into [stc] gets ``delay = 2`` (1 without spiking attention). The
  network runs ``num_steps = S + D`` steps (D = the readout's depth), the input presented at every
  step (the SSC bias is constant), so the readout integrates exactly S steps of its input.
- Only the first groups have a bias (the encoder's); hidden groups have none (slayer's CUBA has no
  bias, and without one a group is silent before its first input arrives). Hence every group is
  fully determined by S steps starting at its depth, and training simulates just those
  (``forward``: L = S per group, cost independent of depth); ``simulate`` runs all ``num_steps``
  steps of every group, which is what the chip and ``mksgn.deploy.engine`` do. Both give the same
  logits, bit for bit. Batch norm is therefore used only in SSC, folded into the encoder; hidden
  layers learn their scale directly in their quantised weights.
- Neurons: slayer CUBA (``train.spiking.LoihiCuba``) with the chip's integer update; synaptic
  weights quantisation-aware, 8-bit even mantissas with one exponent per synapse group
  (``mksgn.quant``); synaptic sums are exact integers (floor shifts, 24/32-bit wraps as Lava).
- Persons: the two bodies are folded into the input channels (``fold_persons``: channel
  ``c * 2 + m``), so one network run handles one sample.
- SA-SGC: the graph synapse weight (C_out, C_in, V, V) is built from learned channel mixings times
  the layout's 3 partitions plus learned adjacency offsets (2s-AGCN's A + B), quantised as one
  tensor. The spatial global spiking attention (``attention="spiking"``) is Spikformer-style
  ``q (k^T x)`` over joints on spikes, scaled by ``2**-attn_shift``, no softmax; its current is
  summed into the same [sgc] group as the graph conv (no extra layer of latency or neurons beyond
  q/k/x). ``attention="static"`` replaces it with a learned all-to-all joint partition inside the
  graph weight (no q/k/x groups, one layer less per block); ``"none"`` drops it.
- SMF: the four modality maps are fused by summing four 1x1 synapse groups into one CUBA group;
  each modality's weights are scaled by a learned gate ``K * softmax(g)`` (folded into the weights
  before quantisation, so free at deployment). Mutual-information guidance is a training loss
  (``mi_loss``): an auxiliary linear head per modality on its SSC spike rates (float, not
  exported) gives ``H(Y) - CE_k``, the Barber-Agakov variational lower bound on I(Z_k; Y); the
  heads' cross entropies are minimised (raising the bounds) and the gate is pulled toward the
  softmax of the bounds, so more informative modalities get larger fusion weights.
- Readout: global average pooling and the linear classifier are one dense synapse (the same
  mantissa from every (t, v) of a channel) into a non-spiking group (iDecay 4096, vDecay 0, max
  threshold; never spikes). ``logits = v_final / 4096`` (``LOGIT_SCALE``), i.e. the sum over the S
  steps of the readout's input in slayer units; the engine's ``scores`` are ``logits * 4096``.
- ``chain=True``: one modality, no fusion, no residuals, no attention: a plain chain of layers
  (netx-layout compatibility tests). ``chain_config()`` also fixes ``weight_exp = 0``: stock netx
  conv layers have no weight exponent (and netx derives a dense layer's from its weights, never
  shifting right), so only then does ``mksgn convert`` write the ``/layer`` section. With a fixed
  exponent the readout sums instead of averaging (``spiking.PooledReadout``): its logits are
  ``T V`` times those of an averaging readout with the same weights.
- Distillation features: the [stc] spike rates of every block, (N, C_i, T_i, V), the mean over the
  S steps (differentiable through the surrogate); the distiller picks its stages.
- Surrogate gradient: slayer's, with ``tau_grad = 0.01, scale_grad = 15`` (width one threshold,
  peak 0.75): with slayer's defaults (1, 1) the gradient vanishes within a few blocks at init;
  these keep its norm about constant through the 6 blocks, so every block learns from the first
  step (the measurements: README.md, "Measurements behind the student's choices").
- Exactness in eval mode: synaptic sums are computed in float32 where every partial sum is an
  integer below 2**24 (CPU), else float64; on CUDA always float64 with TF32 off. Neuron updates are
  int64. So ``forward`` (eval) == ``simulate`` == the engine on ``to_network()``, bit for bit.

Default (paper-scale) configuration: 64-frame windows, S = 4 steps, SSC with temporal stride 2
(64 -> 32 frames), stem 32 channels, blocks 32-32-64-64-128-128 with temporal strides
1-1-2-1-2-1 (32-32-16-16-8-8 frames), spiking attention with q/k at C/4. On NTU (V = 25) that is
0.79 M neurons (``Student.neuron_count``; 0.49 M with static attention), within one Loihi 2 chip
(``loihi.LOIHI2_NEURONS_PER_CHIP`` ~ 1.05 M), and 24 steps per sample (S + 20 layers of latency).
The paper's 64-64-128-128-256-256 widths (stem 64) need 1.6 M neurons with the SSC stride and
3.2 M without (two to four chips), hence the halved widths. ``StudentConfig.small()`` is the CPU
config (16-32 channels, 32 frames) and ``StudentConfig.chain_config()`` the chain one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mksgn import loihi, quant
from mksgn.netgraph import Network, fold_persons  # the input layout lives with the network format

from .common import ModelOutput
from .spiking import (ConvSynapse, GraphSynapse, LoihiCuba, PooledReadout, SkeletonSpikingCoding,
                      Spikes, SpikingJointAttention, SynapseLoad, align, prune_by_cost)

__all__ = ["StudentConfig", "Student", "build_student", "fold_persons", "LOGIT_SCALE"]

LOGIT_SCALE = loihi.STATE_SCALE << loihi.ACT_SHIFT   # readout v (integer) = logits * 4096

AttentionMode = Literal["spiking", "static", "none"]


@dataclass
class StudentConfig:
    """Hyper-parameters of the MK-SGN student (round-trips through ``to_dict``/``from_dict``).

    frames: input window T (frames); the network's group shapes depend on it.
    time_steps: S, spike steps each layer integrates (the paper uses 4).
    stem_channels: SSC and SMF channels. channels / strides: the 6 (or fewer) blocks.
    temporal_kernel: STC kernel k_t (frames). ssc_kernel / ssc_stride: SSC conv over (T, V).
    attention: "spiking" (data-dependent JointAttention), "static" (learned, in the graph weight)
        or "none". attn_ratio: q/k channels = C // attn_ratio. attn_shift: the attention's
        ``>> shift`` (None: chosen so that q, k, x at rate 1/4 give 1/16 of a threshold).
    threshold, current_decay, voltage_decay: CUBA parameters (slayer units: threshold * 64 =
        vThMant; decays as fractions, * 4096 = iDecay/vDecay). tau_grad, scale_grad: slayer's
        surrogate gradient (width ``tau_grad * threshold * 100``, peak ``scale_grad * 0.1 / 2 /
        width``). The defaults (width one threshold, peak 0.75) keep the gradient norm per block
        about constant through the 14-20 spiking layers at init, where slayer's (1, 1) let it
        vanish (README.md, "Measurements behind the student's choices").
    input_frac_bits: fractional bits of the int16 host input of joint and bone (12: 0.24 mm
        steps, +/-8 m range); motion_frac_bits: the same for the motion modalities (14: 0.06 mm
        steps, +/-2 m per frame), whose values are ~100x smaller.
    weight_gain: init std multiplier (weights ~ gain / sqrt(fan_in), in thresholds).
    weight_exp: None: every synapse group's weight exponent is chosen from its weights' range
        (``quant.weight_exponent``); an int in [-8, 7]: every group uses that exponent, mantissas
        clamp to the 8-bit range (0 for stock netx; ``chain_config`` sets it), and the readout
        sum-pools (``spiking.PooledReadout``).
    aux_heads: per-modality auxiliary heads for ``mi_loss``.
    """
    modalities: tuple[str, ...] = ("joint", "bone", "joint_motion", "bone_motion")
    frames: int = 64
    persons: int = 2
    coords: int = 3
    time_steps: int = 4
    stem_channels: int = 32
    ssc_kernel: tuple[int, int] = (3, 3)
    ssc_stride: tuple[int, int] = (2, 1)
    channels: tuple[int, ...] = (32, 32, 64, 64, 128, 128)
    strides: tuple[int, ...] = (1, 1, 2, 1, 2, 1)
    temporal_kernel: int = 9
    attention: AttentionMode = "spiking"
    attn_ratio: int = 4
    attn_shift: int | None = None
    residual: bool = True
    chain: bool = False
    threshold: float = 1.0
    current_decay: float = 0.25
    voltage_decay: float = 0.03
    tau_grad: float = 0.01
    scale_grad: float = 15.0
    input_frac_bits: int = 12
    motion_frac_bits: int = 14
    weight_gain: float = 2.0
    aux_heads: bool = True
    weight_exp: int | None = None

    def __post_init__(self):
        for name in ("modalities", "channels", "strides", "ssc_kernel", "ssc_stride"):
            setattr(self, name, tuple(getattr(self, name)))

    def validate(self) -> None:
        if self.attention not in ("spiking", "static", "none"):
            raise ValueError(f"attention must be spiking, static or none, not {self.attention!r}")
        if len(self.channels) != len(self.strides) or not self.channels:
            raise ValueError("channels and strides need the same (non-zero) length")
        if self.chain and (len(self.modalities) != 1 or self.residual or self.attention != "none"):
            raise ValueError("chain=True needs one modality, residual=False, attention='none'")
        if self.temporal_kernel % 2 == 0:
            raise ValueError("temporal_kernel must be odd")
        if self.time_steps < 1:
            raise ValueError("time_steps must be >= 1")
        if self.weight_exp is not None and (
                isinstance(self.weight_exp, bool) or not isinstance(self.weight_exp, int)
                or not loihi.WEIGHT_EXP_MIN <= self.weight_exp <= loihi.WEIGHT_EXP_MAX):
            raise ValueError(f"weight_exp must be None or an int in [{loihi.WEIGHT_EXP_MIN}, "
                             f"{loihi.WEIGHT_EXP_MAX}], not {self.weight_exp!r}")
        vth = self.threshold * loihi.STATE_SCALE
        if abs(vth - round(vth)) > 1e-9:
            raise ValueError("threshold * 64 must be an integer (vThMant)")

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "StudentConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown student config keys: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def small(cls, **kw) -> "StudentConfig":
        """CPU-trainable config (synthetic data): 32 frames, 16-32 channels, 5-frame STC."""
        base = dict(frames=32, stem_channels=16, ssc_stride=(1, 1),
                    channels=(16, 16, 32, 32, 32, 32), strides=(1, 1, 2, 1, 2, 1),
                    temporal_kernel=5)
        base.update(kw)
        return cls(**base)

    @classmethod
    def chain_config(cls, **kw) -> "StudentConfig":
        """One modality, no fusion, residuals or attention: a plain chain of layers, every weight
        exponent 0 (what stock netx holds exactly)."""
        base = dict(modalities=("joint",), chain=True, residual=False, attention="none",
                    aux_heads=False, weight_exp=0)
        base.update(kw)
        return cls.small(**base)


def _frames_after(t: int, kernel: int, stride: int) -> int:
    return (t + 2 * (kernel // 2) - kernel) // stride + 1


def _auto_attn_shift(c_qk: int, joints: int, vth_mant: int) -> int:
    # q, k, x at rate r give a ~ c_qk * V * r**3 per step; aim at 1/16 of the threshold (vth_mant
    # in a-units) at r = 1/4. The neuron integrates over steps (~4x with current decay 1/4), and the
    # q/k/x weights can raise the current by raising the rates (it grows as r**3). Aimed higher,
    # the attention drowns the graph-conv signal early in training; at 1/16 the student trains as
    # fast as without it (README.md, "Measurements behind the student's choices").
    expected = c_qk * joints * 0.25 ** 3
    return int(round(math.log2(expected / (vth_mant / 16.0))))


class _Group:
    """Bookkeeping of one neuron group: name, depth (first step with input), shape."""

    def __init__(self, name: str, depth: int, shape: tuple[int, ...]):
        self.name, self.depth, self.shape = name, depth, tuple(shape)


class SpikingBlock(nn.Module):
    """SA-SGC (graph conv + spatial global spiking attention) then STC with a residual path."""

    def __init__(self, name: str, c_in: int, c_out: int, stride: int, frames_in: int,
                 depth_in: int, cfg: StudentConfig, partitions: np.ndarray):
        super().__init__()
        self.name = name
        v = partitions.shape[-1]
        g, we = cfg.weight_gain, cfg.weight_exp
        neuron = lambda: LoihiCuba(cfg.threshold, cfg.current_decay, cfg.voltage_decay,  # noqa
                                   cfg.tau_grad, cfg.scale_grad)
        self.mode = cfg.attention
        self.graph = GraphSynapse(c_in, c_out, partitions, static_attention=self.mode == "static",
                                  gain=g, weight_exp=we)
        frames_out = _frames_after(frames_in, cfg.temporal_kernel, stride)
        self.groups: dict[str, _Group] = {}
        if self.mode == "spiking":
            c_qk = max(1, c_out // cfg.attn_ratio)
            self.q = ConvSynapse(c_in, c_qk, gain=g, weight_exp=we)
            self.k = ConvSynapse(c_in, c_qk, gain=g, weight_exp=we)
            self.x = ConvSynapse(c_in, c_out, gain=g, weight_exp=we)
            self.q_neuron, self.k_neuron, self.x_neuron = neuron(), neuron(), neuron()
            vth = int(cfg.threshold * loihi.STATE_SCALE)
            shift = cfg.attn_shift if cfg.attn_shift is not None else _auto_attn_shift(c_qk, v, vth)
            self.att = SpikingJointAttention(shift)
            for nm, c in (("q", c_qk), ("k", c_qk), ("x", c_out)):
                self.groups[nm] = _Group(f"{name}_{nm}", depth_in + 1, (c, frames_in, v))
            d_sgc = depth_in + 2
        else:
            d_sgc = depth_in + 1
        self.sgc_neuron = neuron()
        self.groups["sgc"] = _Group(f"{name}_sgc", d_sgc, (c_out, frames_in, v))
        kt = cfg.temporal_kernel
        self.tcn = ConvSynapse(c_out, c_out, (kt, 1), (stride, 1), (kt // 2, 0), gain=g,
                               weight_exp=we)
        self.res = ConvSynapse(c_in, c_out, (1, 1), (stride, 1), gain=g, weight_exp=we) \
            if cfg.residual else None
        self.stc_neuron = neuron()
        self.groups["stc"] = _Group(f"{name}_stc", d_sgc + 1, (c_out, frames_out, v))
        self.depth_in = depth_in
        # align every path: a synapse from depth d_s into depth d_t waits d_t - d_s - 1 steps
        self.graph.delay = d_sgc - depth_in - 1
        if self.res is not None:
            self.res.delay = d_sgc + 1 - depth_in - 1

    @property
    def out(self) -> _Group:
        return self.groups["stc"]

    def forward(self, b: Spikes, window) -> dict[str, Spikes]:
        """b: the block input's spikes; window(group) -> (start, length). Returns all groups."""
        out: dict[str, Spikes] = {}

        def deliver(syn, src: Spikes, dst: _Group, a=None):
            start, length = window(dst)
            a = syn(src) if a is None else a
            return align(a, src.start, start, length, syn.delay)

        g_sgc = self.groups["sgc"]
        a = deliver(self.graph, b, g_sgc)
        if self.mode == "spiking":
            for nm in ("q", "k", "x"):
                grp = self.groups[nm]
                syn, neu = getattr(self, nm), getattr(self, f"{nm}_neuron")
                out[nm] = neu(deliver(syn, b, grp), start=window(grp)[0])
            att = self.att(out["q"], out["k"], out["x"])
            a = quant.wrap32(a + deliver(self.att, out["q"], g_sgc, att))
        out["sgc"] = self.sgc_neuron(a, start=window(g_sgc)[0])
        a = deliver(self.tcn, out["sgc"], self.out)
        if self.res is not None:
            a = quant.wrap32(a + deliver(self.res, b, self.out))
        out["stc"] = self.stc_neuron(a, start=window(self.out)[0])
        return out

    def export(self, src: str) -> tuple[list, list, list]:
        """(groups, synapses, attentions) of this block, reading from group ``src``."""
        gs = self.groups
        groups = []
        if self.mode == "spiking":
            groups += [getattr(self, f"{nm}_neuron").export(gs[nm].name, gs[nm].shape)
                       for nm in ("q", "k", "x")]
        groups += [self.sgc_neuron.export(gs["sgc"].name, gs["sgc"].shape),
                   self.stc_neuron.export(gs["stc"].name, gs["stc"].shape)]
        syns = [m.export(name, s, d) for name, m, s, d in self.synapses(src)]
        atts = []
        if self.mode == "spiking":
            atts.append(self.att.export(f"{self.name}/attention", gs["q"].name, gs["k"].name,
                                        gs["x"].name, gs["sgc"].name))
        return groups, syns, atts

    def synapses(self, src: str) -> list[tuple[str, nn.Module, str, str]]:
        """(name, module, source group, destination group) of every synapse group of this
        block reading from group ``src``, in export order."""
        gs = self.groups
        out = [(f"{self.name}/graph", self.graph, src, gs["sgc"].name)]
        if self.mode == "spiking":
            out += [(f"{self.name}/{nm}", getattr(self, nm), src, gs[nm].name)
                    for nm in ("q", "k", "x")]
        out.append((f"{self.name}/tcn", self.tcn, gs["sgc"].name, gs["stc"].name))
        if self.res is not None:
            out.append((f"{self.name}/residual", self.res, src, gs["stc"].name))
        return out


class Student(nn.Module):
    """MK-SGN spiking student. ``forward(x (N, K, 3, T, V, 2)) -> ModelOutput``; see module doc."""

    def __init__(self, cfg: StudentConfig, num_classes: int, layout):
        super().__init__()
        cfg.validate()
        self.cfg, self.num_classes, self.layout = cfg, int(num_classes), layout
        v = layout.num_joints
        parts = np.asarray(layout.partitions(), dtype=np.float32)
        c_in = cfg.coords * cfg.persons
        neuron = lambda: LoihiCuba(cfg.threshold, cfg.current_decay, cfg.voltage_decay,  # noqa
                                   cfg.tau_grad, cfg.scale_grad)
        t0 = _frames_after(cfg.frames, cfg.ssc_kernel[0], cfg.ssc_stride[0])
        if cfg.ssc_stride[1] != 1 or cfg.ssc_kernel[1] % 2 == 0:
            raise ValueError("SSC must keep the joint axis: ssc_stride[1] == 1, odd ssc_kernel[1]")
        c0 = cfg.stem_channels
        self.ssc = nn.ModuleDict({
            m: SkeletonSpikingCoding(c_in, c0, cfg.ssc_kernel, cfg.ssc_stride,
                                     cfg.motion_frac_bits if m.endswith("motion")
                                     else cfg.input_frac_bits)
            for m in cfg.modalities})
        self.ssc_neuron = nn.ModuleDict({m: neuron() for m in cfg.modalities})
        self.ssc_groups = {m: _Group(f"ssc_{m}", 0, (c0, t0, v)) for m in cfg.modalities}
        depth = 0
        if not cfg.chain:
            self.smf = nn.ModuleDict({m: ConvSynapse(c0, c0, gain=cfg.weight_gain,
                                                     weight_exp=cfg.weight_exp)
                                      for m in cfg.modalities})
            self.smf_gate = nn.Parameter(torch.zeros(len(cfg.modalities)))
            self.smf_neuron = neuron()
            self.smf_group = _Group("smf", 1, (c0, t0, v))
            depth = 1
        if cfg.aux_heads:
            self.aux = nn.ModuleDict({m: nn.Linear(c0, num_classes) for m in cfg.modalities})
        blocks, c, t = [], c0, t0
        for i, (co, st) in enumerate(zip(cfg.channels, cfg.strides)):
            blk = SpikingBlock(f"b{i + 1}", c, co, st, t, depth, cfg, parts)
            blocks.append(blk)
            c, t, depth = co, blk.out.shape[1], blk.out.depth
        self.blocks = nn.ModuleList(blocks)
        self.readout = PooledReadout(c, num_classes, t, v, weight_exp=cfg.weight_exp)
        self.readout_neuron = LoihiCuba.readout()
        self.readout_group = _Group("readout", depth + 1, (num_classes,))
        self.num_steps = cfg.time_steps + self.readout_group.depth
        self._activity: dict[str, tuple[float, float]] = {}

    # -----------------------------------------------------------------------------------------
    def _window(self, full: bool):
        s = self.cfg.time_steps
        return (lambda g: (0, self.num_steps)) if full else (lambda g: (g.depth, s))

    def _run(self, x: torch.Tensor, full: bool
             ) -> tuple[ModelOutput, dict[str, Spikes], torch.Tensor]:
        cfg = self.cfg
        if x.dim() != 6 or x.shape[1] != len(cfg.modalities):
            raise ValueError(f"x must be (N, {len(cfg.modalities)}, 3, T, V, M), "
                             f"got {tuple(x.shape)}")
        window = self._window(full)
        xs = fold_persons(x)
        spikes: dict[str, Spikes] = {}
        aux = {}
        for k, m in enumerate(cfg.modalities):
            grp = self.ssc_groups[m]
            bias = self.ssc[m](xs[:, k])                    # (N, C0, T0, V) a-units
            start, length = window(grp)
            a = bias.new_zeros((*bias.shape, length), dtype=torch.float32)
            spikes[grp.name] = self.ssc_neuron[m](a, bias, start=start)
            if cfg.aux_heads:
                rate = self._steps(spikes[grp.name], grp, full).mean(dim=(2, 3, 4))
                aux[f"aux/{m}"] = self.aux[m](rate)
        if cfg.chain:
            h = spikes[self.ssc_groups[cfg.modalities[0]].name]
        else:
            gate = len(cfg.modalities) * torch.softmax(self.smf_gate, 0)
            start, length = window(self.smf_group)
            a = None
            for k, m in enumerate(cfg.modalities):
                src = spikes[self.ssc_groups[m].name]
                syn = self.smf[m]
                ak = align(syn(src, gate[k]), src.start, start, length, syn.delay)
                a = ak if a is None else quant.wrap32(a + ak)
            h = self.smf_neuron(a, start=start)
            spikes["smf"] = h
        features = []
        for blk in self.blocks:
            out = blk(h, window)
            for nm, s in out.items():
                spikes[blk.groups[nm].name] = s
            h = out["stc"]
            features.append(self._steps(h, blk.out, full).mean(dim=-1))
        start, length = window(self.readout_group)
        a = align(self.readout(h), h.start, start, length, self.readout.delay)
        v = self.readout_neuron(a, start=start)
        logits = v[..., -1].float()   # |v| < 2**23: exact in float32
        with torch.no_grad():
            self._activity = {name: (float(s.s.sum()), float(s.s.numel()))
                              for name, s in spikes.items()}
        steps = {name: s.s for name, s in spikes.items()}
        return ModelOutput(logits=logits, features=features, aux=aux, spikes=steps), spikes, v

    def _steps(self, s: Spikes, grp: _Group, full: bool) -> torch.Tensor:
        """The S steps of a group that reach the readout (its window), (N, C, T, V, S)."""
        if not full:
            return s.s
        return s.s[..., grp.depth:grp.depth + self.cfg.time_steps]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """x float (N, K, 3, T, V, 2) -> ModelOutput(logits (N, classes), features per block
        (N, C_i, T_i, V) spike rates over the S steps, aux per-modality logits).

        In eval mode the logits are the chip's: ``logits * LOGIT_SCALE`` equals the readout v of
        ``to_network()`` run for ``num_steps`` steps, bit for bit."""
        if self.training:
            return self._run(x, full=False)[0]
        with quant.exact_float_math():
            return self._run(x, full=False)[0]

    @torch.no_grad()
    def simulate(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Run every group for all ``num_steps`` steps, as the chip does.

        Returns ({group: bool (N, num_steps, C, T, V)}, scores int64 (N, classes) = the readout's
        final v in the chip's units (``logits * LOGIT_SCALE``)).
        """
        with quant.exact_float_math():
            out, spikes, _ = self._run(x, full=True)
        s = {k: v.s.permute(0, 4, 1, 2, 3).bool() for k, v in spikes.items()}
        return s, torch.round(out.logits.double() * LOGIT_SCALE).to(torch.int64)

    def mi_loss(self, out: ModelOutput, y: torch.Tensor, gate_weight: float = 1.0) -> torch.Tensor:
        """Mutual-information guidance of the fusion (training only; see module docstring).

        Mean per-modality auxiliary cross entropy (maximising the variational MI bounds
        ``H(Y) - CE_k``) plus ``gate_weight * KL(softmax(-CE) || softmax(gate))``.
        """
        if not self.cfg.aux_heads:
            return out.logits.new_zeros(())
        ces = torch.stack([F.cross_entropy(out.aux[f"aux/{m}"], y) for m in self.cfg.modalities])
        loss = ces.mean()
        if not self.cfg.chain and len(self.cfg.modalities) > 1:
            target = torch.softmax(-ces.detach(), 0)
            loss = loss + gate_weight * F.kl_div(torch.log_softmax(self.smf_gate, 0), target,
                                                 reduction="sum")
        return loss

    def firing_rates(self) -> dict[str, float]:
        """Spikes per neuron per step of every group in the last forward (its simulated steps)."""
        return {k: s / n if n else 0.0 for k, (s, n) in self._activity.items()}

    def spike_counts(self) -> dict[str, float]:
        """Total spikes per group in the last forward (all samples)."""
        return {k: s for k, (s, _) in self._activity.items()}

    def neuron_count(self) -> int:
        return sum(int(np.prod(g.shape)) for g in self._groups())

    def prune_graph(self, sources: int) -> None:
        """Every block's graph synapse keeps ``sources`` source joints per destination joint
        (``GraphSynapse.prune``); energy-aware training's fan-out knob (``energy.graph_keep``)."""
        for blk in self.blocks:
            blk.graph.prune(sources)

    def prune_weights(self, fraction: float, loads: dict[str, SynapseLoad] | None = None,
                      power: float = 0.5) -> None:
        """Weight pruning of every on-chip synapse group (``synapses()``: conv and graph; not
        the host encoders or the readout); energy-aware training's ``energy.synapse_keep``.

        Without ``loads`` every group keeps the ``fraction`` of its weights with the largest
        magnitudes (``spiking.prune_mask``). With ``loads`` (synapse name -> its events per
        sample and synapses, ``energy_loss.synapse_loads``) the groups together keep that
        fraction of their synaptic events, the cut falling where weights cost the most
        (``spiking.prune_by_cost`` with ``power``)."""
        syns = self.synapses()
        if loads is None:
            for _, mod, _, _ in syns:
                mod.prune_weights(fraction)
            return
        missing = sorted({name for name, *_ in syns} - set(loads))
        if missing:
            raise KeyError(f"no synaptic load for synapse groups {missing}")
        prune_by_cost([(mod, loads[name]) for name, mod, _, _ in syns], fraction, power)

    def synapses(self) -> list[tuple[str, nn.Module, str, str]]:
        """(name, module, source group, destination group) of every on-chip synapse group
        that pruning may thin (all but the readout), named as in ``to_network()``."""
        out = self._smf_synapses() if not self.cfg.chain else []
        for blk, src in zip(self.blocks, self._block_sources()):
            out += blk.synapses(src)
        return out

    def _smf_synapses(self) -> list[tuple[str, nn.Module, str, str]]:
        return [(f"smf/{m}", self.smf[m], self.ssc_groups[m].name, "smf")
                for m in self.cfg.modalities]

    def _block_sources(self) -> list[str]:
        """The group each block reads from: the fusion (or, chained, the first modality's
        coding), then the previous block's output."""
        first = self.ssc_groups[self.cfg.modalities[0]].name if self.cfg.chain else "smf"
        return [first] + [blk.out.name for blk in self.blocks[:-1]]

    def _groups(self) -> list[_Group]:
        gs = list(self.ssc_groups.values())
        if not self.cfg.chain:
            gs.append(self.smf_group)
        for blk in self.blocks:
            gs += list(blk.groups.values())
        return gs + [self.readout_group]

    # -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def to_network(self) -> Network:
        """The quantised network (eval mode: BN running statistics) as a ``netgraph.Network``.

        Inputs: one per modality, ``fold_persons(x)[:, k]`` float (N, 3*M, T, V) in real units
        (``meta["inputs"]``); ``engine.run(net, inputs).scores == logits * LOGIT_SCALE``.
        """
        was_training = self.training
        self.eval()
        try:
            cfg = self.cfg
            groups, syns, atts, encs = [], [], [], []
            for m in cfg.modalities:
                g = self.ssc_groups[m]
                groups.append(self.ssc_neuron[m].export(g.name, g.shape))
                encs.append(self.ssc[m].export(f"ssc/{m}", m, g.name))
            if not cfg.chain:
                gate = len(cfg.modalities) * torch.softmax(self.smf_gate, 0)
                groups.append(self.smf_neuron.export("smf", self.smf_group.shape))
                syns += [mod.export(name, s, d, gate[k])
                         for k, (name, mod, s, d) in enumerate(self._smf_synapses())]
            for blk, src in zip(self.blocks, self._block_sources()):
                g, s, a = blk.export(src)
                groups += g
                syns += s
                atts += a
            src = self.blocks[-1].out.name
            groups.append(self.readout_neuron.export("readout", (self.num_classes,), readout=True))
            syns.append(self.readout.export("readout/fc", src, "readout"))
            net = Network(groups=groups, synapses=syns, attentions=atts, encoders=encs,
                          num_steps=self.num_steps, readout="readout",
                          meta={"model": "mksgn-student", "config": cfg.to_dict(),
                                "num_classes": self.num_classes, "layout": self.layout.name,
                                "time_steps": cfg.time_steps, "logit_scale": LOGIT_SCALE,
                                "depth": {g.name: g.depth for g in self._groups()},
                                "inputs": {"modalities": list(cfg.modalities),
                                           "fold": "x (C, T, V, M) -> (C*M, T, V), channel c*M+m"}})
            net.validate()
            return net
        finally:
            self.train(was_training)


def build_student(cfg: StudentConfig, num_classes: int, layout) -> Student:
    """The MK-SGN student for ``num_classes`` classes on skeleton ``layout`` (a data Layout)."""
    return Student(cfg, num_classes, layout)
