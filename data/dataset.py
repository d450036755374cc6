"""``SkeletonDataset``: the torch Dataset over a prepared benchmark directory.

Per draw: read one padded (C, T_max, V, M) sample (memory-mapped), crop-resize its valid frames
to ``window`` (random interval p ~ U(0.5, 1) when training, central 95 % when testing, as
CTR-GCN), optionally rotate it (training only), then compute the requested modalities.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .layouts import Layout, get_layout
from .modalities import MODALITIES, compute
from .preprocess import random_rotate, valid_crop_resize

__all__ = ["SkeletonDataset", "TRAIN_P_INTERVAL", "TEST_P_INTERVAL"]

TRAIN_P_INTERVAL = (0.5, 1.0)
TEST_P_INTERVAL = (0.95,)


class SkeletonDataset(Dataset):
    """Samples ``(x, y)``: x float32 (K, 3, window, V, 2) for K modalities in the given order, y int.

    Args:
        prepared_dir: a benchmark directory written by ``mksgn data prepare`` (has info.json).
        split: ``"train"`` or ``"test"``.
        window: frames after crop-resize.
        modalities: any of joint, bone, joint_motion, bone_motion.
        train: random crop (and rotation if ``rotate``); default ``split == "train"``.
        rotate: random 3-D rotation (training only), angles ~ U(-0.3, 0.3) rad.
        seed: augmentation seed. Draws are reproducible: sample i's n-th draw in epoch e uses
            ``default_rng([seed, e, i, n])``; call :meth:`set_epoch` each epoch when DataLoader
            workers are re-created, as with ``DistributedSampler``.
    """

    def __init__(self, prepared_dir: Path, split: str, window: int = 64,
                 modalities: Sequence[str] = MODALITIES, train: bool | None = None,
                 rotate: bool = False, seed: int = 0):
        self.dir = Path(prepared_dir)
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        info_path = self.dir / "info.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{info_path}: missing; run `mksgn data prepare` first")
        self.info = json.loads(info_path.read_text())
        self.split = split
        self.window = int(window)
        self.modalities = tuple(modalities)
        bad = [m for m in self.modalities if m not in MODALITIES]
        if bad or not self.modalities:
            raise ValueError(f"unknown modalities {bad}; choose from {', '.join(MODALITIES)}")
        self.train = (split == "train") if train is None else bool(train)
        self.rotate = rotate
        self.seed = seed
        self.epoch = 0
        self._draws: dict[int, int] = {}
        self._layout = get_layout(self.info["layout"])
        self.data = np.load(self.dir / f"{split}_data.npy", mmap_mode="r")
        self.labels = np.load(self.dir / f"{split}_label.npy")
        meta = json.loads((self.dir / f"{split}_meta.json").read_text())
        self.names: list[str] = meta["names"]
        self.num_frames = np.asarray(meta["num_frames"], np.int64)
        if not (len(self.data) == len(self.labels) == len(self.names) == len(self.num_frames)):
            raise ValueError(f"{self.dir}: {split} arrays disagree in length")

    @property
    def num_classes(self) -> int:
        return int(self.info["num_classes"])

    @property
    def layout(self) -> Layout:
        return self._layout

    @property
    def num_joints(self) -> int:
        return self._layout.num_joints

    def set_epoch(self, epoch: int) -> None:
        # The n-th draw of a sample is counted within an epoch, so a resumed run (a new process)
        # draws the same augmentations as an unbroken one.
        self.epoch = int(epoch)
        self._draws.clear()

    def __len__(self) -> int:
        return len(self.labels)

    def sample(self, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """The numpy array x (K, C, window, V, M) of one sample (deterministic if not training)."""
        x = np.asarray(self.data[index], dtype=np.float32)
        if self.train:
            rng = rng if rng is not None else np.random.default_rng([self.seed, self.epoch, index])
            x = valid_crop_resize(x, int(self.num_frames[index]), self.window, TRAIN_P_INTERVAL, rng)
            if self.rotate:
                x = random_rotate(x, rng)
        else:
            x = valid_crop_resize(x, int(self.num_frames[index]), self.window, TEST_P_INTERVAL)
        return compute(x, self.modalities, self._layout).astype(np.float32, copy=False)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index = index % len(self)
        rng = None
        if self.train:
            n = self._draws.get(index, 0)
            self._draws[index] = n + 1
            rng = np.random.default_rng([self.seed, self.epoch, index, n])
        return torch.from_numpy(np.ascontiguousarray(self.sample(index, rng))), int(self.labels[index])
