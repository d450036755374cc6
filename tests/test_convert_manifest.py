"""manifest.json's per-layer table: quantisation error from the student's own float weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from convert_helpers import make_student, tiny_student_config
from mksgn.convert import manifest as mf, student_io


@pytest.fixture(scope="module")
def exported():
    torch.set_num_threads(1)
    student = make_student(tiny_student_config(), seed=4)
    net, floats, sources = student_io.export_with_float(student)
    rows = {s.name: s for r in mf.layer_table(net, floats, sources) for s in r.synapses}
    return student, net, floats, sources, rows


def test_quant_error_formula():
    q = mf.quant_error(np.array([1.0, -2.0, 3.5]), np.array([1.0, -2.0, 4.0]), lsb=0.5)
    assert q.rel_l2 == pytest.approx(0.5 / np.sqrt(1 + 4 + 12.25))
    assert q.max_abs == 0.5 and q.max_abs_lsb == 1.0 and q.n == 3


def _chip(net, name):
    s = next(s for s in net.synapses if s.name == name)
    return np.asarray(s.weight, np.float64) * 2.0 ** s.weight_exp, 2.0 ** s.weight_exp


def test_errors_use_the_students_float_weights(exported):
    student, net, _, sources, rows = exported
    gate = len(student.cfg.modalities) * torch.softmax(student.smf_gate.detach(), 0)
    independent = {
        "b1/tcn": student.blocks[0].tcn.weight,
        "b2/graph": torch.einsum("koi,kuv->oivu", student.blocks[1].graph.W,
                                 student.blocks[1].graph.A + student.blocks[1].graph.B),
        "smf/bone": student.smf["bone"].weight * gate[1],
    }
    for name, w in independent.items():
        f = w.detach().double().numpy() * 64
        chip, lsb = _chip(net, name)
        ref = mf.quant_error(f, chip, lsb)
        got = rows[name].quant_error
        assert got.rel_l2 == pytest.approx(ref.rel_l2, rel=1e-9, abs=1e-12), name
        assert got.max_abs == pytest.approx(ref.max_abs, rel=1e-9, abs=1e-12), name
        assert 0 < got.rel_l2 < 0.2 and got.max_abs_lsb <= 1 + 1e-9, name
    assert sources["b1/tcn"] == "blocks.0.tcn" and rows["b1/tcn"].module == "blocks.0.tcn"
    assert sources["ssc_joint"] == "ssc_neuron.joint"
    ro = rows["readout/fc"]
    assert ro.quant_error is not None and ro.synapses == int(np.count_nonzero(
        next(s for s in net.synapses if s.name == "readout/fc").weight))


def test_encoder_errors(exported):
    student, net, floats, sources, _ = exported
    rows = {e.name: e for e in mf.encoder_table(net, floats, sources)}
    w, b = student.ssc["joint"].folded(None)
    e = next(e for e in net.encoders if e.name == "ssc/joint")
    step = 2.0 ** (e.input_frac_bits - e.shift)
    ref = mf.quant_error(w.detach().double().numpy() * 64, np.asarray(e.weight) * step, step)
    got = rows["ssc/joint"]
    assert got.weight_error.rel_l2 == pytest.approx(ref.rel_l2, rel=1e-9)
    assert got.weight_error.max_abs_lsb <= 0.5 + 1e-9     # round to nearest integer
    assert got.bias_error.max_abs_lsb <= 0.5 + 1e-9
    assert got.input_frac_bits == student.cfg.input_frac_bits and got.shift == e.shift


def test_layer_rows(exported):
    _, net, floats, sources, _ = exported
    rows = {r.name: r for r in mf.layer_table(net, floats, sources)}
    stc = rows["b1_stc"]
    assert [s.name for s in stc.synapses] == ["b1/tcn", "b1/residual"]
    assert stc.synapses_in == sum(s.synapses for s in stc.synapses)
    assert stc.fan_in_mean == pytest.approx(stc.synapses_in / stc.neurons)
    assert stc.synapses[1].delay == 2 and stc.threshold == stc.vth_mant / 64
    assert rows["b1_sgc"].attention_in == ["b1/attention"]
    assert rows["readout"].kind == "readout" and rows["readout"].fan_out_mean == 0
