"""`mksgn energy` end to end: hand-written activity, a tiny ONNX teacher, bad input in one line."""
from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mksgn import loihi, netgraph
from mksgn.pipeline.cli import main
from mksgn.hw_profiles.report import EnergyReport
from mksgn.hw_profiles.teacher import onnx_layers
from mksgn.netgraph import Encoder, Network, NeuronGroup, Synapse

T, V = 4, 3


def tiny_net() -> Network:
    """joint (3, T, V) -> encoder -> a (2, T, V) --dense--> out (2,) readout."""
    cp = loihi.CubaParams(1024, 512, 10)
    w = np.zeros((2, 2 * T * V), np.int64)
    w[0, :5] = 3                                  # columns 0..4 reach out 0
    w[1, 3:7] = -2                                # columns 3..6 reach out 1
    return Network(
        groups=[NeuronGroup("a", (2, T, V), cp), NeuronGroup("out", (2,), cp, readout=True)],
        synapses=[Synapse("ao", "a", "out", "dense", w)],
        encoders=[Encoder("e", "joint", "a", np.ones((2, 3, 1, 1), np.int64),
                          np.zeros(2, np.int64), input_frac_bits=6, shift=0)],
        num_steps=5, readout="out")


class TinyTeacher(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, (3, 1), padding=(1, 0), bias=False)
        self.fc = torch.nn.Linear(4, 2, bias=False)

    def forward(self, x):                          # (N, 3, T, V)
        return self.fc(self.conv(x).mean((2, 3)))


