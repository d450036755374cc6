"""The hardware-compatibility report: verdicts per node kind, exact synapse counts, core math,
and full coverage of the default (paper-scale) student."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mksgn import loihi
from mksgn.convert.compat import (CompatReport, compat_report, fan_in_max, print_report,
                                  synapse_count)
from mksgn.netgraph import Encoder, JointAttention, Network, NeuronGroup, Synapse

P = loihi.CubaParams(1024, 128, 64)


def _conv_synapses_brute(w, src_shape, stride, padding, dilation):
    """Count (nonzero weight, output position) pairs whose input lies inside the source, by
    running the convolution of an all-ones input with the 0/1 nonzero mask."""
    mask = torch.tensor((np.asarray(w) != 0).astype(np.float64))
    x = torch.ones(1, *src_shape, dtype=torch.float64)
    y = F.conv2d(x, mask, stride=stride, padding=padding, dilation=dilation)
    return int(y.sum())


@pytest.mark.parametrize("stride,padding,dilation", [((1, 1), (0, 0), (1, 1)),
                                                     ((2, 1), (2, 1), (1, 1)),
                                                     ((1, 2), (1, 0), (2, 1))])
def test_conv_synapse_count_matches_brute_force(stride, padding, dilation):
    rng = np.random.default_rng(0)
    w = rng.integers(-3, 4, (5, 3, 3, 2))
    src = NeuronGroup("a", (3, 9, 7), P)
    s = Synapse("c", "a", "b", "conv", w, stride=stride, padding=padding, dilation=dilation)
    t_out = (9 + 2 * padding[0] - dilation[0] * 2 - 1) // stride[0] + 1
    v_out = (7 + 2 * padding[1] - dilation[1] * 1 - 1) // stride[1] + 1
    dst = NeuronGroup("b", (5, t_out, v_out), P)
    assert synapse_count(s, src, dst) == _conv_synapses_brute(w, (3, 9, 7), stride, padding,
                                                              dilation)


def _net():
    rng = np.random.default_rng(1)
    gw = rng.integers(-4, 5, (4, 3, 5, 5))
    gw[0, 0] = 0
    groups = [NeuronGroup("in", (3, 6, 5), P), NeuronGroup("src", (10,), P, source=True),
              NeuronGroup("q", (2, 6, 5), P), NeuronGroup("k", (2, 6, 5), P),
              NeuronGroup("x", (4, 6, 5), P), NeuronGroup("sgc", (4, 6, 5), P),
              NeuronGroup("big", (3000,), P),
              NeuronGroup("ro", (7,), loihi.CubaParams(4096, 0, loihi.VTH_MANT_MAX),
                          readout=True)]
    dense = rng.integers(-4, 5, (3000, 10))
    syn = [Synapse("g", "in", "sgc", "graph", gw, delay=1),
           Synapse("cq", "in", "q", "conv", rng.integers(1, 3, (2, 3, 1, 1))),
           Synapse("ck", "in", "k", "conv", rng.integers(1, 3, (2, 3, 1, 1))),
           Synapse("cx", "in", "x", "conv", rng.integers(1, 3, (4, 3, 1, 1))),
           Synapse("d", "src", "big", "dense", dense, delay=80),
           Synapse("fc", "sgc", "ro", "dense", rng.integers(-4, 5, (7, 120)))]
    enc = [Encoder("e", "joint", "in", rng.integers(-9, 9, (3, 6, 3, 3)), np.zeros(3, int),
                   12, 14, padding=(1, 1))]
    att = [JointAttention("att", "q", "k", "x", "sgc", shift=2)]
    return Network(groups, syn, att, enc, num_steps=5, readout="ro"), gw, dense


def test_verdicts_and_counts_per_node():
    net, gw, dense = _net()
    rep = compat_report(net)
    by = {n.name: n for n in rep.nodes}
    assert set(by) == {"e", "in", "src", "q", "k", "x", "sgc", "big", "ro", "g", "cq", "ck",
                       "cx", "d", "fc", "att"}
    assert by["e"].support == "host" and by["src"].support == "host"
    assert by["att"].support == "unsupported" and "products" in by["att"].detail
    assert by["g"].support == "workaround"
    assert by["g"].synapses == int(np.count_nonzero(gw)) * 6          # nonzeros x T frames
    assert "(4x5) x (3x5)" in by["g"].detail
    assert by["d"].support == "workaround" and "relay" in by["d"].detail   # delay 80 > 62
    assert by["d"].synapses == int(np.count_nonzero(dense))
    assert by["cq"].support == "native" and by["cq"].synapses == 2 * 3 * 6 * 5
    assert by["ro"].support == "native" and by["ro"].kind == "readout"
    assert "sums 2 inputs" in by["sgc"].note
    assert by["in"].neurons == 90 and by["src"].neurons == 0
    r = rep.resources
    groups = [g for g in net.groups if not g.source]
    assert r.neurons == sum(g.size for g in groups)
    assert r.loihi_cores == sum(math.ceil(g.size / 1024) for g in groups) == 9    # big: 3 cores
    assert r.loihi2_cores == len(groups)
    assert r.synapses == sum(n.synapses for n in rep.nodes)
    assert r.fits_one_loihi2 and r.loihi2_chips == 1
    assert rep.summary == {"native": 11, "workaround": 2, "host": 2, "unsupported": 1}
    assert CompatReport.from_dict(rep.to_dict()) == rep


def test_fan_in_max():
    w = np.zeros((2, 3, 4, 4), int)
    w[1, :, 2, :] = 1                            # output (1, v=2) reads all 3 x 4 inputs
    assert fan_in_max(Synapse("g", "a", "b", "graph", w)) == 12
    d = np.array([[1, 0, 2], [0, 0, 1]])
    assert fan_in_max(Synapse("d", "a", "b", "dense", d)) == 2


def test_chip_budget_exceeded():
    groups = [NeuronGroup(f"g{i}", (8192 * 2 + 1,), P) for i in range(50)]
    rep = compat_report(Network(groups))
    assert rep.resources.loihi2_cores == 150 and rep.resources.loihi2_chips == 2
    assert not rep.resources.fits_one_loihi2


def _render(rep, width: int, **kw) -> str:
    from rich.console import Console
    console = Console(record=True, width=width)
    print_report(rep, console, **kw)
    return console.export_text()


def assert_fits_80(text: str) -> None:
    """No line longer than 80 columns and no cell cut to an ellipsis."""
    lines = text.splitlines()
    assert max(len(ln.rstrip()) for ln in lines) <= 80, text
    assert "\u2026" not in text and "..." not in text, text


def test_print_report_wide_lists_every_node():
    net, _, _ = _net()
    rep = compat_report(net)
    text = _render(rep, 80, wide=True)
    for n in rep.nodes:
        assert n.name in text
    assert "one Loihi 2 chip" in text and "fits one Loihi 2 chip" in text


def test_print_report_summary_names_the_nodes_that_are_not_native_in_80_columns():
    net, _, _ = _net()
    rep = compat_report(net)
    text = _render(rep, 80, details="out/compat.json")
    assert_fits_80(text)
    cells = [[c.strip() for c in ln.split("\u2502")[1:-1]] for ln in text.splitlines()
             if ln.startswith("\u2502") and ln.count("\u2502") == 6]
    listed = {name for row in cells for name in row[4].split(", ")}
    assert listed == {n.name for n in rep.nodes if n.support != "native"}   # e, src, g, d, att
    assert {(row[0], row[1], row[2]) for row in cells} == {
        ("unsupported", "attention", "1"), ("host", "encoder", "1"), ("host", "source", "1"),
        ("workaround", "graph", "1"), ("workaround", "dense", "1")}
    assert "every node, how and why: out/compat.json (--wide" in text
    assert "fits one Loihi 2 chip" in text


@pytest.mark.slow
def test_every_node_of_the_default_student_is_covered():
    """The paper-scale default config (NTU, 64 frames, 6 blocks, spiking attention)."""
    from mksgn.data.layouts import get_layout
    from mksgn.convert import student_io
    from mksgn.train.student import StudentConfig, build_student
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_student(StudentConfig(), 60, get_layout("ntu25")).eval()
    student_io.check_modules(model)
    net, floats, sources = student_io.export_with_float(model)
    student_io.check_ranges(net, floats, sources)
    rep = compat_report(net)
    names = [n.name for n in rep.nodes]
    expected = ([g.name for g in net.groups] + [s.name for s in net.synapses]
                + [a.name for a in net.attentions] + [e.name for e in net.encoders])
    assert sorted(names) == sorted(expected) and len(set(names)) == len(names)
    kinds = {n.kind: n.support for n in rep.nodes}
    assert kinds == {"encoder": "host", "neurons": "native", "readout": "native",
                     "conv": "native", "dense": "native", "graph": "workaround",
                     "attention": "unsupported"}
    # every exported synapse and encoder has its float weights, re-quantised exactly
    assert set(floats) == {s.name for s in net.synapses} | {e.name for e in net.encoders}
    for s in net.synapses:
        assert student_io.requantize_matches(s, floats[s.name]), s.name
    assert rep.resources.neurons == model.neuron_count()
    assert rep.resources.fits_one_loihi2          # the halved widths fit one chip (student.py)
    text = _render(rep, 80)                       # what a newcomer's terminal shows
    assert_fits_80(text)
    assert len(text.splitlines()) < 40, text
