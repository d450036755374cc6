"""ONNX outputs: valid by onnx.checker, onnxruntime equals torch within 1e-4; and the float rate
model is what docs/netfile.md says it is (float weights, rate neurons)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from convert_helpers import (make_student, sample, student_checkpoint, teacher_checkpoint,
                             tiny_student_config)
from mksgn import loihi
from mksgn.convert import onnx_export, student_io
from mksgn.convert.convert import convert
from mksgn.netgraph import Encoder, JointAttention, Network, NeuronGroup, Synapse

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x.numpy()})[0]


def _close(got, ref):
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * max(np.abs(ref).max(), 1e-6))


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("onnx")
    cfg = tiny_student_config()
    res = convert(student_checkpoint(d / "s.pt", cfg), d / "out",
                  teacher=teacher_checkpoint(d / "t.pt"))
    return cfg, res, d / "out"


def test_student_float_onnx_matches_torch(out):
    cfg, res, path = out
    model = onnx.load(str(path / "student_float.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param      # dynamic batch
    student = make_student(cfg)
    net, floats, _ = student_io.export_with_float(student)
    rate = onnx_export.FloatRateModel(net, floats, list(cfg.modalities)).eval()
    x = sample(cfg, 5, seed=7)                       # another batch size than the export's
    with torch.no_grad():
        ref = rate(x).numpy()
    assert ref.shape == (5, 4) and np.abs(ref).max() > 0
    _close(_ort(path / "student_float.onnx", x), ref)
    assert res.manifest.onnx["student_float.onnx"]["max_rel_diff_onnxruntime"] < 1e-4


def test_teacher_onnx_matches_torch(out):
    cfg, res, path = out
    onnx.checker.check_model(onnx.load(str(path / "teacher.onnx")), full_check=True)
    teacher, _ = student_io.load(path.parent / "t.pt", "teacher")
    x = sample(cfg, 3, seed=2)
    with torch.no_grad():
        ref = teacher(x).logits.numpy()
    _close(_ort(path / "teacher.onnx", x), ref)
    assert res.manifest.onnx["teacher.onnx"]["max_rel_diff_onnxruntime"] < 1e-4


def test_float_rate_model_semantics():
    """A hand-built net: encoder -> group A -> conv -> B; graph + attention -> C; dense -> ro.
    The rate model computes exactly the documented formulas."""
    rng = np.random.default_rng(0)
    p = loihi.CubaParams(1024, 100, 80)
    groups = [NeuronGroup("a", (2, 4, 3), p), NeuronGroup("b", (2, 4, 3), p),
              NeuronGroup("c", (2, 4, 3), p, bias=np.array([[[5]], [[-7]]])),
              NeuronGroup("ro", (3,), loihi.CubaParams(4096, 0, loihi.VTH_MANT_MAX),
                          readout=True)]
    syn = [Synapse("ab", "a", "b", "conv", rng.integers(-9, 9, (2, 2, 3, 1)) * 2,
                   padding=(1, 0)),
           Synapse("bc", "b", "c", "graph", rng.integers(-9, 9, (2, 2, 3, 3)) * 2),
           Synapse("fc", "c", "ro", "dense", rng.integers(-9, 9, (3, 24)) * 2, weight_exp=-1)]
    att = [JointAttention("att", "b", "b", "b", "c", shift=1)]
    enc = [Encoder("e", "joint", "a", rng.integers(-900, 900, (2, 2, 1, 1)), np.array([3, 4]),
                   input_frac_bits=4, shift=2)]
    net = Network(groups, syn, att, enc, num_steps=6, readout="ro", meta={"time_steps": 4})
    floats = {s.name: student_io.FloatWeight("", rng.normal(0, 20, np.shape(s.weight)))
              for s in syn}
    fw_e = student_io.FloatWeight("", rng.normal(0, 30, (2, 2, 1, 1)), rng.normal(0, 40, 2))
    floats["e"] = fw_e
    m = onnx_export.FloatRateModel(net, floats, ["joint"]).eval()
    x = torch.randn(2, 1, 1, 4, 3, 2)                # (N, K, C=1, T, V, M=2) -> 2 channels
    xs = x.permute(0, 1, 2, 5, 3, 4).reshape(2, 1, 2, 4, 3)[:, 0].double()
    d = lambda t: torch.tensor(t, dtype=torch.float64)  # noqa: E731
    di = 1024 / 4096
    ra = (torch.nn.functional.conv2d(xs, d(fw_e.weight), d(fw_e.bias)) / 80).clamp(0, 1)
    rb = (torch.nn.functional.conv2d(ra, d(floats["ab"].weight), padding=(1, 0)) / di / 80
          ).clamp(0, 1)
    a_c = torch.einsum("oivu,nitu->notv", d(floats["bc"].weight), rb)
    a_c = a_c + torch.einsum("nctv,ncdt->ndtv", rb, torch.einsum("nctu,ndtu->ncdt", rb, rb)) / 2
    rc = ((a_c / di + d([[[5]], [[-7]]])) / 80).clamp(0, 1)
    logits = (rc.reshape(2, -1) @ d(floats["fc"].weight).T) * 4 / 64
    with torch.no_grad():
        got = m(x).double()
    torch.testing.assert_close(got, logits, rtol=1e-5, atol=1e-5)
    assert 0 < float(rb.mean()) < 1 and 0 < float(rc.mean()) < 1   # rates neither all 0 nor 1
