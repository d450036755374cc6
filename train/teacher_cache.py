"""The frozen teacher's outputs kept per augmentation draw, so that it runs once per draw
instead of once per training batch (``kd.teacher_draws``).

A distilled student's step spends a third of its time in the teacher's forward (README,
``benchmarks/train_throughput.py``); the teacher's output depends only on its input, and the
training data's random draws depend only on (seed, epoch, sample). With ``teacher_draws = N``
epoch ``e`` draws its augmentations as epoch ``e mod N`` would: the first time a draw comes up
the teacher runs over the whole training split on it (in index order, fixed batches, so a
resumed run computes the same values), and what distillation needs of it (the logits and the
FTM targets, already pooled to the FTMs' frame counts) is kept in memory for the later epochs
of that draw. The price is fewer distinct augmentations (N per sample instead of one per
epoch); the memory is (classes + the targets' sizes) floats per sample and draw.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .common import ModelOutput
from .distill import Distiller

__all__ = ["TeacherCache", "Indexed"]


class Indexed(Dataset):
    """``ds`` whose items carry their index: ``(x, y, index)``."""

    def __init__(self, ds: Dataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int):
        x, y = self.ds[index]
        return x, y, index


@dataclass
class _Draw:
    """The teacher on one draw of every training sample: logits (n, classes) and the FTM
    targets [(n, C_t, T, V) per matched stage]."""
    logits: torch.Tensor
    targets: list[torch.Tensor]


class TeacherCache:
    """The teacher's outputs on ``draws`` augmentation draws of the training split."""

    def __init__(self, teacher: nn.Module, distiller: Distiller, draws: int, batch_size: int,
                 device: torch.device):
        stages = [ti for _, ti in distiller.kd.stages] if distiller.ftm else []
        if len(set(stages)) != len(stages):
            raise ValueError(f"kd.teacher_draws: kd.stages {list(distiller.kd.stages)} match a "
                             f"teacher stage twice; the kept targets need one stage each")
        self.teacher, self.distiller, self._stages = teacher, distiller, stages
        self.draws, self.batch_size, self.device = int(draws), int(batch_size), device
        self._kept: dict[int, _Draw] = {}

    def draw_of(self, epoch: int) -> int:
        """The augmentation draw epoch ``epoch`` (0-based) trains on."""
        return epoch % self.draws

    def prepare(self, ds: Dataset, epoch: int) -> int:
        """Compute the draw of ``epoch`` if not kept yet; returns the draw."""
        draw = self.draw_of(epoch)
        if draw not in self._kept:
            self._kept[draw] = self._run_teacher(ds, draw)
        return draw

    @torch.no_grad()
    def _run_teacher(self, ds: Dataset, draw: int) -> _Draw:
        ds.set_epoch(draw)
        logits, targets = [], []
        # its own generator: a DataLoader's iterator otherwise takes a number from torch's
        # global one, and a resumed run (which computes draws an unbroken one kept) would
        # continue that sequence elsewhere
        batches = DataLoader(ds, batch_size=self.batch_size, shuffle=False,
                             generator=torch.Generator())
        for x, _ in batches:
            out = self.teacher(x.to(self.device))
            logits.append(out.logits)
            targets.append(self.distiller.targets(out.features))
        return _Draw(torch.cat(logits), [torch.cat(t) for t in zip(*targets)])

    def outputs(self, draw: int, index: torch.Tensor) -> ModelOutput:
        """The teacher's output on draw ``draw`` of the samples ``index``, as the distiller
        reads it (each FTM target at its teacher stage; the other stages empty)."""
        kept = self._kept[draw]
        index = index.to(kept.logits.device)
        features: list = [None] * (max(self._stages, default=-1) + 1)
        for ti, target in zip(self._stages, kept.targets):
            features[ti] = target[index]
        return ModelOutput(kept.logits[index], features)
