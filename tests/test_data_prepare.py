"""Synthetic files -> parse -> prepare round trip (exact), splits, bad files, atomicity, dataset, CLI."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mksgn.pipeline.cli import main as cli_main
from mksgn.data import ntu, prepare as prep, synth, ucla
from mksgn.data.dataset import SkeletonDataset
from mksgn.data.modalities import compute
from mksgn.data.preprocess import valid_crop_resize

SMALL = dict(classes=3, subjects=4, samples_per_class=6, frames=24)


def _prepare(root, out, dataset="ntu60", **kw):
    return prep.prepare(prep.PrepareConfig(dataset, root, out, workers=kw.pop("workers", 1), **kw))


@pytest.fixture(scope="module")
def ntu_small(tmp_path_factory):
    base = tmp_path_factory.mktemp("ntu")
    cfg = synth.SynthConfig("ntu60", seed=3, second_actor_prob=0.5, dropped_frame_prob=0.5, **SMALL)
    specs = synth.generate(cfg, base / "raw", workers=1)
    report = _prepare(base / "raw", base / "prep")
    return cfg, specs, report, base


def _row(prepared: Path, name: str):
    for split in ("train", "test"):
        meta = json.loads((prepared / f"{split}_meta.json").read_text())
        if name in meta["names"]:
            i = meta["names"].index(name)
            data = np.load(prepared / f"{split}_data.npy", mmap_mode="r")
            return np.asarray(data[i]), meta["num_frames"][i], int(np.load(prepared / f"{split}_label.npy")[i])
    raise KeyError(name)


def test_roundtrip_exact_values(ntu_small):
    cfg, specs, report, base = ntu_small
    assert report.samples_kept == len(specs) == 18 and report.skipped == []
    # the dataset's own class count, not the highest label present (3 of NTU60's 60 generated)
    assert report.num_classes == 60 and report.counts["xsub"]["train"] + report.counts["xsub"]["test"] == 18
    n_two = 0
    for spec in specs:
        s = synth.make_sample(cfg, spec)
        main = ntu.roundtrip_xyz(s.bodies[0][2])  # what the text holds, read back as float64
        want = (main - main[0, 1]).astype(np.float32).transpose(2, 0, 1)  # (C, T, V)
        x, n_frames, label = _row(base / "prep" / "xsub", spec.name)
        t = main.shape[0]
        assert n_frames == t and label == spec.label
        np.testing.assert_array_equal(x[:, :t, :, 0], want)
        assert not x[:, t:].any()  # padding
        if x[..., 1].any():
            n_two += 1
            bid, frames, joints = s.bodies[1]
            other = ntu.roundtrip_xyz(joints) - main[0, 1]
            np.testing.assert_array_equal(x[:, frames][..., 1], other.astype(np.float32).transpose(2, 0, 1))
    # some samples carry a kept bystander, and spurious bodies were removed
    assert n_two >= 1 and sum(report.notes.values()) >= 1


def test_prepared_layout_and_split_membership(ntu_small):
    cfg, specs, report, base = ntu_small
    for bench in ("xsub", "xview"):
        d = base / "prep" / bench
        info = json.loads((d / "info.json").read_text())
        assert info["dataset"] == "ntu60" and info["benchmark"] == bench and info["layout"] == "ntu25"
        assert info["num_classes"] == 60 and info["t_max"] == report.t_max <= 300
        seen = []
        for split in ("train", "test"):
            data = np.load(d / f"{split}_data.npy", mmap_mode="r")
            labels = np.load(d / f"{split}_label.npy")
            meta = json.loads((d / f"{split}_meta.json").read_text())
            assert data.dtype == np.float32 and labels.dtype == np.int64
            assert data.shape == (len(labels), 3, info["t_max"], 25, 2) == (info["counts"][split],) + data.shape[1:]
            for name, lab in zip(meta["names"], labels):
                n = ntu.parse_name(name)
                assert ntu.split_of(n, "ntu60", bench) == split and lab == n.label
                if bench == "xsub":
                    assert (n.subject in ntu.NTU60_XSUB_TRAIN) == (split == "train")
                else:
                    assert (n.camera in (2, 3)) == (split == "train")
            seen += meta["names"]
        assert sorted(seen) == sorted(s.name for s in specs)
        assert info["counts"]["train"] > 0 and info["counts"]["test"] > 0
    assert not [p for p in (base / "prep").iterdir() if p.name.startswith(".")]


def test_synth_is_deterministic(tmp_path):
    cfg = synth.SynthConfig("ntu120", seed=5, classes=2, subjects=2, samples_per_class=3, frames=20)
    synth.generate(cfg, tmp_path / "a", workers=1)
    synth.generate(cfg, tmp_path / "b", workers=2)
    files = sorted(p.name for p in (tmp_path / "a" / "nturgb+d_skeletons").iterdir())
    assert len(files) == 6
    for f in files:
        assert (tmp_path / "a/nturgb+d_skeletons" / f).read_bytes() == (tmp_path / "b/nturgb+d_skeletons" / f).read_bytes()
    other = synth.SynthConfig("ntu120", seed=6, classes=2, subjects=2, samples_per_class=3, frames=20)
    s0 = synth.make_sample(cfg, synth.sample_specs(cfg)[0])
    s1 = synth.make_sample(other, synth.sample_specs(cfg)[0])
    assert not np.array_equal(s0.bodies[0][2][:5], s1.bodies[0][2][:5])


def test_synth_names_cover_splits_and_avoid_missing_list():
    cfg = synth.SynthConfig("ntu120", classes=4, subjects=6, samples_per_class=30)
    names = [ntu.parse_name(s.name) for s in synth.sample_specs(cfg)]
    assert len({str(n) for n in names}) == 120
    missing = ntu.missing_skeleton_names("ntu120")
    assert not any(str(n) in missing for n in names)
    for bench in ("xsub", "xset"):
        splits = {ntu.split_of(n, "ntu120", bench) for n in names}
        assert splits == {"train", "test"}
    assert {n.camera for n in names} == {1, 2, 3}
    assert len(synth.class_names(30)) == 30 and len(set(synth.class_names(30))) == 30


def test_bad_files_are_skipped_and_reported(tmp_path):
    cfg = synth.SynthConfig("ntu60", seed=1, second_actor_prob=0.0, **SMALL)
    specs = synth.generate(cfg, tmp_path / "raw", workers=1)
    d = tmp_path / "raw" / "nturgb+d_skeletons"
    good = (d / f"{specs[0].name}.skeleton").read_text()
    lines = good.splitlines()
    bad = {
        "S002C001P001R001A001.skeleton": "\n".join(lines[:40]),  # truncated
        "S002C001P001R001A002.skeleton": "\n".join(lines[:4] + ["0.1 0.2 x 1 1 1 1 1 1 1 1 2"] + lines[5:]),
        "S002C001P001R001A003.skeleton": "\n".join(lines[:3] + ["24"] + lines[4:]),
        "S002C001P001R001A004.skeleton": "0\n",
        "S002C001P001R001A005.skeleton": "\n".join(lines[:6] + ["nan 0 0 1 1 1 1 1 1 1 1 2"] + lines[7:]),
        "holiday_video.skeleton": good,
        "S001C002P005R002A008.skeleton": good,  # on the authors' missing-skeleton list
        "S018C001P001R001A001.skeleton": good,  # NTU120-only setup
    }
    for name, text in bad.items():
        (d / name).write_text(text)
    report = _prepare(tmp_path / "raw", tmp_path / "prep")
    assert report.samples_kept == len(specs) and report.files_found == len(specs) + len(bad)
    by_name = {Path(s.path).name: s for s in report.skipped}
    assert set(by_name) == set(bad)
    assert by_name["S002C001P001R001A001.skeleton"].line == 41 and "truncated" in by_name["S002C001P001R001A001.skeleton"].reason
    assert by_name["S002C001P001R001A002.skeleton"].line == 5
    assert "joint count 24" in by_name["S002C001P001R001A003.skeleton"].reason
    assert "zero frames" in by_name["S002C001P001R001A004.skeleton"].reason
    assert by_name["S002C001P001R001A005.skeleton"].line == 7
    assert "file name" in by_name["holiday_video.skeleton"].reason
    assert "skip list" in by_name["S001C002P005R002A008.skeleton"].reason
    assert "not part of ntu60" in by_name["S018C001P001R001A001.skeleton"].reason
    saved = prep.PrepareReport.from_json((tmp_path / "prep" / "prepare_report.json").read_text())
    assert saved.skipped == report.skipped
    # the NTU120 preparation takes the setup-18 file and an extra skip list drops another
    skip = tmp_path / "skip.txt"
    skip.write_text(f"# mine\n{specs[1].name}\n")
    r120 = _prepare(tmp_path / "raw", tmp_path / "prep120", "ntu120", skip_lists=(skip,))
    assert r120.samples_kept == len(specs)  # +1 (S018) -1 (skip list)
    assert set(r120.counts) == {"xsub", "xset"}


def test_interrupted_prepare_leaves_previous_cache(tmp_path, monkeypatch):
    cfg = synth.SynthConfig("ntu60", seed=2, **SMALL)
    synth.generate(cfg, tmp_path / "raw", workers=1)
    _prepare(tmp_path / "raw", tmp_path / "prep")
    before = (tmp_path / "prep" / "xsub" / "train_data.npy").read_bytes()
    calls = []
    real = prep._write_split

    def interrupt(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(prep, "_write_split", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _prepare(tmp_path / "raw", tmp_path / "prep", max_frames=10)
    assert (tmp_path / "prep" / "xsub" / "train_data.npy").read_bytes() == before
    assert json.loads((tmp_path / "prep" / "xview" / "info.json").read_text())["max_frames"] == 300
    assert sorted(p.name for p in (tmp_path / "prep").iterdir()) == ["prepare_report.json", "xsub", "xview"]


def test_parallel_prepare_equals_serial_and_max_frames(ntu_small, tmp_path):
    cfg, specs, report, base = ntu_small
    r2 = _prepare(base / "raw", tmp_path / "p2", workers=2)
    assert r2.counts == report.counts
    for split in ("train", "test"):
        a = np.load(base / "prep" / "xview" / f"{split}_data.npy")
        b = np.load(tmp_path / "p2" / "xview" / f"{split}_data.npy")
        np.testing.assert_array_equal(a, b)
    r3 = _prepare(base / "raw", tmp_path / "p3", max_frames=16)
    assert r3.t_max == 16 and r3.notes["sequences subsampled to max_frames"] == 18
    assert np.load(tmp_path / "p3" / "xsub" / "train_data.npy").shape[2] == 16


def test_ucla_roundtrip_exact(tmp_path):
    cfg = synth.SynthConfig("ucla", seed=0, classes=3, subjects=3, samples_per_class=6, frames=30)
    specs = synth.generate(cfg, tmp_path / "raw", workers=1)
    assert all((tmp_path / "raw" / "all_sqe" / f"{s.name}.json").is_file() for s in specs)
    report = _prepare(tmp_path / "raw", tmp_path / "prep", "ucla", max_frames=100)
    assert report.samples_kept == 18 and set(report.counts) == {"xview"}
    info = json.loads((tmp_path / "prep" / "xview" / "info.json").read_text())
    assert info["layout"] == "ucla20" and info["num_classes"] == 10 and info["num_persons"] == 1
    for spec in specs:
        s = synth.make_sample(cfg, spec)
        j = ucla.roundtrip(s.bodies[0][2])
        x, n, label = _row(tmp_path / "prep" / "xview", spec.name)
        assert x.shape[2] == 20 and n == len(j) and label == spec.label
        np.testing.assert_array_equal(x[:, :n, :, 0], (j - j[0, 1]).astype(np.float32).transpose(2, 0, 1))
    meta = json.loads((tmp_path / "prep" / "xview" / "test_meta.json").read_text())
    assert meta["names"] and all(n.endswith("_v03") for n in meta["names"])


def test_skeleton_dataset(ntu_small):
    cfg, specs, report, base = ntu_small
    d = base / "prep" / "xsub"
    ds = SkeletonDataset(d, "train", window=16, modalities=("bone", "joint"))
    assert ds.num_classes == 60 and ds.num_joints == 25 and ds.layout.name == "ntu25" and ds.train
    x, y = ds[0]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (2, 3, 16, 25, 2)
    assert isinstance(y, int) and 0 <= y < 3
    x2, _ = ds[0]
    assert not torch.equal(x, x2)  # a second draw crops differently
    # test split: deterministic central crop, modalities computed after the resize
    te = SkeletonDataset(d, "test", window=16)
    assert not te.train and len(te) == report.counts["xsub"]["test"]
    a, _ = te[1]
    b, _ = te[1]
    assert torch.equal(a, b) and a.shape == (4, 3, 16, 25, 2)
    raw = np.asarray(te.data[1])
    want = compute(valid_crop_resize(raw, int(te.num_frames[1]), 16, (0.95,)), te.modalities, te.layout)
    np.testing.assert_array_equal(a.numpy(), want)
    rot = SkeletonDataset(d, "train", window=16, rotate=True, seed=1)
    assert rot[0][0].shape == (4, 3, 16, 25, 2)
    with pytest.raises(ValueError, match=r"^unknown modalities \['depth'\]; choose from joint, "):
        SkeletonDataset(d, "train", modalities=("depth",))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    xb, yb = next(iter(loader))
    assert xb.shape == (4, 2, 3, 16, 25, 2) and yb.dtype == torch.int64


def test_cli_synth_and_prepare(tmp_path):
    runner = CliRunner()
    r = runner.invoke(cli_main, ["data", "synth", "--out", str(tmp_path / "raw"), "--classes", "2",
                                 "--subjects", "2", "--samples-per-class", "4", "--frames", "20",
                                 "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "wrote 8 ntu60 samples" in r.output
    (tmp_path / "raw" / "nturgb+d_skeletons" / "S001C001P001R001A001.skeleton").write_text("3\n1\n")
    r = runner.invoke(cli_main, ["data", "prepare", "--dataset", "ntu60", "--root", str(tmp_path / "raw"),
                                 "--out", str(tmp_path / "prep"), "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "xsub" in r.output and "skipped 1 file" in r.output and "S001C001P001R001A001.skeleton:" in r.output
    assert (tmp_path / "prep" / "xview" / "info.json").is_file()
    (tmp_path / "empty").mkdir()
    r = runner.invoke(cli_main, ["data", "prepare", "--dataset", "ucla", "--root", str(tmp_path / "empty"),
                                 "--out", str(tmp_path / "p2")])
    assert r.exit_code == 1 and "no *.json files" in r.output


def test_empty_split_is_written_and_loadable(tmp_path):
    # one subject (ID 1, a cross-subject training subject): the xsub test split is empty
    cfg = synth.SynthConfig("ntu60", seed=4, classes=2, subjects=1, samples_per_class=3, frames=20)
    synth.generate(cfg, tmp_path / "raw", workers=1)
    report = _prepare(tmp_path / "raw", tmp_path / "prep")
    assert report.counts["xsub"] == {"train": 6, "test": 0}
    te = SkeletonDataset(tmp_path / "prep" / "xsub", "test")
    assert len(te) == 0 and te.data.shape[1:] == (3, report.t_max, 25, 2)


def test_prepared_dataset_falls_back_to_layout_and_classes(tmp_path):
    """A checkpoint converted where its prepared data is not (a shipped one) still names its
    dataset: the one with its layout and class count; NTU60 and NTU120 told apart by their classes."""
    (tmp_path / "info.json").write_text(json.dumps({"dataset": "ntu120"}))
    assert prep.prepared_dataset(tmp_path, "ucla20", 10) == "ntu120"      # info.json first
    gone = tmp_path / "gone"
    assert prep.prepared_dataset(gone) is None
    assert prep.prepared_dataset(gone, "ucla20", 10) == "ucla"
    assert prep.prepared_dataset(gone, "ntu25", 60) == "ntu60"
    assert prep.prepared_dataset(gone, "ntu25", 120) == "ntu120"
    assert prep.prepared_dataset(gone, "ntu25", 8) is None
