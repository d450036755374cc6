"""Bone and motion features against hand-computed values."""
import numpy as np
import pytest

from mksgn.data.layouts import Layout, NTU25
from mksgn.data.modalities import bone, compute, motion

CHAIN = Layout("chain", 3, ((1, 0), (2, 1)), 0)


def _x():
    # (C=3, T=3, V=3, M=2); person 2 empty
    x = np.zeros((3, 3, 3, 2), np.float32)
    x[:, 0, :, 0] = [[0, 1, 3], [0, 0, 0], [1, 1, 1]]      # columns = joints
    x[:, 1, :, 0] = [[0, 2, 5], [1, 1, 2], [1, 1, 1]]
    x[:, 2, :, 0] = [[1, 1, 1], [0, 0, 4], [0, 2, 0]]
    return x


def test_bone_hand_values():
    b = bone(_x(), CHAIN)
    # frame 0: joint1 - joint0 = (1,0,0), joint2 - joint1 = (2,0,0), root zero
    np.testing.assert_array_equal(b[:, 0, :, 0], [[0, 1, 2], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(b[:, 1, :, 0], [[0, 2, 3], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(b[:, 2, :, 0], [[0, 0, 0], [0, 0, 4], [0, 2, -2]])
    assert not b[..., 1].any()


def test_motion_hand_values():
    m = motion(_x())
    np.testing.assert_array_equal(m[:, 0, :, 0], [[0, 1, 2], [1, 1, 2], [0, 0, 0]])
    np.testing.assert_array_equal(m[:, 1, :, 0], [[1, -1, -4], [-1, -1, 2], [-1, 1, -1]])
    assert not m[:, 2].any()  # last frame zero


def test_compute_order_and_bone_motion():
    x = _x()
    out = compute(x, ("bone_motion", "joint", "joint_motion", "bone"), CHAIN)
    assert out.shape == (4, 3, 3, 3, 2)
    np.testing.assert_array_equal(out[1], x)
    np.testing.assert_array_equal(out[3], bone(x, CHAIN))
    np.testing.assert_array_equal(out[2], motion(x))
    np.testing.assert_array_equal(out[0], motion(bone(x, CHAIN)))
    np.testing.assert_array_equal(out[0][:, 0, :, 0], [[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"^unknown modalities \['velocity'\]; choose from "):
        compute(x, ("velocity",), CHAIN)


def test_ntu_bone_root_zero_and_shape_check():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 25, 2)).astype(np.float32)
    b = bone(x, NTU25)
    assert not b[:, :, 20].any()
    np.testing.assert_array_equal(b[:, :, 3], x[:, :, 3] - x[:, :, 2])  # head - neck
    np.testing.assert_array_equal(b[:, :, 22], x[:, :, 22] - x[:, :, 7])  # thumb_left - hand_left
    with pytest.raises(ValueError, match="^ntu25 has 25 joints, array has 20$"):
        bone(x[:, :, :20], NTU25)
