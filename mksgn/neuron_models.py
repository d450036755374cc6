"""Neuron models other than CUBA, as lava-nc's ``fixed_pt`` ProcessModels compute them.

A ``netgraph.NeuronGroup`` whose ``model`` is one of these runs that model's step instead of the
CUBA update (``model is None``). They come from stock lava-dl netx files (``mksgn.netx_io``
builds them from a layer's ``neuron`` section); the graph section of ``model.net`` does not store
them. Each entry says what it is (the Lava process and ProcessModel it reproduces), how it runs
(``step`` on int64 torch tensors holding Lava's int32 values) and how it counts (``graded``: its
output messages carry integers, and a message is sent where the output is non-zero).

Every model here keeps Lava's int32 arithmetic: sums wrap modulo 2**32 (``loihi.wrap32``), right
shifts are arithmetic, ``sgn(p) (|p| >> 12)`` is ``loihi.scale_fraction``. The sigma-delta and
delta updates are plain functions of tensors (``sigma_delta``, ``delta``), which the eager steps
call and ``mksgn.deploy.fused`` compiles. One step, from the summed synaptic input ``a`` (int32, 0
when nothing arrives):

- ``SigmaDelta`` (``lava.proc.sdn`` ``PySigmaDeltaModelFixed``; netx ``SDNN`` neurons of hidden
  layers; ReLU, no cumulative error, ``spike_exp = state_exp = 6`` as netx sets them)::

      sigma   = sigma + a
      act_new = max(sigma + (bias << 12), 0)
      delta   = act_new - act + residue
      s       = delta where |delta| >= vth_mant << 12 else 0
      residue = delta - s;  act = act_new
      out     = s >> 6                      (graded message)

- ``Delta`` (``PyDeltaModelFixed``; netx ``SDNN`` input layers)::

      x = a << 12;  delta = x - act + residue;  s = delta where |delta| >= vth_mant << 12 else 0
      residue = delta - s;  act = x;  out = s >> 6

- ``Sigma`` (``PySigmaModelFixed``; netx ``SDNN`` neurons with ``sigma_output``)::

      sigma = sigma + a;  out = sigma

- ``Resonator`` (``lava.proc.rf`` ``PyRFModelFixed`` / ``lava.proc.rf_iz`` ``PyRF_IZModelFixed``;
  netx ``RF_PHASE`` / ``RF_IZHIKEVICH``; complex input ``a`` (real port) and ``b`` (imag port))::

      re' = sgn(c re) (|c re| >> 12) - sgn(s im) (|s im| >> 12) + (a << 6)
      im' = sgn(s re) (|s re| >> 12) + sgn(c im) (|c im| >> 12) + (b << 6)
      clip both to +/-(2**23 - 1)
      RF:    out = re' >= vth << 6 and im' >= 0 and im < 0
      RF_IZ: out = im' >= vth << 6;  where out: re' = 0, im' = vth << 6 - 1

  with ``s, c`` the 12-bit sin/cos decays Lava derives from the file's ``sinDecay``/``cosDecay``
  (``lava.lib.dl.slayer.neuron.rf.neuron_params`` -> period, decay -> ``RF.__init__``).

- ``Sum`` (mksgn's own, for netx ``average`` layers, which netx cannot run)::

      out = a                               (graded message, no state)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from mksgn import loihi

def _delta_encode(x, act, residue, vth, state_exp, wrap):
    """Lava's ``delta_dynamics`` without cumulative error. Returns (act, residue, out)."""
    delta = wrap(x - act + residue)
    s = delta.masked_fill(delta.abs() < vth, 0)
    return x, delta - s, s >> state_exp


def sigma_delta(sigma, act, residue, a, bias, vth, state_exp, wrap=loihi.wrap32):
    """One ``SigmaDelta`` step on int64 tensors (what ``mksgn.deploy.fused`` compiles; the eager
    step passes ``wrap=loihi.wrap32_checked``). a: None when nothing arrives; bias: int64 tensor or
    0. Returns (sigma, act, residue, out)."""
    if a is not None:
        sigma = wrap(sigma + a)
    x = wrap(sigma + bias) if not (isinstance(bias, int) and bias == 0) else sigma
    return (sigma, *_delta_encode(x.clamp(min=0), act, residue, vth, state_exp, wrap))


def delta(act, residue, a, vth, shift, state_exp, wrap=loihi.wrap32):
    """One ``Delta`` step on int64 tensors, ``shift = spike_exp + state_exp``. Returns (act,
    residue, out)."""
    return _delta_encode(wrap(a << shift), act, residue, vth, state_exp, wrap)


@dataclass(frozen=True)
class SigmaDelta:
    """Sigma-delta neuron with ReLU (``lava.proc.sdn.process.SigmaDelta``)."""
    vth_mant: int
    spike_exp: int = 6
    state_exp: int = 6
    lava: ClassVar[str] = "SigmaDelta"
    states: ClassVar[tuple[str, ...]] = ("sigma", "act", "residue")
    graded: ClassVar[bool] = True
    max_output: ClassVar[int] = -loihi.INT32_MIN
    has_bias: ClassVar[bool] = True

    @property
    def vth(self) -> int:
        return int(np.int32(self.vth_mant * (1 << (self.spike_exp + self.state_exp))))

    def bias(self, mant: torch.Tensor) -> torch.Tensor:
        """Effective bias: the int32 ``bias * 2**(spike_exp + state_exp)`` Lava stores."""
        return loihi.wrap32_checked(mant << (self.spike_exp + self.state_exp))

    def step(self, st: dict, a: torch.Tensor | None, bias) -> torch.Tensor:
        st["sigma"], st["act"], st["residue"], out = sigma_delta(
            st["sigma"], st["act"], st["residue"], a, bias, self.vth, self.state_exp,
            wrap=loihi.wrap32_checked)
        return out