@pytest.fixture
def model_dir(tmp_path):
    torch.set_num_threads(1)
    d = tmp_path / "model"
    d.mkdir()
    net = tiny_net()
    netgraph.save(net, d / "model.net")
    torch.onnx.export(TinyTeacher(), torch.zeros(1, 3, T, V), str(d / "teacher.onnx"),
                      dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "N"}})
    act = tmp_path / "sim"
    act.mkdir()
    counts = np.zeros((2, T, V), np.int64)
    counts.reshape(-1)[:8] = [4, 0, 1, 2, 0, 3, 5, 1]    # over 2 samples
    sha = hashlib.sha256((d / "model.net").read_bytes()).hexdigest()
    (act / "activity.json").write_text(json.dumps({
        "schema": "mksgn-activity/1", "network_sha256": sha, "engine": "fast", "samples": 2,
        "runs": 2, "num_steps": 5, "groups": {}}))
    np.savez(act / "activity.npz", samples=np.int64(2),
             **{"spikes/a": counts, "spikes/out": np.zeros(2, np.int64)})
    return d, act, tmp_path


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_report_numbers_by_hand(model_dir):
    d, act, tmp = model_dir
    out = tmp / "report"
    r = invoke("energy", d, "--activity", act, "--profile", "loihi", "--profile", "cmos45nm_fp32",
               "--teacher-profile", "cmos45nm_fp32", "--teacher-profile", "gpu", "--out", out)
    assert r.exit_code == 0, r.output
    rep = EnergyReport.from_json((out / "energy.json").read_text())
    # a mksgn-activity/1 file has no recorded active steps: the lower bound (spikes) is used
    assert rep.activity["neuron_updates"] == "spikes" and "lower bound" in r.output
    a, o = rep.student
    # fan-out of a's flat neurons: 1 1 1 2 2 1 1 0 ...; synops = (4 + 0 + 1 + 2*2 + 0 + 3 + 5 + 0) / 2
    assert o.synops == 17 / 2 and o.synapses == 9
    assert a.spikes_per_sample == 16 / 2 and a.firing_rate == 8 / (24 * 5)
    # encoder: 1x1 conv, 3 -> 2 channels over T x V: 2 * 3 * T * V MACs per sample
    assert a.encoder_macs == 2 * 3 * T * V
    assert rep.student_total_pj["cmos45nm_fp32"] == (0.0 + 2 * 3 * T * V * 4.6) + 8.5 * 0.9
    lo_a = 8 * 81 + (24 * 5 - 8) * 52 + 2 * 3 * T * V * 4.6
    # deliveries: out fits one core; every spike of a neuron with a target: (4+1+2+3+5+0... ) / 2
    lo_o = 8.5 * 23.6 + 10 * 81 + (4 + 1 + 2 + 3 + 5) / 2 * 1.7
    assert rep.student_total_pj["loihi"] == 0.0 + lo_a + lo_o
    # teacher: conv 4 * T * V * 3 * 3 MACs (padding taps included), fc 4 * 2, mean: not counted
    macs = 4 * T * V * 3 * 3 + 4 * 2
    assert sum(t.macs for t in rep.teacher) == macs
    assert rep.teacher_total_pj == {"cmos45nm_fp32": (4 * T * V * 9) * 4.6 + 8 * 4.6,
                                    "gpu": (4 * T * V * 9) * 300.0 + 8 * 300.0}
    s, t = rep.student_total_pj["cmos45nm_fp32"], rep.teacher_total_pj["cmos45nm_fp32"]
    assert rep.reduction_percent["cmos45nm_fp32"]["cmos45nm_fp32"] == 100 * (1 - s / t)
    assert f"student uses {100 * (1 - s / t):.2f}% less energy" in " ".join(r.output.split())
    rows = list(csv.DictReader((out / "energy.csv").open()))
    assert len(rows) == 2 * 2 + 2 * len(rep.teacher)
    assert float(rows[0]["energy_pj"]) == a.energy_pj["loihi"]["total"]
    assert (out / "energy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_teacher_onnx_macs_per_layer(model_dir):
    d, _, _ = model_dir
    layers = {t.name: (t.macs, t.adds) for t in onnx_layers(d / "teacher.onnx")}
    assert layers == {"conv": (4 * T * V * 9, 0), "fc": (8, 0)}


def test_teacher_macs_json(model_dir):
    d, act, tmp = model_dir
    (d / "teacher.onnx").unlink()
    tj = tmp / "macs.json"
    tj.write_text(json.dumps({"layers": [{"name": "s1", "macs": 1000}, {"name": "s2", "macs": 10}]}))
    r = invoke("energy", d, "--activity", act, "--teacher-macs", tj, "--out", tmp / "rep")
    assert r.exit_code == 0, r.output
    rep = EnergyReport.from_json((tmp / "rep" / "energy.json").read_text())
    assert rep.teacher_total_pj["cmos45nm_fp32"] == 1000 * 4.6 + 10 * 4.6
    assert rep.teacher_total_pj["cpu"] == 1000 * 8600.0 + 10 * 8600.0


def one_line_error(r) -> str:
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    return lines[0]


def test_activity_from_another_network_is_refused(model_dir):
    d, act, tmp = model_dir
    meta = json.loads((act / "activity.json").read_text())
    meta["network_sha256"] = "0" * 64
    (act / "activity.json").write_text(json.dumps(meta))
    msg = one_line_error(invoke("energy", d, "--activity", act, "--out", tmp / "r"))
    assert "activity report is from another network" in msg
    assert not (tmp / "r").exists()


def test_unknown_profile_and_bad_yaml_are_one_line(model_dir):
    d, act, tmp = model_dir
    msg = one_line_error(invoke("energy", d, "--activity", act, "--profile", "loihi9",
                                "--out", tmp / "r"))
    assert "unknown profile 'loihi9'; known profiles: arm, cmos45nm_fp32" in msg
    bad = tmp / "bad.yaml"
    bad.write_text("name: bad\nkind: cmos\ndescription: x\nenergy:\n"
                   "  ac: {value: 1, unit: pj, source: s}\n  mac: {value: 1, unit: pJ, source: s}\n")
    msg = one_line_error(invoke("energy", d, "--activity", act, "--profile", bad, "--out", tmp / "r"))
    assert msg == "Error: bad.yaml:5: energy.ac.unit: expected one of pJ, nJ, uJ, mJ, J, got 'pj'"
    msg = one_line_error(invoke("energy", d, "--activity", act, "--teacher-profile", "loihi",
                                "--out", tmp / "r"))
    assert "neuromorphic profile cannot run the ANN teacher" in msg


def test_list_profiles():
    r = invoke("energy", "--list-profiles")
    assert r.exit_code == 0 and "spinnaker2" in r.output and "estimate" in r.output


def test_measured_on_the_spot_equals_simulate(model_dir):
    """Without --activity, the fast engine measures on --samples test samples of --data."""
    d, _, tmp = model_dir
    prep = tmp / "prep" / "xsub"
    prep.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = 3
    (prep / "info.json").write_text(json.dumps({"layout": "ntu25", "num_classes": 2,
                                                "dataset": "ntu60", "benchmark": "xsub"}))
    np.save(prep / "test_data.npy", rng.normal(0, 0.5, (n, 3, 10, 25, 2)).astype(np.float32))
    np.save(prep / "test_label.npy", rng.integers(0, 2, n).astype(np.int64))
    (prep / "test_meta.json").write_text(json.dumps({"names": ["s0", "s1", "s2"],
                                                     "num_frames": [10, 8, 10]}))
    # the tiny net has V = 3 joints; an ntu25 sample has 25: use a 25-joint copy of the net
    net = tiny_net()
    v = 25
    w = np.zeros((2, 2 * T * v), np.int64)
    w[0, :40] = 3
    w[1, 30:90] = -2
    net.groups[0].shape = (2, T, v)
    net.synapses[0].weight = w
    netgraph.save(net, d / "model.net")
    (d / "manifest.json").write_text(json.dumps({"input": {"modalities": ["joint"], "window": T}}))
    r = invoke("energy", d, "--data", prep.parent, "--samples", 2, "--teacher-macs",
               _macs(tmp), "--out", tmp / "now")
    assert r.exit_code == 0, r.output
    r2 = invoke("simulate", d, "--data", prep.parent, "--samples", 2, "--out", tmp / "sim2")
    assert r2.exit_code == 0, r2.output
    r3 = invoke("energy", d, "--activity", tmp / "sim2", "--teacher-macs", _macs(tmp),
                "--out", tmp / "later")
    assert r3.exit_code == 0, r3.output
    now = EnergyReport.from_json((tmp / "now" / "energy.json").read_text())
    later = EnergyReport.from_json((tmp / "later" / "energy.json").read_text())
    assert now.activity["samples"] == 2 and now.activity["runs"] == 4   # two persons each
    assert now.student == later.student and now.student_total_pj == later.student_total_pj


def _macs(tmp):
    p = tmp / "t.json"
    p.write_text(json.dumps({"conv": 100000}))
    return p
