"""`mksgn sweep`: a family of students over energy weights, measured, and its frontier files."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner
from train_fakes import tiny_runs

from mksgn.pipeline.cli import main

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    tiny_runs(root)
    args = ["sweep", "--config", str(root / "student.yaml"), "--data", str(root / "prep"),
            "--teacher", str(root / "teacher"), "--init", str(root / "student"),
            "--weights", "2,0,2:3,0:3:0.5,0::0.5e", "--set", "optim.epochs=1",
            "--profile", "loihi", "--profile", "cmos45nm_fp32", "--out", str(root / "sweep")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    return root, args, res.output


def test_every_point_is_a_measured_run(swept):
    root, _, _ = swept
    fr = json.loads((root / "sweep" / "frontier.json").read_text())
    assert [p["label"] for p in fr["points"]] == \
        ["init", "w0", "w0s0.5e", "w0k3s0.5", "w2", "w2k3"]
    assert fr["train_profile"] == "loihi" and fr["profiles"] == ["loihi", "cmos45nm_fp32"]
    for p in fr["points"]:
        d = root / "sweep" / p["label"]
        act = json.loads((d / "sim_fast" / "activity.json").read_text())
        rep = json.loads((d / "energy" / "energy.json").read_text())
        assert (p["correct"], p["samples"]) == (act["correct"], act["samples"])
        assert p["accuracy"] == act["correct"] / act["samples"]
        for prof in fr["profiles"]:
            assert p["energy_j"][prof] == rep["student_total_pj"][prof] * 1e-12
            if p["correct"]:
                assert p["energy_per_correct_j"][prof] == pytest.approx(
                    p["energy_j"][prof] * p["samples"] / p["correct"], rel=1e-12)
    cfg = {p: yaml.safe_load((root / "sweep" / p / "student" / "config.yaml").read_text())
           for p in ("w0", "w2")}
    assert cfg["w2"]["energy"] == {"mode": "energy", "weight": 2.0, "profile": "loihi",
                                   "target_rate": 0.05, "graph_keep": None,
                                   "synapse_keep": None, "synapse_keep_by": "count",
                                   "cost_power": 0.5}
    assert cfg["w0"]["energy"] == dict(cfg["w2"]["energy"], weight=0.0)
    assert cfg["w2"]["init"] == str(root / "student" / "last.pt")
    assert cfg["w2"]["teacher"] == str(root / "teacher" / "last.pt")
    w2 = next(p for p in fr["points"] if p["label"] == "w2")
    w0 = next(p for p in fr["points"] if p["label"] == "w0")
    assert w2["trained_for_j"] > 0 and w0["trained_for_j"] > 0
    assert next(p for p in fr["points"] if p["label"] == "init")["trained_for_j"] is None
    rows = json.loads((root / "sweep" / "w0" / "student" / "metrics.json").read_text())["epochs"]
    assert rows[-1]["train_energy_loss"] == 0.0
    assert fr["teacher"]["energy_j"]["cmos45nm_fp32"] > 0


def test_a_pruned_point_keeps_k_source_joints_and_half_the_weights(swept):
    """w0k3s0.5: trained with energy.graph_keep=3 and synapse_keep=0.5; its converted network
    (what the engine ran and the energy stage counted) has at most 3 source joints per
    destination joint, and at most half the weights of every synapse group (of the connected
    joint pairs for a graph)."""
    import numpy as np

    from mksgn import netgraph
    root, _, _ = swept
    d = root / "sweep" / "w0k3s0.5"
    cfg = yaml.safe_load((d / "student" / "config.yaml").read_text())
    assert cfg["energy"]["graph_keep"] == 3 and cfg["energy"]["weight"] == 0.0
    assert cfg["energy"]["synapse_keep"] == 0.5
    net = netgraph.load(d / "convert" / "model.net")
    graphs = [s for s in net.synapses if s.kind == "graph"]
    convs = [s for s in net.synapses if s.kind == "conv"]
    assert graphs and convs
    for syn in graphs:
        w = np.asarray(syn.weight)
        joints = (w != 0).any(axis=(0, 1))                               # (v, u)
        assert joints.sum(1).max() <= 3 < joints.shape[1]
        assert np.count_nonzero(w) <= round(0.5 * 3 * joints.shape[0] * w.shape[0] * w.shape[1])
    for syn in convs:
        w = np.asarray(syn.weight)
        assert np.count_nonzero(w) <= round(0.5 * w.size)
    fr = json.loads((root / "sweep" / "frontier.json").read_text())
    pts = {p["label"]: p for p in fr["points"]}
    assert pts["w0k3s0.5"]["graph_keep"] == 3 and pts["w2"]["graph_keep"] is None
    assert pts["w0k3s0.5"]["synapse_keep"] == 0.5 and pts["w2k3"]["synapse_keep"] is None
    assert pts["w0k3s0.5"]["synapse_keep_by"] == "count" and pts["w2"]["synapse_keep_by"] is None
    assert pts["w0s0.5e"]["synapse_keep_by"] == "energy"
    cfg = yaml.safe_load((root / "sweep" / "w0s0.5e" / "student" / "config.yaml").read_text())
    assert cfg["energy"]["synapse_keep"] == 0.5 and cfg["energy"]["synapse_keep_by"] == "energy"
    assert "synapse_keep_by" in (root / "sweep" / "frontier.csv").read_text().splitlines()[0]
    net = netgraph.load(root / "sweep" / "w2k3" / "convert" / "model.net")   # K alone
    for syn in (s for s in net.synapses if s.kind == "graph"):
        assert (np.asarray(syn.weight) != 0).any(axis=(0, 1)).sum(1).max() <= 3
    assert fr["baseline"] == "w0"


def test_pareto_flags_and_csv_match_the_points(swept):
    root, _, _ = swept
    fr = json.loads((root / "sweep" / "frontier.json").read_text())
    pts = fr["points"]
    for prof in fr["profiles"]:
        for p in pts:
            beaten = any(q["accuracy"] >= p["accuracy"] and q["energy_j"][prof] <= p["energy_j"][prof]
                         and (q["accuracy"] > p["accuracy"] or q["energy_j"][prof] < p["energy_j"][prof])
                         for q in pts if q is not p)
            assert p["pareto"][prof] is (not beaten)
        assert any(p["pareto"][prof] for p in pts)
    rows = list(csv.DictReader((root / "sweep" / "frontier.csv").open()))
    assert [r["label"] for r in rows] == [p["label"] for p in pts]
    assert float(rows[1]["energy_j_loihi"]) == pts[1]["energy_j"]["loihi"]
    assert (root / "sweep" / "frontier.png").stat().st_size > 1000


def test_rerun_reuses_every_finished_stage(swept):
    root, args, _ = swept
    net = root / "sweep" / "w2" / "convert" / "model.net"
    before = net.stat().st_mtime_ns, (root / "sweep" / "w2" / "student" / "last.pt").stat().st_mtime_ns
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert res.output.count("done earlier") == 18         # 6 points x convert/engine/energy
    after = net.stat().st_mtime_ns, (root / "sweep" / "w2" / "student" / "last.pt").stat().st_mtime_ns
    assert after == before


def test_bad_weights_are_one_line_errors(tmp_path):
    res = subprocess.run([sys.executable, "-m", "mksgn.pipeline.cli", "sweep", "--config", __file__,
                          "--data", str(tmp_path), "--weights", "0,x", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "'x' in '0,x': expected a non-negative weight" in res.stderr
    assert "Traceback" not in res.stderr


def test_weights_parse_w_k_and_f():
    import click

    from mksgn.pipeline.sweep import Spec, _weights
    assert _weights(" 5:4, 0,2,0:4,2,0:4:0.5,0::0.3,0::1,0::0.3e") == [
        Spec(0.0), Spec(0.0, None, 0.3), Spec(0.0, None, 0.3, True), Spec(0.0, None, 1.0),
        Spec(0.0, 4), Spec(0.0, 4, 0.5), Spec(2.0), Spec(5.0, 4)]
    assert [s.label for s in _weights("0:4:0.5,0::0.3,2:3,0:4:0.5e")] == \
        ["w0s0.3", "w0k4s0.5", "w0k4s0.5e", "w2k3"]
    for bad in ("5:", "2:0", "1:2.5", "-1", "inf", "a:3", ",", "0:4:", "0::0", "0::1.5",
                "0:4:0.5:1", "0::x", "0::e", "0::1.5e", "0:4e", "0e"):
        with pytest.raises(click.BadParameter, match=f"^{re.escape(repr(bad))}(:| in ).*expected "):
            _weights(bad)
