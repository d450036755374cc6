"""NTU RGB+D 60/120: sample names, benchmark splits, and the ``.skeleton`` text format (read and write).

File format (Kinect v2 SDK dump, one file per sample, documented in github.com/shahroudy/NTURGB-D
``Matlab/read_skeleton_file.m``)::

    <frame count>
    per frame:   <body count>                 (0 for a frame the tracker lost)
    per body:    <10 fields: bodyID clippedEdges handLeftConfidence handLeftState
                  handRightConfidence handRightState isRestricted leanX leanY trackingState>
                 <joint count = 25>
    per joint:   <12 fields: x y z depthX depthY colorX colorY
                  orientationW orientationX orientationY orientationZ trackingState>

x, y, z are camera-space metres. Sample names are ``SsssCcccPpppRrrrAaaa``: setup, camera,
performer (subject), replication, action (all 1-based).

Benchmarks (training side; the rest is the test side):
- NTU60 cross-subject: the 20 performers below; cross-view: cameras 2 and 3
  (Shahroudy et al., "NTU RGB+D: A Large Scale Dataset for 3D Human Activity Analysis", CVPR 2016).
- NTU120 cross-subject: the 53 performers below; cross-setup: even setup numbers
  (Liu et al., "NTU RGB+D 120: A Large-Scale Benchmark for 3D Human Activity Understanding",
  TPAMI 2020). Same lists as CTR-GCN's ``data/ntu*/seq_transformation.py``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import SkeletonFileError

__all__ = [
    "NTUName", "parse_name", "NTU60_XSUB_TRAIN", "NTU120_XSUB_TRAIN", "NTU60_XVIEW_TRAIN_CAMERAS",
    "BENCHMARKS", "split_of", "in_dataset", "missing_skeleton_names", "Body", "SkeletonSequence",
    "parse_skeleton", "read_skeleton_file", "format_skeleton", "NUM_JOINTS",
]

NUM_JOINTS = 25
BODY_FIELDS = 10
JOINT_FIELDS = 12

NTU60_XSUB_TRAIN = frozenset({1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38})
NTU120_XSUB_TRAIN = NTU60_XSUB_TRAIN | frozenset({
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89,
    91, 92, 93, 94, 95, 97, 98, 100, 103})
NTU60_XVIEW_TRAIN_CAMERAS = frozenset({2, 3})

# dataset -> benchmark names, in the order they are prepared.
BENCHMARKS: dict[str, tuple[str, ...]] = {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xset")}
# Ranges of the two releases: NTU60 is setups 1-17 with actions 1-60.
_LIMITS = {"ntu60": (17, 60), "ntu120": (32, 120)}

_NAME_RE = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


@dataclass(frozen=True)
class NTUName:
    """The IDs encoded in a sample name (all 1-based, as in the name)."""

    setup: int
    camera: int
    subject: int
    replication: int
    action: int

    def __str__(self) -> str:
        return (f"S{self.setup:03d}C{self.camera:03d}P{self.subject:03d}"
                f"R{self.replication:03d}A{self.action:03d}")

    @property
    def label(self) -> int:
        """0-based class index."""
        return self.action - 1


def parse_name(stem: str) -> NTUName | None:
    """``"S001C002P003R002A013"`` -> NTUName; None if the stem is not an NTU sample name."""
    m = _NAME_RE.fullmatch(stem)
    if m is None:
        return None
    ids = [int(g) for g in m.groups()]
    if min(ids) < 1 or ids[1] > 3 or ids[3] > 2:  # 3 cameras, 2 replications in both releases
        return None
    return NTUName(*ids)


def in_dataset(name: NTUName, dataset: str) -> bool:
    """Whether a sample belongs to the release (NTU60 = setups 1-17, actions 1-60)."""
    max_setup, max_action = _LIMITS[dataset]
    return name.setup <= max_setup and name.action <= max_action


def split_of(name: NTUName, dataset: str, benchmark: str) -> str:
    """``"train"`` or ``"test"`` for a sample under a standard benchmark."""
    if benchmark == "xsub":
        train = NTU60_XSUB_TRAIN if dataset == "ntu60" else NTU120_XSUB_TRAIN
        return "train" if name.subject in train else "test"
    if benchmark == "xview" and dataset == "ntu60":
        return "train" if name.camera in NTU60_XVIEW_TRAIN_CAMERAS else "test"
    if benchmark == "xset" and dataset == "ntu120":
        return "train" if name.setup % 2 == 0 else "test"
    raise ValueError(f"unknown benchmark {benchmark!r} for {dataset}")


def missing_skeleton_names(dataset: str = "ntu120") -> frozenset[str]:
    """The authors' list of samples with missing/incomplete skeletons (302 for NTU60, 535 for NTU120)."""
    text = resources.files("mksgn.data").joinpath("ntu_missing_skeletons.txt").read_text()
    names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if dataset == "ntu60":
        names = [n for n in names if in_dataset(parse_name(n), "ntu60")]
    return frozenset(names)


