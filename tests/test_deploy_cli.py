"""`mksgn simulate` and `mksgn run` end to end on tiny files."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mksgn import loihi, netgraph, netx_io
from mksgn.pipeline.cli import main
from mksgn.deploy import engine
from mksgn.activity import ActivityReport
from mksgn.netgraph import Encoder, Network, NeuronGroup, Synapse

V, T, CLASSES = 25, 8, 3


def tiny_student(rng) -> Network:
    """joint (3, T, 25) -> encoder bias of a (4, T, 25) group -> graph -> dense readout."""
    cp = lambda vth: loihi.CubaParams(512, 256, vth)  # noqa: E731
    groups = [NeuronGroup("enc", (4, T, V), cp(20)), NeuronGroup("g", (4, T, V), cp(30)),
              NeuronGroup("out", (CLASSES,), cp(1), readout=True)]
    syn = [Synapse("g", "enc", "g", "graph", rng.integers(-60, 100, (4, 4, V, V)), weight_exp=-2),
           Synapse("out", "g", "out", "dense", rng.integers(-100, 100, (CLASSES, 4 * T * V)))]
    enc = [Encoder("e", "joint", "enc", rng.integers(-80, 80, (4, 3, 1, 1)),
                   rng.integers(-500, 500, 4), input_frac_bits=8, shift=3)]
    return Network(groups, syn, [], enc, num_steps=6, readout="out")


def prepared(tmp_path, rng, n=5):
    d = tmp_path / "prep" / "xsub"
    d.mkdir(parents=True)
    (d / "info.json").write_text(json.dumps({"layout": "ntu25", "num_classes": CLASSES,
                                             "dataset": "ntu60", "benchmark": "xsub"}))
    x = rng.normal(0, 0.5, (n, 3, 20, V, 2)).astype(np.float32)
    x[1, ..., 1] = 0                                      # a single-person sample
    np.save(d / "test_data.npy", x)
    np.save(d / "test_label.npy", rng.integers(0, CLASSES, n).astype(np.int64))
    (d / "test_meta.json").write_text(json.dumps({"names": [f"s{i}" for i in range(n)],
                                                  "num_frames": [20, 12, 20, 17, 20][:n]}))
    return d


@pytest.fixture
def model_dir(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "model"
    d.mkdir()
    net = tiny_student(rng)
    netgraph.save(net, d / "model.net")
    (d / "manifest.json").write_text(json.dumps({"input": {"modalities": ["joint"], "window": T,
                                                           "dataset": "ntu60",
                                                           "benchmark": "xsub"}}))
    return d, net, prepared(tmp_path, rng)


def test_simulate_fast_writes_activity_matching_the_engine(model_dir):
    d, net, prep = model_dir
    r = CliRunner().invoke(main, ["simulate", str(d), "--data", str(prep.parent),
                                  "--engine", "fast", "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    rep = ActivityReport.from_json((d / "activity.json").read_text())
    assert rep.schema == "mksgn-activity/2" and rep.samples == 5 and rep.num_steps == 6
    assert rep.active_updates == "recorded"
    assert rep.agreement == "n/a"
    npz = np.load(d / "activity.npz")
    assert int(npz["samples"]) == 5
    # recompute with the engine directly: persons merged, scores summed
    from mksgn.data.dataset import SkeletonDataset
    ds = SkeletonDataset(prep, "test", window=T, modalities=["joint"], train=False)
    xs = np.stack([ds.sample(i) for i in range(5)])                # (5, 1, 3, T, V, 2)
    x = torch.from_numpy(np.moveaxis(xs[:, 0], -1, 1).reshape(10, 3, T, V))
    res = engine.run(net, {"joint": x}, record=("active",))
    preds = res.scores.reshape(5, 2, -1).sum(1).argmax(1).numpy()
    assert np.array_equal(npz["predictions"], preds)
    for g in net.groups:
        assert np.array_equal(npz[f"spikes/{g.name}"], res.counts[g.name].sum(0).numpy())
        assert np.array_equal(npz[f"active/{g.name}"], res.active[g.name].sum(0).numpy())
        assert rep.groups[g.name].active_per_sample == res.active[g.name].sum().item() / 5
        assert rep.groups[g.name].spikes_per_sample == pytest.approx(
            res.counts[g.name].sum().item() / 5)
    assert rep.accuracy == pytest.approx(float((preds == npz["labels"]).mean()))
    assert "accuracy" in r.output


@pytest.mark.lava
@pytest.mark.slow
def test_simulate_lava_equals_fast(model_dir, tmp_path):
    d, net, prep = model_dir
    out_f, out_l = tmp_path / "f", tmp_path / "l"
    for eng, out in (("fast", out_f), ("lava", out_l)):
        r = CliRunner().invoke(main, ["simulate", str(d), "--data", str(prep), "--samples", "2",
                                      "--engine", eng, "--out", str(out)])
        assert r.exit_code == 0, r.output
    a, b = np.load(out_f / "activity.npz"), np.load(out_l / "activity.npz")
    # Lava records spikes only; the fast engine also active neuron-steps (active/<group>)
    assert set(b.files) == {k for k in a.files if not k.startswith("active/")}
    for k in b.files:
        assert np.array_equal(a[k], b[k]), k
    lava = ActivityReport.from_json((out_l / "activity.json").read_text())
    assert lava.active_updates == "spikes"
    assert all(g.active_per_sample is None for g in lava.groups.values())


def test_simulate_errors_are_one_line(model_dir, tmp_path):
    d, net, prep = model_dir
    r = CliRunner().invoke(main, ["simulate", str(tmp_path / "nothing"), "--data", str(prep)])
    assert r.exit_code == 1 and "model.net: no such file" in r.output
    (d / "manifest.json").write_text(json.dumps({"input": {"modalities": ["joint"],
                                                           "window": T + 2}}))
    r = CliRunner().invoke(main, ["simulate", str(d), "--data", str(prep)])
    assert r.exit_code == 1 and "encodes to" in r.output and "Traceback" not in r.output


def _chain_file(tmp_path, source=False):
    from test_deploy_netx import random_chain
    net = random_chain(np.random.default_rng(3), source_input=source)
    path = tmp_path / ("src.net" if source else "chain.net")
    with h5py.File(path, "w") as h5:
        netx_io.write_netx_layers(net, h5)
    return path


@pytest.mark.parametrize("engines", [("fast",), pytest.param(("fast", "lava"),
                                                               marks=pytest.mark.lava)])
def test_run_bias_input_saves_layers_in_netx_order(tmp_path, engines):
    path = _chain_file(tmp_path)
    bias = np.random.default_rng(0).integers(-200, 800, (4, 6, 2))        # (x, y, z)
    np.save(tmp_path / "b.npy", bias)
    outs = []
    for eng in engines:
        out = tmp_path / f"{eng}.npz"
        r = CliRunner().invoke(main, ["run", str(path), "--steps", "9", "--input-bias",
                                      str(tmp_path / "b.npy"), "--engine", eng, "--record",
                                      "s,u,v", "--out", str(out)])
        assert r.exit_code == 0, r.output
        outs.append(np.load(out))
    z = outs[0]
    assert z["layer1/u"].shape == (4, 6, 4, 9) and z["spikes"].shape == (3, 9)
    net = netx_io.read(path)
    res = engine.run(net, None, num_steps=9, record=("u",),
                     biases={"layer0": torch.tensor(bias.transpose(2, 1, 0))[None]})
    assert np.array_equal(z["layer1/u"], np.moveaxis(res.u["layer1"][0].numpy(), 0, -1)
                          .transpose(2, 1, 0, 3))
    for other in outs[1:]:
        for k in z.files:
            assert np.array_equal(z[k], other[k]), k


def test_run_spike_input_and_shape_errors(tmp_path):
    path = _chain_file(tmp_path, source=True)
    x = (np.random.default_rng(1).random((4, 6, 2, 10)) < 0.3).astype(np.uint8)
    np.save(tmp_path / "x.npy", x)
    r = CliRunner().invoke(main, ["run", str(path), "--steps", "10", "--input",
                                  str(tmp_path / "x.npy"), "--out", str(tmp_path / "o.npz")])
    assert r.exit_code == 0, r.output
    np.save(tmp_path / "bad.npy", x[:3])
    r = CliRunner().invoke(main, ["run", str(path), "--steps", "10", "--input",
                                  str(tmp_path / "bad.npy"), "--out", str(tmp_path / "o.npz")])
    assert r.exit_code == 1
    assert "does not match the network input (4, 6, 2, 10)" in r.output
    r = CliRunner().invoke(main, ["run", str(tmp_path / "missing.net"), "--steps", "3",
                                  "--input", str(tmp_path / "x.npy"), "--out", "o.npz"])
    assert r.exit_code == 1 and "no such file" in r.output


# ---------------------------------------------------------------------------------------------
# run on a converted student: one skeleton through the manifest's pipeline

def _row(prep, i):
    """Sample i of the prepared test split as a user's .npy: its valid frames, (3, T, V, M)."""
    n = json.loads((prep / "test_meta.json").read_text())["num_frames"][i]
    return np.load(prep / "test_data.npy")[i][:, :n]


