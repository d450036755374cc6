"""NW-UCLA in the json form used by the GCN community (CTR-GCN's ``data/NW-UCLA/all_sqe``).

One file per sample, named ``aAA_sSS_eEE_vVV.json`` (action, subject, episode, view), holding
``{"file_name": "...", "skeletons": [[[x, y, z] * 20] * T], "label": ...}``: T frames of the
20 Kinect v1 joints, metres. The 10 actions are numbered 1-6, 8, 9, 11, 12 (7 and 10 are not in
the release); labels are their 0-based order. Benchmark (Wang et al., "Cross-view Action
Modeling, Learning and Recognition", CVPR 2014; as in CTR-GCN ``feeders/feeder_ucla.py``):
views 1 and 2 train, view 3 tests.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SkeletonFileError

__all__ = ["UCLAName", "parse_name", "ACTIONS", "NUM_JOINTS", "BENCHMARKS", "TRAIN_VIEWS",
           "split_of", "read_ucla_file", "parse_ucla", "format_ucla"]

NUM_JOINTS = 20
ACTIONS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
TRAIN_VIEWS = frozenset({1, 2})
BENCHMARKS: dict[str, tuple[str, ...]] = {"ucla": ("xview",)}
_NAME_RE = re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})_v(\d{2})")


@dataclass(frozen=True)
class UCLAName:
    action: int
    subject: int
    episode: int
    view: int

    def __str__(self) -> str:
        return f"a{self.action:02d}_s{self.subject:02d}_e{self.episode:02d}_v{self.view:02d}"

    @property
    def label(self) -> int:
        return ACTIONS.index(self.action)


def parse_name(stem: str) -> UCLAName | None:
    m = _NAME_RE.fullmatch(stem)
    if m is None:
        return None
    name = UCLAName(*(int(g) for g in m.groups()))
    if name.action not in ACTIONS or not 1 <= name.view <= 3:
        return None
    return name


def split_of(name: UCLAName, benchmark: str = "xview") -> str:
    if benchmark != "xview":
        raise ValueError(f"unknown benchmark {benchmark!r} for ucla")
    return "train" if name.view in TRAIN_VIEWS else "test"


def read_ucla_file(path: str | Path) -> np.ndarray:
    """Read one sample; returns joints (T, 20, 3) float64. Raises :class:`SkeletonFileError` only."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SkeletonFileError(path, None, f"cannot read: {e.strerror or e}") from None
    return parse_ucla(raw, path)


def parse_ucla(raw: bytes | str, path: str | Path = "<memory>") -> np.ndarray:
    """Parse the json text of one sample -> (T, 20, 3) float64 (strict; see module docstring)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as e:
        raise SkeletonFileError(path, raw[: e.start].count(b"\n") + 1, "not UTF-8 text") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise SkeletonFileError(path, e.lineno, f"invalid json: {e.msg}") from None
    except RecursionError:
        raise SkeletonFileError(path, None, "invalid json: nested too deeply") from None
    if not isinstance(obj, dict) or "skeletons" not in obj:
        raise SkeletonFileError(path, None, 'json has no "skeletons" list')
    sk = obj["skeletons"]
    if not isinstance(sk, list) or len(sk) == 0:
        raise SkeletonFileError(path, None, "zero frames")
    out = np.empty((len(sk), NUM_JOINTS, 3), np.float64)
    for t, frame in enumerate(sk):
        if not isinstance(frame, list) or len(frame) != NUM_JOINTS:
            n = len(frame) if isinstance(frame, list) else type(frame).__name__
            raise SkeletonFileError(path, None, f"frame {t}: {n} joints, expected {NUM_JOINTS}")
        for j, p in enumerate(frame):
            if (not isinstance(p, list) or len(p) != 3
                    or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p)):
                raise SkeletonFileError(path, None, f"frame {t} joint {j}: not 3 numbers")
            try:
                xyz = [float(c) for c in p]
            except OverflowError:
                xyz = [math.inf]
            if not all(math.isfinite(c) for c in xyz):
                raise SkeletonFileError(path, None, f"frame {t} joint {j}: NaN or infinite coordinate")
            out[t, j] = xyz
    return out


def format_ucla(name: UCLAName, joints: np.ndarray) -> str:
    """json text of a sample; joints (T, 20, 3) written with 6 decimals (values round-trip exactly)."""
    frames = ",".join("[" + ",".join("[%.6f,%.6f,%.6f]" % tuple(p) for p in fr) + "]" for fr in joints)
    return '{"file_name": "%s", "skeletons": [%s], "label": %d}\n' % (name, frames, name.label + 1)


def roundtrip(x: np.ndarray) -> np.ndarray:
    flat = np.asarray(x, np.float64).ravel()
    return np.array([float("%.6f" % v) for v in flat]).reshape(np.shape(x))
