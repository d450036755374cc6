"""The multi-stream GCN teacher: one CTR-GCN-class network per modality, scores summed.

MK-SGN (Zheng et al. 2024, arXiv 2404.10210) distils a "10-layer multimodal GCN" into its spiking
student but publishes neither code nor the teacher's details. Where the paper is silent we follow
CTR-GCN (Chen et al., ICCV 2021), the strong and widely reproduced baseline of that family:

- Block = channel-wise topology refinement graph conv (CTR-GC) over the layout's 3 spatial
  partitions + multi-scale temporal conv + block residual. CTR-GC: per partition, a shared
  topology (the partition matrix, learnable) is refined per channel by ``tanh`` of pairwise
  differences of temporally pooled joint embeddings (``conv1/conv2``, C/8 channels), lifted to C
  output channels (``conv4``) and scaled by a learned ``alpha`` (initially 0, so training starts
  from the plain graph); the refined (N, C, V, V) topology aggregates ``conv3(x)`` with einsum.
- Temporal part: CTR-GCN's multi-scale temporal conv, 4 branches of C/4 channels each: two
  (5, 1) convs with dilation 1 and 2, a (3, 1) max-pool branch and a 1x1 branch; each branch
  starts with a 1x1 conv + BN (+ ReLU), and the temporal stride is applied inside every branch.
- 10 blocks, widths 64-64-64-64-128-128-128-256-256-256 (``base_channels`` times
  1,1,1,1,2,2,2,4,4,4), temporal stride 2 at blocks 5 and 8 (T -> T/2 -> T/4); block 1 has no
  residual (3 input channels), as in CTR-GCN.
- Input normalisation: one BatchNorm over (M * V * C) channels (CTR-GCN's ``data_bn``).
- Persons: the M = 2 bodies are folded into the batch and their pooled features averaged before
  the classifier (CTR-GCN); the distillation features are averaged over persons too.
- Streams: one such network per modality (joint, bone, joint motion, bone motion); the ensemble's
  score is the sum of the stream scores, as CTR-GCN's 4-stream ensemble with equal weights. Each
  stream keeps its own cross entropy in training (``aux["stream/<m>"]`` logits), which with
  disjoint parameters is the same as training the four networks separately on the same batches.
- Initialisation: kaiming (fan out) convs, BN weight 1 except the graph conv's output BN (1e-6,
  so every block starts close to its residual), FC normal(0, sqrt(2 / classes)), as CTR-GCN.

Only plain torch ops (conv, BN, einsum, tanh, max-pool, mean) so that ONNX opset 17 exports it.
Distillation features: the output of every block, averaged over persons and over streams,
``features[i]`` (N, C_i, T_i, V). At base 64 on NTU (V = 25, T = 64) one stream has 1.4 M
parameters (``mksgn summary`` prints the exact count and MACs).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .common import ModelOutput

__all__ = ["TeacherConfig", "CTRGC", "GraphConv", "MultiScaleTemporalConv", "TeacherBlock",
           "TeacherStream", "Teacher", "build_teacher"]


@dataclass
class TeacherConfig:
    """Hyper-parameters of the multi-stream GCN teacher.

    modalities: one stream per modality, in the dataset's order.
    base_channels: width of blocks 1-4; ``widths`` are multipliers of it per block.
    strides: temporal stride per block. temporal_kernel / dilations: multi-scale TCN branches.
    rel_reduction: CTR-GC embedding channels = C_in // rel_reduction (8 when C_in is 3).
    persons, coords: M bodies and 3 coordinates per joint of the input.
    dropout: before the classifier (CTR-GCN: 0).
    """
    modalities: tuple[str, ...] = ("joint", "bone", "joint_motion", "bone_motion")
    base_channels: int = 64
    widths: tuple[int, ...] = (1, 1, 1, 1, 2, 2, 2, 4, 4, 4)
    strides: tuple[int, ...] = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
    temporal_kernel: int = 5
    dilations: tuple[int, ...] = (1, 2)
    rel_reduction: int = 8
    persons: int = 2
    coords: int = 3
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("modalities", "widths", "strides", "dilations"):
            setattr(self, name, tuple(getattr(self, name)))

    def validate(self) -> None:
        if len(self.widths) != len(self.strides) or not self.widths:
            raise ValueError("widths and strides need the same (non-zero) length")
        if not self.modalities:
            raise ValueError("the teacher needs at least one modality")
        branches = len(self.dilations) + 2
        for w in self.widths:
            if (w * self.base_channels) % branches:
                raise ValueError(f"channels {w * self.base_channels} not divisible by the "
                                 f"{branches} temporal branches")

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(w * self.base_channels for w in self.widths)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _conv_init(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _bn(c: int, scale: float = 1.0) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    nn.init.constant_(bn.weight, scale)
    nn.init.zeros_(bn.bias)
    return bn


class CTRGC(nn.Module):
    """Channel-wise topology refinement for one partition: (N, C_in, T, V) -> (N, C_out, T, V)."""

    def __init__(self, c_in: int, c_out: int, rel_reduction: int = 8):
        super().__init__()
        c_rel = 8 if c_in <= 9 else c_in // rel_reduction
        self.conv1 = nn.Conv2d(c_in, c_rel, 1)
        self.conv2 = nn.Conv2d(c_in, c_rel, 1)
        self.conv3 = nn.Conv2d(c_in, c_out, 1)
        self.conv4 = nn.Conv2d(c_rel, c_out, 1)
        for c in (self.conv1, self.conv2, self.conv3, self.conv4):
            _conv_init(c)

    def forward(self, x: torch.Tensor, a: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        q = self.conv1(x).mean(2)                       # (N, R, V) joint embeddings, T pooled
        k = self.conv2(x).mean(2)
        rel = torch.tanh(q.unsqueeze(-1) - k.unsqueeze(-2))   # (N, R, V, V) pairwise differences
        topo = self.conv4(rel) * alpha + a              # (N, C_out, V, V), a: shared (V, V)
        return torch.einsum("ncuv,nctv->nctu", topo, self.conv3(x))


class GraphConv(nn.Module):
    """CTR-GCN's spatial unit: sum of CTR-GC over the partitions, BN, residual, ReLU."""

    def __init__(self, c_in: int, c_out: int, partitions: np.ndarray, rel_reduction: int = 8):
        super().__init__()
        self.topology = nn.Parameter(torch.as_tensor(np.asarray(partitions, np.float32)).clone())
        self.alpha = nn.Parameter(torch.zeros(1))
        self.convs = nn.ModuleList(CTRGC(c_in, c_out, rel_reduction)
                                   for _ in range(self.topology.shape[0]))
        self.bn = _bn(c_out, 1e-6)
        if c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1), _bn(c_out))
            _conv_init(self.down[0])
        else:
            self.down = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = None
        for i, conv in enumerate(self.convs):
            z = conv(x, self.topology[i], self.alpha)
            y = z if y is None else y + z
        return F.relu(self.bn(y) + self.down(x))


