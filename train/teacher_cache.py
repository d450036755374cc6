"""The frozen teacher's outputs kept per augmentation draw, so that it runs once per draw
instead of once per training batch (``kd.teacher_draws``).

The teacher's forward is a large share of a distilled student's step (``benchmarks/
train_throughput.py`` prints it), and its output depends only on its input. The training
data's random draws depend on (seed, epoch, sample) and, in ``SkeletonDataset``, on how often
the sample was read in the epoch: the training loop sets the epoch's draw before the teacher's
pass over the split and again before the training pass, so both read each sample's first
draw. With ``teacher_draws = N`` epoch ``e`` draws as epoch ``e mod N``; the first time a draw
comes up the teacher runs over the whole training split on it (index order, fixed batches: a
resumed run, which computes its draws anew, gets the same values) and what distillation reads
of it (``Distiller.teach``: logits, FTM targets) is kept in CPU memory for that draw's later
epochs. The price is fewer distinct augmentations (N per sample instead of one per epoch);
the memory, (classes + the FTM targets' sizes) floats per sample and draw, is held by every
process of a distributed run, each of which runs the teacher over the whole split.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .distill import Distiller, TeacherTargets

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


class TeacherCache:
    """The teacher's outputs on ``draws`` augmentation draws of the training split."""

    def __init__(self, teacher: nn.Module, distiller: Distiller, draws: int, batch_size: int,
                 device: torch.device, workers: int = 0):
        self.teacher, self.distiller = teacher, distiller
        self.draws, self.batch_size, self.device = int(draws), int(batch_size), device
        self.workers = int(workers)
        self._kept: dict[int, TeacherTargets] = {}

    def draw_of(self, epoch: int) -> int:
        """The augmentation draw epoch ``epoch`` (0-based) trains on."""
        return epoch % self.draws

    def has(self, draw: int) -> bool:
        return draw in self._kept

    @torch.no_grad()
    def keep(self, draw: int, ds: Dataset) -> None:
        """Run the teacher over ``ds`` as it draws now (the caller set it to ``draw``)."""
        # its own generator: a DataLoader's iterator otherwise takes a number from torch's
        # global one, and a resumed run (which computes draws an unbroken one kept) would
        # continue that sequence elsewhere
        batches = DataLoader(ds, batch_size=self.batch_size, shuffle=False,
                             num_workers=self.workers, generator=torch.Generator())
        parts = [self.distiller.teach(self.teacher(x.to(self.device))).to(torch.device("cpu"))
                 for x, _ in batches]
        self._kept[draw] = TeacherTargets.cat(parts)

    def outputs(self, draw: int, index: torch.Tensor) -> TeacherTargets:
        """The kept teacher outputs of the samples ``index`` on draw ``draw``."""
        return self._kept[draw].rows(index.cpu()).to(self.device)
