"""The four input modalities MK-SGN fuses, as pure numpy functions on (C, T, V, M) arrays.

- joint:        the coordinates themselves.
- bone:         joint minus its parent (``Layout.bones``); the root's bone is zero (2s-AGCN).
- joint_motion: frame t+1 minus frame t; the last frame is zero (CTR-GCN's "vel" streams).
- bone_motion:  motion of the bone stream.

The dataset computes them after the crop-resize, so motion is taken between resized frames.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .layouts import Layout

__all__ = ["MODALITIES", "bone", "motion", "compute"]

MODALITIES: tuple[str, ...] = ("joint", "bone", "joint_motion", "bone_motion")


def bone(x: np.ndarray, layout: Layout) -> np.ndarray:
    """Bone vectors of (C, T, V, M) joints: ``out[:, :, j] = x[:, :, j] - x[:, :, parent(j)]``."""
    if x.shape[2] != layout.num_joints:
        raise ValueError(f"{layout.name} has {layout.num_joints} joints, array has {x.shape[2]}")
    out = np.zeros_like(x)
    child = np.array([j for j, _ in layout.bones])
    parent = np.array([p for _, p in layout.bones])
    out[:, :, child] = x[:, :, child] - x[:, :, parent]
    return out


def motion(x: np.ndarray) -> np.ndarray:
    """Temporal difference along T of (C, T, V, M): ``out[:, t] = x[:, t+1] - x[:, t]``, last zero."""
    out = np.zeros_like(x)
    out[:, :-1] = x[:, 1:] - x[:, :-1]
    return out


def compute(x: np.ndarray, names: Sequence[str], layout: Layout) -> np.ndarray:
    """Stack the named modalities of (C, T, V, M) joints -> (K, C, T, V, M), K = len(names)."""
    unknown = [n for n in names if n not in MODALITIES]
    if unknown or not names:
        raise ValueError(f"unknown modalities {unknown}; choose from {', '.join(MODALITIES)}")
    cache: dict[str, np.ndarray] = {"joint": x}
    if "bone" in names or "bone_motion" in names:
        cache["bone"] = bone(x, layout)
    if "joint_motion" in names:
        cache["joint_motion"] = motion(x)
    if "bone_motion" in names:
        cache["bone_motion"] = motion(cache["bone"])
    return np.stack([cache[n] for n in names])
