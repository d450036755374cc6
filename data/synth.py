"""Synthetic skeleton actions written in the real file formats (NTU ``.skeleton``, NW-UCLA json).

A small forward-kinematics body (pelvis, two-segment spine, neck/head, arms with elbow, legs
with knee, feet kept on the floor) is driven by per-class joint-angle programs: waving one arm,
kicking, squatting, jumping, turning round, clapping, bowing, punching, cheering, marching on the
spot, bending sideways, sitting down, a phone call, throwing. Classes beyond these 14 are
variants (other side / wide stance, more repetitions), so any K gives procedurally distinct
classes. Every sample varies: body size and proportions per subject, duration, timing of the
active part, amplitude, facing, camera viewpoint (per camera / view id), sensor noise; NTU files
occasionally hold a second body (a bystander, a short false detection or a wide "furniture"
detection, the cases the standard denoising handles) and frames the tracker lost.

File names follow the real conventions, so the standard benchmarks split them meaningfully:
subjects alternate between the cross-subject training and test lists, cameras 1-3 and setups of
both parities all occur. Everything is a pure function of the seed.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from mksgn.files import atomic_write, atomic_write_text

from . import ntu, ucla
from .layouts import UCLA20_FROM_NTU25

__all__ = ["BASE_ACTIONS", "SynthConfig", "SyntheticSample", "class_names", "sample_specs",
           "make_sample", "generate", "simulate_body", "BodyShape"]

BASE_ACTIONS: tuple[str, ...] = ("wave", "kick", "squat", "jump", "turn", "clap", "bow", "punch",
                                 "cheer", "march", "side_bend", "sit_down", "phone_call", "throw")
_SIDED = {"wave", "kick", "turn", "punch", "side_bend", "phone_call", "throw"}
_DEG = math.pi / 180.0
_BODY_ID_BASE = 72057594037927936  # real Kinect v2 body IDs are 2**56 + a small counter


@dataclass
class SynthConfig:
    """What to generate. ``frames`` is the mean sequence length (30 fps frames)."""

    dataset: str = "ntu60"
    classes: int = 8
    subjects: int = 8
    samples_per_class: int = 40
    frames: int = 64
    seed: int = 0
    second_actor_prob: float = 0.15
    dropped_frame_prob: float = 0.2
    noise_std: float = 0.005  # metres

    def __post_init__(self) -> None:
        if self.dataset not in ("ntu60", "ntu120", "ucla"):
            raise ValueError(f"unknown dataset {self.dataset!r}")
        max_classes = {"ntu60": 60, "ntu120": 120, "ucla": len(ucla.ACTIONS)}[self.dataset]
        max_subjects = {"ntu60": 40, "ntu120": 106, "ucla": 99}[self.dataset]
        if not 1 <= self.classes <= max_classes:
            raise ValueError(f"{self.dataset}: classes must be 1..{max_classes}")
        if not 1 <= self.subjects <= max_subjects:
            raise ValueError(f"{self.dataset}: subjects must be 1..{max_subjects}")
        if self.samples_per_class < 1 or self.frames < 16:
            raise ValueError("samples_per_class must be >= 1 and frames >= 16")


def class_names(k: int) -> list[str]:
    """Names of the first k synthetic classes."""
    out = []
    for c in range(k):
        base, v = BASE_ACTIONS[c % len(BASE_ACTIONS)], c // len(BASE_ACTIONS)
        name = base
        if v % 2:
            name += "_left" if base in _SIDED else "_wide"
        if v // 2:
            name += f"_x{1 + v // 2}"
        out.append(name)
    return out


# ----------------------------------------------------------------------------- body model
@dataclass(frozen=True)
class BodyShape:
    """Segment lengths in metres."""

    height: float
    hip_height: float
    spine1: float
    spine2: float
    neck: float
    head: float
    shoulder_half: float
    upper_arm: float
    forearm: float
    hand: float
    hand_tip: float
    hip_half: float
    thigh: float
    shank: float
    foot: float

    @classmethod
    def sample(cls, rng: np.random.Generator, height: float | None = None) -> "BodyShape":
        h = height if height is not None else rng.uniform(1.50, 1.95)
        j = lambda: rng.uniform(0.95, 1.05)  # noqa: E731 - per-segment proportion jitter
        return cls(h, 0.53 * h, 0.13 * h * j(), 0.14 * h * j(), 0.05 * h, 0.07 * h * j(),
                   0.105 * h * j(), 0.17 * h * j(), 0.15 * h * j(), 0.045 * h, 0.04 * h,
                   0.055 * h * j(), 0.245 * h * j(), 0.245 * h * j(), 0.08 * h)


def _rot(axis: str, a: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations about x/y/z by angles a (T,) radians."""
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    if axis == "x":
        m = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == "y":
        m = [[c, z, s], [z, o, z], [-s, z, c]]
    else:
        m = [[c, -s, z], [s, c, z], [z, z, o]]
    return np.moveaxis(np.array(m), (0, 1), (1, 2))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _limb(a: np.ndarray, f: np.ndarray, lat: float) -> np.ndarray:
    """Direction of an upper limb (T, 3) from abduction a and flexion f (radians), local frame."""
    return np.stack([lat * np.sin(a), -np.cos(a) * np.cos(f), np.cos(a) * np.sin(f)], axis=-1)


