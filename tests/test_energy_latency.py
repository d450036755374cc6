"""Time per sample on a neuromorphic profile (hw_profiles/latency.py): numbers by hand, schema."""
from __future__ import annotations

import numpy as np
import pytest
from click import ClickException

from mksgn import loihi
from mksgn.activity import Activity
from mksgn.hw_profiles.report import build_report
from mksgn.netgraph import Network, NeuronGroup, Synapse
from mksgn.profiles import load_profile

T, V = 4, 3


def test_loihi_time_by_hand():
    cp = loihi.CubaParams(1024, 512, 10)
    net = Network(groups=[NeuronGroup("a", (2, T, V), cp),
                          NeuronGroup("out", (2,), cp, readout=True)],
                  synapses=[Synapse("ao", "a", "out", "dense", np.ones((2, 2 * T * V), np.int64))],
                  num_steps=5, readout="out")
    counts = np.zeros((2, T, V), np.int64)
    counts.reshape(-1)[:5] = 3                                  # 15 spikes in 2 runs
    active = np.zeros((2, T, V), np.int64)
    active.reshape(-1)[:20] = 5                                 # 100 active neuron-steps
    act = Activity({"a": counts, "out": np.zeros(2, np.int64)}, samples=2, num_steps=5, runs=2,
                   active={"a": active, "out": np.zeros(2, np.int64)})
    rep = build_report(net, "x", act, "by hand", [load_profile("loihi"),
                                                  load_profile("cmos45nm_fp32")])
    lat = rep.student_latency["loihi"]
    # per run-step (10 of them): core of a: 10 active x 9.7 + 14 idle x 6.0 + 1.5 spikes x 30;
    # core of out: 2 x 9.7 + 3 synops x 4.7 + 1.5 messages x 16 (ns); barrier 1.8 us
    assert lat["busiest_layer"] == "a"
    assert lat["busiest_core_s"] == pytest.approx((10 * 9.7 + 14 * 6.0 + 1.5 * 30) * 1e-9)
    assert lat["per_step_s"] == pytest.approx(1.8e-6 + 226e-9)
    assert lat["per_sample_s"] == pytest.approx(5 * (1.8e-6 + 226e-9))
    assert "cmos45nm_fp32" not in rep.student_latency          # no latency model there


@pytest.mark.parametrize("text, error", [
    ("latency: {step_sync: {value: 1, unit: us, source: s}}",
     "latency.neuron_update: missing field"),
    ("latency: {step_sync: {value: 1, unit: us, source: s}, neuron_update: {value: 1, unit: "
     "ns, source: s}, synop: {value: 1, unit: NS, source: s}}",
     "latency.synop.unit: expected one of ns, us, ms, s, got 'NS'"),
    ("latency: {step_sync: {value: 1, unit: us, source: s}, neuron_update: {value: 1, unit: "
     "ns, source: s}, synop: {value: 1, unit: ns, source: s}, hop: {value: 1, unit: ns, "
     "source: s}}", "latency.hop: unknown operation"),
])
def test_latency_schema_errors_name_the_field(tmp_path, text, error):
    p = tmp_path / "chip.yaml"
    p.write_text("name: chip\nkind: neuromorphic\ndescription: d\nneurons_per_core: 4\n"
                 "energy: {synop: {value: 1, unit: pJ, source: s}, neuron_update: {value: 1, "
                 f"unit: pJ, source: s}}}}\n{text}\n")
    with pytest.raises(ClickException, match=error.replace("(", r"\(")):
        load_profile(str(p))


def test_ann_devices_state_no_time(tmp_path):
    p = tmp_path / "dev.yaml"
    p.write_text("name: dev\nkind: ann_device\ndescription: d\nenergy: {op: {value: 1, unit: pJ,"
                 " source: s}}\nlatency: {op: {value: 1, unit: ns, source: s}}\n")
    with pytest.raises(ClickException, match="ann_device profiles state no latency model"):
        load_profile(str(p))
