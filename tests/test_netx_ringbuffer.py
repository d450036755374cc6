"""``mksgn run`` as a lava-dl drop-in: inputs as ``io.source.RingBuffer`` takes them (the input
port's shape, time last, a short time axis cycling), outputs as ``io.sink.RingBuffer`` gives them.

The files are written here in lava-dl's own layout (``netx_files.Writer``): a neuron-less input
layer then ``flatten`` + ``dense`` (netx's input port is the dense block's flat (N,)), and a
neuron-less input layer then ``conv`` (the port is the layer's (x, y, z)).
"""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mksgn.pipeline.cli import main

from netx_files import Writer, cuba, weights

C, H, W = 2, 3, 4                      # the input layer, file order (C, H, W)


def _run(*args):
    return CliRunner().invoke(main, ["run", *map(str, args)])


def dense_file(path, rng):
    """input (2, 3, 4) without neurons -> flatten -> dense 24 -> 5 -> dense 5 -> 3 (CUBA)."""
    with Writer(path) as w:
        w.input((C, H, W))
        w.flatten((C * H * W, 1, 1))
        w.dense(5, weights(rng, (5, C * H * W)), cuba(rng, vth=40))
        w.dense(3, weights(rng, (3, 5)), cuba(rng, vth=20))
    return path


def conv_file(path, rng):
    """input (2, 3, 4) without neurons -> conv 3x3 (padding 1) to (3, 3, 4) -> dense 3 (CUBA)."""
    with Writer(path) as w:
        w.input((C, H, W))
        w.conv((3, H, W), weights(rng, (3, C, 3, 3)), cuba(rng, vth=30), padding=(1, 1))
        w.flatten((3 * H * W, 1, 1))
        w.dense(3, weights(rng, (3, 3 * H * W)), cuba(rng, vth=25))
    return path


def spikes(rng, shape):
    return (rng.random(shape) < 0.5).astype(np.uint8)


def run_npz(tmp_path, net, x, steps, name, engine="fast"):
    np.save(tmp_path / f"{name}.npy", x)
    out = tmp_path / f"{name}.npz"
    r = _run(net, "--steps", steps, "--input", tmp_path / f"{name}.npy", "--record", "s,u,v",
             "--engine", engine, "--out", out)
    assert r.exit_code == 0, r.output
    return np.load(out), r.output


def assert_same(a, b):
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_dense_port_input_cycles_and_equals_the_hand_reshaped_run(tmp_path):
    """(24, 3) into the flat port over 8 steps = the (x, y, z, 8) array built by hand."""
    rng = np.random.default_rng(1)
    net = dense_file(tmp_path / "d.net", rng)
    x = spikes(rng, (C * H * W, 3))                                 # lava-dl: (N, T), T < steps
    ring, said = run_npz(tmp_path, net, x, 8, "ring")
    by_hand = np.concatenate([x, x, x], axis=1)[:, :8]              # step t reads frame t % 3
    by_hand = by_hand.reshape(C, H, W, 8).transpose(2, 1, 0, 3)     # (C, H, W) -> (x, y, z)
    assert by_hand.shape == (W, H, C, 8)
    hand, _ = run_npz(tmp_path, net, by_hand, 8, "hand")
    assert_same(ring, hand)
    assert ring["spikes"].shape == (3, 8) and ring["layer2/u"].shape == (5, 8)
    assert np.count_nonzero(ring["layer2/s"])                       # the input reached layer 2
    assert "ring.npy: time axis T = 3 for 8 steps; step t reads frame t mod T" in said


def test_one_frame_is_held_for_every_step_and_a_long_input_is_cut(tmp_path):
    """The stated rule for an (x, y, z, t) array, the old form, with t != steps: time is the
    last axis and step t reads frame t mod T (RingBuffer), so t < steps cycles (it used to be
    refused) and t > steps uses the first frames, as before."""
    rng = np.random.default_rng(2)
    net = conv_file(tmp_path / "c.net", rng)
    frame = spikes(rng, (W, H, C, 1))                               # (x, y, z, 1)
    held, said = run_npz(tmp_path, net, frame, 6, "one")
    tiled, _ = run_npz(tmp_path, net, np.repeat(frame, 6, axis=-1), 6, "six")
    assert_same(held, tiled)
    assert held["layer1/s"].shape == (W, H, 3, 6)                   # conv out: netx (x, y, z, t)
    assert "one.npy: time axis T = 1 for 6 steps" in said
    long = spikes(rng, (W, H, C, 9))
    cut, said = run_npz(tmp_path, net, long, 6, "long")
    first, _ = run_npz(tmp_path, net, long[..., :6], 6, "first")
    assert_same(cut, first)
    assert "time axis" not in said


