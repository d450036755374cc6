"""Denoising, actor assembly, centring, crop-resize and rotation."""
import numpy as np
import pytest
import torch

from mksgn.data.ntu import Body, SkeletonSequence
from mksgn.data.preprocess import (DenoiseConfig, assemble_actors, center_on_first_frame, denoise_bodies,
                                   limit_frames, prepare_ntu_sequence, random_rotate, resize_time,
                                   valid_crop_resize, valid_length)


def _standing(n, dx=0.0, rng=None, move=0.0):
    """A tall, narrow body: y spread 1.6, x spread 0.4 (valid by the spread test)."""
    rng = rng or np.random.default_rng(0)
    j = np.zeros((n, 25, 3))
    j[:, :, 1] = np.linspace(0, 1.6, 25)
    j[:, :, 0] = np.linspace(-0.2, 0.2, 25) + dx
    j[:, :, 2] = 3.0
    j += move * rng.normal(size=j.shape)
    return j


def _seq(*bodies, num_frames):
    return SkeletonSequence("S001C001P001R001A001", num_frames,
                            {b.body_id: b for b in bodies}, [])


def test_length_denoise_drops_short_bodies():
    main = Body("1", list(range(30)), _standing(30, move=0.05))
    blip = Body("2", list(range(5, 16)), _standing(11, dx=1.0))  # 11 frames: <= 11 is noise
    kept, notes = denoise_bodies(_seq(main, blip, num_frames=30))
    assert [b.body_id for b in kept] == ["1"] and "length" in notes[0]


def test_spread_denoise_drops_wide_bodies():
    main = Body("1", list(range(30)), _standing(30, move=0.01))
    wide = _standing(30, dx=1.0)[..., [1, 0, 2]]  # lying: x spread 1.6, y spread 0.4
    kept, notes = denoise_bodies(_seq(main, Body("2", list(range(30)), wide), num_frames=30))
    assert [b.body_id for b in kept] == ["1"] and "spread" in notes[0]


def test_ranking_by_motion_and_optional_motion_filter():
    rng = np.random.default_rng(1)
    calm = Body("1", list(range(30)), _standing(30, move=0.0))
    busy = Body("2", list(range(30)), _standing(30, dx=1.0, rng=rng, move=0.3))
    kept, _ = denoise_bodies(_seq(calm, busy, num_frames=30))
    assert [b.body_id for b in kept] == ["2", "1"]
    # motion of a static standing body = summed variance of its joints (~0.23+0.014); within [0.09, 2]
    kept, notes = denoise_bodies(_seq(calm, busy, num_frames=30), DenoiseConfig(motion_filter=True))
    assert [b.body_id for b in kept] == ["2", "1"]
    # a small static detection: summed variance ~0.022 < 0.089925 -> dropped only with the filter
    tiny = Body("3", list(range(30)), 0.3 * _standing(30, dx=-3.0))
    kept, _ = denoise_bodies(_seq(calm, tiny, num_frames=30))
    assert [b.body_id for b in kept] == ["1", "3"]
    kept, notes = denoise_bodies(_seq(calm, tiny, num_frames=30), DenoiseConfig(motion_filter=True))
    assert [b.body_id for b in kept] == ["1"] and "motion" in notes[0]


def test_assemble_actors_slots_and_missing_frames():
    a = Body("a", [0, 1, 2, 3], np.full((4, 25, 3), 1.0))
    b = Body("b", [5, 6], np.full((2, 25, 3), 2.0))  # no overlap with a -> actor 1 slot
    c = Body("c", [1, 2, 3, 4], np.full((4, 25, 3), 3.0))  # overlaps a -> actor 2 slot
    x = assemble_actors([a, b, c], 8, 25)
    # frame 7 holds nobody -> removed; 7 frames remain
    assert x.shape == (7, 2, 25, 3)
    assert (x[:4, 0] == 1).all() and (x[5:7, 0] == 2).all() and not x[4, 0].any()
    assert not x[0, 1].any() and (x[1:5, 1] == 3).all() and not x[5:, 1].any()


def test_center_on_first_frame():
    x = np.zeros((3, 2, 25, 3))
    x[1:, 0] = np.arange(75).reshape(25, 3)  # actor 1 absent in frame 0
    x[:, 1, :, :] = 5.0
    y = center_on_first_frame(x, 1)
    np.testing.assert_array_equal(y[1, 0, 1], [0, 0, 0])
    np.testing.assert_array_equal(y[2, 0, 0], x[2, 0, 0] - x[1, 0, 1])
    assert not y[0, 0].any()  # absent stays zero
    np.testing.assert_array_equal(y[0, 1, 0], 5.0 - x[1, 0, 1])