@pytest.mark.parametrize("engines", [("fast",), pytest.param(("fast", "lava"),
                                                               marks=[pytest.mark.lava,
                                                                      pytest.mark.slow])])
def test_run_student_on_one_skeleton_equals_simulate(model_dir, tmp_path, engines):
    d, net, prep = model_dir
    from mksgn.data.dataset import SkeletonDataset
    ds = SkeletonDataset(prep, "test", window=T, modalities=["joint"], train=False)
    for i in (0, 1, 3):                      # 1 has one body: its second run sees zeros
        np.save(tmp_path / f"x{i}.npy", _row(prep, i))
        x = np.moveaxis(ds.sample(i)[0], -1, 0)                      # (M, 3, T, V)
        want = engine.run(net, {"joint": torch.from_numpy(x)}, record=("s", "v"))
        outs = []
        for eng in engines:
            out = tmp_path / f"{eng}{i}.npz"
            r = CliRunner().invoke(main, ["run", str(d / "model.net"), "--input",
                                          str(tmp_path / f"x{i}.npy"), "--engine", eng,
                                          "--record", "s,v", "--out", str(out)])
            assert r.exit_code == 0, r.output
            outs.append(np.load(out))
        z = outs[0]
        scores = want.scores.sum(0).numpy()            # the two bodies run apart, scores summed
        assert np.array_equal(z["scores"], scores) and int(z["prediction"]) == scores.argmax()
        assert f"class {scores.argmax()} (A{scores.argmax() + 1:03d})" in r.output
        for g in net.groups:
            assert np.array_equal(z[f"{g.name}/s"], np.moveaxis(want.spikes[g.name].numpy(), 1, -1))
            assert np.array_equal(z[f"{g.name}/v"], np.moveaxis(want.v[g.name].numpy(), 1, -1))
        for other in outs[1:]:
            assert set(other.files) == set(z.files)
            for k in z.files:
                assert np.array_equal(z[k], other[k]), k


