"""The real NW-UCLA skeletons (../shared/data, present in CI): prepare, pipeline, one training step.

Skips with the reason when the archive is absent. The data is unpacked into a temporary folder
outside the repository and never written back.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from real_data import needs_archive

from mksgn.data import ucla
from mksgn.data.dataset import SkeletonDataset

pytestmark = needs_archive


def test_prepare_all_real_files(ucla_prepared):
    root, d, report = ucla_prepared
    files = sorted(root.rglob("*.json"))
    assert len(files) == report.files_found == report.samples_kept == 1484
    assert report.skipped == []
    assert report.counts == {"xview": {"train": 1020, "test": 464}}
    info = json.loads((d / "info.json").read_text())
    assert info["num_classes"] == 10 and info["num_persons"] == 1 and info["layout"] == "ucla20"
    for split, views in (("train", {1, 2}), ("test", {3})):
        data = np.load(d / f"{split}_data.npy", mmap_mode="r")
        labels = np.load(d / f"{split}_label.npy")
        meta = json.loads((d / f"{split}_meta.json").read_text())
        assert data.shape[1:] == (3, info["t_max"], 20, 1)   # one body: no empty second slot
        names = [ucla.parse_name(n) for n in meta["names"]]
        assert {n.view for n in names} == views
        assert labels.tolist() == [n.label for n in names]
        assert set(labels.tolist()) == set(range(10))
    # a sample's valid frames are the file's joints, centred on the first frame's spine joint
    name = json.loads((d / "test_meta.json").read_text())["names"][5]
    joints = ucla.read_ucla_file(next(root.rglob(f"{name}.json")))
    x = np.load(d / "test_data.npy", mmap_mode="r")[5]
    want = (joints - joints[0, 1]).astype(np.float32).transpose(2, 0, 1)
    np.testing.assert_array_equal(x[:, :len(joints), :, 0], want)
    assert not np.asarray(x[:, len(joints):]).any()


def test_view_norm_pipeline_on_real_samples(ucla_prepared):
    _, d, _ = ucla_prepared
    te = SkeletonDataset(d, "test", window=52, pipeline="view_norm", modalities=("joint",))
    tr = SkeletonDataset(d, "train", window=52, pipeline="view_norm", modalities=("joint",), seed=3)
    for i in (0, 100, 463):
        a, _ = te[i]
        assert torch.equal(a, te[i][0]) and a.shape == (1, 3, 52, 20, 1)
        assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    b1, b2 = tr[7][0], tr[7][0]
    assert not torch.equal(b1, b2)                  # every draw a new view and frame sample
    assert float(b1.abs().max()) <= 1.0 + 1e-6


def test_one_training_step_on_a_real_batch(ucla_prepared):
    """A few optimiser steps of the CPU-budget student (narrowed) on one real batch lower its loss."""
    from mksgn.train.config import load_config
    from mksgn.train.student import build_student

    _, d, _ = ucla_prepared
    cfg = load_config(Path(__file__).resolve().parents[1] / "train" / "configs" /
                      "ucla_cpu_student.yaml",
                      {"model.stem_channels": 8, "model.channels": [8, 8, 8, 8, 8, 8]})
    cfg.data.prepared = str(d)
    ds = cfg.data.dataset("train", cfg.modalities, seed=0)
    assert ds.num_persons == cfg.model.persons == 1
    x = torch.stack([ds[i][0] for i in range(8)])
    y = torch.tensor([int(ds.labels[i]) for i in range(8)])
    torch.manual_seed(0)
    model = build_student(cfg.model, ds.num_classes, ds.layout)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out.logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