def test_limit_frames_uniform_subsampling():
    x = np.arange(10)[:, None]
    y, r = limit_frames(x, 4)
    assert r and y[:, 0].tolist() == [0, 3, 6, 9]
    assert limit_frames(x, 10)[1] is False


def test_prepare_single_body_exact():
    j = _standing(12, move=0.1)
    seq = _seq(Body("1", list(range(12)), j), num_frames=12)
    x, notes = prepare_ntu_sequence(seq, 300)
    assert x.shape == (3, 12, 25, 2) and x.dtype == np.float32 and notes == []
    np.testing.assert_array_equal(x[..., 0], (j - j[0, 1]).transpose(2, 0, 1).astype(np.float32))
    assert not x[..., 1].any()


@pytest.mark.parametrize("t,size", [(10, 64), (100, 64), (64, 64), (1, 8), (7, 3)])
def test_resize_time_matches_torch_linear(t, size):
    x = np.random.default_rng(t).normal(size=(3, t, 5, 2)).astype(np.float32)
    ours = resize_time(x, size)
    flat = torch.tensor(x).permute(0, 2, 3, 1).reshape(1, -1, t)
    ref = torch.nn.functional.interpolate(flat, size=size, mode="linear", align_corners=False)
    ref = ref.reshape(3, 5, 2, size).permute(0, 3, 1, 2).numpy()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
    assert ours.shape == (3, size, 5, 2)


def _ramp(t_max, valid):
    x = np.zeros((3, t_max, 25, 2), np.float32)
    x[:, :valid] = np.arange(1, valid + 1, dtype=np.float32)[None, :, None, None]
    return x


def test_crop_resize_test_mode_central():
    x = _ramp(300, 100)
    y = valid_crop_resize(x, 100, 64, (0.95,))
    assert y.shape == (3, 64, 25, 2)
    # central 95 %: bias int(0.05 * 100 / 2) = 2 -> frames 2..97 (values 3..98)
    assert y.min() >= 3.0 - 1e-6 and y.max() <= 98.0 + 1e-6
    assert y[0, 0, 0, 0] == pytest.approx(3.0 + (0.5 * 96 / 64 - 0.5))
    assert valid_length(x) == 100


def test_crop_resize_train_mode_interval():
    x = _ramp(300, 200)
    rng = np.random.default_rng(0)
    spans = []
    for _ in range(200):
        y = valid_crop_resize(x, 200, 64, (0.5, 1.0), rng)
        assert y.shape == (3, 64, 25, 2)
        lo, hi = float(y.min()), float(y.max())
        assert 1.0 <= lo and hi <= 200.0  # never reads padding
        spans.append(hi - lo)
        assert (np.diff(y[0, :, 0, 0]) >= 0).all()  # order of time kept
    spans = np.array(spans)
    assert spans.min() >= 0.5 * 200 - 3 and spans.max() <= 200
    assert spans.std() > 5  # the interval really is random
    # short sequence: the crop keeps everything (at least `window` frames or all valid ones)
    y = valid_crop_resize(_ramp(300, 20), 20, 64, (0.5, 1.0), rng)
    assert y.min() == pytest.approx(1.0) and y.max() == pytest.approx(20.0)


def test_random_rotate_preserves_lengths():
    x = np.random.default_rng(0).normal(size=(3, 8, 25, 2)).astype(np.float32)
    y = random_rotate(x, np.random.default_rng(1))
    np.testing.assert_allclose(np.linalg.norm(y, axis=0), np.linalg.norm(x, axis=0), rtol=1e-5)
    assert not np.allclose(x, y)


