"""Hardware profiles: the bundled files load, cite sources, and schema errors name the field."""
from __future__ import annotations

import textwrap

import click
import pytest

from mksgn import loihi
from mksgn import profiles as P

BUILTIN = {"loihi", "loihi_sanafe", "loihi2", "spinnaker2", "truenorth", "cmos45nm_fp32",
           "cmos45nm_int8", "gpu", "cpu", "arm"}


def test_every_bundled_profile_loads_with_units_and_sources():
    assert set(P.builtin_names()) == BUILTIN
    for name in BUILTIN:
        p = P.load_profile(name)
        assert p.name == name
        for key, e in p.energy.items():
            assert e.unit in P.UNIT_PJ and e.source.strip(), (name, key)


def test_published_numbers_and_the_loihi_facts():
    lo = P.load_profile("loihi")
    assert {k: e.pj for k, e in lo.energy.items()} == {
        "synop": 23.6, "neuron_update": 81.0, "neuron_update_idle": 52.0, "spike_core": 1.7,
        "hop_ew": 3.0, "hop_ns": 4.0, "input_mac": 4.6}
    assert lo.neurons_per_core == loihi.LOIHI_NEURONS_PER_CORE
    l2 = P.load_profile("loihi2")
    assert l2.estimate and l2.basis.startswith("No per-operation energies are published")
    assert l2.neurons_per_core == loihi.LOIHI2_NEURONS_PER_CORE
    assert all("ESTIMATE" in e.source for k, e in l2.energy.items() if k != "input_mac")
    assert P.load_profile("spinnaker2").pj("synop") == 450.0
    assert P.load_profile("spinnaker2").pj("neuron_update") == 2.19 * 1e3
    assert P.load_profile("truenorth").pj("synop") == 26.0
    assert [P.load_profile(n).pj("op") for n in ("gpu", "cpu", "arm")] == [300.0, 8600.0, 900.0]


GOOD = """\
name: mychip
kind: neuromorphic
description: a test chip
neurons_per_core: 2
energy:
  synop: {value: 10, unit: pJ, source: "test"}
  neuron_update: {value: 1, unit: nJ, source: "test"}
"""


def write(tmp_path, text, name="mychip.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def error_of(path) -> str:
    with pytest.raises(click.ClickException) as exc:
        P.load_profile(path)
    return exc.value.message


def test_a_user_profile_loads_from_a_path(tmp_path):
    p = P.load_profile(write(tmp_path, GOOD))
    assert (p.name, p.kind, p.neurons_per_core, p.pj("neuron_update")) == ("mychip", "neuromorphic",
                                                                           2, 1000.0)


@pytest.mark.parametrize("edit,expected", [
    (("unit: pJ, source", "unit: pj, source"),
     "mychip.yaml:6: energy.synop.unit: expected one of pJ, nJ, uJ, mJ, J, got 'pj'"),
    (("value: 10,", "value: -10,"), "mychip.yaml:6: energy.synop.value: must not be negative, got -10"),
    (("value: 10,", "value: ten,"), "mychip.yaml:6: energy.synop.value: expected a number, got 'ten'"),
    (("  synop: {value: 10, unit: pJ, source: \"test\"}\n", ""),
     "mychip.yaml:5: energy.synop: missing field (a neuromorphic profile needs synop, neuron_update)"),
    (("description: a test chip\n", ""), "mychip.yaml:1: description: missing field"),
    (("value: 1, unit: nJ, source: \"test\"", "value: 1, unit: nJ"),
     "mychip.yaml:7: energy.neuron_update.source: missing field"),
    (("kind: neuromorphic", "kind: analog"),
     "mychip.yaml:2: kind: expected one of neuromorphic, cmos, ann_device, got 'analog'"),
    (("neurons_per_core: 2", "neurons_per_core: -2"),
     "mychip.yaml:4: neurons_per_core: must not be negative, got -2"),
    (("  synop:", "  synapse:"), "mychip.yaml:6: energy.synapse: unknown operation for a "
     "neuromorphic profile; expected one of synop, neuron_update, neuron_update_idle, spike_out, "
     "spike_core, hop_ew, hop_ns, input_mac"),
    (("neurons_per_core: 2", "estimate: true"), "mychip.yaml:1: basis: missing field "
     "(an estimate must state its basis)"),
])
def test_schema_errors_name_file_line_and_field(tmp_path, edit, expected):
    old, new = edit
    assert old in GOOD
    assert error_of(write(tmp_path, GOOD.replace(old, new))) == expected


def test_unknown_profile_lists_the_known_ones():
    msg = error_of("loihi3")
    assert msg.startswith("unknown profile 'loihi3'; known profiles: arm, cmos45nm_fp32")
    assert all(n in msg for n in BUILTIN)


def test_broken_yaml_is_one_line(tmp_path):
    msg = error_of(write(tmp_path, "name: [unclosed\n"))
    assert msg.startswith("mychip.yaml:") and "not valid YAML" in msg and "\n" not in msg