def _bend(u: np.ndarray, bend: np.ndarray, hint: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """Rotate unit directions u (T, 3) by angle ``bend`` towards ``hint`` (fallback ``alt``)."""
    w = hint - (hint * u).sum(-1, keepdims=True) * u
    bad = np.linalg.norm(w, axis=-1) < 1e-4
    if bad.any():
        w2 = alt - (alt * u).sum(-1, keepdims=True) * u
        w[bad] = w2[bad]
    w = _unit(w)
    return np.cos(bend)[:, None] * u + np.sin(bend)[:, None] * w


@dataclass
class Pose:
    """Joint-angle programs over T frames (radians; arm/leg arrays are [left, right])."""

    t: int
    yaw: np.ndarray = None
    pitch: np.ndarray = None
    bend: np.ndarray = None
    nod: np.ndarray = None
    jump: np.ndarray = None  # metres above the floor contact
    arm_a: np.ndarray = None
    arm_f: np.ndarray = None
    arm_e: np.ndarray = None
    arm_hint: list = field(default_factory=lambda: ["fwd", "fwd"])
    leg_hf: np.ndarray = None
    leg_ha: np.ndarray = None
    leg_k: np.ndarray = None

    def __post_init__(self) -> None:
        z = lambda: np.zeros(self.t)  # noqa: E731
        for k in ("yaw", "pitch", "bend", "nod", "jump"):
            setattr(self, k, z())
        self.arm_a = np.full((2, self.t), 8 * _DEG)
        self.arm_f = np.full((2, self.t), 4 * _DEG)
        self.arm_e = np.full((2, self.t), 12 * _DEG)
        self.leg_hf = np.zeros((2, self.t))
        self.leg_ha = np.full((2, self.t), 3 * _DEG)
        self.leg_k = np.full((2, self.t), 3 * _DEG)


_LAT = (1.0, -1.0)  # body frame: +x is the actor's left


def simulate_body(pose: Pose, b: BodyShape) -> np.ndarray:
    """Forward kinematics -> (T, 25, 3) NTU joints in the body frame (x left, y up, z forward, floor y=0)."""
    t = pose.t
    out = np.zeros((t, 25, 3))
    r_torso = _rot("y", pose.yaw) @ _rot("z", pose.bend) @ _rot("x", pose.pitch)
    r_pelvis = _rot("y", pose.yaw)
    up = np.array([0.0, 1.0, 0.0])

    def tv(r, v):  # rotate a local vector (3,) or (T, 3) by (T, 3, 3)
        return np.einsum("tij,tj->ti", r, np.broadcast_to(v, (t, 3)))

    pel = np.zeros((t, 3))
    out[:, 0] = pel
    out[:, 1] = pel + tv(r_torso, up * b.spine1)
    out[:, 20] = pel + tv(r_torso, up * (b.spine1 + b.spine2))
    r_head = r_torso @ _rot("x", pose.nod)
    out[:, 2] = out[:, 20] + tv(r_head, up * b.neck)
    out[:, 3] = out[:, 2] + tv(r_head, up * b.head)
    # arms: joints shoulder, elbow, wrist, hand, tip, thumb (left: 4,5,6,7,21,22; right: 8..11,23,24)
    for side, (js, tip, th) in enumerate(((4, 21, 22), (8, 23, 24))):
        lat = _LAT[side]
        sh = out[:, 20] + tv(r_torso, np.array([lat * b.shoulder_half, -0.02 * b.height, 0.0]))
        u = _limb(pose.arm_a[side], pose.arm_f[side], lat)
        hint = {"fwd": np.array([0.0, 0.2, 1.0]), "up": np.array([0.0, 1.0, 0.3]),
                "in": np.array([-lat, 0.3, 0.4])}[pose.arm_hint[side]]
        v = _bend(u, pose.arm_e[side], np.broadcast_to(hint, (t, 3)).copy(), np.broadcast_to(up, (t, 3)))
        thumb_dir = _unit(np.cross(v, np.broadcast_to([lat, 0.0, 0.0], (t, 3))) * lat + 0.5 * v)
        out[:, js] = sh
        out[:, js + 1] = sh + tv(r_torso, u * b.upper_arm)
        out[:, js + 2] = out[:, js + 1] + tv(r_torso, v * b.forearm)
        out[:, js + 3] = out[:, js + 2] + tv(r_torso, v * b.hand)
        out[:, tip] = out[:, js + 3] + tv(r_torso, v * b.hand_tip)
        out[:, th] = out[:, js + 3] + tv(r_torso, thumb_dir * 0.6 * b.hand_tip)
    # legs: hip, knee, ankle, foot (left 12..15, right 16..19)
    for side, jh in enumerate((12, 16)):
        lat = _LAT[side]
        hip = pel + tv(r_pelvis, np.array([lat * b.hip_half, -0.03 * b.height, 0.0]))
        u = _limb(pose.leg_ha[side], pose.leg_hf[side], lat)
        v = _bend(u, pose.leg_k[side], np.broadcast_to([0.0, 0.0, -1.0], (t, 3)).copy(),
                  np.broadcast_to([0.0, -1.0, 0.0], (t, 3)))
        out[:, jh] = hip
        out[:, jh + 1] = hip + tv(r_pelvis, u * b.thigh)
        out[:, jh + 2] = out[:, jh + 1] + tv(r_pelvis, v * b.shank)
        out[:, jh + 3] = out[:, jh + 2] + tv(r_pelvis, np.array([0.0, -0.03 * b.height, b.foot]))
    # keep the lower ankle on the floor (ankle height 4 % of stature), then add any jump
    ground = np.minimum(out[:, 14, 1], out[:, 18, 1])
    out[:, :, 1] += (0.04 * b.height - ground + pose.jump)[:, None]
    return out


# ----------------------------------------------------------------------------- action programs
def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass(frozen=True)
class _Cue:
    """What an action program reads: progress u (T,) through the active part (0..1), its
    repetitions, amplitude scale and side (+1 / -1), the body; derived from them ``pr`` (index of
    the primary arm or leg), ``plat`` (T,) (a plateau that ramps in and out), ``bump`` (T,)
    (``cycles`` smooth repetitions) and ``d`` (one degree times the amplitude, radians)."""
    u: np.ndarray
    cycles: int
    amp: float
    side: int
    b: BodyShape
    pr: int
    plat: np.ndarray
    bump: np.ndarray
    d: float


def _wave(p: Pose, c: _Cue) -> None:
    u, cycles, pr, plat, d = c.u, c.cycles, c.pr, c.plat, c.d
    p.arm_a[pr] = (8 + 142 * plat) * _DEG
    p.arm_e[pr] = plat * (25 + 35 * (0.5 + 0.5 * np.sin(2 * np.pi * (2 + cycles) * u))) * d
    p.arm_hint[pr] = "in"


def _kick(p: Pose, c: _Cue) -> None:
    pr, bump, d = c.pr, c.bump, c.d
    p.leg_hf[pr] = 75 * bump * d
    p.leg_k[pr] = (3 + 220 * bump * (1 - bump)) * d  # knee cocks, then extends
    p.arm_a[:] += 20 * bump * d
    p.pitch = -8 * bump * d


def _squat(p: Pose, c: _Cue) -> None:
    bump, d = c.bump, c.d
    p.leg_hf[:] = 90 * bump * d
    p.leg_k[:] = (3 + 110 * bump) * d
    p.pitch = 30 * bump * d
    p.arm_f[:] = (4 + 80 * bump) * d


def _jump(p: Pose, c: _Cue) -> None:
    u, cycles, amp, b, d = c.u, c.cycles, c.amp, c.b, c.d
    ph = (cycles * u) % 1.0
    flight = np.where((ph > 0.3) & (ph < 0.7), np.sin(np.pi * (ph - 0.3) / 0.4), 0.0)
    crouch = np.where(ph <= 0.3, np.sin(np.pi * ph / 0.3) ** 2, 0.0) + \
        np.where(ph >= 0.7, np.sin(np.pi * (ph - 0.7) / 0.3) ** 2, 0.0)
    p.jump = 0.18 * amp * b.height * flight
    p.leg_k[:] = (3 + 75 * crouch + 10 * flight) * d
    p.leg_hf[:] = (40 * crouch + 5 * flight) * d
    p.pitch = 15 * crouch * d
    p.arm_a[:] = (8 + 120 * flight) * d


def _turn(p: Pose, c: _Cue) -> None:
    u, cycles, amp, side, plat, d = c.u, c.cycles, c.amp, c.side, c.plat, c.d
    p.yaw = side * np.pi * _smooth(u) * min(amp, 1.0) * cycles
    step = np.sin(2 * np.pi * 3 * cycles * u) * np.clip(plat * 2, 0, 1)
    p.leg_hf[0], p.leg_hf[1] = 25 * np.maximum(step, 0) * d, 25 * np.maximum(-step, 0) * d
    p.leg_k[:] = 3 * _DEG + 1.5 * p.leg_hf


def _clap(p: Pose, c: _Cue) -> None:
    u, cycles, plat, d = c.u, c.cycles, c.plat, c.d
    p.arm_f[:] = (4 + 71 * plat) * d
    p.arm_a[:] = (8 + 4 * plat) * _DEG
    p.arm_e[:] = plat * (30 + 50 * (0.5 + 0.5 * np.cos(2 * np.pi * (3 + cycles) * u))) * d
    p.arm_hint = ["in", "in"]


def _bow(p: Pose, c: _Cue) -> None:
    bump, d = c.bump, c.d
    p.pitch = 60 * bump * d
    p.arm_f[:] = p.pitch * 0.9
    p.nod = 15 * bump * d


def _punch(p: Pose, c: _Cue) -> None:
    u, cycles, side, pr, plat, d = c.u, c.cycles, c.side, c.pr, c.plat, c.d
    p.arm_f[:] = (4 + 46 * plat) * d
    p.arm_e[:] = (12 + 98 * plat) * d
    p.arm_hint = ["up", "up"]
    ext = np.maximum(np.sin(2 * np.pi * (1 + cycles) * u), 0) ** 2 * plat
    p.arm_f[pr] = (4 + 46 * plat + 40 * ext) * d
    p.arm_e[pr] = (12 + 98 * plat - 105 * ext) * d
    p.yaw = -side * 15 * ext * d


def _cheer(p: Pose, c: _Cue) -> None:
    u, cycles, plat, d = c.u, c.cycles, c.plat, c.d
    p.arm_a[:] = (8 + 157 * plat) * d
    p.arm_e[:] = (12 + 25 * plat * (0.5 + 0.5 * np.sin(2 * np.pi * (2 + cycles) * u))) * d
    p.arm_hint = ["in", "in"]
    p.nod = -12 * plat * d


def _march(p: Pose, c: _Cue) -> None:
    u, cycles, plat, d = c.u, c.cycles, c.plat, c.d
    s = np.sin(2 * np.pi * (2 + cycles) * u) * plat
    p.leg_hf[0], p.leg_hf[1] = 55 * np.maximum(s, 0) * d, 55 * np.maximum(-s, 0) * d
    p.leg_k[:] = 3 * _DEG + 1.4 * p.leg_hf
    p.arm_f[0], p.arm_f[1] = -30 * s * d, 30 * s * d
    p.arm_e[:] = 25 * _DEG


def _side_bend(p: Pose, c: _Cue) -> None:
    side, pr, bump, d = c.side, c.pr, c.bump, c.d
    p.bend = side * 30 * bump * d
    p.arm_a[pr] = (8 + 150 * bump) * d
    p.arm_hint[pr] = "in"


def _sit_down(p: Pose, c: _Cue) -> None:
    u, cycles, d = c.u, c.cycles, c.d
    s = _smooth((u - 0.05) / 0.45) if cycles == 1 else np.sin(np.pi * (cycles - 1) * u) ** 2
    p.leg_hf[:] = 88 * s * d
    p.leg_k[:] = (3 + 87 * s) * d
    p.pitch = 12 * s * d
    p.arm_f[:] = (4 + 40 * s) * d
    p.arm_e[:] = (12 + 40 * s) * d


def _phone_call(p: Pose, c: _Cue) -> None:
    u, cycles, side, pr, bump, d = c.u, c.cycles, c.side, c.pr, c.bump, c.d
    s = _smooth(u / 0.3) if cycles == 1 else bump
    p.arm_a[pr] = (8 + 30 * s) * d
    p.arm_f[pr] = (4 + 25 * s) * d
    p.arm_e[pr] = (12 + 133 * s) * _DEG
    p.arm_hint[pr] = "up"
    p.bend = -side * 8 * s * d


def _throw(p: Pose, c: _Cue) -> None:
    u, cycles, side, pr, d = c.u, c.cycles, c.side, c.pr, c.d
    ph = (cycles * u) % 1.0
    key_u = [0.0, 0.15, 0.5, 0.62, 0.8, 1.0]
    p.arm_a[pr] = np.interp(ph, key_u, [8, 8, 150, 40, 15, 8]) * d
    p.arm_f[pr] = np.interp(ph, key_u, [4, 4, 0, 100, 40, 4]) * d
    p.arm_e[pr] = np.interp(ph, key_u, [12, 12, 100, 5, 20, 12]) * d
    p.arm_hint[pr] = "up"
    p.yaw = side * np.interp(ph, key_u, [0, 0, 25, -20, -5, 0]) * d
    p.pitch = np.interp(ph, key_u, [0, 0, -8, 15, 5, 0]) * d


# base action -> the program that writes its angles into a resting Pose
_PROGRAMS: dict[str, Callable[[Pose, _Cue], None]] = {
    "wave": _wave,
    "kick": _kick,
    "squat": _squat,
    "jump": _jump,
    "turn": _turn,
    "clap": _clap,
    "bow": _bow,
    "punch": _punch,
    "cheer": _cheer,
    "march": _march,
    "side_bend": _side_bend,
    "sit_down": _sit_down,
    "phone_call": _phone_call,
    "throw": _throw,
}


def _program(base: str, u: np.ndarray, cycles: int, amp: float, side: int, wide: bool,
             b: BodyShape, rng: np.random.Generator) -> Pose:
    """Angle program of one action. u: (T,) progress through the active part, 0..1."""
    if base not in _PROGRAMS:  # pragma: no cover - names come from BASE_ACTIONS
        raise ValueError(base)
    t = len(u)
    p = Pose(t)
    pr = 1 if side > 0 else 0  # primary arm or leg index
    plat = _smooth(u / 0.2) * _smooth((1 - u) / 0.2)  # plateau: ramps in and out
    bump = np.sin(np.pi * cycles * u) ** 2  # `cycles` smooth repetitions
    _PROGRAMS[base](p, _Cue(u, cycles, amp, side, b, pr, plat, bump, _DEG * amp))
    if wide:  # the "_wide" variant of a symmetric action: wide stance, hands on hips
        p.leg_ha[:] = 14 * _DEG
        p.arm_a[:] += 25 * _DEG
        p.arm_e[:] = np.maximum(p.arm_e, 70 * _DEG)
        p.arm_hint = ["in", "in"]
    # small natural sway and tremor so no two samples share a trajectory
    tt = np.linspace(0, 1, t)
    p.yaw = p.yaw + 3 * _DEG * np.sin(2 * np.pi * (0.5 * tt + rng.uniform()))
    p.pitch = p.pitch + 2 * _DEG * np.sin(2 * np.pi * (0.7 * tt + rng.uniform()))
    p.arm_a = p.arm_a + 3 * _DEG * np.sin(2 * np.pi * (0.8 * tt[None] + rng.uniform(size=(2, 1))))
    return p


# ----------------------------------------------------------------------------- cameras
def _subject_rng(seed: int, subject: int) -> np.random.Generator:
    return np.random.default_rng([seed, 7, subject])


def _camera(seed: int, dataset: str, setup: int, camera: int) -> tuple[float, float, float, float]:
    """(view yaw, distance, height, tilt) of a camera; view angles as in the datasets' rigs."""
    r = np.random.default_rng([seed, 11, setup])
    dist, height, tilt = r.uniform(2.6, 3.6), r.uniform(0.7, 1.3), r.uniform(-8, 4) * _DEG
    if dataset == "ucla":
        yaw = {1: 40.0, 2: -40.0, 3: 0.0}[camera]  # test view 3 lies between the training views
    else:
        yaw = {1: 0.0, 2: 45.0, 3: -45.0}[camera]  # NTU: cameras at 0 and +-45 degrees
    return yaw * _DEG, dist, height, tilt


def _to_camera(x: np.ndarray, yaw: float, dist: float, height: float, tilt: float) -> np.ndarray:
    """World (x left, y up, z towards camera 1) -> Kinect camera space (X, Y up, Z depth)."""
    c, s = math.cos(yaw), math.sin(yaw)
    xr = x[..., 0] * c - x[..., 2] * s
    zr = x[..., 0] * s + x[..., 2] * c
    cam = np.stack([-xr, x[..., 1] - height, dist - zr], axis=-1)
    ct, st = math.cos(tilt), math.sin(tilt)
    y, z = cam[..., 1] * ct - cam[..., 2] * st, cam[..., 1] * st + cam[..., 2] * ct
    return np.stack([cam[..., 0], y, z], axis=-1)


# ----------------------------------------------------------------------------- samples
@dataclass
class SampleSpec:
    name: str
    label: int
    subject: int
    camera: int  # NTU camera or UCLA view
    setup: int
    replication: int


@dataclass
class SyntheticSample:
    """A generated sample. bodies: (body_id, valid-frame indices, joints (n, V, 3) camera metres)."""

    name: str
    label: int
    num_file_frames: int
    dropped_frames: list[int]
    bodies: list[tuple[str, np.ndarray, np.ndarray]]


def _subject_ids(dataset: str, n: int) -> list[int]:
    """n subject IDs alternating between the cross-subject training and test lists."""
    if dataset == "ucla":
        return list(range(1, n + 1))
    total = 40 if dataset == "ntu60" else 106
    train_set = ntu.NTU60_XSUB_TRAIN if dataset == "ntu60" else ntu.NTU120_XSUB_TRAIN
    train = [i for i in range(1, total + 1) if i in train_set]
    test = [i for i in range(1, total + 1) if i not in train_set]
    inter = [x for pair in zip(train, test) for x in pair] + train[len(test):] + test[len(train):]
    return inter[:n]


def sample_specs(cfg: SynthConfig) -> list[SampleSpec]:
    """Names and IDs of every sample (deterministic from the seed)."""
    subjects = _subject_ids(cfg.dataset, cfg.subjects)
    specs = []
    if cfg.dataset == "ucla":
        for k in range(cfg.classes):
            action = ucla.ACTIONS[k]
            n_ep = math.ceil(cfg.samples_per_class / (len(subjects) * 3)) + 1
            combos = [(s, v, e) for s in subjects for v in (1, 2, 3) for e in range(n_ep)]
            rng = np.random.default_rng([cfg.seed, 3, k])
            for ci in rng.permutation(len(combos))[: cfg.samples_per_class]:
                s, v, e = combos[ci]
                name = str(ucla.UCLAName(action, s, e, v))
                specs.append(SampleSpec(name, k, s, v, 1, e))
        return specs
    n_setups = 17 if cfg.dataset == "ntu60" else 32
    missing = ntu.missing_skeleton_names("ntu120")
    combos = [(st, c, s, r) for st in range(1, n_setups + 1) for c in (1, 2, 3) for s in subjects for r in (1, 2)]
    if cfg.samples_per_class > len(combos):
        raise ValueError(f"at most {len(combos)} samples per class with {cfg.subjects} subjects")
    for k in range(cfg.classes):
        rng = np.random.default_rng([cfg.seed, 3, k])
        chosen = 0
        for ci in rng.permutation(len(combos)):
            st, c, s, r = combos[ci]
            name = str(ntu.NTUName(st, c, s, r, k + 1))
            if name in missing:  # prepare would skip it
                continue
            specs.append(SampleSpec(name, k, s, c, st, r))
            chosen += 1
            if chosen == cfg.samples_per_class:
                break
    return specs


def _idle_pose(t: int, rng: np.random.Generator) -> Pose:
    p = Pose(t)
    tt = np.linspace(0, 1, t)
    p.yaw = 6 * _DEG * np.sin(2 * np.pi * (0.4 * tt + rng.uniform()))
    p.arm_e[:] = rng.uniform(10, 40) * _DEG
    return p


def make_sample(cfg: SynthConfig, spec: SampleSpec) -> SyntheticSample:
    """Generate one sample's bodies in camera space (no file I/O)."""
    rng = np.random.default_rng([cfg.seed, 5, spec.label] + [ord(ch) for ch in spec.name])
    t = max(16, int(round(cfg.frames * rng.uniform(0.75, 1.25))))
    shape = BodyShape.sample(_subject_rng(cfg.seed, spec.subject))
    base_i, variant = spec.label % len(BASE_ACTIONS), spec.label // len(BASE_ACTIONS)
    base = BASE_ACTIONS[base_i]
    mirror, cycles = bool(variant % 2), 1 + variant // 2
    side = -1 if (mirror and base in _SIDED) else 1
    wide = mirror and base not in _SIDED
    t0, t1 = rng.uniform(0.05, 0.2), rng.uniform(0.8, 0.95)
    u = np.clip((np.arange(t) / max(t - 1, 1) - t0) / (t1 - t0), 0.0, 1.0)
    pose = _program(base, u, cycles, rng.uniform(0.8, 1.15), side, wide, shape, rng)
    facing = rng.uniform(-20, 20) * _DEG + (15 * _DEG if spec.replication == 2 else 0.0)
    pose.yaw = pose.yaw + facing
    main = simulate_body(pose, shape)
    main[:, :, 0] += rng.uniform(-0.3, 0.3)
    main[:, :, 2] += rng.uniform(-0.3, 0.3)
    cam = _camera(cfg.seed, cfg.dataset, spec.setup, spec.camera)
    main = _to_camera(main, *cam) + rng.normal(0, cfg.noise_std, main.shape)
    if cfg.dataset == "ucla":
        main = main[:, list(UCLA20_FROM_NTU25)]
        return SyntheticSample(spec.name, spec.label, t, [], [("0", np.arange(t), main)])

    bodies = [(str(_BODY_ID_BASE + int(rng.integers(1000, 90000))), np.arange(t), main)]
    if rng.uniform() < cfg.second_actor_prob:
        bodies.append(_second_body(cfg, rng, t, cam, main))
    # frames the tracker lost: the file keeps them with a body count of 0
    dropped: list[int] = []
    if rng.uniform() < cfg.dropped_frame_prob:
        dropped = sorted(rng.choice(np.arange(1, t), size=int(rng.integers(1, 4)), replace=False).tolist())
    return SyntheticSample(spec.name, spec.label, t + len(dropped), dropped, bodies)


def _second_body(cfg, rng, t, cam, main) -> tuple[str, np.ndarray, np.ndarray]:
    bid = str(_BODY_ID_BASE + int(rng.integers(90000, 99999)))
    kind = rng.choice(["bystander", "short", "furniture"], p=[0.5, 0.25, 0.25])
    shape = BodyShape.sample(rng)
    if kind == "furniture":  # a wide, flat false detection: removed by the spread test
        n = int(rng.integers(int(0.8 * t), t + 1))
        start = int(rng.integers(0, t - n + 1))
        rest = simulate_body(Pose(n), shape)
        flat = rest[..., [1, 0, 2]] * np.array([1.0, 0.25, 1.0])  # lying along x, squashed
        flat[..., 0] += rng.uniform(1.0, 1.6) * rng.choice([-1, 1])
        world = flat + rng.normal(0, 0.01, flat.shape)
        return bid, np.arange(start, start + n), _to_camera(world, *cam)
    n = int(rng.integers(3, 11)) if kind == "short" else int(rng.integers(int(0.6 * t), t + 1))
    start = int(rng.integers(0, t - n + 1))
    world = simulate_body(_idle_pose(n, rng), shape)
    world[..., 0] += rng.uniform(1.0, 1.5) * rng.choice([-1, 1])
    world[..., 2] += rng.uniform(-0.8, -0.2)
    joints = _to_camera(world, *cam) + rng.normal(0, cfg.noise_std, world.shape)
    if kind == "bystander":
        motion = lambda j: float(np.var(j.reshape(-1, 3), axis=0).sum())  # noqa: E731
        if motion(joints) >= motion(main):  # would outrank the performer: make it a glitch
            joints, n = joints[:8], 8
    return bid, np.arange(start, start + n), joints


# ----------------------------------------------------------------------------- writing
_LEAVES = {3, 15, 19, 21, 22, 23, 24}  # Kinect reports no orientation for end joints


def _skeleton_text(s: SyntheticSample, rng: np.random.Generator) -> str:
    valid = [f for f in range(s.num_file_frames) if f not in set(s.dropped_frames)]
    per_valid: list[list] = [[] for _ in valid]
    for bid, frames, joints in s.bodies:
        x, y, z = joints[..., 0], joints[..., 1], joints[..., 2]
        zz = np.maximum(z, 0.1)
        depth = np.stack([256 + 365 * x / zz, 212 - 365 * y / zz], -1)
        color = np.stack([960 + 1065 * x / zz, 540 - 1065 * y / zz], -1)
        # body yaw relative to the camera from the shoulder line -> one quaternion per frame
        sh = joints[:, 4] - joints[:, 8]
        ang = np.arctan2(sh[:, 2], sh[:, 0])
        quat = np.zeros(joints.shape[:2] + (4,))
        quat[:, :, 0], quat[:, :, 2] = np.cos(ang / 2)[:, None], np.sin(ang / 2)[:, None]
        quat[:, sorted(_LEAVES)] = 0.0
        fields = np.concatenate([joints, depth, color, quat], -1)
        lean = np.clip(rng.normal(0, 0.1, 2), -1, 1)
        body_line = f"{bid} 0 1 1 1 1 0 {lean[0]:.7f} {lean[1]:.7f} 2"
        for k, f in enumerate(frames):
            states = np.full(25, 2)
            states[[21, 22, 23, 24]] = np.where(rng.uniform(size=4) < 0.1, 1, 2)
            per_valid[f].append((body_line, fields[k], states))
    frames_out, vi = [], 0
    for f in range(s.num_file_frames):
        if f in s.dropped_frames:
            frames_out.append([])
        else:
            frames_out.append(per_valid[vi])
            vi += 1
    return ntu.format_skeleton(frames_out)


def sample_text(cfg: SynthConfig, s: SyntheticSample) -> str:
    """File text of a sample (``.skeleton`` or UCLA json)."""
    if cfg.dataset == "ucla":
        return ucla.format_ucla(ucla.parse_name(s.name), s.bodies[0][2])
    rng = np.random.default_rng([cfg.seed, 9] + [ord(ch) for ch in s.name])
    return _skeleton_text(s, rng)


def sample_path(out: Path, cfg: SynthConfig, name: str) -> Path:
    if cfg.dataset == "ucla":
        return out / "all_sqe" / f"{name}.json"
    return out / "nturgb+d_skeletons" / f"{name}.skeleton"


def _write_batch(cfg: SynthConfig, out: str, specs: list[SampleSpec]) -> int:
    for spec in specs:
        text = sample_text(cfg, make_sample(cfg, spec))
        path = sample_path(Path(out), cfg, spec.name)
        atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text, newline=""))
    return len(specs)


