"""MK-SGN student: shapes, binary spikes, config round trip, trainability, export contents."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from mksgn import loihi, netgraph
from mksgn.data.layouts import get_layout
from mksgn import quant
from mksgn.train.common import ModelOutput
from mksgn.train.student import LOGIT_SCALE, StudentConfig, build_student

NTU = get_layout("ntu25")


def tiny(**kw) -> StudentConfig:
    base = dict(frames=8, stem_channels=4, channels=(4, 8), strides=(1, 2), temporal_kernel=3)
    base.update(kw)
    return StudentConfig.small(**base)


def sample(cfg: StudentConfig, n=2, seed=0, v=25) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, len(cfg.modalities), 3, cfg.frames, v, 2, generator=g) * 0.5


@pytest.mark.parametrize("attention", ["spiking", "static", "none"])
def test_forward_shapes_and_binary_spikes(attention):
    cfg = tiny(attention=attention)
    model = build_student(cfg, 5, NTU).eval()
    x = sample(cfg, n=3)
    out = model(x)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (3, 5) and out.logits.dtype == torch.float32
    assert [tuple(f.shape) for f in out.features] == [(3, 4, 8, 25), (3, 8, 4, 25)]
    for f in out.features:   # rates over S steps: multiples of 1/S in [0, 1]
        assert torch.equal(f * cfg.time_steps, torch.round(f * cfg.time_steps))
        assert f.min() >= 0 and f.max() <= 1
    assert set(out.aux) == {f"aux/{m}" for m in cfg.modalities}
    spikes, scores = model.simulate(x)
    assert scores.shape == (3, 5) and scores.dtype == torch.int64
    for name, s in spikes.items():
        assert s.dtype == torch.bool and s.shape[1] == model.num_steps
    rates = model.firing_rates()
    assert set(rates) == set(spikes) and all(0.0 <= r <= 1.0 for r in rates.values())
    assert any(r > 0 for r in rates.values())
    extra = {"spiking": 3, "static": 0, "none": 0}[attention]
    assert len(spikes) == 4 + 1 + 2 * (2 + extra)


def test_latency_and_num_steps():
    for attention, per_block in (("spiking", 3), ("none", 2)):
        cfg = tiny(attention=attention)
        model = build_student(cfg, 5, NTU)
        depth = 1 + per_block * len(cfg.channels) + 1     # smf, blocks, readout
        assert model.num_steps == cfg.time_steps + depth
        net = model.to_network()
        assert net.num_steps == model.num_steps and net.meta["depth"]["readout"] == depth


def test_chain_config_is_a_chain():
    cfg = StudentConfig.chain_config(frames=8, stem_channels=4, channels=(4, 4), strides=(1, 2),
                                     temporal_kernel=3)
    model = build_student(cfg, 4, NTU)
    net = model.to_network()
    assert not net.attentions and len(net.encoders) == 1
    # every group has exactly one incoming synapse and one successor: a chain
    for g in net.groups[1:]:
        assert len(net.incoming(g.name)) == 1
    srcs = [s.src for s in net.synapses]
    assert len(srcs) == len(set(srcs))
    assert all(s.delay == 0 for s in net.synapses)
    out = model(sample(cfg))
    assert out.logits.shape == (2, 4)


def test_config_roundtrip_yaml():
    cfg = StudentConfig.small(attention="static", attn_shift=-2)
    text = yaml.safe_dump(cfg.to_dict())
    assert StudentConfig.from_dict(yaml.safe_load(text)) == cfg
    with pytest.raises(ValueError, match=r"^unknown student config keys: \['no_such_key'\]$"):
        StudentConfig.from_dict({"no_such_key": 1})
    with pytest.raises(ValueError, match="^chain=True needs one modality, residual=False, "
                                         "attention='none'$"):
        StudentConfig(chain=True).validate()


def test_exported_weights_are_representable(tmp_path):
    cfg = tiny()
    model = build_student(cfg, 5, NTU)
    with torch.no_grad():   # make some weights large and some tiny: exponents must adapt
        model.blocks[0].tcn.weight.mul_(40)
        model.blocks[1].graph.W.mul_(0.01)
    net = model.to_network()
    for s in net.synapses:
        w = np.asarray(s.weight)
        assert np.issubdtype(w.dtype, np.integer)
        assert w.min() >= loihi.WEIGHT_MIN and w.max() <= loihi.WEIGHT_MAX
        assert np.all(w % 2 == 0)
        assert quant.WEIGHT_EXP_MIN <= s.weight_exp <= quant.WEIGHT_EXP_MAX
    for e in net.encoders:
        assert np.abs(e.weight).max() <= quant.ENCODER_WEIGHT_MAX and e.shift >= 0
    for g in net.groups:
        g.params.validate()
    ro = net.group(net.readout)
    assert ro.readout and ro.params == loihi.CubaParams(4096, 0, loihi.VTH_MANT_MAX)
    assert net.meta["logit_scale"] == LOGIT_SCALE
    netgraph.save(net, tmp_path / "model.net")
    back = netgraph.load(tmp_path / "model.net")
    assert [s.name for s in back.synapses] == [s.name for s in net.synapses]


def test_trains_loss_decreases():
    torch.manual_seed(0)
    cfg = tiny(attention="spiking")
    model = build_student(cfg, 3, NTU)
    x = sample(cfg, n=6, seed=1)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for _ in range(25):
        out = model(x)
        loss = F.cross_entropy(out.logits, y) + 0.1 * model.mi_loss(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