@dataclass
class Body:
    """One tracked body: the valid-frame indices it appears in and its joints there.

    joints: (n, 25, 3) float64 camera-space metres, n = len(frames).
    """

    body_id: str
    frames: list[int] = field(default_factory=list)
    joints: np.ndarray | list = field(default_factory=list)


@dataclass
class SkeletonSequence:
    """A parsed ``.skeleton`` file. Frames with no body are dropped (as SGN / CTR-GCN do).

    num_frames: frames that held at least one body (the valid frames); bodies index into them.
    dropped_frames: 0-based indices (in the file) of frames with a body count of 0.
    """

    name: str
    num_frames: int
    bodies: dict[str, Body]
    dropped_frames: list[int]


def read_skeleton_file(path: str | Path) -> SkeletonSequence:
    """Read and parse one ``.skeleton`` file; raises :class:`SkeletonFileError` (only) if it is bad."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SkeletonFileError(path, None, f"cannot read: {e.strerror or e}") from None
    return parse_skeleton(raw, path)


def _int_field(tok: str, path, line: int, what: str) -> int:
    if not tok.isascii() or not tok.isdigit():
        raise SkeletonFileError(path, line, f"{what} must be a non-negative integer, got {tok[:40]!r}")
    return int(tok)


def _text_lines(raw: bytes | str, path: str) -> list[str]:
    """The lines of an ASCII text without NUL bytes; SkeletonFileError naming the line if not."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as e:
            raise SkeletonFileError(path, raw[: e.start].count(b"\n") + 1, "not an ASCII text file") from None
    else:
        text = raw
    if "\x00" in text:
        raise SkeletonFileError(path, text[: text.index("\x00")].count("\n") + 1, "NUL byte in text")
    return text.splitlines()


def _frame_count(lines: list[str], path: str) -> int:
    """The frame count of line 1 (at least 1)."""
    if not lines or not lines[0].strip():
        raise SkeletonFileError(path, 1, "empty file (no frame count)")
    first = lines[0].split()
    if len(first) != 1:
        raise SkeletonFileError(path, 1, f"frame count line has {len(first)} fields, expected 1")
    num_frames = _int_field(first[0], path, 1, "frame count")
    if num_frames == 0:
        raise SkeletonFileError(path, 1, "zero frames")
    return num_frames


def _count_line(lines: list[str], i: int, path: str, what: str) -> int:
    """The single non-negative integer on line index ``i`` (``what``: "body count", ...)."""
    toks = lines[i].split()
    if len(toks) != 1:
        raise SkeletonFileError(path, i + 1, f"{what} line has {len(toks)} fields, expected 1")
    return _int_field(toks[0], path, i + 1, what)


def _numeric(tokens: list[str]) -> bool:
    """Whether every token is a float literal as the released files write them (no ``_``)."""
    try:
        np.array(tokens, dtype=np.float64)
    except ValueError:
        return False
    return not any("_" in t for t in tokens)


def _body_header(lines: list[str], cur: int, frame: int, path: str) -> str:
    """The body ID of the body line at index ``cur``, its 10 fields and the joint count after it
    checked (``frame``: 0-based, for messages)."""
    if cur + 1 >= len(lines):
        raise SkeletonFileError(path, min(cur, len(lines)) + 1, f"truncated: file ends in frame {frame + 1}")
    btoks = lines[cur].split()
    if len(btoks) != BODY_FIELDS:
        raise SkeletonFileError(path, cur + 1, f"body line has {len(btoks)} fields, expected {BODY_FIELDS}")
    body_id = str(_int_field(btoks[0], path, cur + 1, "body ID"))
    if not _numeric(btoks[1:]):
        raise SkeletonFileError(path, cur + 1, "non-numeric field in body line")
    n_joints = _count_line(lines, cur + 1, path, "joint count")
    if n_joints != NUM_JOINTS:
        raise SkeletonFileError(path, cur + 2, f"joint count {n_joints}, expected {NUM_JOINTS}")
    return body_id


