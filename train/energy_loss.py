"""Energy-aware training: a loss on the student's estimated energy per sample, or on its rate.

``mode: energy`` penalises the energy per sample that the student's spikes would cost on a
hardware profile, counted by the rules ``mksgn energy`` uses (``mksgn.opcount``: each spike of
neuron i costs its exact fan-out in synaptic events, and on routed neuromorphic profiles its
deliveries to destination cores, priced by the profile). Those rules are linear in the spike
counts, so the estimate is differentiable through the surrogate gradient of every spike.

What the estimate covers, and why:
- Spike-driven work only (synops, core deliveries and their mesh hops). Neuron updates and the host encoder cost
  the same whatever the network does (idle updates) or cannot be differentiated (whether a
  neuron's state is non-zero); ``mksgn energy`` adds them to the measured figure.
- Training simulates each group for its S steps (its window); the chip runs every group for all
  ``num_steps`` steps, and a group at depth d keeps receiving input for ``num_steps - d`` of them.
  The estimate therefore scales each group's window spikes by ``(num_steps - d) / S``: an
  extrapolation at the window's rate (the sweep reports it beside the measured figure). Given a
  full run's spikes (``Student._run(x, full=True)``) and ``extrapolate=False`` it is exactly
  ``mksgn energy``'s spike-driven count (tests/test_energy_loss.py).
- Fan-outs depend on which quantised weights are non-zero; they are recounted from
  ``student.to_network()`` at the start of every epoch (``refresh``) and held constant in between.

The loss is ``weight * E / E_max``, where ``E_max`` is the same estimate with every neuron firing
at every step it runs: a scale-free "energy rate" in [0, 1] (about the firing rate weighted by what
each spike costs), so a weight means the same on every profile and network size.

``mode: rate`` is the simpler alternative: ``weight * relu(r - target_rate)^2 / target_rate^2``
on the mean firing rate r over all spiking neurons and window steps.

``graph_keep`` works on the other factor of a spike's cost, its fan-out. A trained graph synapse
connects every joint to every joint (the learned offsets B and the static attention partition
are dense), so a spike of a graph group's source reaches all V joints of C_out channels: most of
the student's synaptic events. With ``graph_keep: K`` each destination joint keeps its K
strongest source joints (``GraphSynapse.prune``), lowered in equal steps from V over the first
half of the run and held for the second, so the remaining weights re-learn around the cut;
fan-outs drop by about V / K, and ``refresh`` recounts them exactly. It combines with either mode
or none.

``synapse_keep: f`` is the unstructured cut: every conv and graph synapse group (temporal and
residual convs, fusion, spiking-attention q/k/x, the graph pairs still connected; not the readout)
keeps the fraction f of its weights with the largest magnitudes (``Student.prune_weights``), on the
same schedule (1 -> f over the first half). After ``graph_keep`` the temporal convs carry about
half of the synaptic events; this cuts them and thins the kept graph pairs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from mksgn import opcount

__all__ = ["EnergyConfig", "EnergyLoss"]


@dataclass
class EnergyConfig:
    """The energy term of a student run (see the module docstring).

    mode: ``off``, ``energy`` (estimated energy per sample on ``profile``) or ``rate`` (mean
    firing rate above ``target_rate``). weight: the term's weight (0: estimated and logged as
    ``train_energy_uj`` / ``train_rate``, not trained for).
    profile: a bundled hardware profile name or a profile YAML path (``mksgn energy
    --list-profiles``); must price spikes (neuromorphic or cmos).
    graph_keep: source joints each destination joint of a graph synapse keeps (None: all).
    synapse_keep: fraction in (0, 1] of each synapse group's weights kept (None: all).
    """
    mode: Literal["off", "energy", "rate"] = "off"
    weight: float = 0.0
    profile: str = "loihi"
    target_rate: float = 0.05
    graph_keep: int | None = None
    synapse_keep: float | None = None

    @staticmethod
    def _ramp(epoch: int, epochs: int) -> float:
        """Share of a cut made by the end of (0-based) ``epoch``: equal steps over the first
        half of the run, all of it from then on."""
        return min(1.0, (epoch + 1) / max(1, math.ceil(epochs / 2)))

    def graph_sources(self, epoch: int, epochs: int, joints: int) -> int | None:
        """Source joints kept per destination during (0-based) ``epoch`` of ``epochs``: from
        ``joints`` down to ``graph_keep`` in equal steps over the first half, then held."""
        if self.graph_keep is None:
            return None
        done = self._ramp(epoch, epochs)
        return max(self.graph_keep, round(joints - (joints - self.graph_keep) * done))

    def synapse_fraction(self, epoch: int, epochs: int) -> float | None:
        """Fraction of weights kept during ``epoch``: from 1 down to ``synapse_keep`` in equal
        steps over the first half, then held."""
        if self.synapse_keep is None:
            return None
        return 1.0 - (1.0 - self.synapse_keep) * self._ramp(epoch, epochs)

    @property
    def prunes(self) -> bool:
        return self.graph_keep is not None or self.synapse_keep is not None

    @property
    def active(self) -> bool:
        """Estimated and logged every step (``weight`` 0: a monitor that adds nothing)."""
        return self.mode != "off"

    def validate(self) -> None:
        if self.weight < 0:
            raise ValueError(f"energy.weight must be >= 0, got {self.weight}")
        if self.mode == "rate" and not 0 < self.target_rate < 1:
            raise ValueError(f"energy.target_rate must be in (0, 1), got {self.target_rate}")
        if self.graph_keep is not None and (isinstance(self.graph_keep, bool)
                                            or not isinstance(self.graph_keep, int)
                                            or self.graph_keep < 1):
            raise ValueError(f"energy.graph_keep must be a whole number >= 1 (joints), "
                             f"got {self.graph_keep!r}")
        if self.synapse_keep is not None and (isinstance(self.synapse_keep, bool)
                                              or not 0 < self.synapse_keep <= 1):
            raise ValueError(f"energy.synapse_keep must be a fraction in (0, 1], "
                             f"got {self.synapse_keep!r}")
        if self.mode == "energy":
            _prices(self.profile)


def _prices(profile: str) -> opcount.SpikePrices:
    from mksgn.profiles import load_profile
    return opcount.spike_prices(load_profile(profile))


class EnergyLoss(nn.Module):
    """``forward(out: ModelOutput) -> (loss, {"energy_uj": estimate per sample, ...})``.

    Energy mode needs ``refresh(student)`` before the first forward and whenever the weights'
    zero pattern may have changed (the training loop calls it every epoch).
    """

    def __init__(self, cfg: EnergyConfig, time_steps: int):
        super().__init__()
        self.cfg, self.time_steps = cfg, int(time_steps)
        self.prices = _prices(cfg.profile) if cfg.mode == "energy" else None
        self.terms: list[opcount.SpikeTerm] = []
        self.scale: dict[str, float] = {}      # group -> window-to-run extrapolation factor
        self.e_max_pj = 1.0

    @torch.no_grad()
    def refresh(self, student) -> None:
        """Recount fan-outs (and deliveries) from the student's current quantised network."""
        if self.prices is None:
            return
        net = student.to_network()
        p = self.prices
        self.terms = opcount.spike_terms(net, (p.neurons_per_core,) if p.delivery_pj else (),
                                         (p.placement,) if p.placement else ())
        depth = net.meta["depth"]
        self.scale = {g.name: (net.num_steps - depth[g.name]) / self.time_steps for g in net.groups}
        full = {g.name: np.full(g.shape, net.num_steps - depth[g.name], dtype=np.int64)
                for g in net.groups if not g.readout}
        self.e_max_pj = max(1.0, float(self.energy_pj(full)))

    def energy_pj(self, counts) -> float | torch.Tensor:
        """Spike-driven energy (pJ) of per-group spike counts (see ``opcount.spike_work``)."""
        total = 0
        for work in opcount.spike_work(self.terms, counts).values():
            total = total + self.prices.energy_pj(work)
        return total

    def estimate_pj(self, spikes: dict[str, torch.Tensor], extrapolate: bool = True) -> torch.Tensor:
        """Per-sample energy (N,) pJ from a forward's window spikes (ModelOutput.spikes,
        (N, *shape, L) per group)."""
        if not self.terms:
            raise RuntimeError("EnergyLoss.refresh(student) must run before the first estimate")
        counts = {k: v.double().sum(-1) * (self.scale.get(k, 1.0) if extrapolate else 1.0)
                  for k, v in spikes.items()}
        e = self.energy_pj(counts)
        if not torch.is_tensor(e):
            e = torch.zeros(len(next(iter(spikes.values()))), dtype=torch.float64)
        return e

    def forward(self, out) -> tuple[torch.Tensor, dict[str, float]]:
        spikes = out.spikes
        if self.cfg.mode == "energy":
            e = self.estimate_pj(spikes)
            loss = self.cfg.weight * e.mean() / self.e_max_pj
            return loss.float(), {"energy_uj": float(e.detach().mean()) * 1e-6,
                                  "energy_rate": float(e.detach().mean()) / self.e_max_pj}
        fired = sum(v.sum() for v in spikes.values())
        slots = sum(v.numel() for v in spikes.values())          # neuron-steps simulated
        rate = fired / slots
        excess = torch.relu(rate - self.cfg.target_rate) / self.cfg.target_rate
        return (self.cfg.weight * excess ** 2).float(), {"rate": float(rate.detach())}
