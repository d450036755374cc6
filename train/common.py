"""Small types shared by the teacher and the student models."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["ModelOutput"]


@dataclass
class ModelOutput:
    """What a model's ``forward(x)`` returns.

    logits: (N, num_classes) class scores.
    features: per-stage feature maps (N, C_i, T_i, V) for distillation (student: spike rates, the
        mean of the spikes over the simulation steps, in [0, 1]; teacher: activations).
    aux: optional named extra outputs, e.g. the student's per-modality auxiliary logits
        ``{"aux/joint": (N, num_classes), ...}`` used by its mutual-information loss term.
    spikes: spiking students: per neuron group, its spikes at the steps the forward simulated,
        (N, *group shape, L) float, differentiable (energy-aware training).
    """
    logits: torch.Tensor
    features: list[torch.Tensor]
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    spikes: dict[str, torch.Tensor] = field(default_factory=dict)
