"""Tiny stand-ins for the training tests: a learnable fake skeleton dataset, a small student.

``FakeSkeletons`` follows the data stage's ``SkeletonDataset`` contract (x float32 (K, 3, T, V, 2),
y int, ``num_classes``, ``layout``, ``set_epoch``) with classes that differ in which joints
oscillate and how fast, plus per-draw noise that depends on (seed, epoch, index) in training, as
the real dataset's augmentation does.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from mksgn.data.layouts import get_layout
from mksgn.train.common import ModelOutput


class FakeSkeletons(Dataset):
    def __init__(self, n: int = 24, num_classes: int = 4, window: int = 8, modalities: int = 2,
                 layout: str = "ucla20", train: bool = True, seed: int = 0, data_seed: int = 0):
        self.layout = get_layout(layout)
        self.num_classes, self.train, self.seed, self.epoch = num_classes, train, seed, 0
        v = self.layout.num_joints
        rng = np.random.default_rng(data_seed)
        t = np.arange(window, dtype=np.float32)
        xs, ys = [], []
        for i in range(n):
            c = i % num_classes
            x = rng.normal(0, 0.05, (3, window, v, 2)).astype(np.float32)
            joints = [(c * 3 + j) % v for j in range(4)]
            x[:, :, joints, 0] += np.sin(t * (0.5 + 0.4 * c))[None, :, None]
            x = np.stack([x * (k + 1) for k in range(modalities)])
            xs.append(x)
            ys.append(c)
        self.x = np.stack(xs)
        self.y = np.asarray(ys, np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x = self.x[i]
        if self.train:
            x = x + np.random.default_rng([self.seed, self.epoch, i]).normal(0, 0.05, x.shape)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(self.y[i])


class StandInStudent(nn.Module):
    """A small non-spiking model with the student's interface: features = sigmoid "rates"
    (N, C_i, T_i, V) of 3 stages (T halved at stage 2), logits, no BN randomness."""

    def __init__(self, num_classes: int, modalities: int = 2, channels=(6, 8, 10)):
        super().__init__()
        c_in = 3 * 2 * modalities
        self.convs = nn.ModuleList()
        for i, c in enumerate(channels):
            self.convs.append(nn.Conv2d(c_in, c, (3, 1), (2 if i == 1 else 1, 1), (1, 0)))
            c_in = c
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        n, k, c, t, v, m = x.shape
        h = x.permute(0, 1, 2, 5, 3, 4).reshape(n, k * c * m, t, v)
        feats = []
        for conv in self.convs:
            h = torch.sigmoid(conv(h))
            feats.append(h)
        return ModelOutput(self.fc(h.mean((2, 3))), feats)


def fake_splits(modalities: int = 2) -> tuple[FakeSkeletons, FakeSkeletons]:
    """(train, test) of the loop tests: 24 augmented training samples, 12 test samples."""
    return (FakeSkeletons(24, 4, 8, modalities, train=True, seed=0),
            FakeSkeletons(12, 4, 8, modalities, train=False, data_seed=1))


def stable(rows: list[dict]) -> list[dict]:
    """Metrics rows without the wall-clock time."""
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def train_tiny_teacher(out):
    """A 2-epoch tiny teacher trained on ``fake_splits()`` into ``out``; returns ``out``."""
    from mksgn.train.loop import train
    torch.set_num_threads(1)
    cfg = tiny_teacher_config()
    cfg.optim.epochs = 2
    train(cfg, out, datasets=fake_splits(), progress=False)
    return out


def tiny_teacher_config(modalities=("joint", "bone"), **kw):
    from mksgn.train.config import RunConfig
    from mksgn.train.teacher import TeacherConfig
    cfg = RunConfig(kind="teacher", seed=0, device="cpu", batch_size=8)
    cfg.model = TeacherConfig(modalities=modalities, base_channels=4,
                              widths=(1, 2, 2), strides=(1, 2, 1))
    cfg.data.window = 8
    cfg.optim.epochs = 4
    cfg.optim.warmup_epochs = 1
    cfg.optim.schedule = "cosine"
    cfg.optim.lr = 0.05
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def logits_loss(model, x, y):
    return F.cross_entropy(model(x).logits, y)


def tiny_student_config(modalities=("joint", "bone"), teacher: str = "", **kd):
    """A 6-block student on 8-frame UCLA-layout inputs, 4 channels (fast on CPU)."""
    from mksgn.train.config import RunConfig
    from mksgn.train.student import StudentConfig
    cfg = RunConfig(kind="student", seed=0, device="cpu", batch_size=8, teacher=teacher)
    cfg.model = StudentConfig.small(modalities=modalities, frames=8, stem_channels=4,
                                    channels=(4, 4, 4, 4, 4, 4), temporal_kernel=3)
    cfg.data.window = 8
    cfg.optim.name = "adamw"
    cfg.optim.lr = 1e-2
    cfg.optim.weight_decay = 0.0
    cfg.optim.epochs = 4
    cfg.optim.warmup_epochs = 0
    cfg.optim.schedule = "cosine"
    cfg.kd.stages = ((1, 1), (5, 2))
    for k, v in kd.items():
        setattr(cfg.kd, k, v)
    return cfg


def global_batch(n: int = 8, num_classes: int = 4, window: int = 8, modalities: int = 2):
    ds = FakeSkeletons(n, num_classes, window, modalities, train=False, data_seed=3)
    xs, ys = zip(*(ds[i] for i in range(n)))
    return torch.stack(xs), torch.tensor(ys)


def build_objective(kind: str, teacher_dir: str | None = None):
    """(objective, teacher or None) for the DDP gradient test, identical in every process."""
    from mksgn.train.checkpoint import build_model, load_model
    from mksgn.train.distill import Distiller, freeze
    from mksgn.train.loop import Objective
    layout = get_layout("ucla20")
    torch.manual_seed(0)
    if kind == "teacher":
        cfg = tiny_teacher_config()
        return Objective(build_model("teacher", cfg.model, 4, layout), "teacher"), None
    cfg = tiny_student_config(teacher=teacher_dir)
    model = build_model("student", cfg.model, 4, layout)
    teacher = freeze(load_model(teacher_dir)[0])
    x, _ = global_batch()
    distiller = Distiller.for_models(cfg.kd, model, teacher, x[:2])
    return Objective(model, "student", distiller), teacher


def ddp_grad_worker(rank: int, world: int, init_file: str, out_dir: str, teacher_dir: str) -> None:
    """One DDP process: gradients of its shard of the global batch, for BN in train and eval mode."""
    import torch.distributed as dist

    from mksgn.train.loop import DistInfo, wrap_distributed
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, y = global_batch()
        h = len(y) // world
        xs, ys = x[rank * h:(rank + 1) * h], y[rank * h:(rank + 1) * h]
        result = {}
        for kind in ("teacher", "student"):
            obj, teacher = build_objective(kind, teacher_dir)
            net = wrap_distributed(obj, DistInfo(rank, world), torch.device("cpu"))
            for mode in ("eval", "train"):  # eval first: BN running stats still the initial ones
                net.train(mode == "train")
                obj.zero_grad(set_to_none=True)
                t_out = teacher(xs) if teacher is not None else None
                loss, _, _ = net(xs, ys, t_out)
                loss.backward()
                result[f"{kind}/{mode}"] = {n: p.grad.clone() for n, p in obj.named_parameters()
                                            if p.grad is not None}
        torch.save(result, f"{out_dir}/grads{rank}.pt")
    finally:
        dist.destroy_process_group()


def write_prepared(root, n_train: int = 16, n_test: int = 8, num_classes: int = 4,
                   frames: int = 12, layout: str = "ucla20") -> "Path":
    """A tiny benchmark directory in the data stage's prepared format (root/xsub/...)."""
    import json
    from pathlib import Path
    d = Path(root) / "xsub"
    d.mkdir(parents=True, exist_ok=True)
    v = get_layout(layout).num_joints
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        ds = FakeSkeletons(n, num_classes, frames, 1, layout, train=False, data_seed=seed)
        np.save(d / f"{split}_data.npy", ds.x[:, 0])                  # (N, 3, T, V, 2)
        np.save(d / f"{split}_label.npy", ds.y)
        (d / f"{split}_meta.json").write_text(json.dumps(
            {"names": [f"s{i}" for i in range(n)], "num_frames": [frames] * n}))
    (d / "info.json").write_text(json.dumps(
        {"dataset": "fake", "benchmark": "xsub", "layout": layout, "num_classes": num_classes,
         "t_max": frames, "num_joints": v}))
    return d


def tiny_runs(root, epochs: int = 1) -> "Path":
    """A tiny prepared benchmark under ``root/prep``, the tiny configs as ``root/teacher.yaml``
    and ``root/student.yaml``, and their runs trained by ``mksgn train`` into ``root/teacher``
    and ``root/student`` (distilled from the teacher); returns ``root/prep``."""
    from pathlib import Path

    from click.testing import CliRunner

    from mksgn.pipeline.cli import main
    from mksgn.train.config import save_config
    root = Path(root)
    write_prepared(root / "prep")
    for kind, cfg in (("teacher", tiny_teacher_config()), ("student", tiny_student_config())):
        cfg.optim.epochs = epochs
        save_config(cfg, root / f"{kind}.yaml")
    for kind, extra in (("teacher", []), ("student", ["--teacher", str(root / "teacher")])):
        res = CliRunner().invoke(main, ["train", kind, "--config", str(root / f"{kind}.yaml"),
                                        "--data", str(root / "prep"), "--out", str(root / kind),
                                        "--no-progress", *extra])
        assert res.exit_code == 0, res.output
    return root / "prep"
