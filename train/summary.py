"""Parameter counts and multiply-accumulates (MACs) of the teacher and the student.

MACs are counted on one sample (batch 1) by torch's own ``FlopCounterMode``, which intercepts the
aten ops every conv, linear, einsum and matmul lowers to (convolution, mm, addmm, bmm, baddbmm)
and counts 2 FLOPs per multiply-accumulate; MACs = FLOPs / 2. Element-wise ops (BN, ReLU, tanh,
neuron updates, pooling) are not counted, the usual convention (CTR-GCN's and the SNN papers'
"MACs"/"FLOPs" figures count the same ops). For the spiking student the count is the *dense*
equivalent over its S simulated steps (every synapse evaluated every step); the energy stage
prices the actual spikes instead.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["ModelSummary", "count_params", "count_macs", "summarize", "input_shape"]


@dataclass
class ModelSummary:
    """kind: teacher|student; params: trainable parameters; macs: per sample; input: shape used;
    streams: teacher streams (params/macs per stream = total / streams); neurons: student neuron
    count (None for the teacher)."""
    kind: str
    params: int
    macs: int
    input: tuple[int, ...]
    streams: int = 1
    neurons: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input"] = list(self.input)
        return d


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs of ``model(x)`` (eval mode) as counted by ``FlopCounterMode`` / 2."""
    from torch.utils.flop_counter import FlopCounterMode
    was = model.training
    model.eval()
    try:
        # with grad enabled: FlopCounterMode's module tracker hooks parameters passed as
        # arguments (the teacher's alpha), which fails under no_grad (torch 2.x)
        with torch.enable_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was)
    return int(counter.get_total_flops()) // 2


def input_shape(kind: str, model_cfg, window: int, num_joints: int) -> tuple[int, ...]:
    """One sample's input (1, K, 3, T, V, M)."""
    mods = len(model_cfg.modalities)
    frames = getattr(model_cfg, "frames", window) if kind == "student" else window
    return (1, mods, getattr(model_cfg, "coords", 3), frames, num_joints,
            getattr(model_cfg, "persons", 2))


def summarize(model: nn.Module, kind: str, shape: tuple[int, ...]) -> ModelSummary:
    """Parameters and MACs of ``model`` on a random input of ``shape`` (batch 1)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 0.1
    dev = next(model.parameters()).device
    macs = count_macs(model, x.to(dev))
    neurons = model.neuron_count() if hasattr(model, "neuron_count") else None
    streams = len(getattr(model, "streams", [])) or 1
    return ModelSummary(kind, count_params(model), macs, tuple(shape), streams, neurons)