def _joint_xyz(lines: list[str], start: int, frame: int, path: str) -> np.ndarray:
    """x, y, z (25, 3) float64 metres of the 25 joint lines from index ``start``."""
    if start + NUM_JOINTS > len(lines):
        raise SkeletonFileError(path, len(lines) + 1, f"truncated: file ends inside the joints of frame {frame + 1}")
    rows = [ln.split() for ln in lines[start:start + NUM_JOINTS]]
    for k, r in enumerate(rows):
        if len(r) != JOINT_FIELDS:
            raise SkeletonFileError(path, start + k + 1,
                                    f"joint line has {len(r)} fields, expected {JOINT_FIELDS}")
    try:
        values = np.array(rows, dtype=np.float64)
        bad_text = any("_" in ln for ln in lines[start:start + NUM_JOINTS])
    except ValueError:
        values, bad_text = None, True
    if bad_text:
        for k, r in enumerate(rows):
            if not _numeric(r):
                raise SkeletonFileError(path, start + k + 1, "non-numeric field in joint line")
    xyz = values[:, :3]
    finite = np.isfinite(xyz).all(axis=1)
    if not finite.all():
        k = int(np.argmin(finite))
        raise SkeletonFileError(path, start + k + 1, "NaN or infinite joint coordinate")
    return xyz


def _read_body(lines: list[str], cur: int, frame: int, valid: int, bodies: dict[str, Body],
               path: str) -> int:
    """Parse the body whose body line is at index ``cur`` into ``bodies`` (valid frame
    ``valid``); returns the index of the line after its joints."""
    body_id = _body_header(lines, cur, frame, path)
    xyz = _joint_xyz(lines, cur + 2, frame, path)
    body = bodies.get(body_id)
    if body is None:
        body = bodies[body_id] = Body(body_id)
    if body.frames and body.frames[-1] == valid:
        raise SkeletonFileError(path, cur + 1, f"body {body_id} appears twice in frame {frame + 1}")
    body.frames.append(valid)
    body.joints.append(xyz)
    return cur + 2 + NUM_JOINTS


def parse_skeleton(raw: bytes | str, path: str | Path = "<memory>") -> SkeletonSequence:
    """Parse the text of a ``.skeleton`` file (see module docstring). Strict: any deviation raises.

    Line numbers in errors are 1-based. Blank lines at the end of the file are allowed; any other
    text after the last frame is an error (the frame count would then be wrong).
    """
    path = str(path)
    lines = _text_lines(raw, path)
    n_lines = len(lines)
    num_frames = _frame_count(lines, path)
    bodies: dict[str, Body] = {}
    dropped: list[int] = []
    cur = 1  # index into lines (0-based); error line numbers are cur + 1
    valid = 0
    for f in range(num_frames):
        if cur >= n_lines:
            raise SkeletonFileError(path, cur + 1, f"truncated: file ends in frame {f + 1} of {num_frames}")
        n_bodies = _count_line(lines, cur, path, "body count")
        cur += 1
        if n_bodies == 0:
            dropped.append(f)
            continue
        if n_bodies > 6:  # the Kinect v2 tracks at most 6 bodies
            raise SkeletonFileError(path, cur, f"body count {n_bodies} > 6")
        for _ in range(n_bodies):
            cur = _read_body(lines, cur, f, valid, bodies, path)
        valid += 1
    for k in range(cur, n_lines):
        if lines[k].strip():
            raise SkeletonFileError(path, k + 1, f"unexpected text after the last of {num_frames} frames")
    if valid == 0:
        raise SkeletonFileError(path, 1, f"no skeleton in any of the {num_frames} frames")
    for body in bodies.values():
        body.joints = np.stack(body.joints)
    return SkeletonSequence(Path(path).stem, valid, bodies, dropped)


# ----------------------------------------------------------------------------- writing
# Fixed decimals: x y z with 7 (0.1 mm), depth/colour pixels with 4, orientation with 7.
_JOINT_FMT = "%.7f %.7f %.7f %.4f %.4f %.4f %.4f %.7f %.7f %.7f %.7f %d"


def format_skeleton(frames: list[list[tuple[str, np.ndarray, np.ndarray]]]) -> str:
    """Text of a ``.skeleton`` file.

    Args:
        frames: per frame a list (possibly empty: a dropped frame) of bodies, each
            ``(body_line, joints, states)`` with body_line the 10 fields as text, joints
            (25, 11) float (x y z depthX depthY colorX colorY oW oX oY oZ) and states (25,) int.
    """
    out = [str(len(frames))]
    for bodies in frames:
        out.append(str(len(bodies)))
        for body_line, joints, states in bodies:
            out.append(body_line)
            out.append(str(NUM_JOINTS))
            for j in range(NUM_JOINTS):
                out.append(_JOINT_FMT % (*joints[j], states[j]))
    return "\r\n".join(out) + "\r\n"  # the released files use Windows line ends


def roundtrip_xyz(x: np.ndarray) -> np.ndarray:
    """The values a parser reads back for coordinates written by :func:`format_skeleton` (float64)."""
    flat = np.asarray(x, np.float64).ravel()
    return np.array([float("%.7f" % v) for v in flat]).reshape(np.shape(x))
