"""Preprocessing as small pure functions on arrays (the SGN / CTR-GCN NTU pipeline).

Prepare time (once, cached on disk):
    :func:`denoise_bodies` -> :func:`assemble_actors` -> :func:`center_on_first_frame`
    -> :func:`limit_frames` -> padded (C, T_max, V, M) in the prepared arrays.
Train time (every draw), one of the pipelines of ``mksgn.data.dataset.PIPELINES``:
    NTU (CTR-GCN's NTU feeder): :func:`valid_crop_resize` to the model window, optional
    :func:`random_rotate`.
    NW-UCLA (CTR-GCN's UCLA feeder): :func:`view_transform` by random angles (training only),
    :func:`minmax_normalise`, then :func:`random_frame_indices` (training) or
    :func:`uniform_frame_indices` (testing).

The denoising thresholds and the actor assembly follow the NTU pipeline of SGN (Zhang et al.,
CVPR 2020, Microsoft ``get_raw_denoised_data.py``) that CTR-GCN (Chen et al., ICCV 2021) and
most later GCNs reuse: bodies seen in <= 11 frames are noise; a frame is noisy when its x spread
exceeds 0.8 x its y spread and a body with >= 69.754 % noisy frames is dropped; the remaining
bodies are ranked by motion (summed per-axis variance of their joints); the top one is actor 1,
the others fill actor 1 or actor 2 where their frame intervals do not overlap. That pipeline
leaves its motion-range filter [0.089925, 2] switched off; here it is available as an option.
The crop-resize follows CTR-GCN ``feeders/tools.py`` (``valid_crop_resize``, ``random_rot``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ntu import SkeletonSequence

__all__ = ["DenoiseConfig", "denoise_bodies", "assemble_actors", "center_on_first_frame",
           "limit_frames", "to_ctvm", "prepare_ntu_sequence", "prepare_ucla_sequence",
           "valid_crop_resize", "resize_time", "random_rotate", "rotation_matrix", "valid_length",
           "view_transform", "align_to_body", "minmax_normalise", "random_frame_indices", "uniform_frame_indices"]

MAX_ACTORS = 2


@dataclass(frozen=True)
class DenoiseConfig:
    length_threshold: int = 11
    spread_ratio: float = 0.8
    spread_noise_fraction: float = 0.69754
    motion_filter: bool = False
    motion_low: float = 0.089925
    motion_high: float = 2.0


def _motion(joints: np.ndarray) -> float:
    """Summed per-axis variance over all frames and joints; joints (n, V, 3)."""
    return float(np.var(joints.reshape(-1, 3), axis=0).sum())


def denoise_bodies(seq: SkeletonSequence, cfg: DenoiseConfig = DenoiseConfig()) -> tuple[list, list[str]]:
    """Drop spurious bodies and rank the rest by motion, most moving first.

    Returns (bodies, notes): ``bodies`` is a list of :class:`~mksgn.data.ntu.Body`; ``notes``
    says what was removed and why. A single-body sequence is returned unchanged.
    """
    bodies = list(seq.bodies.values())
    notes: list[str] = []
    if len(bodies) == 1:
        return bodies, notes
    motion = {b.body_id: _motion(b.joints) for b in bodies}

    kept = [b for b in bodies if len(b.frames) > cfg.length_threshold]
    for b in bodies:
        if len(b.frames) <= cfg.length_threshold:
            notes.append(f"body {b.body_id}: {len(b.frames)} frames (length)")
    if not kept:  # every body is short: keep the longest rather than lose the sample
        kept = [max(bodies, key=lambda b: len(b.frames))]
        notes.append(f"all bodies short; kept {kept[0].body_id}")

    if len(kept) > 1:
        survivors = list(kept)
        for b in kept:
            if len(survivors) == 1:
                break
            xy = b.joints[:, :, :2]
            spread = xy.max(axis=1) - xy.min(axis=1)  # (n, 2)
            valid = spread[:, 0] <= cfg.spread_ratio * spread[:, 1]
            n_noise = int((~valid).sum())
            if n_noise == 0:
                continue
            if n_noise / len(b.frames) >= cfg.spread_noise_fraction:
                survivors.remove(b)
                notes.append(f"body {b.body_id}: {n_noise}/{len(b.frames)} wide frames (spread)")
            elif valid.any():
                motion[b.body_id] = min(motion[b.body_id], _motion(b.joints[valid]))
        kept = survivors

    kept.sort(key=lambda b: motion[b.body_id], reverse=True)
    if cfg.motion_filter and len(kept) > 1:
        head, rest = kept[:1], kept[1:]
        for b in rest:
            if cfg.motion_low <= motion[b.body_id] <= cfg.motion_high:
                head.append(b)
            else:
                notes.append(f"body {b.body_id}: motion {motion[b.body_id]:.4f} (motion)")
        kept = head
    return kept, notes


def assemble_actors(bodies: list, num_frames: int, num_joints: int) -> np.ndarray:
    """Place ranked bodies into two actor slots; returns (num_frames, 2, V, 3), zeros where absent.

    Actor 1 is the first body; each further body goes to actor 1 if its frame interval does not
    overlap actor 1's interval, else to actor 2 if it does not overlap actor 2's, else it is
    dropped. "Overlap" as in SGN: ``min(end) - max(start) > 0``.
    """
    out = np.zeros((num_frames, MAX_ACTORS, num_joints, 3), np.float64)
    first = bodies[0]
    out[first.frames, 0] = first.joints
    spans = [[first.frames[0], first.frames[-1]], [0, 0]]
    for b in bodies[1:]:
        s, e = b.frames[0], b.frames[-1]
        for slot in range(MAX_ACTORS):
            s0, e0 = spans[slot]
            if min(e0, e) - max(s0, s) <= 0:
                out[b.frames, slot] = b.joints
                spans[slot] = [min(s, s0), max(e, e0)]
                break
    if len(bodies) > 1:  # drop frames in which no kept body appears
        present = np.abs(out).reshape(num_frames, -1).sum(axis=1) != 0
        out = out[present]
    return out


def center_on_first_frame(x: np.ndarray, center_joint: int) -> np.ndarray:
    """Subtract actor 1's centre joint in its first present frame from every present joint.

    x: (T, M, V, 3). Frames where an actor is absent (all zero) stay zero.
    """
    present = np.abs(x).sum(axis=(2, 3)) != 0  # (T, M)
    rows = np.flatnonzero(present[:, 0])
    if rows.size == 0:
        return x.copy()
    origin = x[rows[0], 0, center_joint]
    out = x - origin
    out[~present] = 0.0
    return out


def limit_frames(x: np.ndarray, max_frames: int) -> tuple[np.ndarray, bool]:
    """Uniformly subsample the time axis (axis 0) to at most ``max_frames``; returns (x, resampled)."""
    t = x.shape[0]
    if t <= max_frames:
        return x, False
    idx = np.round(np.linspace(0, t - 1, max_frames)).astype(int)
    return x[idx], True


def to_ctvm(x: np.ndarray) -> np.ndarray:
    """(T, M, V, C) -> (C, T, V, M) float32."""
    return np.ascontiguousarray(x.transpose(3, 0, 2, 1), dtype=np.float32)


def prepare_ntu_sequence(seq: SkeletonSequence, max_frames: int, center_joint: int = 1,
                         cfg: DenoiseConfig = DenoiseConfig()) -> tuple[np.ndarray, list[str]]:
    """Parsed file -> (C, T, V, 2) float32 with T <= max_frames valid frames, plus notes."""
    bodies, notes = denoise_bodies(seq, cfg)
    x = assemble_actors(bodies, seq.num_frames, seq.bodies[bodies[0].body_id].joints.shape[1])
    x = center_on_first_frame(x, center_joint)
    x, resampled = limit_frames(x, max_frames)
    if resampled:
        notes.append(f"resampled to {max_frames} frames")
    return to_ctvm(x), notes


def prepare_ucla_sequence(joints: np.ndarray, max_frames: int, center_joint: int = 1,
                          persons: int = 1) -> tuple[np.ndarray, list[str]]:
    """(T, V, 3) json joints -> (C, T', V, persons) float32 (one actor; further slots zero),
    plus notes."""
    x = np.zeros((joints.shape[0], persons, joints.shape[1], 3), np.float64)
    x[:, 0] = joints
    x = center_on_first_frame(x, center_joint)
    x, resampled = limit_frames(x, max_frames)
    return to_ctvm(x), ([f"resampled to {max_frames} frames"] if resampled else [])


# ----------------------------------------------------------------------------- train time
def valid_length(x: np.ndarray) -> int:
    """Number of leading frames holding data in a padded (C, T, V, M) array."""
    nz = np.flatnonzero(np.abs(x).sum(axis=(0, 2, 3)) != 0)
    return int(nz[-1] + 1) if nz.size else 0


def resize_time(x: np.ndarray, size: int) -> np.ndarray:
    """Linear resampling of axis 1 of (C, T, V, M) to ``size`` frames.

    Same sampling grid as ``torch.nn.functional.interpolate(mode="linear", align_corners=False)``
    (what CTR-GCN's bilinear resize reduces to): source position (i + 0.5) * T / size - 0.5,
    clamped to [0, T - 1].
    """
    t = x.shape[1]
    pos = (np.arange(size) + 0.5) * (t / size) - 0.5
    pos = np.clip(pos, 0.0, t - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, t - 1)
    w = (pos - i0)[None, :, None, None]
    return (x[:, i0] * (1.0 - w) + x[:, i1] * w).astype(x.dtype, copy=False)


def valid_crop_resize(x: np.ndarray, num_valid: int, window: int, p_interval: tuple[float, ...],
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """Crop a part of the valid frames and resize it to ``window`` frames (CTR-GCN).

    x: (C, T, V, M), valid frames first. With one ``p`` (test), the central ``p`` fraction is
    kept; with ``(lo, hi)`` (train), a random fraction p ~ U(lo, hi) of the valid length (but at
    least ``window`` frames, at most all) starting at a random frame. Returns (C, window, V, M).
    """
    num_valid = max(1, min(int(num_valid), x.shape[1]))
    if len(p_interval) == 1:
        bias = int((1 - p_interval[0]) * num_valid / 2)
        crop = x[:, bias:num_valid - bias]
        if crop.shape[1] == 0:
            crop = x[:, :num_valid]
    else:
        rng = rng if rng is not None else np.random.default_rng()
        p = rng.uniform(p_interval[0], p_interval[1])
        length = min(max(int(np.floor(num_valid * p)), window), num_valid)
        start = int(rng.integers(0, num_valid - length + 1))
        crop = x[:, start:start + length]
    return resize_time(crop, window)


def rotation_matrix(ax: float, ay: float, az: float) -> np.ndarray:
    """Rz @ Ry @ Rx for angles in radians, (3, 3)."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_rotate(x: np.ndarray, rng: np.random.Generator, theta: float = 0.3) -> np.ndarray:
    """Rotate (C=3, T, V, M) by one random rotation, angles ~ U(-theta, theta) rad (CTR-GCN)."""
    r = rotation_matrix(*rng.uniform(-theta, theta, size=3)).astype(x.dtype)
    return np.einsum("ij,jtvm->itvm", r, x)


# NW-UCLA (CTR-GCN ``feeders/feeder_ucla.py``): view rotation, per-sample normalisation, frame
# sampling. CTR-GCN draws integer-degree angles in [-60, 60] about x and y and a scale in
# [0.5, 1.5]; its per-axis min-max normalisation then cancels any scale exactly, so no scale is
# drawn here (the result is the same up to rounding).
def view_transform(x: np.ndarray, ax: float, ay: float) -> np.ndarray:
    """Rotate (C=3, T, V, M) about x by ``ax`` then about y by ``ay`` (radians): each point p
    becomes ``p @ Ry @ Rx`` as a row vector (CTR-GCN's ``rand_view_transform``)."""
    cx, sx, cy, sy = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay)
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    r = (ry @ rx).astype(x.dtype)
    return np.einsum("itvm,ij->jtvm", x, r)


def align_to_body(x: np.ndarray, num_valid: int, torso: tuple[int, int, int, int],
                  frames: int = 5) -> np.ndarray:
    """Rotate (C=3, T, V, M) into the first body's own axes, as seen in its first ``frames``
    valid frames: y along the spine (base -> top), x along the shoulders (right -> left, made
    orthogonal to y), z = x cross y. The same rotation for every frame, so the body still turns
    and walks within the sequence; only the camera's viewpoint is removed. This is 2s-AGCN's
    NTU ``pre_normalization`` (spine and shoulders parallel to two axes, from the first frame;
    CTR-GCN's NTU data carries it), here with y rather than z along the spine. A degenerate torso
    (zero vectors) leaves x unchanged."""
    base, top, left, right = torso
    p = x[:, :max(1, min(frames, num_valid)), :, 0].astype(np.float64)     # (3, f, V)
    up = (p[:, :, top] - p[:, :, base]).mean(axis=1)
    across = (p[:, :, left] - p[:, :, right]).mean(axis=1)
    ny = np.linalg.norm(up)
    if ny == 0:
        return x
    y = up / ny
    across = across - across.dot(y) * y
    nx = np.linalg.norm(across)
    if nx == 0:
        return x
    ex = across / nx
    r = np.stack([ex, y, np.cross(ex, y)])                                  # rows: new axes
    return np.einsum("ij,jtvm->itvm", r, x).astype(x.dtype, copy=False)


def minmax_normalise(x: np.ndarray, num_valid: int) -> np.ndarray:
    """Map each coordinate axis of the first ``num_valid`` frames of (C, T, V, M) to [-1, 1] by
    that sample's own min and max (an axis without extent maps to 0). Returns the valid frames
    only, (C, num_valid, V, M). For one-body data: absent bodies would count as zeros."""
    v = x[:, :max(1, num_valid)]
    lo = v.min(axis=(1, 2, 3), keepdims=True)
    span = v.max(axis=(1, 2, 3), keepdims=True) - lo
    safe = np.where(span > 0, span, 1)
    return np.where(span > 0, (v - lo) / safe * 2 - 1, 0).astype(x.dtype, copy=False)


def random_frame_indices(num_valid: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """``window`` frame indices drawn uniformly from ``0 .. num_valid - 1`` (with repetition when
    the sequence is short), in time order. CTR-GCN draws without replacement from 100 copies of
    every index: nearly independent draws, which these are exactly."""
    return np.sort(rng.integers(0, max(1, num_valid), size=window))


def uniform_frame_indices(num_valid: int, window: int) -> np.ndarray:
    """``window`` evenly spaced frame indices over ``0 .. num_valid - 1`` (truncated), CTR-GCN's
    test-time sampling."""
    return np.linspace(0, max(1, num_valid) - 1, window).astype(np.int64)
