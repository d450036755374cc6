"""Skeleton layouts: joint count, bone pairs, centre joint and the GCN spatial partitions.

This is the one home of joint topology in mksgn. Every other module (parsers, modalities, the
synthetic generator, the models of later stages) asks a :class:`Layout` instead of repeating lists.

Joint numbering is 0-based here. The two layouts are the Kinect v2 body of NTU RGB+D (25 joints)
and the Kinect v1 body of NW-UCLA (20 joints). The edge lists are the "inward" trees used by
ST-GCN / 2s-AGCN / CTR-GCN (Chen et al., ICCV 2021, ``graph/ntu_rgb_d.py`` and ``graph/ucla.py``):
each pair is (joint, parent), the parent being one step closer to the torso centre.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Layout", "NTU25", "UCLA20", "LAYOUTS", "get_layout"]


@dataclass(frozen=True)
class Layout:
    """A skeleton topology.

    Attributes:
        name: registry key (``"ntu25"``, ``"ucla20"``).
        num_joints: V.
        bones: (joint, parent) 0-based pairs; the root joint has no pair and its bone is zero.
        center_joint: joint the sequences are centred on (spine middle, Kinect joint 2).
        joint_names: V human-readable names, index = joint id.
        torso: (spine base, spine top, left shoulder, right shoulder) joints that fix the body's
            own axes (``preprocess.align_to_body``).
    """

    name: str
    num_joints: int
    bones: tuple[tuple[int, int], ...]
    center_joint: int
    joint_names: tuple[str, ...] = ()
    torso: tuple[int, int, int, int] = (0, 1, 2, 3)

    def __post_init__(self) -> None:
        seen = set()
        for j, p in self.bones:
            if not (0 <= j < self.num_joints and 0 <= p < self.num_joints) or j == p:
                raise ValueError(f"{self.name}: bad bone ({j}, {p})")
            if j in seen:
                raise ValueError(f"{self.name}: joint {j} has two parents")
            seen.add(j)
        if not 0 <= self.center_joint < self.num_joints:
            raise ValueError(f"{self.name}: center joint {self.center_joint} out of range")
        if self.joint_names and len(self.joint_names) != self.num_joints:
            raise ValueError(f"{self.name}: {len(self.joint_names)} names for {self.num_joints} joints")

    @property
    def root(self) -> int:
        """The joint without a parent (its bone vector is zero)."""
        children = {j for j, _ in self.bones}
        (root,) = set(range(self.num_joints)) - children
        return root

    def adjacency(self) -> np.ndarray:
        """Symmetric 0/1 adjacency without self loops, (V, V) float32."""
        a = np.zeros((self.num_joints, self.num_joints), np.float32)
        for j, p in self.bones:
            a[j, p] = a[p, j] = 1.0
        return a

    def partitions(self) -> np.ndarray:
        """ST-GCN / CTR-GCN spatial partition, (3, V, V) float32: [identity, inward, outward].

        As in CTR-GCN ``graph/tools.py``: an edge (i, j) sets ``A[j, i] = 1`` and each directed
        matrix is normalised by its column sums (``A @ D^-1``, D the in-degree per column), so
        ``x @ A`` averages over neighbours. Inward edges point child -> parent; outward reverse.
        """
        v = self.num_joints
        inward = np.zeros((v, v), np.float64)
        outward = np.zeros((v, v), np.float64)
        for j, p in self.bones:
            inward[p, j] = 1.0  # edge (j -> p) sets A[p, j]
            outward[j, p] = 1.0  # edge (p -> j) sets A[j, p]
        return np.stack([np.eye(v), _normalize_columns(inward), _normalize_columns(outward)]).astype(np.float32)


def _normalize_columns(a: np.ndarray) -> np.ndarray:
    col = a.sum(axis=0)
    inv = np.zeros_like(col)
    inv[col > 0] = 1.0 / col[col > 0]
    return a * inv[None, :]


def _one_based(pairs: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple((j - 1, p - 1) for j, p in pairs)


# Kinect v2 joints as numbered in the NTU RGB+D readme (1-based there).
_NTU_NAMES = (
    "spine_base", "spine_mid", "neck", "head",
    "shoulder_left", "elbow_left", "wrist_left", "hand_left",
    "shoulder_right", "elbow_right", "wrist_right", "hand_right",
    "hip_left", "knee_left", "ankle_left", "foot_left",
    "hip_right", "knee_right", "ankle_right", "foot_right",
    "spine_shoulder", "handtip_left", "thumb_left", "handtip_right", "thumb_right",
)

NTU25 = Layout(
    name="ntu25",
    num_joints=25,
    # CTR-GCN graph/ntu_rgb_d.py inward_ori_index (1-based). Root: joint 21, spine shoulder.
    bones=_one_based([(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21),
                      (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1),
                      (18, 17), (19, 18), (20, 19), (22, 23), (23, 8), (24, 25), (25, 12)]),
    center_joint=1,  # spine_mid: the origin of the SGN / CTR-GCN seq_transformation
    joint_names=_NTU_NAMES,
    torso=(0, 20, 4, 8),  # spine_base, spine_shoulder, shoulder_left, shoulder_right
)

# Kinect v1 joints of NW-UCLA: hip centre, spine, shoulder centre, head, then the limbs in the
# same order as Kinect v2 joints 5..20.
UCLA20 = Layout(
    name="ucla20",
    num_joints=20,
    # CTR-GCN graph/ucla.py inward_ori_index (1-based). Root: joint 3, shoulder centre.
    bones=_one_based([(1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9),
                      (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17),
                      (19, 18), (20, 19)]),
    center_joint=1,  # spine: CTR-GCN's feeder_ucla centres on value[0, 1, :]
    joint_names=("hip_center", "spine", "shoulder_center", "head") + _NTU_NAMES[4:20],
    torso=(0, 2, 4, 8),  # hip_center, shoulder_center, shoulder_left, shoulder_right
)

LAYOUTS: dict[str, Layout] = {NTU25.name: NTU25, UCLA20.name: UCLA20}

# Which NTU25 joint each UCLA20 joint corresponds to (used by the synthetic generator).
UCLA20_FROM_NTU25: tuple[int, ...] = (0, 1, 20, 3) + tuple(range(4, 20))


def get_layout(name: str) -> Layout:
    """Look a layout up by name (``"ntu25"``/``"ucla20"``; dataset names ``ntu60``/``ntu120``/``ucla`` too)."""
    aliases = {"ntu": "ntu25", "ntu60": "ntu25", "ntu120": "ntu25", "ucla": "ucla20", "nw-ucla": "ucla20"}
    key = aliases.get(name.lower(), name.lower())
    try:
        return LAYOUTS[key]
    except KeyError:
        raise KeyError(f"unknown skeleton layout {name!r}; known: {', '.join(LAYOUTS)}") from None
