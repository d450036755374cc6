"""``SkeletonDataset``: the torch Dataset over a prepared benchmark directory.

Per draw: read one padded (C, T_max, V, M) sample (memory-mapped), bring its valid frames to
``window`` frames with one of the :data:`PIPELINES` (its train or its test half), then compute
the requested modalities.

- ``crop_resize`` (CTR-GCN's NTU feeder): crop-resize the valid frames (random interval
  p ~ U(0.5, 1) when training, central 95 % when testing); with ``rotate``, a random 3-D
  rotation in training.
- ``view_norm`` (CTR-GCN's NW-UCLA feeder): in training rotate the sample about x and y by
  angles ~ U(-60, 60) degrees (a random camera view), normalise each axis to [-1, 1] by the
  sample's own range, then draw ``window`` random frames in time order; in testing normalise
  and take ``window`` evenly spaced frames.
- ``body_view_norm``: ``view_norm`` after rotating every sample into its body's own axes
  (``preprocess.align_to_body``, 2s-AGCN's NTU pre-normalisation), train and test alike, with
  the random rotation narrowed to U(-15, 15) degrees: the camera's viewpoint is removed rather
  than learned. The mksgn NW-UCLA configs use it (see their comments for the measured reason).
"""
from __future__ import annotations

import json
from pathlib import Path
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .layouts import Layout, get_layout
from .modalities import MODALITIES, compute
from .preprocess import (align_to_body, minmax_normalise, random_frame_indices, random_rotate,
                         uniform_frame_indices, valid_crop_resize, view_transform)

__all__ = ["SkeletonDataset", "test_input", "Pipeline", "PIPELINES", "TRAIN_P_INTERVAL", "TEST_P_INTERVAL",
           "VIEW_ANGLE_DEG"]

TRAIN_P_INTERVAL = (0.5, 1.0)
TEST_P_INTERVAL = (0.95,)
VIEW_ANGLE_DEG = 60
BODY_VIEW_ANGLE_DEG = 15


@dataclass(frozen=True)
class Pipeline:
    """A train-time and a test-time way from a padded (C, T, V, M) sample with ``num_valid``
    valid frames to (C, window, V, M). ``train(x, num_valid, window, rng, rotate, layout)``,
    ``test(x, num_valid, window, layout)``."""
    name: str
    train: Callable[..., np.ndarray]
    test: Callable[..., np.ndarray]


def _crop_resize_train(x, n, window, rng, rotate, layout):
    x = valid_crop_resize(x, n, window, TRAIN_P_INTERVAL, rng)
    return random_rotate(x, rng) if rotate else x


def _crop_resize_test(x, n, window, layout):
    return valid_crop_resize(x, n, window, TEST_P_INTERVAL)


def _view_norm_train(x, n, window, rng, rotate, layout, angle=VIEW_ANGLE_DEG, align=False):
    x = x[:, :max(1, n)]
    if align:
        x = align_to_body(x, n, layout.torso)
    # integer degrees, as CTR-GCN's random.randint(-60, 60)
    ax, ay = np.radians(rng.integers(-angle, angle + 1, size=2))
    x = minmax_normalise(view_transform(x, ax, ay), n)
    return x[:, random_frame_indices(n, window, rng)]


def _view_norm_test(x, n, window, layout, align=False):
    if align:
        x = align_to_body(x, n, layout.torso)
    return minmax_normalise(x, n)[:, uniform_frame_indices(n, window)]


PIPELINES: dict[str, Pipeline] = {p.name: p for p in (
    Pipeline("crop_resize", _crop_resize_train, _crop_resize_test),
    Pipeline("view_norm", _view_norm_train, _view_norm_test),
    Pipeline("body_view_norm", partial(_view_norm_train, angle=BODY_VIEW_ANGLE_DEG, align=True),
             partial(_view_norm_test, align=True)),
)}


def test_input(x: np.ndarray, num_valid: int, window: int, modalities: Sequence[str],
               layout: Layout, pipeline: str = "crop_resize") -> np.ndarray:
    """What a network sees at test time of one (C, T, V, M) sequence with ``num_valid`` valid
    frames: float32 (K, C, window, V, M), modality k in ``modalities`` order (deterministic)."""
    x = PIPELINES[pipeline].test(np.asarray(x, np.float32), num_valid, window, layout)
    return compute(x, modalities, layout).astype(np.float32, copy=False)


class SkeletonDataset(Dataset):
    """Samples ``(x, y)``: x float32 (K, 3, window, V, 2) for K modalities in the given order, y int.

    Args:
        prepared_dir: a benchmark directory written by ``mksgn data prepare`` (has info.json).
        split: ``"train"`` or ``"test"``.
        window: frames after crop-resize.
        modalities: any of joint, bone, joint_motion, bone_motion.
        train: use the pipeline's training half (random draws); default ``split == "train"``.
        rotate: ``crop_resize`` only: random 3-D rotation (training), angles ~ U(-0.3, 0.3) rad.
        pipeline: a key of :data:`PIPELINES`.
        seed: augmentation seed. Draws are reproducible: sample i's n-th draw in epoch e uses
            ``default_rng([seed, e, i, n])``; call :meth:`set_epoch` each epoch when DataLoader
            workers are re-created, as with ``DistributedSampler``.
    """

    def __init__(self, prepared_dir: Path, split: str, window: int = 64,
                 modalities: Sequence[str] = MODALITIES, train: bool | None = None,
                 rotate: bool = False, seed: int = 0, pipeline: str = "crop_resize"):
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
        if pipeline not in PIPELINES:
            raise ValueError(f"unknown pipeline {pipeline!r}; choose from {', '.join(PIPELINES)}")
        self.pipeline = PIPELINES[pipeline]
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
    def num_persons(self) -> int:
        """Body slots M of the prepared arrays (1 for NW-UCLA, 2 for NTU)."""
        return int(self.data.shape[-1])

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
        n = int(self.num_frames[index])
        if not self.train:
            return test_input(x, n, self.window, self.modalities, self._layout, self.pipeline.name)
        rng = rng if rng is not None else np.random.default_rng([self.seed, self.epoch, index])
        x = self.pipeline.train(x, n, self.window, rng, self.rotate, self._layout)
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
