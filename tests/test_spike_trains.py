"""`mksgn simulate --spike-trains N`: the per-step spikes of the first N samples, exactly the
engine's, and a reader that refuses another network's file."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mksgn import spike_trains
from mksgn.deploy import engine
from mksgn.pipeline.cli import main
from test_deploy_cli import T, model_dir  # noqa: F401  (model_dir: a fixture)


def test_simulate_keeps_the_engines_spike_trains(model_dir, tmp_path):  # noqa: F811
    d, net, prep = model_dir
    out = tmp_path / "sim"
    r = CliRunner().invoke(main, ["simulate", str(d), "--data", str(prep.parent), "--batch-size",
                                  "2", "--spike-trains", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    st = spike_trains.read(out, net, d / "model.net")
    assert st.samples == 3 and st.runs == 6 and st.num_steps == net.num_steps  # 2 persons each
    from mksgn.data.dataset import SkeletonDataset
    ds = SkeletonDataset(prep, "test", window=T, modalities=["joint"], train=False)
    xs = np.stack([ds.sample(i) for i in range(3)])
    x = torch.from_numpy(np.moveaxis(xs[:, 0], -1, 1).reshape(6, *xs.shape[2:-1]))
    res = engine.run(net, {"joint": x}, record=("s", "active"))
    for g in net.groups:
        assert np.array_equal(st.spikes[g.name], res.spikes[g.name].numpy())
        assert np.array_equal(st.active[g.name], res.active[g.name].numpy())
    assert sum(int(c.sum()) for c in st.counts().values()) > 0


def test_spike_trains_need_the_fast_engine(model_dir, tmp_path):  # noqa: F811
    d, _, prep = model_dir
    r = CliRunner().invoke(main, ["simulate", str(d), "--data", str(prep.parent), "--engine",
                                  "lava", "--spike-trains", "1", "--out", str(tmp_path / "s")])
    assert r.exit_code == 2 and "--spike-trains needs --engine fast" in r.output


def test_reader_refuses_another_network_and_bad_counts(model_dir, tmp_path):  # noqa: F811
    d, net, _ = model_dir
    z = {g.name: np.zeros((2, net.num_steps, *g.shape), bool) for g in net.groups}
    a = {g.name: np.zeros((2, *g.shape), np.int64) for g in net.groups}
    st = spike_trains.SpikeTrains(z, a, samples=1, num_steps=net.num_steps,
                                  network_sha256="0" * 64)
    spike_trains.write(tmp_path, st)
    with pytest.raises(spike_trains.SpikeTrainsError, match="another network"):
        spike_trains.read(tmp_path, net, d / "model.net")
    from mksgn.files import sha256
    st.network_sha256 = sha256(d / "model.net")
    st.spikes["g"][0, 0, 0, 0, 0] = True                    # fires, but never active
    spike_trains.write(tmp_path, st)
    with pytest.raises(spike_trains.SpikeTrainsError, match="fewer active steps than spikes"):
        spike_trains.read(tmp_path, net, d / "model.net")
    with pytest.raises(spike_trains.SpikeTrainsError, match="no such file"):
        spike_trains.read(tmp_path / "none", net, d / "model.net")
