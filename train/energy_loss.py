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

``synapse_keep_by: energy`` makes the same cut energy-aware. A weight of a group whose source
fires often, at many positions, carries far more synaptic events than one of a quiet group
(orders of magnitude more on the NW-UCLA student: README.md, "Energy-aware training and the
accuracy–energy frontier").
``synapse_loads`` counts each group's events per sample and synapses on the chip-exact run of a
probe of ``COST_PROBE_SAMPLES`` training samples spread over the split (this epoch's
augmentation), and ``spiking.prune_by_cost`` keeps, over all groups together, the weights of
most worth (squared magnitude over the group's mean) per cost ** ``cost_power`` until they carry
the fraction f of the events every eligible weight would: f is then a share of synaptic events,
not of weights. Ranking by worth per event (power 1) empties the dearest groups (measured:
README.md, "Energy-aware training and the accuracy–energy frontier"); 0.5, the default, spreads
the cut. It was fixed from these allocations on training data, before any accuracy was seen. The
cut is made only in the epochs where the schedule lowers f (the probe's costs move from epoch to
epoch; a held f must not keep cutting), and the first is made before any training step: start
it from a trained student (``init``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from mksgn import opcount

from .spiking import SynapseLoad

__all__ = ["EnergyConfig", "EnergyLoss", "synapse_loads", "probe_batch", "COST_PROBE_SAMPLES"]


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
    synapse_keep_by: ``count`` (that fraction of every group's weights) or ``energy`` (that
    fraction of the groups' synaptic events, cut where weights cost the most).
    cost_power: with ``energy``, how hard the cost weighs: weights ranked by squared magnitude
    (over the group's mean) per (events per synapse) ** cost_power, in [0, 1].
    """
    mode: Literal["off", "energy", "rate"] = "off"
    weight: float = 0.0
    profile: str = "loihi"
    target_rate: float = 0.05
    graph_keep: int | None = None
    synapse_keep: float | None = None
    synapse_keep_by: Literal["count", "energy"] = "count"
    cost_power: float = 0.5

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

    def synapse_cut(self, epoch: int, epochs: int) -> float | None:
        """The fraction to cut to at the start of ``epoch``, or None: only where the schedule
        lowers it (a held fraction is already cut)."""
        f = self.synapse_fraction(epoch, epochs)
        if f is None or (epoch > 0 and f >= self.synapse_fraction(epoch - 1, epochs)):
            return None
        return f

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
        if self.synapse_keep_by not in ("count", "energy"):
            raise ValueError(f"energy.synapse_keep_by must be 'count' or 'energy', "
                             f"got {self.synapse_keep_by!r}")
        if self.synapse_keep_by == "energy" and self.synapse_keep is None:
            raise ValueError("energy.synapse_keep_by: energy needs energy.synapse_keep (the "
                             "fraction of synaptic events kept)")
        if isinstance(self.cost_power, bool) or not 0 <= self.cost_power <= 1:
            raise ValueError(f"energy.cost_power must be in [0, 1], got {self.cost_power!r}")
        if self.mode == "energy":
            _prices(self.profile)


def _prices(profile: str) -> opcount.SpikePrices:
    from mksgn.profiles import load_profile
    return opcount.spike_prices(load_profile(profile))


COST_PROBE_SAMPLES = 16


def probe_batch(ds, n: int = COST_PROBE_SAMPLES) -> torch.Tensor:
    """Inputs of ``n`` samples spread evenly over ``ds`` (a sorted split's classes all in it):
    the probe ``synapse_loads`` runs. Read with ``ds.sample(i)`` where the dataset has it (its
    augmentation for the epoch, without using up a training draw), else ``ds[i]``."""
    idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int)
    get = getattr(ds, "sample", None)
    return torch.stack([torch.as_tensor(get(int(i)) if get else ds[int(i)][0]) for i in idx])


@torch.no_grad()
def synapse_loads(student, x: torch.Tensor) -> dict[str, SynapseLoad]:
    """Synaptic events per sample and synapses (non-zero weights) of every synapse group
    pruning may thin (``Student.synapses()``): ``mksgn.opcount``'s exact count on the
    chip-exact run of the batch ``x`` (eval mode) through the converted network."""
    was = student.training
    student.eval()
    try:
        spikes, _ = student.simulate(x)
        net = student.to_network()
    finally:
        student.train(was)
    counts = {g: s.sum(dim=(0, 1)).cpu().numpy().astype(np.int64) for g, s in spikes.items()}
    terms = {t.name: t for t in opcount.spike_terms(net) if t.kind == "synapse"}
    nonzero = {syn.name: int(np.count_nonzero(syn.weight)) for syn in net.synapses}
    return {name: SynapseLoad(opcount.weigh(counts[terms[name].src], terms[name].synops)
                              / len(x), nonzero[name])
            for name, *_ in student.synapses()}


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
