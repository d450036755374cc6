"""Knowledge distillation from the frozen GCN teacher into the spiking student.

MK-SGN (arXiv 2404.10210) distils inner-layer features through a Feature Translation Module
(FTM) and the teacher's soft labels; the paper gives no layer details, so the choices here are:

- FTM, one per matched stage: student spike rates (N, C_s, T_s, V) -> 1x1 conv (no bias) + BN ->
  (N, C_t, T, V): a per-frame, per-joint linear map from the student's channels into the
  teacher's, the smallest module that can align two feature spaces of different widths (FitNets'
  regressor, as a 1x1 conv). The joints agree (same layout); the frame counts may not: the finer
  of the two maps is average-pooled to the coarser one's T. Pooling the teacher's target instead
  of up-sampling the student gives the same gradient up to a constant for integer ratios
  (``MSE(up(s), t) = const + MSE(s, pool(t)) / r``) at a fraction of the cost.
- Feature loss: mean squared error between FTM(student) and the teacher features, averaged over
  stages. The FTM is trained jointly with the student and thrown away afterwards: it is not part
  of the deployed network.
- Soft labels: Hinton's ``T^2 KL(softmax(z_t / T) || softmax(z_s / T))`` (batch mean); ``T^2``
  keeps its gradient scale independent of ``T``. ``z_t`` is the *mean* of the teacher's stream
  logits (its ``logits`` are their sum): the same ranking, but a K-stream sum is K times sharper
  than one network's scores: with the sum the soft term dwarfed the cross entropy, with the
  mean the two are of one order (README.md, "Measurements behind the student's choices").
- The teacher is frozen: eval mode (BN running statistics), no gradients, its forward under
  ``torch.no_grad``. It may have fewer streams than the student has modalities (e.g. joint and
  bone for a student of four): ``teacher_view`` hands it its own modalities of the student's
  input, picked by name.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import ModelOutput
from .config import KDConfig

__all__ = ["FeatureTranslation", "Distiller", "TeacherTargets", "soft_label_loss",
           "feature_loss", "freeze", "ModalitySubset", "teacher_view"]


def soft_label_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    """``T^2 KL(p_t || p_s)`` with ``p = softmax(logits / T)``, mean over the batch. Scalar >= 0;
    exactly 0 when the logits are equal."""
    t = float(temperature)
    log_s = F.log_softmax(student_logits / t, dim=1)
    log_t = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * (t * t)


def _pool_time(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(N, C, T, V) -> (N, C, frames, V) by average pooling over T (no-op when equal)."""
    if x.shape[2] == frames:
        return x
    return F.adaptive_avg_pool2d(x, (frames, x.shape[3]))


class FeatureTranslation(nn.Module):
    """FTM for one stage: rates (N, C_s, T_s, V) -> (N, C_t, min(T_s, T_t), V)."""

    def __init__(self, c_student: int, c_teacher: int, t_student: int, t_teacher: int):
        super().__init__()
        self.frames = min(t_student, t_teacher)
        self.conv = nn.Conv2d(c_student, c_teacher, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_teacher)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(_pool_time(s, self.frames)))

    def target(self, t: torch.Tensor) -> torch.Tensor:
        """The teacher feature at this FTM's frame count."""
        return _pool_time(t, self.frames)


