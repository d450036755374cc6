"""Neuron updates as single fused kernels (``torch.compile``), for ``Engine(..., compile=True)``.

The eager updates (``engine.cuba_update``, ``neuron_models.*.step``) make a dozen passes over the
state tensors; on a CPU those passes, not the synaptic products, bound the engine. Here each
update is one pure function of int64 tensors that ``torch.compile`` fuses into one loop. They are
the same integer arithmetic as the eager versions (the int32 wraps unconditional, branch-free),
so their results are identical (tested); compiling costs tens of seconds once per process, so it
pays for long runs and benchmarks, not for a one-off step.

Parameters go in as 0-d int64 tensors so one compiled kernel serves every layer.
"""
from __future__ import annotations

import torch

_M = 1 << 23
_B31 = 1 << 31
_MASK32 = (1 << 32) - 1


def _w32(x):
    return ((x + _B31) & _MASK32) - _B31


def _decay(x, keep):
    p = x * keep
    return torch.sign(p) * (p.abs() >> 12)


def cuba(u, v, a, bias, keep_u, keep_v, vth):
    """``engine.cuba_update`` (PyLifModelBitAcc). keep_* = 4096 - decay; vth = vth_mant << 6
    (a readout gets a threshold above every voltage). Returns (u, v, s)."""
    cur = _w32(_decay(u, keep_u) + _w32(a << 6))
    cur = torch.where(cur > _M, cur - 2 * _M, cur)
    cur = torch.where(cur <= -_M, cur + 2 * _M, cur)
    vol = _w32(_decay(v, keep_v) + cur + bias).clamp(-_M + 1, _M - 1)
    s = vol > vth
    return cur, vol.masked_fill(s, 0), s


def sigma_delta(sigma, act, residue, a, bias, vth, state_exp):
    """``neuron_models.SigmaDelta.step``. Returns (sigma, act, residue, out)."""
    sigma = _w32(sigma + a)
    x = _w32(sigma + bias).clamp(min=0)
    delta = _w32(x - act + residue)
    s = delta.masked_fill(delta.abs() < vth, 0)
    return sigma, x, delta - s, s >> state_exp


def delta(act, residue, a, vth, shift, state_exp):
    """``neuron_models.Delta.step``. Returns (act, residue, out)."""
    x = _w32(a << shift)
    d = _w32(x - act + residue)
    s = d.masked_fill(d.abs() < vth, 0)
    return x, d - s, s >> state_exp


_CACHE: dict = {}


def compiled(fn):
    """``torch.compile(fn)``, once per function (dynamic shapes: one kernel for all layers)."""
    if fn not in _CACHE:
        _CACHE[fn] = torch.compile(fn, dynamic=True)
    return _CACHE[fn]


def scalar(x: int, device) -> torch.Tensor:
    return torch.tensor(int(x), dtype=torch.int64, device=device)
