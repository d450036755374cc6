"""Loihi fixed-point facts: the one home for the chip's numbers and the shared quantiser.

Every number here comes from lava-nc 0.10.0's bit-accurate models, named where used:
- ``lava/proc/lif/models.py`` (``AbstractPyLifModelFixed``, ``PyLifModelBitAcc``): 24-bit u and v,
  12-bit decays applied as ``x * (4096 - d) >> 12`` with sign-magnitude rounding toward zero,
  synaptic input and bias MSB-aligned by ``<< 6``, threshold ``vth_mant << 6``, current wraps
  modulo 2**24, voltage clips to +/-(2**23 - 1), reset to 0 after a spike.
- ``lava/proc/dense/models.py`` (``AbstractPyDenseModelBitAcc``): 8-bit weight mantissa, shared
  weight exponent applied to the accumulated sum, one step of synaptic delay (the accumulator sent at
  step t was computed from spikes of step t-1).
- ``lava/lib/dl/netx/hdf5.py``: ``du = iDecay - 1`` (the LIF model adds 1 back), bias exponent 6.
- ``lava/lib/dl/slayer/neuron/cuba.py``: training-side state scale ``1 << 6`` and decay scale
  ``1 << 12``.

Training (quantisation-aware), conversion and the fast engine all import from here; nobody repeats
these numbers. The chip's arithmetic on those numbers is here too, once (the second half of this
module): the CUBA update, the wraps, the decay, the weight-exponent shift, the joint attention's
products, which synapse is Lava's 24-bit ``Conv`` and what one destination neuron sums.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# --- neuron state (lava/proc/lif/models.py) -------------------------------------------------
UV_BITS = 24                       # u and v are 24-bit signed
UV_MAX = 1 << (UV_BITS - 1)        # 2**23: u wraps beyond +/-UV_MAX, v clips to +/-(UV_MAX - 1)
DECAY_BITS = 12                    # du, dv are 12-bit unsigned
DECAY_UNITY = 1 << DECAY_BITS      # 4096: decay d keeps (4096 - d)/4096 of the state
DECAY_SHIFT = DECAY_BITS
ACT_SHIFT = 6                      # synaptic input a_in is left-shifted by 6 before adding to u
ACT_SCALE = 1 << ACT_SHIFT
VTH_SHIFT = 6                      # threshold vth_mant is left-shifted by 6
VTH_MANT_BITS = 17                 # vth_mant is 17-bit unsigned
VTH_MANT_MAX = (1 << VTH_MANT_BITS) - 1
NEVER_SPIKE_VTH_MANT = 1 << VTH_MANT_BITS  # (2**17) << 6 = 2**23 > the largest voltage: a readout
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1   # Lava's int32 arrays
BIAS_MANT_BITS = 13                # bias_mant is 13-bit signed
BIAS_MANT_MIN, BIAS_MANT_MAX = -(1 << (BIAS_MANT_BITS - 1)), (1 << (BIAS_MANT_BITS - 1)) - 1
NETX_BIAS_EXP = 6                  # netx loads biases with bias_exp = 6 (lava/lib/dl/netx/hdf5.py)

# --- synapses (lava/proc/dense/models.py, lava/lib/dl/netx/utils.py) -------------------------
WEIGHT_BITS = 8                    # 8-bit weight mantissa
WEIGHT_MIN, WEIGHT_MAX = -256, 254 # netx's "standard 8 bit signed weight" range (step 2 when mixed sign)
# The shared weight exponent: a 4-bit signed field ("weightExponent" in Loihi's synapse format,
# Davies et al., IEEE Micro 2018).
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7
SYNAPTIC_DELAY = 1                 # every synapse group delivers one step after the spike
MAX_AXON_DELAY = 62                # netx clamps per-synapse delays to 62 steps

# --- training-side scales (lava/lib/dl/slayer/neuron/cuba.py) --------------------------------
STATE_SCALE = 1 << 6               # slayer w_scale: real 1.0 == 64 units of weight
DECAY_SCALE = 1 << 12              # slayer p_scale: decay fraction 1.0 == 4096

# --- the chip (Davies et al., IEEE Micro 2018; Orchard et al. 2021 for Loihi 2) ---------------
LOIHI_NEURONS_PER_CORE = 1024
LOIHI2_NEURONS_PER_CORE = 8192
LOIHI2_CORES_PER_CHIP = 128
LOIHI2_NEURONS_PER_CHIP = 1 << 20  # "up to 1 million neurons" per Loihi 2 chip


@dataclass(frozen=True)
class CubaParams:
    """Integer CUBA neuron parameters as the chip (and a netx file) stores them.

    i_decay, v_decay: 12-bit decays in [0, 4096] (4096 = forget everything each step).
    vth_mant: threshold mantissa; the effective threshold is ``vth_mant << 6``.
    """
    i_decay: int
    v_decay: int
    vth_mant: int

    def validate(self) -> None:
        if not 0 <= self.i_decay <= DECAY_UNITY:
            raise ValueError(f"iDecay {self.i_decay} outside [0, {DECAY_UNITY}]")
        if not 0 <= self.v_decay <= DECAY_UNITY:
            raise ValueError(f"vDecay {self.v_decay} outside [0, {DECAY_UNITY}]")
        if not 0 <= self.vth_mant <= VTH_MANT_MAX:
            raise ValueError(f"vThMant {self.vth_mant} outside [0, {VTH_MANT_MAX}]")

    @classmethod
    def from_real(cls, threshold: float, current_decay: float, voltage_decay: float) -> "CubaParams":
        """From slayer's real-valued parameters (threshold in weight units, decays as fractions)."""
        return cls(i_decay=int(round(current_decay * DECAY_SCALE)),
                   v_decay=int(round(voltage_decay * DECAY_SCALE)),
                   vth_mant=int(round(threshold * STATE_SCALE)))


