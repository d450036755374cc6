"""Training loop: checkpoints, exact resume, DDP gradients, distillation through the loop."""
from __future__ import annotations

import json

import pytest
import torch
import torch.multiprocessing as mp
from train_fakes import (build_objective, ddp_grad_worker, fake_splits, global_batch, stable,
                         tiny_student_config, tiny_teacher_config, train_tiny_teacher)

from mksgn.train.checkpoint import load_checkpoint, load_model
from mksgn.train.loop import close_distributed, train


_data, _stable = fake_splits, stable


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    return train_tiny_teacher(tmp_path_factory.mktemp("teacher"))


def test_checkpoint_contract(teacher_run):
    ckpt = load_checkpoint(teacher_run / "last.pt")
    for key in ("kind", "config", "model", "num_classes", "layout", "epoch", "optimizer",
                "scheduler", "rng", "metrics"):
        assert key in ckpt, key
    assert ckpt["kind"] == "teacher" and ckpt["layout"] == "ucla20" and ckpt["epoch"] == 2
    assert ckpt["num_classes"] == 4 and isinstance(ckpt["config"], dict)
    assert (teacher_run / "best.pt").is_file() and (teacher_run / "config.yaml").is_file()
    rows = json.loads((teacher_run / "metrics.json").read_text())["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "train_acc", "test_acc", "lr", "time_s"):
        assert key in rows[0]
    header = (teacher_run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "train_loss", "train_acc", "test_acc", "lr", "time_s"} <= set(header)
    assert not list(teacher_run.glob(".*tmp"))        # atomic writes leave no temp files
    model, info = load_model(teacher_run)
    assert info["kind"] == "teacher" and not model.training
    x, _ = global_batch()
    assert model(x).logits.shape == (8, 4)


@pytest.mark.slow
def test_resume_matches_unbroken_run(tmp_path):
    """2 epochs, stop, resume for 2 more == 4 epochs in one go: identical metrics and weights."""
    torch.set_num_threads(1)
    cfg = tiny_teacher_config()
    full = train(cfg, tmp_path / "full", datasets=_data(), progress=False)
    part = train(cfg, tmp_path / "part", datasets=_data(), progress=False, stop_after=2)
    assert len(part.metrics) == 2
    resumed = train(cfg, tmp_path / "part", datasets=_data(), progress=False, resume=True)
    assert _stable(resumed.metrics) == _stable(full.metrics)
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the random draws after resuming continue the unbroken run's sequence too
    assert torch.equal(load_checkpoint(tmp_path / "full" / "last.pt")["rng"]["torch"],
                       load_checkpoint(tmp_path / "part" / "last.pt")["rng"]["torch"])


@pytest.mark.slow
def test_resume_student_with_distillation(tmp_path, teacher_run):
    torch.set_num_threads(1)
    cfg = tiny_student_config(teacher=str(teacher_run))
    full = train(cfg, tmp_path / "full", datasets=_data(), progress=False)
    train(cfg, tmp_path / "part", datasets=_data(), progress=False, stop_after=1)
    resumed = train(cfg, tmp_path / "part", datasets=_data(), progress=False, resume=True)
    assert _stable(resumed.metrics) == _stable(full.metrics)
    row = full.metrics[-1]
    for key in ("train_ce", "train_soft", "train_ftm", "train_mi", "test_firing_rate"):
        assert key in row, key
    assert 0 < row["test_firing_rate"] < 1
    assert "distiller" in load_checkpoint(tmp_path / "full" / "last.pt")


def test_resume_refuses_a_changed_config(tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_teacher_config()
    train(cfg, tmp_path, datasets=_data(), progress=False, stop_after=1)
    cfg.optim.lr = 0.5
    with pytest.raises(ValueError, match="config differs"):
        train(cfg, tmp_path, datasets=_data(), progress=False, resume=True)


@pytest.mark.parametrize("soft,ftm", [(False, False), (True, False), (False, True)])
def test_kd_switches_reach_the_loss(tmp_path, teacher_run, soft, ftm):
    torch.set_num_threads(1)
    cfg = tiny_student_config(teacher=str(teacher_run), soft_labels=soft, ftm=ftm)
    cfg.optim.epochs = 1
    row = train(cfg, None, datasets=_data(), progress=False).metrics[0]
    assert ("train_soft" in row) == soft and ("train_ftm" in row) == ftm


def test_a_teacher_of_fewer_modalities_distils_the_student(tmp_path):
    torch.set_num_threads(1)
    teacher = tiny_teacher_config(modalities=("bone",))
    teacher.optim.epochs = 1
    t_data = fake_splits(1)
    train(teacher, tmp_path / "t", datasets=t_data, progress=False)
    cfg = tiny_student_config(teacher=str(tmp_path / "t"))
    cfg.optim.epochs = 1
    row = train(cfg, None, datasets=_data(), progress=False).metrics[0]
    assert row["train_soft"] > 0 and row["train_ftm"] > 0
    cfg = tiny_student_config(modalities=("joint",), teacher=str(tmp_path / "t"))
    with pytest.raises(ValueError, match=r"\.pt: teacher modalities \['bone'\] need"):
        train(cfg, None, datasets=_data(1), progress=False)


def test_close_distributed_leaves_the_group(tmp_path):
    """The CLI leaves its process group before exit (a gloo group left to the exit handlers once
    aborted a torchrun worker in CI); without a group it does nothing."""
    import torch.distributed as dist
    close_distributed()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0,
                            world_size=1)
    try:
        assert dist.is_initialized()
        close_distributed()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path, teacher_run):
    """2 gloo processes, each with half of one global batch, give the single-process gradients.

    DDP averages the per-process gradients of per-shard mean losses; with equal shards that is the
    gradient of the mean loss over the global batch. What differs is only float summation order
    (all-reduce of two partial sums vs autograd's accumulation), ~1e-7 relative, hence allclose
    with rtol 1e-5. Batch norm in training mode normalises each process's shard (torch has no CPU
    SyncBatchNorm), so the single-process reference computes the loss shard by shard; with BN in
    eval mode the reference is simply the whole batch.
    """
    init = tmp_path / "init"
    mp.spawn(ddp_grad_worker, args=(2, str(init), str(tmp_path), str(teacher_run)), nprocs=2,
             join=True)
    g0 = torch.load(tmp_path / "grads0.pt")
    g1 = torch.load(tmp_path / "grads1.pt")
    torch.set_num_threads(1)
    x, y = global_batch()
    for kind in ("teacher", "student"):
        obj, teacher = build_objective(kind, str(teacher_run))
        for mode in ("eval", "train"):  # eval first: BN running stats still the initial ones
            obj.train(mode == "train")
            obj.zero_grad(set_to_none=True)
            shards = [(x[:4], y[:4]), (x[4:], y[4:])] if mode == "train" else [(x, y)]
            for xs, ys in shards:
                t_out = teacher(xs) if teacher is not None else None
                (obj(xs, ys, t_out)[0] / len(shards)).backward()
            ref = {n: p.grad for n, p in obj.named_parameters() if p.grad is not None}
            key = f"{kind}/{mode}"
            assert set(g0[key]) == set(ref) == set(g1[key])
            assert len(ref) > 5
            for n, g in ref.items():
                assert torch.equal(g0[key][n], g1[key][n]), f"{key} {n}: ranks disagree"
                assert torch.allclose(g0[key][n], g, rtol=1e-5, atol=1e-7), f"{key} {n}"


