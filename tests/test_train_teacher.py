"""The multi-stream GCN teacher: shapes, persons, streams, size, ONNX export."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mksgn.data.layouts import get_layout
from mksgn.train.teacher import TeacherConfig, build_teacher

MODS = ("joint", "bone", "joint_motion", "bone_motion")


def _model(layout="ntu25", classes=8, **kw):
    torch.manual_seed(0)
    cfg = TeacherConfig(**{"base_channels": 4, **kw})
    return build_teacher(cfg, classes, get_layout(layout)).eval()


def test_shapes_of_logits_features_and_streams():
    torch.set_num_threads(1)
    model = _model()
    x = torch.randn(3, 4, 3, 16, 25, 2)
    out = model(x)
    assert out.logits.shape == (3, 8)
    # 10 blocks: 4-4-4-4-8-8-8-16-16-16 channels (base 4), T 16 -> 8 at block 5 -> 4 at block 8
    assert [f.shape for f in out.features] == (
        [(3, 4, 16, 25)] * 4 + [(3, 8, 8, 25)] * 3 + [(3, 16, 4, 25)] * 3)
    assert sorted(out.aux) == sorted(f"stream/{m}" for m in MODS)
    assert torch.allclose(out.logits, sum(out.aux.values()), atol=1e-6)


def test_each_stream_sees_only_its_modality():
    torch.set_num_threads(1)
    model = _model()
    x = torch.randn(2, 4, 3, 8, 25, 2)
    a = model(x)
    x2 = x.clone()
    x2[:, 1] += 1.0                                    # change the bone stream's input only
    b = model(x2)
    assert torch.equal(a.aux["stream/joint"], b.aux["stream/joint"])
    assert not torch.equal(a.aux["stream/bone"], b.aux["stream/bone"])


def test_person_order_does_not_matter():
    """Persons are folded into the batch and averaged: swapping the two bodies changes nothing
    (eval mode: the input BN then treats both persons' channels alike)."""
    torch.set_num_threads(1)
    model = _model(modalities=("joint",))
    x = torch.randn(2, 1, 3, 8, 25, 2)
    a = model(x)
    b = model(x.flip(-1))
    assert torch.allclose(a.logits, b.logits, rtol=1e-5, atol=1e-6)
    assert all(torch.allclose(f, g, rtol=1e-5, atol=1e-6) for f, g in zip(a.features, b.features))


def test_paper_scale_size():
    """Base 64 on NTU: one stream has ~1.45 M parameters (CTR-GCN reports 1.46 M)."""
    model = build_teacher(TeacherConfig(), 60, get_layout("ntu25"))
    per_stream = sum(p.numel() for p in model.streams[0].parameters())
    assert len(model.streams) == 4
    assert 1.40e6 < per_stream < 1.50e6
    assert [b.gcn.convs[0].conv3.out_channels for b in model.streams[0].layers] == \
        [64, 64, 64, 64, 128, 128, 128, 256, 256, 256]


def test_rejects_wrong_input():
    model = _model(modalities=("joint", "bone"))
    with pytest.raises(ValueError, match="x must be"):
        model(torch.randn(2, 3, 3, 8, 25, 2))


def test_trains_one_step():
    torch.set_num_threads(1)
    model = _model(layout="ucla20", classes=4, modalities=("joint",)).train()
    x, y = torch.randn(4, 1, 3, 8, 20, 2), torch.tensor([0, 1, 2, 3])
    out = model(x)
    model.stream_loss(out, y).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert model.streams[0].layers[0].gcn.alpha.grad.abs().sum() > 0   # topology refinement learns


@pytest.mark.slow
def test_onnx_export_matches_torch(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.set_num_threads(1)
    model = _model(layout="ucla20", classes=5, modalities=("joint", "bone"))

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x).logits

    with torch.no_grad():                   # realistic BN statistics: a few training batches
        model.train()
        for _ in range(3):
            model(torch.randn(8, 2, 3, 8, 20, 2))
    wrapper = Logits(model).eval()          # (the exporter restores the wrapper's mode after)
    x = torch.randn(2, 2, 3, 8, 20, 2)
    with torch.no_grad():
        ref = wrapper(x).numpy()
    path = tmp_path / "teacher.onnx"
    torch.onnx.export(wrapper, (x,), str(path), opset_version=17, dynamo=False,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    onnx.checker.check_model(onnx.load(str(path)))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