# =============================================================================================
# The chip's arithmetic, once, as functions of plain tensors.
#
# Integer states are int64 torch tensors holding Lava's int32 values (the purely integer rules
# take numpy integer arrays too). The student's forward (``mksgn.train.spiking``), the fast
# engine (``mksgn.deploy.engine``), its compiled kernels (``mksgn.deploy.fused`` compiles these
# very functions), the Lava builder and the compatibility report call them; the quantiser
# (``mksgn.quant``) wraps them in straight-through estimators. ``tests/deploy_reference.py`` is
# the one deliberate second copy, written independently in numpy, that the tests hold them to.

def in_range(x: torch.Tensor, lo: int, hi: int) -> bool:
    """One read-only pass: are all values of ``x`` within [lo, hi]? (cheaper than a wrap)"""
    if x.numel() == 0 or x.dtype == torch.bool:
        return True
    mn, mx = torch.aminmax(x)
    return bool(mn >= lo) and bool(mx <= hi)


def wrap(x, bits: int):
    """Signed two's-complement wrap of integers to ``bits`` bits (``x`` int64 tensor or array)."""
    half = 1 << (bits - 1)
    return ((x + half) & (2 * half - 1)) - half


def wrap32(x):
    """Lava's int32 arrays: sums wrap modulo 2**32."""
    return wrap(x, 32)


def wrap24(x):
    """Lava's ``Conv`` process sum (``lava.proc.conv.utils.signed_clamp(x, 24)``)."""
    return wrap(x, UV_BITS)


def wrap32_checked(x: torch.Tensor) -> torch.Tensor:
    """``wrap32`` after a read-only range check: the wrap's passes run only when a value left
    the int32 range (an eager-mode saving; compiled kernels wrap unconditionally)."""
    return x if in_range(x, INT32_MIN, INT32_MAX) else wrap32(x)


def wrap24_checked(x: torch.Tensor) -> torch.Tensor:
    """``wrap24`` after a read-only range check (see ``wrap32_checked``)."""
    return x if in_range(x, -UV_MAX, UV_MAX - 1) else wrap24(x)


def shift(x, exp: int):
    """A weight exponent applied to an integer sum: ``x << exp``, or the arithmetic (flooring)
    ``x >> -exp`` when ``exp < 0`` (int tensors, arrays or Python ints)."""
    if exp == 0:
        return x
    return x << exp if exp > 0 else x >> -exp


def scale_fraction(x: torch.Tensor, k) -> torch.Tensor:
    """``x * k / 2**12`` rounded toward zero: the chip's multiply by a signed 12-bit fraction,
    ``sign(p) * (|p| >> 12)`` with ``p = x * k``. x: int64, or float64 holding integers with
    ``|x k| < 2**53`` (then the product, the division by a power of two and ``trunc`` are exact);
    k: int or 0-d int64 tensor."""
    return (x * k).div_(DECAY_UNITY, rounding_mode="trunc")


def decay(x: torch.Tensor, d) -> torch.Tensor:
    """Loihi's decay of a state by a 12-bit ``d`` (4096 forgets everything): keeps
    ``(4096 - d) / 4096`` of ``x``, rounded toward zero."""
    return scale_fraction(x, DECAY_UNITY - d)