@dataclass(frozen=True)
class Delta:
    """Delta encoder (``lava.proc.sdn.process.Delta``): the input layer of an SDNN."""
    vth_mant: int
    spike_exp: int = 6
    state_exp: int = 6
    lava: ClassVar[str] = "Delta"
    states: ClassVar[tuple[str, ...]] = ("sigma", "act", "residue")   # Lava's sigma stays 0
    graded: ClassVar[bool] = True
    max_output: ClassVar[int] = -loihi.INT32_MIN
    has_bias: ClassVar[bool] = False

    @property
    def vth(self) -> int:
        return int(np.int32(self.vth_mant * (1 << (self.spike_exp + self.state_exp))))

    def step(self, st: dict, a: torch.Tensor | None, bias) -> torch.Tensor:
        a = torch.zeros_like(st["act"]) if a is None else a
        st["act"], st["residue"], out = delta(st["act"], st["residue"], a, self.vth,
                                              self.spike_exp + self.state_exp, self.state_exp,
                                              wrap=loihi.wrap32_checked)
        return out


@dataclass(frozen=True)
class Sigma:
    """Sigma decoder (``lava.proc.sdn.process.Sigma``): an SDNN layer with ``sigma_output``."""
    lava: ClassVar[str] = "Sigma"
    states: ClassVar[tuple[str, ...]] = ("sigma",)
    graded: ClassVar[bool] = True
    max_output: ClassVar[int] = -loihi.INT32_MIN
    has_bias: ClassVar[bool] = False

    def step(self, st: dict, a: torch.Tensor | None, bias) -> torch.Tensor:
        if a is not None:
            st["sigma"] = loihi.wrap32_checked(st["sigma"] + a)
        return st["sigma"]


@dataclass(frozen=True)
class Resonator:
    """Resonate-and-fire neuron (``lava.proc.rf`` RF, or ``lava.proc.rf_iz`` RF_IZ)."""
    vth_mant: int
    sin_decay: int          # 12-bit integers as Lava's RF computes them
    cos_decay: int
    izhikevich: bool = False
    state_exp: int = 6
    states: ClassVar[tuple[str, ...]] = ("real", "imag")
    graded: ClassVar[bool] = False
    max_output: ClassVar[int] = 1
    has_bias: ClassVar[bool] = False
    ports: ClassVar[tuple[str, ...]] = ("real", "imag")

    @property
    def lava(self) -> str:
        return "RF_IZ" if self.izhikevich else "RF"

    @property
    def vth(self) -> int:
        return int(self.vth_mant * (1 << self.state_exp))

    @staticmethod
    def from_netx(vth_mant: int, sin_decay: float, cos_decay: float, izhikevich: bool
                  ) -> "Resonator":
        """The integer decays Lava ends up with for netx's ``sinDecay``/``cosDecay``: netx turns
        them into (period, decay) with slayer's ``neuron_params`` and ``RF`` turns those back."""
        from lava.lib.dl.slayer.neuron.rf import neuron_params
        p = neuron_params({"sinDecay": sin_decay, "cosDecay": cos_decay, "vThMant": vth_mant})
        alpha, period = p["decay"], p["period"]
        sin_d = (1 - alpha) * np.sin(np.pi * 2 * 1 / period)
        cos_d = (1 - alpha) * np.cos(np.pi * 2 * 1 / period)
        return Resonator(vth_mant=vth_mant, sin_decay=int(np.int32(sin_d * (1 << 12))),
                         cos_decay=int(np.int32(cos_d * (1 << 12))), izhikevich=izhikevich)

    def step(self, st: dict, a: torch.Tensor | None, bias, b: torch.Tensor | None = None
             ) -> torch.Tensor:
        re, im = st["real"], st["imag"]
        mul = loihi.scale_fraction
        a = torch.zeros_like(re) if a is None else a << self.state_exp
        b = torch.zeros_like(im) if b is None else b << self.state_exp
        new_re = loihi.clip_voltage(mul(re, self.cos_decay) - mul(im, self.sin_decay) + a)
        new_im = loihi.clip_voltage(mul(re, self.sin_decay) + mul(im, self.cos_decay) + b)
        if self.izhikevich:
            s = new_im >= self.vth
            new_re = new_re.masked_fill(s, 0)
            new_im = new_im.masked_fill(s, self.vth - 1)
        else:
            s = (new_re >= self.vth) & (new_im >= 0) & (im < 0)
        st["real"], st["imag"] = new_re, new_im
        return s


@dataclass(frozen=True)
class Sum:
    """mksgn's own (no Lava process): sends the summed synaptic input of the step as a graded
    message, keeping no state. The neuron of netx ``average`` layers (``mksgn.netx_io``)."""
    lava: ClassVar[str] = ""
    states: ClassVar[tuple[str, ...]] = ()
    graded: ClassVar[bool] = True
    max_output: ClassVar[int] = -loihi.INT32_MIN
    has_bias: ClassVar[bool] = False

    def step(self, st: dict, a: torch.Tensor | None, bias) -> torch.Tensor:
        return a


MODELS = (SigmaDelta, Delta, Sigma, Resonator, Sum)
