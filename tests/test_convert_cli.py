"""`mksgn convert` end to end on tiny checkpoints, and every bad input it must refuse cleanly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from convert_helpers import (chain_student_config, student_checkpoint, teacher_checkpoint,
                             tiny_student_config)
from mksgn import netgraph
from mksgn.pipeline.cli import main
from mksgn.convert import convert as conv_mod
from mksgn.convert.student_io import ConvertError


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("ckpt")
    return {"student": student_checkpoint(d / "student" / "best.pt"),
            "teacher": teacher_checkpoint(d / "teacher" / "best.pt"), "dir": d}


@pytest.fixture(scope="module")
def converted(ckpts, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "out"
    res = CliRunner().invoke(main, ["convert", str(ckpts["student"].parent), "--teacher",
                                    str(ckpts["teacher"].parent), "--out", str(out)])
    return res, out


def _invoke(*args):
    return CliRunner().invoke(main, ["convert", *map(str, args)])


def _one_line_error(res) -> str:
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert "Traceback" not in res.output
    return lines[0]


def _no_leftovers(parent, name):
    return not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


# ---------------------------------------------------------------------------------------------
def test_convert_writes_everything_and_prints_report(converted, ckpts):
    res, out = converted
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {"model.net", "manifest.json", "compat.json",
                                               "student_float.onnx", "teacher.onnx", "student.pt"}
    assert "Loihi compatibility" in res.output and "Chip resources" in res.output
    assert "unsupported" in res.output and "workaround" in res.output
    assert (out / "student.pt").read_bytes() == ckpts["student"].read_bytes()
    assert _no_leftovers(out.parent, out.name)


def test_manifest_contents(converted, ckpts):
    _, out = converted
    man = json.loads((out / "manifest.json").read_text())
    assert man["schema"] == "mksgn-manifest/1"
    cfg = tiny_student_config()
    inp = man["input"]
    assert inp["modalities"] == list(cfg.modalities) and inp["window"] == cfg.frames
    assert inp["layout"] == "ucla20" and inp["benchmark"] == "xsub" and inp["persons"] == "fold"
    assert [e["modality"] for e in inp["encoding"]["encoders"]] == list(cfg.modalities)
    assert all({"input_frac_bits", "shift"} <= set(e) for e in inp["encoding"]["encoders"])
    assert "2**input_frac_bits" in inp["encoding"]["text"]
    net = netgraph.load(out / "model.net")
    assert man["num_steps"] == net.num_steps and man["readout"]["group"] == "readout"
    assert [r["name"] for r in man["layers"]] == [g.name for g in net.groups]
    for key in ("mksgn", "torch", "lava-nc", "lava-dl", "numpy", "h5py", "onnx"):
        assert man["versions"][key], key
    import hashlib
    assert man["source"]["sha256"] == hashlib.sha256(ckpts["student"].read_bytes()).hexdigest()
    assert man["source"]["config"]["model"]["channels"] == list(cfg.channels)
    assert man["teacher"]["kind"] == "teacher"
    assert man["files"]["model.net"] == hashlib.sha256(
        (out / "model.net").read_bytes()).hexdigest()
    syn_rows = [s for r in man["layers"] for s in r["synapses"]]
    assert {s["name"] for s in syn_rows} == {s.name for s in net.synapses}
    for s in syn_rows:
        assert s["weight_bits"] == 8 and s["synapses"] > 0
        q = s["quant_error"]
        assert q is not None and 0 <= q["rel_l2"] < 0.5 and q["max_abs_lsb"] <= 1 + 1e-9
    for r in man["layers"]:
        assert r["neurons"] > 0 and r["vth_mant"] > 0
    assert all(e["weight_error"]["max_abs_lsb"] <= 0.5 + 1e-9 for e in man["encoders"])


def test_compat_json_covers_every_node(converted):
    _, out = converted
    rep = json.loads((out / "compat.json").read_text())
    net = netgraph.load(out / "model.net")
    names = {n["name"] for n in rep["nodes"]}
    assert names == ({g.name for g in net.groups} | {s.name for s in net.synapses}
                     | {a.name for a in net.attentions} | {e.name for e in net.encoders})
    assert rep["resources"]["fits_one_loihi2"] is True


# ---------------------------------------------------------------------------------------------
def test_refuses_non_empty_dir_without_force_and_replaces_with_force(ckpts, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    line = _one_line_error(_invoke(ckpts["student"], "--out", out))
    assert "not empty" in line and "--force" in line
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    res = _invoke(ckpts["student"], "--out", out, "--force")
    assert res.exit_code == 0, res.output
    assert not (out / "keep.txt").exists() and (out / "model.net").is_file()
    assert not (out / "teacher.onnx").exists()
    assert _no_leftovers(tmp_path, "out")


def test_teacher_checkpoint_as_student_is_one_line(ckpts, tmp_path):
    line = _one_line_error(_invoke(ckpts["teacher"], "--out", tmp_path / "o"))
    assert "'teacher' checkpoint where a student is needed" in line
    assert not (tmp_path / "o").exists()


def test_student_as_teacher_is_one_line(ckpts, tmp_path):
    line = _one_line_error(_invoke(ckpts["student"], "--teacher", ckpts["student"],
                                   "--out", tmp_path / "o"))
    assert "'student' checkpoint where a teacher is needed" in line
    assert not (tmp_path / "o").exists()


def test_missing_teacher_is_one_line(ckpts, tmp_path):
    line = _one_line_error(_invoke(ckpts["student"], "--teacher", tmp_path / "nope",
                                   "--out", tmp_path / "o"))
    assert "nope: no such teacher" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_garbage_and_missing_checkpoints_are_one_line(tmp_path, content):
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    line = _one_line_error(_invoke(path, "--out", tmp_path / "o"))
    assert str(path) in line
    assert not (tmp_path / "o").exists()


def test_other_model_dict_is_one_line(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    line = _one_line_error(_invoke(path, "--out", tmp_path / "o"))
    assert "not an mksgn checkpoint" in line


def test_unknown_module_names_path_and_type(ckpts, tmp_path, monkeypatch):
    from mksgn.train import checkpoint as ck
    real = ck.load_model

    def with_dropout(path, *a, **kw):
        model, info = real(path, *a, **kw)
        model.blocks[1].drop = nn.Dropout(0.1)
        return model, info

    monkeypatch.setattr(ck, "load_model", with_dropout)
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    line = _one_line_error(_invoke(ckpts["student"], "--out", out, "--force"))
    assert line == "Error: convert: cannot convert blocks.1.drop (Dropout): no Loihi mapping"
    assert [p.name for p in out.iterdir()] == ["keep.txt"]          # DIR untouched
    assert _no_leftovers(tmp_path, "o")


def test_unknown_module_inside_an_exported_part(tmp_path):
    from convert_helpers import make_student
    model = make_student(tiny_student_config())
    model.ssc["bone"].act = nn.ReLU()
    with pytest.raises(ConvertError, match=r"cannot convert ssc\.bone\.act \(ReLU\)"):
        conv_mod.convert_model(model, {}, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_weight_overflow_names_layer_and_value(tmp_path):
    def blow_up(model):
        with torch.no_grad():
            model.blocks[0].tcn.weight.mul_(1e5)

    path = student_checkpoint(tmp_path / "big.pt", tweak=blow_up)
    line = _one_line_error(_invoke(path, "--out", tmp_path / "o"))
    assert "b1/tcn (blocks.0.tcn)" in line and "overflows Loihi's range" in line
    assert not (tmp_path / "o").exists() and _no_leftovers(tmp_path, "o")


def test_threshold_overflow_names_layer(tmp_path):
    path = student_checkpoint(tmp_path / "vth.pt", tiny_student_config(threshold=4000.0))
    line = _one_line_error(_invoke(path, "--out", tmp_path / "o"))
    assert "(LoihiCuba): threshold 4000" in line and "17-bit" in line
    assert not (tmp_path / "o").exists()


def test_failure_while_writing_leaves_dir_untouched(ckpts, tmp_path, monkeypatch):
    from mksgn.convert import onnx_export

    def boom(*a, **kw):
        raise ConvertError("convert: simulated failure")

    monkeypatch.setattr(onnx_export, "export_onnx", boom)
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    line = _one_line_error(_invoke(ckpts["student"], "--out", out, "--force"))
    assert "simulated failure" in line
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert _no_leftovers(tmp_path, "o")


def test_chain_student_with_nonzero_exponents_says_why_no_netx(tmp_path):
    # weight_exp=None: exponents chosen per group, which stock netx cannot apply exactly
    path = student_checkpoint(tmp_path / "c.pt", chain_student_config(weight_exp=None))
    res = _invoke(path, "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    assert "warning: a chain student, but no stock-netx /layer section" in res.output
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert man["netx"]["stock_netx"] is False
    assert "weight exponent" in man["netx"]["note"]
    import h5py
    with h5py.File(tmp_path / "o" / "model.net", "r") as h5:
        assert "layer" not in h5 and "mksgn" in h5
    assert np.isfinite(man["totals"]["quant_rel_l2_max"])
