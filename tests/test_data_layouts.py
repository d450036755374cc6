"""Skeleton layouts: bone trees and the spatial partition matrices."""
import dataclasses

import numpy as np
import pytest

from mksgn.data.layouts import NTU25, UCLA20, get_layout, Layout


def test_layout_sizes_and_roots():
    assert NTU25.num_joints == 25 and len(NTU25.bones) == 24 and NTU25.root == 20
    assert UCLA20.num_joints == 20 and len(UCLA20.bones) == 19 and UCLA20.root == 2
    assert NTU25.center_joint == 1 and UCLA20.center_joint == 1
    assert get_layout("ntu60") is NTU25 and get_layout("ucla") is UCLA20 and get_layout("ntu25") is NTU25
    with pytest.raises(KeyError, match=r"unknown skeleton layout 'kinetics'; known: ntu25, ucla20"):
        get_layout("kinetics")


def test_layout_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError,
                       match="^cannot assign to field 'num_joints'$"):
        NTU25.num_joints = 3
    assert NTU25.num_joints == 25
    with pytest.raises(ValueError, match="^bad: joint 0 has two parents$"):
        Layout("bad", 3, ((0, 1), (0, 2)), 0)
    with pytest.raises(ValueError, match=r"^bad: bad bone \(1, 1\)$"):
        Layout("bad", 3, ((1, 1),), 0)
    with pytest.raises(ValueError, match="^bad: center joint 3 out of range$"):
        Layout("bad", 3, ((1, 0), (2, 1)), 3)


def test_partitions_match_hand_computed_chain():
    # chain 0 <- 1 <- 2 (1's parent is 0, 2's parent is 1), root 0
    lay = Layout("chain", 3, ((1, 0), (2, 1)), 0)
    a = lay.partitions()
    assert a.shape == (3, 3, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a[0], np.eye(3, dtype=np.float32))
    # inward edges (1->0), (2->1) set A[0,1], A[1,2]; each column has one entry -> stays 1
    np.testing.assert_array_equal(a[1], np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]], np.float32))
    np.testing.assert_array_equal(a[2], np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32))


def test_partitions_column_normalised():
    for lay in (NTU25, UCLA20):
        a = lay.partitions()
        assert a.shape == (3, lay.num_joints, lay.num_joints)
        for k in (1, 2):
            col = a[k].sum(axis=0)
            assert set(np.round(col, 6).tolist()) <= {0.0, 1.0}
        # outward: joint 20 (spine shoulder) has 4 children in NTU -> A_out[child, 20] = 1/1 each,
        # and inward column 20 is empty (root has no parent)
        np.testing.assert_array_equal((a[1] + a[2] > 0), (lay.adjacency() > 0))
    a = NTU25.partitions()
    assert a[1][:, 20].sum() == 0.0
    # in-degree of the inward graph at spine shoulder: joints 2, 3, 5, 9 (1-based 2,3,5,9 -> 1,2,4,8)
    np.testing.assert_array_equal(np.flatnonzero(a[1][20]), [1, 2, 4, 8])
