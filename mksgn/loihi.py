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
these numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --- neuron state (lava/proc/lif/models.py) -------------------------------------------------
UV_BITS = 24                       # u and v are 24-bit signed
UV_MAX = 1 << (UV_BITS - 1)        # 2**23: u wraps beyond +/-UV_MAX, v clips to +/-(UV_MAX - 1)
DECAY_BITS = 12                    # du, dv are 12-bit unsigned
DECAY_UNITY = 1 << DECAY_BITS      # 4096: decay d keeps (4096 - d)/4096 of the state
DECAY_SHIFT = DECAY_BITS
ACT_SHIFT = 6                      # synaptic input a_in is left-shifted by 6 before adding to u
VTH_SHIFT = 6                      # threshold vth_mant is left-shifted by 6
VTH_MANT_BITS = 17                 # vth_mant is 17-bit unsigned
VTH_MANT_MAX = (1 << VTH_MANT_BITS) - 1
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


def decay(x: np.ndarray, d: int) -> np.ndarray:
    """Loihi decay of a 24-bit state: ``sign(x) * (|x| * (4096 - d) >> 12)`` (rounds toward zero)."""
    prod = x.astype(np.int64) * (DECAY_UNITY - d)
    return (np.sign(prod) * (np.abs(prod) >> DECAY_SHIFT)).astype(np.int64)


def wrap_current(u: np.ndarray) -> np.ndarray:
    """Wrap the current the way lava's bit-accurate LIF does (one wrap of 2**24 each way)."""
    u = np.where(u > UV_MAX, u - 2 * UV_MAX, u)
    return np.where(u <= -UV_MAX, u + 2 * UV_MAX, u)


def cuba_step(u: np.ndarray, v: np.ndarray, a_in: np.ndarray, bias: np.ndarray | int,
              p: CubaParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of Loihi's CUBA neuron in integers (reference for tests and the fast engine).

    u, v: int64 state arrays; a_in: summed synaptic input (already weight-exponent scaled);
    bias: effective bias (``bias_mant << bias_exp``). Returns the new (u, v, spikes).
    """
    u = wrap_current(decay(u, p.i_decay) + (a_in.astype(np.int64) << ACT_SHIFT))
    v = np.clip(decay(v, p.v_decay) + u + bias, -UV_MAX + 1, UV_MAX - 1)
    s = v > (p.vth_mant << VTH_SHIFT)
    v = np.where(s, 0, v)
    return u, v, s
