"""The reference teacher: an untrained teacher graph from a run config (`mksgn convert
--teacher-config`), counted by hand, and the second reduction `mksgn energy --reference-teacher`
reports next to the trained teacher's."""
from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from convert_helpers import student_checkpoint
from mksgn import loihi, netgraph
from mksgn.pipeline.cli import main
from mksgn.data.layouts import get_layout
from mksgn.data.prepare import DATASET_SPECS
from mksgn.hw_profiles.report import EnergyReport
from mksgn.hw_profiles.teacher import onnx_layers
from mksgn.netgraph import Encoder, Network, NeuronGroup, Synapse

# a one-block, two-stream teacher for NW-UCLA: small enough to count by hand
C, T, K = 4, 6, 2
CONFIG = f"""kind: teacher
data: {{prepared: no-data, window: {T}, modalities: [joint, bone]}}
model: {{modalities: [joint, bone], persons: 1, base_channels: {C}, widths: [1], strides: [1],
        temporal_kernel: 5, dilations: [1, 2]}}
"""


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r) -> str:
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    return lines[0]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("ref")
    (d / "small_teacher.yaml").write_text(CONFIG)
    r = invoke("convert", "--teacher-config", d / "small_teacher.yaml", "--dataset", "ucla",
               "--out", d / "graph")
    assert r.exit_code == 0, r.output
    return d, d / "graph" / "teacher.onnx", r.output


def block1_by_hand(c: int, t: int, v: int, parts: int, c_in: int = 3, kernel: int = 5,
                   dilations=(1, 2)) -> tuple[int, int]:
    """(MACs, adds) of teacher block 1 (stride 1, no residual) for one sample, from
    train/teacher.py's structure and hw_profiles/teacher.py's rules (conv: out x C_in x kernel,
    its bias one add per output; einsum: product of its index sizes; Mul / unfolded BN: one MAC
    per output; Add / Sub: one add per output); a BN after a conv is folded into the conv."""
    r = 8                                        # CTR-GC embedding channels when C_in <= 9
    tv = t * v
    macs = adds = 0
    for _ in range(parts):                       # CTR-GC per partition
        macs += 2 * r * tv * c_in                # conv1, conv2 (1x1)
        adds += 2 * r * tv                       #   their biases
        adds += r * v * v                        # q - k pairwise differences
        macs += c * v * v * r                    # conv4 on the (R, V, V) relation
        adds += c * v * v                        #   its bias
        macs += c * v * v                        # x alpha
        adds += c * v * v                        # + the shared topology
        macs += c * tv * c_in                    # conv3
        adds += c * tv                           #   its bias
        macs += c * t * v * v                    # einsum ncuv,nctv->nctu
    adds += (parts - 1) * c * tv                 # sum over partitions
    macs += c * tv                               # gcn.bn (after an Add: not folded)
    macs += c * tv * c_in                        # down conv (BN folded in)
    adds += c * tv + c * tv                      #   its bias; + down residual
    cb = c // (len(dilations) + 2)               # temporal branches of C/4 channels
    for _ in dilations:                          # 1x1 conv, then (kernel, 1) conv
        macs += cb * tv * c + cb * tv * cb * kernel
        adds += cb * tv + cb * tv
    macs += cb * tv * c + cb * tv                # 1x1 conv, max-pool (free), BN (not folded)
    adds += cb * tv
    macs += cb * tv * c                          # the plain 1x1 branch
    adds += cb * tv
    return macs, adds


def test_teacher_graph_macs_equal_a_count_by_hand(graph):
    d, path, out = graph
    spec, layout = DATASET_SPECS["ucla"], get_layout("ucla")
    classes, v, m = spec.num_classes, layout.num_joints, spec.persons
    assert (classes, v, m) == (10, 20, 1)
    parts = np.asarray(layout.partitions()).shape[0]
    block = block1_by_hand(C, T, v, parts)
    expect = {}
    for s in range(K):
        expect[f"streams.{s}/data_bn"] = (m * v * 3 * T, 0)        # BatchNorm1d, not folded
        expect[f"streams.{s}/layers.0"] = block
        expect[f"streams.{s}/fc"] = (C * classes, classes)
    expect["Add"] = (0, classes)                                   # sum of the stream scores
    assert {t.name: (t.macs, t.adds) for t in onnx_layers(path)} == expect
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["mksgn.config"] == str(d / "small_teacher.yaml")
    assert meta["mksgn.dataset"] == "ucla" and meta["mksgn.weights"].startswith("untrained")
    assert meta["mksgn.input"].endswith(f"(n, {K}, 3, {T}, {v}, {m})")
    assert "untrained" in out and "10 classes" in out


