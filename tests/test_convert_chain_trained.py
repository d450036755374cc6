"""A *trained* chain student (``StudentConfig.chain_config``: every weight exponent fixed at 0)
converts with a stock-netx ``/layer`` section that stock ``netx.hdf5.Network`` loads unchanged and
that runs in Lava's fixed_pt simulator spike-identically to our engine; the student's own scores
equal the engine's on the converted network."""
from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from convert_helpers import (CLASSES, chain_student_config, make_student, sample, save_checkpoint,
                             stock_netx_matches_engine, tiny_student_config)
from mksgn import netgraph
from mksgn.pipeline.cli import main
from mksgn.convert.convert import convert
from mksgn.deploy import engine
from mksgn import quant
from mksgn.train.config import RunConfig, load_config, save_config
from mksgn.train.spiking import ConvSynapse, GraphSynapse, PooledReadout
from mksgn.train.student import LOGIT_SCALE, StudentConfig, fold_persons

# ---------------------------------------------------------------------------------------------
# the fixed exponent itself (fast)

def test_quantize_weight_fixed_exponent_clamps_with_straight_through_gradient():
    w = torch.tensor([0.5, -0.01, 5.0, -7.0, 1 / 64], requires_grad=True)
    m, e = quant.quantize_weight(w, exp=0)
    assert e == 0
    assert m.tolist() == [32.0, -0.0, 254.0, -256.0, 0.0]     # 64 w, even, clamped to 8 bits
    m.sum().backward()
    assert w.grad.tolist() == [64.0] * 5
    m, e = quant.quantize_weight(w.detach(), exp=-2)
    assert e == -2 and m.tolist() == [128.0, -2.0, 254.0, -256.0, 4.0]
    assert quant.quantize_weight(w.detach())[1] == 1             # None: chosen from the range
    with pytest.raises(ValueError, match="outside"):
        quant.quantize_weight(w, exp=8)


def test_weight_exp_config_round_trips_and_validates(tmp_path):
    assert StudentConfig.chain_config().weight_exp == 0
    assert StudentConfig().weight_exp is None and StudentConfig.small().weight_exp is None
    cfg = StudentConfig.chain_config(weight_exp=-3)
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg
    old = StudentConfig.small().to_dict()
    del old["weight_exp"]                                       # configs written before the key
    assert StudentConfig.from_dict(old).weight_exp is None
    run = RunConfig(kind="student", model=cfg)
    run.data.window = cfg.frames
    run.data.modalities = cfg.modalities
    save_config(run, tmp_path / "s.yaml")
    back = load_config(tmp_path / "s.yaml")
    assert back == run and back.model.weight_exp == -3
    for bad in (8, -9, True, 0.5):
        with pytest.raises(ValueError, match="weight_exp"):
            StudentConfig.chain_config(weight_exp=bad).validate()


def test_fixed_exponent_student_uses_it_everywhere_and_sums_in_the_readout():
    torch.manual_seed(0)
    for cfg in (tiny_student_config(weight_exp=-1), chain_student_config()):
        model = make_student(cfg)
        net = model.to_network()
        assert {s.weight_exp for s in net.synapses} == {cfg.weight_exp}
        assert model.readout.pool == 1
        ro = np.asarray([s for s in net.synapses if s.name == "readout/fc"][0].weight)
        assert np.count_nonzero(ro) > ro.size // 3             # mantissas are not all rounded away
    ro = make_student(chain_student_config(weight_exp=None)).readout
    assert ro.pool == ro.positions                              # None: average pooling as before


# ---------------------------------------------------------------------------------------------
# a trained chain student through `mksgn convert`, stock netx and Lava