def wrap_current(u: torch.Tensor) -> torch.Tensor:
    """Lava's single wrap of the current by 2**24 each way: ``u > 2**23`` becomes ``u - 2**24``,
    ``u <= -2**23`` becomes ``u + 2**24`` (a value further out stays out of range)."""
    u = torch.where(u > UV_MAX, u - 2 * UV_MAX, u)
    return torch.where(u <= -UV_MAX, u + 2 * UV_MAX, u)


def wrap_current_near(u: torch.Tensor) -> torch.Tensor:
    """``wrap_current`` for ``-3 * 2**23 < u <= 3 * 2**23``, in place and without a branch:
    ``(u + 2**23 - 1) mod 2**24 - (2**23 - 1)``, the modulo a mask (two's complement)."""
    return u.add_(UV_MAX - 1).bitwise_and_(2 * UV_MAX - 1).sub_(UV_MAX - 1)


def clip_voltage(v: torch.Tensor) -> torch.Tensor:
    """The voltage clipped to +/-(2**23 - 1), in place."""
    return v.clamp_(-UV_MAX + 1, UV_MAX - 1)


def threshold(p: CubaParams, spiking: bool = True) -> int:
    """The voltage a neuron's v must exceed to spike: ``vth_mant << 6``; for a readout
    (``spiking=False``) one above every voltage (Lava: ``vth_mant = NEVER_SPIKE_VTH_MANT``)."""
    return (p.vth_mant if spiking else NEVER_SPIKE_VTH_MANT) << VTH_SHIFT


def fire(v: torch.Tensor, vth) -> tuple[torch.Tensor, torch.Tensor]:
    """Spike where ``v > vth`` (``threshold``) and reset those voltages to 0 in place.
    Returns (v, s), s bool."""
    s = v > vth
    return v.masked_fill_(s, 0), s


def _unchanged(x):
    return x


