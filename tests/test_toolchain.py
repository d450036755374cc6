"""The toolchain the project stands on: slayer CUBA blocks -> export_hdf5 -> stock netx -> Lava
fixed_pt simulation reproduces slayer's output spikes exactly, step for step."""
from __future__ import annotations

import contextlib
import io

import h5py
import numpy as np
import pytest
import torch

with contextlib.redirect_stdout(io.StringIO()):  # lava-dl prints an optional-toolbox notice
    import lava.lib.dl.netx as netx
    import lava.lib.dl.slayer as slayer
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc import io as lava_io

pytestmark = pytest.mark.lava

NEURON = {"threshold": 0.5, "current_decay": 0.25, "voltage_decay": 0.03,
          "tau_grad": 0.1, "scale_grad": 1}


def _blocks(kind: str) -> list[torch.nn.Module]:
    dense = slayer.block.cuba.Dense
    if kind == "dense":
        return [dense(NEURON, 16, 12, weight_scale=2, weight_norm=False),
                dense(NEURON, 12, 8, weight_scale=2, weight_norm=False)]
    return [slayer.block.cuba.Conv(NEURON, 1, 4, 3, padding=1, weight_scale=2, weight_norm=False),
            slayer.block.cuba.Flatten(),
            dense(NEURON, 4 * 4 * 4, 12, weight_scale=2, weight_norm=False),
            dense(NEURON, 12, 8, weight_scale=2, weight_norm=False)]


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_slayer_netx_lava_spikes_identical(kind, tmp_path):
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(_blocks(kind)).eval()
    steps = 20
    shape = (1, 16, steps) if kind == "dense" else (1, 1, 4, 4, steps)
    x = (torch.rand(shape) < 0.4).float()
    with torch.no_grad():
        y = x
        for block in blocks:
            y = block(y)
    expected = y[0].numpy()

    path = tmp_path / "chain.net"
    with h5py.File(path, "w") as h5:
        layer = h5.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(layer.create_group(str(i)))

    if kind == "dense":
        net = netx.hdf5.Network(net_config=str(path))
        lava_in = x[0].numpy()
    else:  # slayer is (C, H, W, T); netx is (x=W, y=H, f=C, T)
        net = netx.hdf5.Network(net_config=str(path), input_shape=(4, 4, 1))
        lava_in = x[0].permute(2, 1, 0, 3).numpy()
    source = lava_io.source.RingBuffer(data=lava_in)
    sink = lava_io.sink.RingBuffer(shape=net.out.shape, buffer=steps)
    source.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        got = sink.data.get()
    finally:
        net.stop()

    assert expected.sum() > 10, "the test network must actually spike"
    np.testing.assert_array_equal(got, expected)
