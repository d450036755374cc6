"""Neuron updates as single fused kernels (``torch.compile``), for ``Engine(..., compile=True)``.

The eager updates make a dozen passes over the state tensors; on a CPU those passes, not the
synaptic products, bound the engine. ``torch.compile`` fuses each update into one loop. What it
compiles is the very update the eager engine and the student run, not a copy: the CUBA step is
``loihi.Cuba.step`` (its int32 wraps unconditional, branch-free, as compiled code wants them) and
the sigma-delta and delta steps are ``neuron_models.sigma_delta`` / ``neuron_models.delta``.
Compiling costs tens of seconds once per process, so it pays for long runs and benchmarks, not for
a one-off step.

Parameters go in as 0-d int64 tensors so one compiled kernel serves every layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from mksgn import loihi
from mksgn import neuron_models as nm

cuba = loihi.Cuba.step
"""(u, v, a, bias, i_decay, v_decay, vth) -> (u, v, s): the CUBA kernel (a readout gets a
threshold above every voltage)."""


@dataclass(frozen=True)
class ModelKernel:
    """How a neuron model runs fused: ``step(*states, a, [bias,] *params)`` returns the new
    ``states`` in order, then the output messages."""
    step: Callable
    states: tuple[str, ...]
    bias: bool
    params: Callable[[object], tuple[int, ...]]


MODEL_KERNELS: dict[type, ModelKernel] = {
    nm.SigmaDelta: ModelKernel(nm.sigma_delta, ("sigma", "act", "residue"), True,
                               lambda m: (m.vth, m.state_exp)),
    nm.Delta: ModelKernel(nm.delta, ("act", "residue"), False,
                          lambda m: (m.vth, m.spike_exp + m.state_exp, m.state_exp)),
}

_CACHE: dict = {}


def compiled(fn):
    """``torch.compile(fn)``, once per function (dynamic shapes: one kernel for all layers)."""
    if fn not in _CACHE:
        _CACHE[fn] = torch.compile(fn, dynamic=True)
    return _CACHE[fn]


def scalar(x: int, device) -> torch.Tensor:
    return torch.tensor(int(x), dtype=torch.int64, device=device)