def test_teacher_graph_is_the_trained_teachers_graph(graph, tmp_path):
    """`mksgn convert --teacher` on a checkpoint of the same config, with other weights and BN
    statistics: the same operations and counts (the exporter only shares equal initial weights
    through extra, free, Identity nodes)."""
    from mksgn.train.checkpoint import build_model
    from mksgn.train.config import load_config, to_dict

    d, path, _ = graph
    cfg = load_config(d / "small_teacher.yaml")
    torch.manual_seed(3)
    model = build_model("teacher", cfg.model, 10, get_layout("ucla"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for b in model.buffers():
            if b.dtype.is_floating_point:
                b.add_(torch.rand_like(b))
    torch.save({"kind": "teacher", "config": to_dict(cfg), "model": model.state_dict(),
                "num_classes": 10, "layout": "ucla20", "epoch": 1, "optimizer": {},
                "scheduler": {}, "rng": {}, "metrics": []}, tmp_path / "teacher.pt")
    student = student_checkpoint(tmp_path / "student.pt")
    r = invoke("convert", student, "--teacher", tmp_path / "teacher.pt", "--out", tmp_path / "c")
    assert r.exit_code == 0, r.output
    trained = tmp_path / "c" / "teacher.onnx"

    def ops(p):
        return [n.op_type for n in onnx.load(str(p)).graph.node if n.op_type != "Identity"]

    assert ops(trained) == ops(path)
    assert onnx_layers(trained) == onnx_layers(path)


def test_teacher_graph_refuses_the_wrong_bodies_and_kind(graph, tmp_path):
    d, _, _ = graph
    two = tmp_path / "two.yaml"
    two.write_text(CONFIG.replace("persons: 1", "persons: 2"))
    msg = one_line_error(invoke("convert", "--teacher-config", two, "--dataset", "ucla",
                                "--out", tmp_path / "g"))
    assert msg == (f"Error: {two}: model.persons is 2 but ucla holds 1 body slot(s) per "
                   "sample; set model.persons: 1")
    student = tmp_path / "student.yaml"
    student.write_text("kind: student\n")
    msg = one_line_error(invoke("convert", "--teacher-config", student, "--dataset", "ucla",
                                "--out", tmp_path / "g"))
    assert "a 'student' run config where a teacher's is needed" in msg
    assert not (tmp_path / "g").exists()


# ---------------------------------------------------------------------------------------------
# mksgn energy --reference-teacher

V = 3


@pytest.fixture
def model_dir(tmp_path):
    """A converted tiny student (encoder -> a (2, 4, V) -> dense -> readout), its activity and a
    one-conv trained teacher."""
    d = tmp_path / "model"
    d.mkdir()
    cp = loihi.CubaParams(1024, 512, 10)
    w = np.zeros((2, 2 * 4 * V), np.int64)
    w[0, :5] = 3
    net = Network(groups=[NeuronGroup("a", (2, 4, V), cp),
                          NeuronGroup("out", (2,), cp, readout=True)],
                  synapses=[Synapse("ao", "a", "out", "dense", w)],
                  encoders=[Encoder("e", "joint", "a", np.ones((2, 3, 1, 1), np.int64),
                                    np.zeros(2, np.int64), input_frac_bits=6, shift=0)],
                  num_steps=5, readout="out")
    netgraph.save(net, d / "model.net")
    torch.onnx.export(torch.nn.Conv2d(3, 4, (3, 1), bias=False), torch.zeros(1, 3, 4, V),
                      str(d / "teacher.onnx"), dynamo=False, input_names=["x"])
    act = tmp_path / "sim"
    act.mkdir()
    counts = np.zeros((2, 4, V), np.int64)
    counts.reshape(-1)[:6] = [4, 0, 1, 2, 0, 3]
    (act / "activity.json").write_text(json.dumps({
        "schema": "mksgn-activity/1", "engine": "fast", "samples": 2, "runs": 2, "num_steps": 5,
        "network_sha256": hashlib.sha256((d / "model.net").read_bytes()).hexdigest(),
        "groups": {}}))
    np.savez(act / "activity.npz", samples=np.int64(2),
             **{"spikes/a": counts, "spikes/out": np.zeros(2, np.int64)})
    return d, act, tmp_path


PROFILES = ("--profile", "cmos45nm_fp32", "--profile", "cmos45nm_int8",
            "--teacher-profile", "cmos45nm_fp32", "--teacher-profile", "gpu")


def test_report_holds_both_reductions(graph, model_dir):
    _, ref_path, _ = graph
    d, act, tmp = model_dir
    r = invoke("energy", d, "--activity", act, *PROFILES, "--reference-teacher", ref_path,
               "--out", tmp / "with")
    assert r.exit_code == 0, r.output
    r0 = invoke("energy", d, "--activity", act, *PROFILES, "--out", tmp / "without")
    assert r0.exit_code == 0, r0.output
    with_ref = json.loads((tmp / "with" / "energy.json").read_text())
    without = json.loads((tmp / "without" / "energy.json").read_text())
    assert with_ref.pop("reference_teacher") and without.pop("reference_teacher") is None
    assert with_ref == without                                  # every existing key unchanged

    rep = EnergyReport.from_json((tmp / "with" / "energy.json").read_text())
    ref = rep.reference_teacher
    layers = onnx_layers(ref_path)
    macs, adds = sum(t.macs for t in layers), sum(t.adds for t in layers)
    assert (ref.macs, ref.adds) == (macs, adds)
    assert ref.source == str(ref_path) and ref.name == "small_teacher.yaml"
    assert ref.about["dataset"] == "ucla" and ref.about["weights"].startswith("untrained")
    assert ref.total_pj["cmos45nm_fp32"] == pytest.approx(macs * 4.6 + adds * 0.9, rel=1e-12)
    assert ref.total_pj["gpu"] == pytest.approx((macs + adds) * 300.0, rel=1e-12)
    for s, es in rep.student_total_pj.items():
        for t in ("cmos45nm_fp32", "gpu"):
            assert ref.reduction_percent[s][t] == pytest.approx(
                100 * (1 - es / ref.total_pj[t]), rel=1e-12)
            assert rep.reduction_percent[s][t] == pytest.approx(
                100 * (1 - es / rep.teacher_total_pj[t]), rel=1e-12)
    # the trained teacher: one conv, 4 x 2 x V outputs x 3 x 3 taps
    assert rep.teacher_total_pj["cmos45nm_fp32"] == pytest.approx(4 * 2 * V * 9 * 4.6)

    text = " ".join(r.output.split())
    pct = ref.reduction_percent["cmos45nm_fp32"]["cmos45nm_fp32"]
    assert f"vs reference teacher (small_teacher.yaml): {pct:.2f}% less (cmos45nm_fp32)" in text
    assert "reference teacher small_teacher.yaml:" in text
    joined = "".join(r.output.split())                          # rich breaks long paths
    assert str(ref_path) in joined
    assert f"vstheteacher({d / 'teacher.onnx'})" in joined      # which teacher each is against
    rows = list(csv.DictReader((tmp / "with" / "energy.csv").open()))
    assert sum(row["part"] == "reference_teacher" for row in rows) == 2 * len(ref.layers)


def test_bad_reference_teacher_is_one_line_naming_the_file(model_dir):
    d, act, tmp = model_dir
    missing = tmp / "nope.onnx"
    msg = one_line_error(invoke("energy", d, "--activity", act, "--reference-teacher", missing,
                                "--out", tmp / "r"))
    assert msg.startswith(f"Error: --reference-teacher {missing}: no such teacher file")
    junk = tmp / "junk.onnx"
    junk.write_bytes(b"not a protobuf \xff\xff")
    msg = one_line_error(invoke("energy", d, "--activity", act, "--reference-teacher", junk,
                                "--out", tmp / "r"))
    assert msg.startswith(f"Error: --reference-teacher {junk}: not a readable ONNX model")
    assert not (tmp / "r").exists()


def test_reference_teacher_from_json(model_dir):
    d, act, tmp = model_dir
    macs = tmp / "paper_macs.json"
    macs.write_text(json.dumps({"layers": [{"name": "s1", "macs": 1000, "adds": 10}]}))
    r = invoke("energy", d, "--activity", act, *PROFILES, "--reference-teacher", macs,
               "--out", tmp / "j")
    assert r.exit_code == 0, r.output
    ref = EnergyReport.from_json((tmp / "j" / "energy.json").read_text()).reference_teacher
    assert ref.name == "paper_macs.json" and ref.about == {}
    assert ref.total_pj["cmos45nm_fp32"] == pytest.approx(1000 * 4.6 + 10 * 0.9)