def test_resume_exact_with_the_real_dataset(tmp_path):
    from train_fakes import write_prepared
    torch.set_num_threads(1)
    write_prepared(tmp_path / "prep")
    cfg = tiny_teacher_config()
    cfg.optim.epochs = 2
    cfg.data.prepared = str(tmp_path / "prep")
    full = train(cfg, tmp_path / "a", progress=False)
    train(cfg, tmp_path / "b", progress=False, stop_after=1)
    resumed = train(cfg, tmp_path / "b", progress=False, resume=True)
    assert _stable(resumed.metrics) == _stable(full.metrics)


@pytest.mark.slow
def test_pruning_follows_its_schedule_and_resumes_exactly(tmp_path, teacher_run):
    """energy.graph_keep and synapse_keep through the loop: the cut made by each epoch is the
    schedule's, and stopping and resuming ends with the unbroken run's masks and weights."""
    torch.set_num_threads(1)
    cfg = tiny_student_config(teacher=str(teacher_run))
    cfg.energy.graph_keep, cfg.energy.synapse_keep = 10, 0.5
    full = train(cfg, tmp_path / "full", datasets=_data(), progress=False)
    train(cfg, tmp_path / "part", datasets=_data(), progress=False, stop_after=1)
    first, _ = load_model(tmp_path / "part" / "last.pt")
    fractions = [cfg.energy.synapse_fraction(e, 4) for e in range(4)]
    assert fractions == [0.75, 0.5, 0.5, 0.5]
    last, _ = load_model(tmp_path / "full" / "last.pt")
    for model, frac, sources in ((first, 0.75, 15), (last, 0.5, 10)):
        for blk in model.blocks:
            assert blk.tcn.mask.sum() == round(frac * blk.tcn.mask.numel())
            pairs = (blk.graph.keep.T > 0).expand_as(blk.graph.mask)
            assert (blk.graph.keep.sum(0) == sources).all()      # per destination joint
            assert blk.graph.mask.sum() == round(frac * int(pairs.sum()))
            assert not (blk.graph.mask & ~pairs).any()
    resumed = train(cfg, tmp_path / "part", datasets=_data(), progress=False, resume=True)
    assert _stable(resumed.metrics) == _stable(full.metrics)
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    assert any(k.endswith(".mask") for k in a) and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_energy_aware_pruning_resumes_exactly(tmp_path, teacher_run):
    """synapse_keep_by: energy through the loop: each cut is made from the epoch's probe of
    training samples (no RNG drawn), so stopping and resuming ends with the unbroken run's masks
    and weights; some groups keep less than half their weights, some more."""
    torch.set_num_threads(1)
    cfg = tiny_student_config(teacher=str(teacher_run))
    cfg.energy.synapse_keep, cfg.energy.synapse_keep_by = 0.5, "energy"
    full = train(cfg, tmp_path / "full", datasets=_data(), progress=False)
    train(cfg, tmp_path / "part", datasets=_data(), progress=False, stop_after=1)
    resumed = train(cfg, tmp_path / "part", datasets=_data(), progress=False, resume=True)
    assert _stable(resumed.metrics) == _stable(full.metrics)
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    shares = {k: float(v.float().mean()) for k, v in a.items() if k.endswith(".mask")}
    assert len(shares) > 5 and min(shares.values()) < 0.5 < max(shares.values())