# ---------------------------------------------------------------- NW-UCLA pipeline (view_norm)
def test_view_transform_is_ctrgcn_row_vector_rotation():
    from mksgn.data.preprocess import view_transform
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 20, 1))
    ax, ay = 0.4, -0.9
    got = view_transform(x, ax, ay)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), np.sin(ax)], [0, -np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, -np.sin(ay)], [0, 1, 0], [np.sin(ay), 0, np.cos(ay)]])
    pts = x.transpose(1, 2, 3, 0).reshape(-1, 3)          # one row per point
    want = (pts @ (ry @ rx)).reshape(5, 20, 1, 3).transpose(3, 0, 1, 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # a rotation keeps every point's distance to the origin
    np.testing.assert_allclose(np.linalg.norm(got, axis=0), np.linalg.norm(x, axis=0), atol=1e-12)


def test_minmax_normalise_maps_each_axis_of_the_valid_frames_to_pm1():
    from mksgn.data.preprocess import minmax_normalise
    rng = np.random.default_rng(1)
    x = np.zeros((3, 10, 20, 1), np.float32)
    x[:, :7] = rng.normal(size=(3, 7, 20, 1)) * np.array([1, 5, 0.1])[:, None, None, None]
    x[2, :7] = 0.25                                        # an axis without extent
    y = minmax_normalise(x, 7)
    assert y.shape == (3, 7, 20, 1) and y.dtype == np.float32
    for c in (0, 1):
        assert y[c].min() == -1 and y[c].max() == 1
    assert not y[2].any()
    # scale and shift of the input do not matter (why CTR-GCN's random scale is not drawn)
    np.testing.assert_allclose(minmax_normalise(3 * x - 2, 7), y, atol=1e-6)


def test_frame_sampling():
    from mksgn.data.preprocess import random_frame_indices, uniform_frame_indices
    rng = np.random.default_rng(2)
    for n in (1, 5, 31, 201):
        idx = random_frame_indices(n, 52, rng)
        assert idx.shape == (52,) and (np.diff(idx) >= 0).all() and 0 <= idx.min() <= idx.max() < n
        u = uniform_frame_indices(n, 52)
        assert u[0] == 0 and u[-1] == n - 1 and (np.diff(u) >= 0).all()
    assert len(set(random_frame_indices(201, 52, rng).tolist())) > 40  # spread, not one frame


def test_view_norm_dataset_draws_are_reproducible_and_test_is_deterministic(tmp_path):
    from mksgn.data import synth
    from mksgn.data.dataset import SkeletonDataset
    from mksgn.data.prepare import PrepareConfig, prepare
    cfg = synth.SynthConfig("ucla", seed=0, classes=2, subjects=3, samples_per_class=4, frames=30)
    synth.generate(cfg, tmp_path / "raw", workers=1)
    prepare(PrepareConfig("ucla", tmp_path / "raw", tmp_path / "prep", workers=1))
    d = tmp_path / "prep" / "xview"
    a = SkeletonDataset(d, "train", window=20, pipeline="view_norm", seed=5)
    b = SkeletonDataset(d, "train", window=20, pipeline="view_norm", seed=5)
    x1, x2 = a[0][0], b[0][0]
    assert x1.shape == (4, 3, 20, 20, 1) and torch.equal(x1, x2)
    assert not torch.equal(a[0][0], x1)                   # the next draw differs
    te = SkeletonDataset(d, "test", window=20, pipeline="view_norm", modalities=("joint",))
    raw = np.asarray(te.data[0])
    n = int(te.num_frames[0])
    lo = raw[:, :n].min(axis=(1, 2, 3))
    hi = raw[:, :n].max(axis=(1, 2, 3))
    want = (raw[:, np.linspace(0, n - 1, 20).astype(int)] - lo[:, None, None, None]) \
        / (hi - lo)[:, None, None, None] * 2 - 1
    np.testing.assert_allclose(te[0][0].numpy()[0], want, atol=1e-6)
    with pytest.raises(ValueError, match="unknown pipeline"):
        SkeletonDataset(d, "test", pipeline="nope")


def test_align_to_body_removes_the_camera_view():
    from mksgn.data.layouts import get_layout
    from mksgn.data.preprocess import align_to_body, rotation_matrix
    lay = get_layout("ucla")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 12, 20, 1))
    a = align_to_body(x, 10, lay.torso)
    base, top, left, right = lay.torso
    f = a[:, :5, :, 0]
    up = (f[:, :, top] - f[:, :, base]).mean(1)
    across = (f[:, :, left] - f[:, :, right]).mean(1)
    assert abs(up[0]) < 1e-9 and abs(up[2]) < 1e-9 and up[1] > 0      # spine along +y
    assert abs(across[2]) < 1e-9 and across[0] > 0                    # shoulders in the x-y plane
    # the same body seen from another camera (any rotation) aligns to the same array
    r = rotation_matrix(0.7, -1.1, 2.0)
    seen = np.einsum("ij,jtvm->itvm", r, x)
    np.testing.assert_allclose(align_to_body(seen, 10, lay.torso), a, atol=1e-9)
