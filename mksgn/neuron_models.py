"""Neuron models other than CUBA, as lava-nc's ``fixed_pt`` ProcessModels compute them.

A ``netgraph.NeuronGroup`` whose ``model`` is one of these runs that model's step instead of the
CUBA update (``model is None``). They come from stock lava-dl netx files (``mksgn.netx_io``
builds them from a layer's ``neuron`` section); the graph section of ``model.net`` does not store
them. Each entry says what it is (the Lava process and ProcessModel it reproduces), how it runs
(``step`` on int64 torch tensors holding Lava's int32 values) and how it counts (``graded``: its
output messages carry integers, and a message is sent where the output is non-zero).

Every model here keeps Lava's int32 arithmetic: sums wrap modulo 2**32 (``wrap32``), right shifts
are arithmetic. One step, from the summed synaptic input ``a`` (int32, 0 when nothing arrives):

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

_INT32 = 1 << 32
_UV_MAX = 1 << 23


def wrap32(x: torch.Tensor) -> torch.Tensor:
    """Two's-complement wrap of an int64 tensor to int32 values (a read-only range check first:
    the wrap's three passes are needed only when a value really left the int32 range)."""
    mn, mx = torch.aminmax(x)
    if bool(mn >= -(1 << 31)) and bool(mx < (1 << 31)):
        return x
    return ((x + (1 << 31)) & (_INT32 - 1)) - (1 << 31)


def _add(x, a):
    return x if a is None else wrap32(x + a)


def _delta_encode(x: torch.Tensor, st: dict, vth: int) -> torch.Tensor:
    """Lava's ``delta_dynamics`` without cumulative error; updates act/residue, returns s."""
    delta = wrap32(x - st["act"] + st["residue"])
    s = delta.masked_fill(delta.abs() < vth, 0)
    st["residue"] = delta - s
    st["act"] = x
    return s


@dataclass(frozen=True)
class SigmaDelta:
    """Sigma-delta neuron with ReLU (``lava.proc.sdn.process.SigmaDelta``)."""
    vth_mant: int
    spike_exp: int = 6
    state_exp: int = 6
    lava: ClassVar[str] = "SigmaDelta"
    states: ClassVar[tuple[str, ...]] = ("sigma", "act", "residue")
    graded: ClassVar[bool] = True
    max_output: ClassVar[int] = 1 << 31
    has_bias: ClassVar[bool] = True

    @property
    def vth(self) -> int:
        return int(np.int32(self.vth_mant * (1 << (self.spike_exp + self.state_exp))))

    def bias(self, mant: torch.Tensor) -> torch.Tensor:
        """Effective bias: the int32 ``bias * 2**(spike_exp + state_exp)`` Lava stores."""
        return wrap32(mant << (self.spike_exp + self.state_exp))

    def step(self, st: dict, a: torch.Tensor | None, bias) -> torch.Tensor:
        st["sigma"] = _add(st["sigma"], a)
        act = wrap32(st["sigma"] + bias) if not isinstance(bias, int) or bias else st["sigma"]
        s = _delta_encode(act.clamp(min=0), st, self.vth)
        return s >> self.state_exp


@dataclass(frozen=True)
class Delta:
    """Delta encoder (``lava.proc.sdn.process.Delta``): the input layer of an SDNN."""
    vth_mant: int
    spike_exp: int = 6
    state_exp: int = 6
    lava: ClassVar[str] = "Delta"
    states: ClassVar[tuple[str, ...]] = ("sigma", "act", "residue")   # Lava's sigma stays 0
    graded: ClassVar[bool] = True
    max_output: ClassVar[int] = 1 << 31
    has_bias: ClassVar[bool] = False

    @property
    def vth(self) -> int:
        return int(np.int32(self.vth_mant * (1 << (self.spike_exp + self.state_exp))))

    def step(self, st: dict, a: torch.Tensor | None, bias) -> torch.Tensor:
        x = wrap32(a << (self.spike_exp + self.state_exp)) if a is not None \
            else torch.zeros_like(st["act"])
        s = _delta_encode(x, st, self.vth)
        return s >> self.state_exp


@dataclass(frozen=True)
class Sigma:
    """Sigma decoder (``lava.proc.sdn.process.Sigma``): an SDNN layer with ``sigma_output``."""
    lava: ClassVar[str] = "Sigma"
    states: ClassVar[tuple[str, ...]] = ("sigma",)
    graded: ClassVar[bool] = True
    max_output: ClassVar[int] = 1 << 31
    has_bias: ClassVar[bool] = False

    def step(self, st: dict, a: torch.Tensor | None, bias) -> torch.Tensor:
        st["sigma"] = _add(st["sigma"], a)
        return st["sigma"]


def _scale(x: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.sign(x) * (x.abs() >> bits)


@dataclass(frozen=True)
class Resonator:
    """Resonate-and-fire neuron (``lava.proc.rf`` RF, or ``lava.proc.rf_iz`` RF_IZ)."""
    vth_mant: int
    sin_decay: int          # 12-bit integers as Lava's RF computes them
    cos_decay: int
    izhikevich: bool = False
    state_exp: int = 6
    decay_bits: int = 12
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
        sh = self.decay_bits
        a = torch.zeros_like(re) if a is None else a << self.state_exp
        b = torch.zeros_like(im) if b is None else b << self.state_exp
        new_re = _scale(self.cos_decay * re, sh) - _scale(self.sin_decay * im, sh) + a
        new_im = _scale(self.sin_decay * re, sh) + _scale(self.cos_decay * im, sh) + b
        new_re = new_re.clamp(-_UV_MAX + 1, _UV_MAX - 1)
        new_im = new_im.clamp(-_UV_MAX + 1, _UV_MAX - 1)
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
    max_output: ClassVar[int] = 1 << 31
    has_bias: ClassVar[bool] = False

    def step(self, st: dict, a: torch.Tensor | None, bias) -> torch.Tensor:
        return a


MODELS = (SigmaDelta, Delta, Sigma, Resonator, Sum)
