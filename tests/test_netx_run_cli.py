"""``mksgn run`` on the netx types beyond CUBA chains: --engine fast equals --engine lava."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mksgn.pipeline.cli import main

from netx_files import Writer, cuba, sdnn, weights


def _run(*args):
    return CliRunner().invoke(main, ["run", *map(str, args)])


def _both(tmp_path, path, steps, inp, record, extra=()):
    outs = []
    for eng in ("fast", "lava"):
        out = tmp_path / f"{path.stem}-{eng}.npz"
        r = _run(path, "--steps", steps, "--input", inp, "--engine", eng, "--record", record,
                 "--out", out, *extra)
        assert r.exit_code == 0, r.output
        outs.append(np.load(out))
    a, b = outs
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    return a, r.output


@pytest.mark.lava
def test_run_sdnn_file_fast_equals_lava_with_layers(tmp_path):
    rng = np.random.default_rng(20)
    path = tmp_path / "sd.net"
    with Writer(path) as w:
        w.input((2, 4, 3), sdnn(rng, vth=3))
        w.conv((3, 4, 3), weights(rng, (3, 2, 3, 3)), sdnn(rng), padding=(1, 1))
        w.flatten((36, 1, 1))
        w.dense(5, weights(rng, (5, 36)), sdnn(rng, vth=100), bias=rng.integers(-9, 9, 5))
        w.dense(2, weights(rng, (2, 5)), sdnn(rng, sigma_output=True))
    x = rng.integers(-40, 60, (3, 4, 2, 7))                          # (x, y, z, t) currents
    np.save(tmp_path / "x.npy", x)
    z, _ = _both(tmp_path, path, 7, tmp_path / "x.npy", "s,sigma,act,residue")
    assert z["spikes"].dtype == np.int64 and z["spikes"].shape == (2, 7)
    assert "layer3/residue" in z.files and np.count_nonzero(z["layer3/sigma"])
    z, _ = _both(tmp_path, path, 7, tmp_path / "x.npy", "s", ("--layers", 2))
    assert z["spikes"].shape == (3, 4, 3, 7)                          # layer 1's output


@pytest.mark.slow
def test_run_compile_flag_gives_the_same_bits(tmp_path):
    rng = np.random.default_rng(23)
    path = tmp_path / "c.net"
    with Writer(path) as w:
        w.input((2, 4, 3), sdnn(rng, vth=3))
        w.conv((3, 4, 3), weights(rng, (3, 2, 3, 3)), sdnn(rng), padding=(1, 1))
        w.flatten((36, 1, 1))
        w.dense(4, weights(rng, (4, 36)), cuba(rng))
    np.save(tmp_path / "x.npy", rng.integers(-40, 60, (3, 4, 2, 7)))
    outs = []
    for flag in ((), ("--compile",)):
        out = tmp_path / f"o{len(flag)}.npz"
        r = _run(path, "--steps", 7, "--input", tmp_path / "x.npy", "--out", out,
                 "--record", "s,u,v,sigma,act,residue", *flag)
        assert r.exit_code == 0, r.output
        outs.append(np.load(out))
    assert sorted(outs[0].files) == sorted(outs[1].files)
    for k in outs[0].files:
        assert np.array_equal(outs[0][k], outs[1][k]), k


@pytest.mark.lava
def test_run_pool_file_fast_equals_lava_processes(tmp_path):
    rng = np.random.default_rng(21)
    path = tmp_path / "pool.net"
    with Writer(path) as w:
        w.input((2, 4, 4))
        w.layer("pool", (2, 2, 2), cuba(rng, vth=2), kernelSize=(2, 2), stride=(2, 2),
                weight=np.full((1, 1, 2, 2), 2.0))
        w.layer("flatten", (8, 1, 1))
        w.dense(3, weights(rng, (3, 8), 0, 200), cuba(rng))
    x = (rng.random((4, 4, 2, 9)) < 0.5).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    z, out = _both(tmp_path, path, 9, tmp_path / "x.npy", "s,u,v")
    assert "stock netx cannot build" in out and "pool is not implemented" in out


def test_run_errors_name_layer_and_write_nothing(tmp_path):
    rng = np.random.default_rng(22)
    path = tmp_path / "bad.net"
    with Writer(path) as w:
        w.input((4,), cuba(rng))
        w.layer("kwta", (3,))
    np.save(tmp_path / "b.npy", np.zeros(4, np.int64))
    out = tmp_path / "o.npz"
    r = _run(path, "--steps", 3, "--input-bias", tmp_path / "b.npy", "--out", out)
    assert r.exit_code == 1 and "layer 1: layer type 'kwta'" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not out.exists()
    path = tmp_path / "sd.net"
    with Writer(path) as w:
        w.input((4,), sdnn(rng))
        w.dense(3, weights(rng, (3, 4)), sdnn(rng))
    r = _run(path, "--steps", 3, "--input-bias", tmp_path / "b.npy", "--out", out)
    assert r.exit_code == 1 and "Delta neurons have no bias" in r.output and not out.exists()
    r = _run(path, "--steps", 3, "--input-bias", tmp_path / "b.npy", "--out", out,
             "--record", "s,bogus")
    assert r.exit_code == 1 and "bogus is no state" in r.output


def test_run_help_fits_80_columns():
    r = CliRunner(env={"COLUMNS": "80"}).invoke(main, ["run", "--help"])
    assert r.exit_code == 0
    assert all(len(ln.rstrip()) <= 80 for ln in r.output.splitlines())