class Cuba:
    """One step of Loihi's CUBA neuron as lava's ``PyLifModelBitAcc`` computes it
    (``lava/proc/lif/models.py``, ``subthr_dynamics`` then the spike and reset)::

        u = wrap_current(wrap32(decay(u, i_decay) + wrap32(a << 6)))
        v = clip_voltage(wrap32(decay(v, v_decay) + u + bias))
        s = v > vth;  v = 0 where s

    a: the summed synaptic input of the step (a-units, after the weight exponent); bias: the
    effective bias ``bias_mant << 6`` (0 for none); vth: ``vth_mant << 6``. States are int64
    tensors; new tensors are returned (the inputs are not modified), except that
    ``wrap_current_near`` and the reset work on tensors the update itself made.

    Each range rule is a named step (``wrap32``, ``wrap_current``, ``clip_voltage``), as
    lava's ``AbstractPyLifModelFixed`` names its steps: a variant that can prove a step unneeded
    overrides that step, never the update.
    """
    wrap32 = staticmethod(wrap32)
    wrap_current = staticmethod(wrap_current)
    clip_voltage = staticmethod(clip_voltage)

    @classmethod
    def subthreshold(cls, u, v, a, bias, i_decay, v_decay) -> tuple[torch.Tensor, torch.Tensor]:
        """(u, v) after the step's integration, v before the threshold (the surrogate gradient's
        input). i_decay, v_decay: ints or 0-d int64 tensors."""
        u = cls.wrap_current(cls.wrap32(decay(u, i_decay).add_(cls.wrap32(a * ACT_SCALE))))
        v = decay(v, v_decay).add_(u)
        if not (isinstance(bias, int) and bias == 0):
            v = v.add_(bias)
        return u, cls.clip_voltage(cls.wrap32(v))

    @classmethod
    def step(cls, u, v, a, bias, i_decay, v_decay, vth
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The whole step on plain tensors (what ``mksgn.deploy.fused`` compiles). Returns
        (u, v, s), v after the reset, s bool."""
        u, v = cls.subthreshold(u, v, a, bias, i_decay, v_decay)
        return (u, *fire(v, vth))

    @classmethod
    def update(cls, u, v, a, bias, p: CubaParams, spiking: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``step`` with a group's parameters; ``spiking=False`` (a readout) never spikes."""
        return cls.step(u, v, a, bias, p.i_decay, p.v_decay, threshold(p, spiking))


class CubaChecked(Cuba):
    """The eager update: an int32 wrap first checks whether any value left the int32 range."""
    wrap32 = staticmethod(wrap32_checked)


class CubaInRange(Cuba):
    """The update when ``|a << 6| <= 2**23`` (a static bound of the group's inputs) and the
    bias is a 13-bit mantissa ``<< 6``: then ``|u| <= 2**23`` after every step, no int32 wrap can
    occur and u's wrap sees ``|u| <= 2**24``, where one mask does it (``wrap_current_near``)."""
    wrap32 = staticmethod(_unchanged)
    wrap_current = staticmethod(wrap_current_near)

    @staticmethod
    def holds(a_bound: int) -> bool:
        """Does it apply to inputs with ``|a| <= a_bound`` at every step?"""
        return a_bound << ACT_SHIFT <= UV_MAX


class CubaNoOverflow(Cuba):
    """The update when no state can leave the 24-bit ranges (the student proves it per batch,
    ``train.spiking.cuba_states``): every range step is a no-op. Then float64 states holding
    integers compute it exactly (``scale_fraction``), which avoids int64 division."""
    wrap32 = wrap_current = clip_voltage = staticmethod(_unchanged)

    @staticmethod
    def holds(a_max: int, bias_max: int, steps: int) -> bool:
        """Does it apply to ``steps`` steps from zero state with ``|a| <= a_max`` and
        ``|bias| <= bias_max`` (|u| grows by at most ``a_max << 6`` a step, |v| by |u| + bias)?"""
        return steps * (steps * (a_max << ACT_SHIFT) + bias_max) < UV_MAX - 1


def joint_attention(q, k, x):
    """Spiking joint attention's integer products (netgraph ``JointAttention``, before its shift):
    ``sum_c q[n, c, t, v] * sum_u k[n, c, t, u] * x[n, d, t, u]`` -> (N, D, T, V, ...).

    q, k: (N, C_qk, T, V, ...) and x: (N, D, T, V, ...) spikes (trailing axes, e.g. slayer's step
    axis, ride along), as torch tensors of one dtype or numpy arrays. Every partial sum is an
    integer of at most ``C_qk * V`` (``attention_bound``), so float sums below 2**24 are exact.
    """
    einsum = torch.einsum if isinstance(q, torch.Tensor) else np.einsum
    kx = einsum("nctu...,ndtu...->ncdt...", k, x)
    return einsum("nctv...,ncdt...->ndtv...", q, kx)


def attention_bound(c_qk: int, joints: int) -> int:
    """The largest ``joint_attention`` sum of binary spikes, before the shift."""
    return c_qk * joints


def lava_conv(kind: str, weight_exp: int, delay) -> bool:
    """Whether a synapse group is Lava's ``Conv`` process: a ``conv`` with weight exponent 0 and
    no delay (``Conv`` has neither). Its sum wraps at 24 bits, every other synapse's at 32
    (``synapse_sum_bits``); the Lava builder, the engine and the student all decide by this."""
    return kind == "conv" and int(weight_exp) == 0 and np.ndim(delay) == 0 and int(delay) == 0


def synapse_sum_bits(kind: str, weight_exp: int, delay) -> int:
    """The width at which a synapse group's summed output wraps (see ``lava_conv``)."""
    return UV_BITS if lava_conv(kind, weight_exp, delay) else 32


# the weight axes that sum into one destination neuron, by synapse kind (netgraph ``Synapse``);
# every other kind sums over all axes but the first: dense (O, I), conv (O, I/groups, k_t, k_v)
_FAN_IN_AXES = {
    "graph": (1, 3),         # (O, I, V, U): a row is an (o, v) pair, summing over (i, u)
    "convT": (0, 2, 3),      # (I, O/groups, k_t, k_v): an output sums over (i, k_t, k_v)
}


def row_sums(w, kind: str):
    """Per destination row, the sum of ``w``'s entries onto it, flattened (numpy or torch).
    ``row_sums(|m|, kind).max()`` bounds a synaptic sum of binary spikes;
    ``row_sums(m != 0, kind).max()`` is the largest fan-in."""
    return w.sum(axis=_FAN_IN_AXES.get(kind, tuple(range(1, w.ndim)))).reshape(-1)


def effective_bias(mant):
    """The bias a CUBA neuron adds to v each step: the mantissa clipped to its 13 bits, times
    ``2**6`` (netx's bias exponent). mant: an int64 or integer-valued float tensor."""
    return mant.clamp(BIAS_MANT_MIN, BIAS_MANT_MAX) * (1 << NETX_BIAS_EXP)