def test_shape_error_names_both_forms(tmp_path):
    net = dense_file(tmp_path / "d.net", np.random.default_rng(3))
    np.save(tmp_path / "x.npy", np.zeros((C * H * W + 1, 2)))
    r = _run(net, "--steps", 5, "--input", tmp_path / "x.npy", "--out", tmp_path / "o.npz")
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert f"x.npy: shape ({C * H * W + 1}, 2) does not match the network input " \
           f"({W}, {H}, {C}, 5) or ({C * H * W}, 5)" in r.output
    np.save(tmp_path / "x.npy", np.zeros((C * H * W, 0)))
    r = _run(net, "--steps", 5, "--input", tmp_path / "x.npy", "--out", tmp_path / "o.npz")
    assert r.exit_code == 1 and "does not match" in r.output and not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_input_is_a_one_line_exit_2(tmp_path, bad):
    net = dense_file(tmp_path / "d.net", np.random.default_rng(4))
    x = np.zeros((C * H * W, 4))
    x[5, 2] = bad
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "o.npz"
    r = _run(net, "--steps", 4, "--input", tmp_path / "x.npy", "--out", out)
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines() == [
        f"Error: {tmp_path / 'x.npy'}: NaN or infinite values (1 of {C * H * W * 4}, the first "
        f"{bad} at (5, 2)); inputs must be finite numbers"]
    assert not out.exists()


def test_nan_bias_and_non_numeric_input_are_exit_2(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "b.net"
    with Writer(path) as w:
        w.input((4,), cuba(rng))
        w.dense(3, weights(rng, (3, 4)), cuba(rng))
    np.save(tmp_path / "b.npy", np.array([1.0, np.nan, 2.0, 3.0]))
    r = _run(path, "--steps", 3, "--input-bias", tmp_path / "b.npy", "--out", tmp_path / "o.npz")
    assert r.exit_code == 2 and "b.npy: NaN or infinite values (1 of 4" in r.output
    np.save(tmp_path / "s.npy", np.array([["a"] * 3] * 4))
    r = _run(path, "--steps", 3, "--input", tmp_path / "s.npy", "--out", tmp_path / "o.npz")
    assert r.exit_code == 2 and "s.npy: dtype <U1; give integers or real numbers" in r.output


def lava_dl_run(path, x, steps):
    """What a lava-dl user writes: netx.hdf5.Network fed by io.source.RingBuffer(data=x) and
    read by an io.sink.RingBuffer on every block; returns each sink's (*out shape, steps)."""
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    net = netx.hdf5.Network(net_config=str(path))
    source = Source(data=x)
    source.s_out.connect(net.inp)
    sinks = [Sink(shape=block.out.shape, buffer=steps) for block in net.layers]
    for block, sink in zip(net.layers, sinks):
        block.out.connect(sink.a_in)
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        return [sink.data.get() for sink in sinks]
    finally:
        net.stop()


@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("make, shape, blocks", [
    (dense_file, (C * H * W, 3), ("layer2", "layer3")),       # (N, T): the flat port, cycled
    (conv_file, (W, H, C, 1), ("layer1", "layer3"))])         # (x, y, z, 1): one frame held
def test_ring_buffer_input_equals_lava_dl(tmp_path, make, shape, blocks):
    pytest.importorskip("lava.lib.dl.netx")
    rng = np.random.default_rng(6)
    path = make(tmp_path / "n.net", rng)
    x, steps = spikes(rng, shape), 7
    want = lava_dl_run(path, x, steps)
    ours, _ = run_npz(tmp_path, path, x, steps, "fast")
    for name, sink in zip(blocks, want, strict=True):
        assert ours[f"{name}/s"].shape == sink.shape, name
        assert np.array_equal(ours[f"{name}/s"], sink.astype(np.uint8)), name
        assert 0 < np.count_nonzero(sink) < sink.size, name
    assert np.array_equal(ours["spikes"], want[-1].astype(np.uint8))
    if make is dense_file:              # --engine lava feeds stock netx its flat port
        lava, _ = run_npz(tmp_path, path, x, steps, "lava", engine="lava")
        assert_same(ours, lava)