def _real_weights(model) -> dict[str, torch.Tensor]:
    return {n: m.real_weight().detach().clone() for n, m in model.named_modules()
            if isinstance(m, (ConvSynapse, GraphSynapse, PooledReadout))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("chain_trained")
    cfg = chain_student_config()
    model = make_student(cfg)
    before = _real_weights(model)
    mant_before = model.to_network()
    x = sample(cfg, 8, seed=3)
    y = torch.arange(8) % CLASSES
    model.train()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(4):
        loss = F.cross_entropy(model(x).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    path = save_checkpoint(model, "student", d / "run" / "best.pt", cfg)
    res = CliRunner().invoke(main, ["convert", str(path.parent), "--out", str(d / "out")])
    return cfg, model, before, mant_before, res, d / "out"


@pytest.mark.slow
@pytest.mark.lava
def test_training_moved_the_weights_and_exponents_stay_zero(trained):
    cfg, model, before, mant_before, _, _ = trained
    assert cfg.weight_exp == 0 and cfg.chain
    after = _real_weights(model)
    assert all(not torch.equal(before[n], after[n]) for n in before)
    # without the fixed exponent the quantiser would pick non-zero exponents for these weights
    # (the reason the gap existed)
    assert any(quant.weight_exponent(float(w.abs().max()) * 64) != 0 for w in after.values())
    net = model.to_network()
    changed = 0
    for s, s0 in zip(net.synapses, mant_before.synapses):
        assert s.weight_exp == 0, s.name
        w = np.asarray(s.weight)
        assert np.count_nonzero(w) > w.size // 4, s.name     # mantissas carry the weights
        changed += not np.array_equal(w, np.asarray(s0.weight))
    assert changed > 0


@pytest.mark.slow
@pytest.mark.lava
def test_convert_writes_stock_netx_layer_section(trained):
    _, _, _, _, res, out = trained
    assert res.exit_code == 0, res.output
    assert "no stock-netx /layer section" not in res.output
    with h5py.File(out / "model.net", "r") as h5:
        assert "layer" in h5 and "mksgn" in h5
        types = [h5["layer"][str(i)]["type"][0].decode() for i in range(len(h5["layer"]))]
    assert types == ["input", "conv", "conv", "conv", "conv", "flatten", "dense"]
    ours = netgraph.load(out / "model.net")
    assert all(s.weight_exp == 0 for s in ours.synapses)


@pytest.mark.slow
@pytest.mark.lava
def test_student_scores_equal_engine_on_converted_network(trained):
    cfg, model, _, _, _, out = trained
    ours = netgraph.load(out / "model.net")
    x = sample(cfg, 3, seed=7)
    res = engine.run(ours, {"joint": fold_persons(x)[:, 0]}, record=("s",))
    with torch.no_grad():
        logits = model(x).logits
    assert torch.equal(logits.double() * LOGIT_SCALE, res.scores.double())
    spikes, scores = model.simulate(x)
    assert torch.equal(scores, res.scores)
    for name, s in spikes.items():
        assert torch.equal(s, res.spikes[name]), name
    assert sum(int(s.sum()) for s in res.spikes.values()) > 0
    assert int(res.scores.abs().max()) > 0


@pytest.mark.slow
@pytest.mark.lava
def test_stock_netx_in_lava_is_spike_identical_to_engine(trained):
    netx = pytest.importorskip("lava.lib.dl.netx")
    cfg, _, _, _, _, out = trained
    ours = netgraph.load(out / "model.net")
    stock = netx.hdf5.Network(net_config=str(out / "model.net"))     # loads unchanged
    assert len(stock.layers) == len(ours.groups)
    assert tuple(stock.inp.shape) == tuple(ours.groups[0].shape[::-1])
    ours, a, lr = stock_netx_matches_engine(out / "model.net", cfg)
    last = ours.meta["netx"]["layers"][-1]
    assert last["group"] == ours.readout
    assert np.array_equal(lr.v[f"layer{last['index']}"][-1], a.scores[0].numpy())
    assert int(np.abs(a.scores[0].numpy()).max()) > 0


@pytest.mark.slow
def test_clamped_weights_of_a_fixed_exponent_student_still_convert(trained, tmp_path):
    """Straight-through clamping lets a weight grow past what the fixed exponent holds; the
    deployed mantissa is the clamped one the student computed with, and convert accepts it."""
    cfg, model, _, _, _, _ = trained
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.blocks[0].tcn.weight[0, 0, 1, 0] = 10.0           # 640 a-units > 254
    path = save_checkpoint(model, "student", tmp_path / "big.pt", cfg)
    res = convert(path, tmp_path / "out")
    assert res.report.stock_netx
    tcn = [s for s in res.network.synapses if s.name == "b1/tcn"][0]
    assert int(np.asarray(tcn.weight)[0, 0, 1, 0]) == 254 and tcn.weight_exp == 0