def generate(cfg: SynthConfig, out: Path, workers: int | None = None,
             on_start: Callable[[int], None] | None = None,
             on_progress: Callable[[int], None] | None = None) -> list[SampleSpec]:
    """Write every sample under ``out`` (``nturgb+d_skeletons/`` or ``all_sqe/``) and ``synth_info.yaml``."""
    out = Path(out)
    specs = sample_specs(cfg)
    sample_path(out, cfg, "x").parent.mkdir(parents=True, exist_ok=True)
    if on_start:
        on_start(len(specs))
    workers = workers or os.cpu_count() or 1
    size = max(1, min(32, len(specs) // (workers * 4) or 1))
    batches = [specs[i:i + size] for i in range(0, len(specs), size)]
    progress = on_progress or (lambda k: None)
    if workers <= 1 or len(batches) == 1:
        for b in batches:
            progress(_write_batch(cfg, str(out), b))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            try:
                for k in pool.map(_write_batch, [cfg] * len(batches), [str(out)] * len(batches), batches):
                    progress(k)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    info = {"generator": "mksgn.data.synth", "config": asdict(cfg), "class_names": class_names(cfg.classes),
            "num_samples": len(specs)}
    # YAML, not json: a .json beside UCLA samples would be taken for a (badly named) sample
    atomic_write_text(out / "synth_info.yaml", yaml.safe_dump(info, sort_keys=False))
    return specs