def feature_loss(translated: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
    """Mean over stages of the MSE between translated student features and teacher targets."""
    losses = [F.mse_loss(s, t) for s, t in zip(translated, targets)]
    return torch.stack(losses).mean()


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients, in place; returns ``model``."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class ModalitySubset(nn.Module):
    """A teacher fed the student's input (N, K, 3, T, V, M) when it was trained on some of
    the student's K modalities: it sees x[:, index], its own modalities in its own order."""

    def __init__(self, teacher: nn.Module, index: tuple[int, ...]):
        super().__init__()
        self.teacher, self.index = teacher, tuple(index)

    @property
    def streams(self) -> nn.ModuleList:
        return self.teacher.streams

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return self.teacher(x[:, list(self.index)])


def teacher_view(teacher: nn.Module, student_modalities) -> nn.Module:
    """``teacher`` as it takes the student's input: itself when their modalities agree, else a
    ModalitySubset. ValueError when the teacher needs a modality the student's data lacks."""
    own, given = tuple(teacher.cfg.modalities), tuple(student_modalities)
    if own == given:
        return teacher
    missing = [m for m in own if m not in given]
    if missing:
        raise ValueError(f"teacher modalities {list(own)} need {missing}, which the student's "
                         f"{list(given)} lack")
    return ModalitySubset(teacher, tuple(given.index(m) for m in own))


@dataclass
class TeacherTargets:
    """What distillation reads of the teacher's output on a batch: its logits (N, classes) and
    the FTM targets [(N, C_t, T, V) per matched stage, pooled to the FTM's frames]."""
    logits: torch.Tensor
    targets: list[torch.Tensor]

    def rows(self, index: torch.Tensor) -> "TeacherTargets":
        return TeacherTargets(self.logits[index], [t[index] for t in self.targets])

    def to(self, device: torch.device) -> "TeacherTargets":
        return TeacherTargets(self.logits.to(device, non_blocking=True),
                              [t.to(device, non_blocking=True) for t in self.targets])

    @classmethod
    def cat(cls, parts: list["TeacherTargets"]) -> "TeacherTargets":
        return cls(torch.cat([p.logits for p in parts]),
                   [torch.cat(ts) for ts in zip(*(p.targets for p in parts))])


class Distiller(nn.Module):
    """The FTMs of the matched stages and the combined distillation loss.

    ``loss(student_out, teacher_out, y, mi=None)`` -> (total, parts) with parts
    ``{"ce", "soft", "ftm", "mi"}`` (floats of the enabled terms, unweighted); ``teacher_out``:
    the teacher's ModelOutput, or what ``teach`` keeps of one (``train.teacher_cache``).
    """

    def __init__(self, kd: KDConfig, student_shapes: list[tuple[int, int]],
                 teacher_shapes: list[tuple[int, int]], teacher_streams: int = 1):
        super().__init__()
        self.kd = kd
        self.teacher_streams = int(teacher_streams)   # soft labels use logits / streams
        self.ftm = nn.ModuleList()
        if kd.use_ftm:
            for si, ti in kd.stages:
                if not (0 <= si < len(student_shapes) and 0 <= ti < len(teacher_shapes)):
                    raise ValueError(f"kd.stages pair ({si}, {ti}) out of range: the student has "
                                     f"{len(student_shapes)} feature stages, the teacher "
                                     f"{len(teacher_shapes)}")
                (cs, ts), (ct, tt) = student_shapes[si], teacher_shapes[ti]
                self.ftm.append(FeatureTranslation(cs, ct, ts, tt))

    @classmethod
    def for_models(cls, kd: KDConfig, student: nn.Module, teacher: nn.Module,
                   sample: torch.Tensor) -> "Distiller":
        """Build the FTMs from the feature shapes of one forward of both models on ``sample``
        (a small batch (n, K, 3, T, V, M)); the models' modes are restored afterwards."""
        shapes = []
        for model in (student, teacher):
            was = model.training
            model.eval()
            try:
                with torch.no_grad():
                    out = model(sample)
            finally:
                model.train(was)
            shapes.append([(f.shape[1], f.shape[2]) for f in out.features])
        return cls(kd, shapes[0], shapes[1], len(getattr(teacher, "streams", ())) or 1)

    def translate(self, student_features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [ftm(student_features[si]) for ftm, (si, _) in zip(self.ftm, self.kd.stages)]

    def targets(self, teacher_features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [ftm.target(teacher_features[ti]) for ftm, (_, ti) in zip(self.ftm, self.kd.stages)]

    def teach(self, t: ModelOutput) -> TeacherTargets:
        """What the loss reads of the teacher's output ``t``."""
        return TeacherTargets(t.logits, self.targets(t.features))

    def loss(self, s: ModelOutput, t: ModelOutput | TeacherTargets | None, y: torch.Tensor,
             mi: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        kd = self.kd
        if isinstance(t, ModelOutput):
            t = self.teach(t)
        ce = F.cross_entropy(s.logits, y)
        total = kd.w_ce * ce
        parts = {"ce": float(ce.detach())}
        if kd.use_soft:
            soft = soft_label_loss(s.logits, t.logits / self.teacher_streams, kd.temperature)
            total = total + kd.w_soft * soft
            parts["soft"] = float(soft.detach())
        if kd.use_ftm:
            ftm = feature_loss(self.translate(s.features), t.targets)
            total = total + kd.w_ftm * ftm
            parts["ftm"] = float(ftm.detach())
        if mi is not None and kd.w_mi > 0:
            total = total + kd.w_mi * mi
            parts["mi"] = float(mi.detach())
        return total, parts

    @property
    def needs_teacher(self) -> bool:
        return self.kd.use_soft or self.kd.use_ftm