def test_run_student_refuses_what_does_not_fit(model_dir, tmp_path):
    d, net, prep = model_dir
    x = _row(prep, 0)
    run = lambda *a: CliRunner().invoke(main, ["run", str(d / "model.net"), *a,  # noqa: E731
                                               "--out", str(tmp_path / "o.npz")])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "joints.npy", x[:, :, :20])
    np.save(tmp_path / "nan.npy", np.where(x == x.max(), np.nan, x))
    (tmp_path / "a.json").write_text("{}")
    cases = [
        (["--input", str(tmp_path / "joints.npy")],
         "joints.npy: shape (3, 20, 20, 2); expected (3, T, 25[, M <= 2])"),
        (["--input", str(tmp_path / "nan.npy")], "nan.npy: NaN or infinite coordinates"),
        (["--input", str(tmp_path / "a.json")],
         "a.json: the network was trained on ntu60; give one of its .skeleton files"),
        (["--input", str(tmp_path / "x.npy"), "--steps", "7"],
         "--steps 7: " + str(d / "model.net") + " runs 6 steps per sample"),
        (["--input", str(tmp_path / "x.npy"), "--layers", "1"], "--layers: netx files only"),
        (["--input-bias", str(tmp_path / "x.npy")], "(give --input SKELETON); --input-bias:"),
        ([], "takes --input SKELETON (a dataset file or a prepared .npy row)"),
        (["--input", str(tmp_path / "x.npy"), "--record", "w"], "--record: w is no state"),
    ]
    for args, msg in cases:
        r = run(*args)
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1, r.output
    (d / "manifest.json").unlink()
    r = run("--input", str(tmp_path / "x.npy"))
    assert r.exit_code == 1 and "manifest.json: missing or without an input section" in r.output
    assert not (tmp_path / "o.npz").exists()                   # nothing written on failure
