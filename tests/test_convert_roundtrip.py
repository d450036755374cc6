"""The graph file round-trips: convert -> netgraph.load gives the student's network exactly
(same weights, same edges, same neurons), and it runs to the student's own scores."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from convert_helpers import make_student, sample, student_checkpoint, tiny_student_config
from mksgn import netgraph
from mksgn.convert.convert import convert
from mksgn.convert.manifest import Manifest
from mksgn.convert.compat import CompatReport
from mksgn.train.student import LOGIT_SCALE, fold_persons


@pytest.fixture(scope="module", params=["spiking", "static"])
def converted(request, tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp(f"rt-{request.param}")
    cfg = tiny_student_config(attention=request.param)
    path = student_checkpoint(d / "s.pt", cfg, seed=3)
    res = convert(path, d / "out")
    return cfg, make_student(cfg, seed=3), res, d / "out"


def _same_array(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b)


def test_file_holds_the_students_network_exactly(converted):
    cfg, student, _, out = converted
    ref = student.to_network()
    got = netgraph.load(out / "model.net")
    assert got.num_steps == ref.num_steps and got.readout == ref.readout
    assert [g.name for g in got.groups] == [g.name for g in ref.groups]
    for a, b in zip(got.groups, ref.groups):
        assert (a.shape, a.params, a.readout, a.source) == (b.shape, b.params, b.readout, b.source)
        assert (a.bias is None) == (b.bias is None)
        if a.bias is not None:
            assert _same_array(a.bias, b.bias)
    assert [(s.name, s.src, s.dst, s.kind) for s in got.synapses] == \
        [(s.name, s.src, s.dst, s.kind) for s in ref.synapses]
    for a, b in zip(got.synapses, ref.synapses):
        assert _same_array(a.weight, b.weight), a.name
        assert (a.weight_exp, a.stride, a.padding, a.dilation, a.groups) == \
            (b.weight_exp, b.stride, b.padding, b.dilation, b.groups)
        assert _same_array(a.delay, b.delay)
    assert got.attentions == ref.attentions
    assert len(got.encoders) == len(ref.encoders)
    for a, b in zip(got.encoders, ref.encoders):
        assert _same_array(a.weight, b.weight) and _same_array(a.bias, b.bias)
        assert (a.name, a.modality, a.dst, a.input_frac_bits, a.shift, a.stride, a.padding) == \
            (b.name, b.modality, b.dst, b.input_frac_bits, b.shift, b.stride, b.padding)
    for key in ("config", "num_classes", "layout", "time_steps", "depth"):
        assert got.meta[key] == ref.meta[key]
    assert got.meta["window"] == cfg.frames


def test_loaded_file_gives_the_students_scores(converted):
    from mksgn.deploy import engine
    cfg, student, _, out = converted
    net = netgraph.load(out / "model.net")
    x = sample(cfg, 3)
    xs = fold_persons(x)
    res = engine.run(net, {m: xs[:, k] for k, m in enumerate(cfg.modalities)})
    with torch.no_grad():
        logits = student(x).logits
    assert torch.equal(torch.round(logits.double() * LOGIT_SCALE).long(), res.scores)
    assert sum(int(s.sum()) for s in res.spikes.values()) > 0


def test_reports_round_trip_json(converted):
    import json
    _, _, res, out = converted
    man = json.loads((out / "manifest.json").read_text())
    assert Manifest.from_dict(man).to_dict() == man
    rep = json.loads((out / "compat.json").read_text())
    assert CompatReport.from_dict(rep).to_dict() == rep
    assert CompatReport.from_dict(rep) == res.report