class _TemporalUnit(nn.Sequential):
    """(k, 1) conv with temporal stride and dilation, then BN (CTR-GCN's ``TemporalConv``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1):
        pad = (kernel + (kernel - 1) * (dilation - 1) - 1) // 2
        conv = nn.Conv2d(c_in, c_out, (kernel, 1), (stride, 1), (pad, 0), (dilation, 1))
        _conv_init(conv)
        super().__init__(conv, _bn(c_out))


class MultiScaleTemporalConv(nn.Module):
    """Multi-scale temporal conv: (N, C_in, T, V) -> (N, C_out, ceil(T / stride), V)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 5, stride: int = 1,
                 dilations: tuple[int, ...] = (1, 2)):
        super().__init__()
        n_branches = len(dilations) + 2
        cb = c_out // n_branches

        def entry() -> list[nn.Module]:
            conv = nn.Conv2d(c_in, cb, 1)
            _conv_init(conv)
            return [conv, _bn(cb), nn.ReLU(inplace=True)]

        branches = [nn.Sequential(*entry(), _TemporalUnit(cb, cb, kernel, stride, d))
                    for d in dilations]
        branches.append(nn.Sequential(*entry(), nn.MaxPool2d((3, 1), (stride, 1), (1, 0)), _bn(cb)))
        one = nn.Conv2d(c_in, cb, 1, (stride, 1))
        _conv_init(one)
        branches.append(nn.Sequential(one, _bn(cb)))
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class TeacherBlock(nn.Module):
    """GraphConv -> MultiScaleTemporalConv, plus the block residual, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int, partitions: np.ndarray,
                 cfg: TeacherConfig, residual: bool = True):
        super().__init__()
        self.gcn = GraphConv(c_in, c_out, partitions, cfg.rel_reduction)
        self.tcn = MultiScaleTemporalConv(c_out, c_out, cfg.temporal_kernel, stride, cfg.dilations)
        if not residual:
            self.residual = None
        elif c_in == c_out and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = _TemporalUnit(c_in, c_out, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.gcn(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return F.relu(y)


class TeacherStream(nn.Module):
    """One modality's network: x (N, C, T, V, M) -> (logits (N, classes), block features).

    Block features are (N, C_i, T_i, V), averaged over the M persons.
    """

    def __init__(self, cfg: TeacherConfig, num_classes: int, partitions: np.ndarray):
        super().__init__()
        v = partitions.shape[-1]
        self.persons = cfg.persons
        self.data_bn = nn.BatchNorm1d(cfg.persons * v * cfg.coords)
        c, layers = cfg.coords, []
        for i, (co, st) in enumerate(zip(cfg.channels, cfg.strides)):
            layers.append(TeacherBlock(c, co, st, partitions, cfg, residual=i > 0))
            c = co
        self.layers = nn.ModuleList(layers)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.fc = nn.Linear(c, num_classes)
        nn.init.normal_(self.fc.weight, 0.0, math.sqrt(2.0 / num_classes))
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        n, c, t, v, m = x.shape
        # (N, C, T, V, M) -> (N, M*V*C, T): normalise every (person, joint, coordinate) channel
        x = x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t)
        x = self.data_bn(x)
        x = x.reshape(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x.reshape(n, m, *x.shape[1:]).mean(1))
        pooled = x.reshape(n, m, x.shape[1], -1).mean(3).mean(1)   # (N, C): over T*V, then persons
        return self.fc(self.drop(pooled)), feats


class Teacher(nn.Module):
    """The K-stream ensemble. ``forward(x (N, K, 3, T, V, M)) -> ModelOutput``:

    logits (N, classes) = sum of the stream logits; features[i] (N, C_i, T_i, V) = block i's
    output averaged over persons and streams; aux ``"stream/<modality>"`` = each stream's logits.
    """

    def __init__(self, cfg: TeacherConfig, num_classes: int, layout):
        super().__init__()
        cfg.validate()
        self.cfg, self.num_classes, self.layout = cfg, int(num_classes), layout
        parts = np.asarray(layout.partitions(), np.float32)
        self.streams = nn.ModuleList(TeacherStream(cfg, num_classes, parts) for _ in cfg.modalities)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        k = len(self.cfg.modalities)
        if not torch.jit.is_tracing() and (x.dim() != 6 or x.shape[1] != k):
            raise ValueError(f"x must be (N, {k}, 3, T, V, M), got {tuple(x.shape)}")
        logits, feats, aux = None, None, {}
        for i, (m, stream) in enumerate(zip(self.cfg.modalities, self.streams)):
            lg, fs = stream(x[:, i])
            aux[f"stream/{m}"] = lg
            logits = lg if logits is None else logits + lg
            feats = fs if feats is None else [a + b for a, b in zip(feats, fs)]
        return ModelOutput(logits=logits, features=[f / k for f in feats], aux=aux)

    def stream_loss(self, out: ModelOutput, y: torch.Tensor) -> torch.Tensor:
        """Sum over streams of each stream's cross entropy (the teacher's training loss)."""
        return sum(F.cross_entropy(out.aux[f"stream/{m}"], y) for m in self.cfg.modalities)


def build_teacher(cfg: TeacherConfig, num_classes: int, layout) -> Teacher:
    """The multi-stream teacher for ``num_classes`` classes on skeleton ``layout`` (a data Layout)."""
    return Teacher(cfg, num_classes, layout)
