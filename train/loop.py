"""Training and evaluation loops for the teacher and the (distilled) student.

One process or many: launched by ``torchrun`` (env ``WORLD_SIZE`` > 1) the loop joins the process
group (NCCL on CUDA, gloo on CPU) and wraps the model in PyTorch's DistributedDataParallel.
``batch_size`` is the *global* batch: each of W processes takes ``batch_size / W`` samples of it
(a ``DistributedSampler`` shard), so a config means the same optimisation on any number of
processes. Only rank 0 writes files and shows progress. Batch norm: SyncBatchNorm on CUDA
(``sync_bn``); on CPU torch has none, so there each process normalises its own shard (as plain
DDP does) - gradients then equal a single process computing the loss shard by shard.

Determinism and ``--resume``: the shuffling order is a pure function of (seed, epoch)
(``DistributedSampler.set_epoch``), data augmentation of (seed, epoch, sample) (the dataset's
``set_epoch``), and the global torch/numpy/python generators are saved in every checkpoint and
restored on resume, so a run stopped after epoch e and resumed reproduces the unbroken run's
metrics exactly (same machine and thread count).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .checkpoint import (build_model, load_checkpoint, load_model, rng_state, save_atomic,
                         set_rng_state, write_text_atomic)
from .config import RunConfig, from_dict, save_config, to_dict
from .distill import Distiller, freeze
from .energy_loss import EnergyLoss, probe_batch, synapse_loads

__all__ = ["DistInfo", "init_distributed", "close_distributed", "resolve_device", "make_datasets",
           "Objective", "wrap_distributed", "evaluate", "train", "mean_firing_rate",
           "spike_totals", "TrainResult"]

# ------------------------------------------------------------------------------------------------
# processes and devices

@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA (the process's local GPU under torchrun) when available, else CPU."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(spec)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return dev


def init_distributed(device_spec: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group if the environment says so (idempotent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_spec, info.local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.is_initialized():
        info = DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank)
    return info, device


def close_distributed(ok: bool = True) -> None:
    """Leave the process group before the interpreter exits (a gloo group left to the exit
    handlers can abort a process with "terminate called without an active exception").
    ok: all processes got here normally, so wait for each other first."""
    if dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()


def _all_reduce(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum over processes (float64)."""
    if not info.active:
        return values
    t = torch.tensor(values, dtype=torch.float64,
                     device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


# ------------------------------------------------------------------------------------------------
# data

def make_datasets(cfg: RunConfig) -> tuple[Dataset, Dataset]:
    """(train, test) SkeletonDatasets of the config's benchmark."""
    return (cfg.data.dataset("train", cfg.modalities, seed=cfg.seed),
            cfg.data.dataset("test", cfg.modalities))


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + W, ...`` in order: every sample exactly once over all processes
    (DistributedSampler would pad with repeats, which would bias a test accuracy)."""

    def __init__(self, n: int, rank: int, world: int):
        self.idx = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.idx)

    def __len__(self) -> int:
        return len(self.idx)


def _train_loader(ds: Dataset, cfg: RunConfig, info: DistInfo) -> tuple[DataLoader, DistributedSampler]:
    if cfg.batch_size % info.world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {info.world} processes")
    sampler = DistributedSampler(ds, num_replicas=info.world, rank=info.rank, shuffle=True,
                                 seed=cfg.seed)
    loader = DataLoader(ds, batch_size=cfg.batch_size // info.world, sampler=sampler,
                        drop_last=True, num_workers=cfg.data.num_workers,
                        pin_memory=torch.cuda.is_available())
    return loader, sampler


def _eval_loader(ds: Dataset, batch_size: int, info: DistInfo, workers: int = 0) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, sampler=ShardSampler(len(ds), info.rank, info.world),
                      num_workers=workers)


def _set_epoch(ds: Dataset, sampler, epoch: int) -> None:
    if sampler is not None:
        sampler.set_epoch(epoch)
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)


# ------------------------------------------------------------------------------------------------
# the objective

def spike_totals(model: nn.Module) -> tuple[float, float] | None:
    """(spikes, neuron-steps) of the last forward of a spiking student, None for other models."""
    act = getattr(model, "_activity", None)   # filled by Student._run, {group: (spikes, n)}
    if not act:
        return None
    return sum(s for s, _ in act.values()), sum(n for _, n in act.values())


def mean_firing_rate(model: nn.Module) -> float | None:
    """Spikes per neuron per simulated step over all groups of the last forward."""
    t = spike_totals(model)
    return None if t is None else t[0] / max(t[1], 1.0)


class Objective(nn.Module):
    """A model and its training loss as one module, so DistributedDataParallel sees every trained
    parameter (the FTMs included) inside ``forward``.

    ``forward(x, y, teacher_out=None) -> (loss, logits (detached), parts {term: float})``.
    Teacher: sum of per-stream cross entropies. Student: ``Distiller.loss`` (CE, soft labels,
    FTM, the student's mutual-information term) plus the energy term when configured.
    """

    def __init__(self, model: nn.Module, kind: str, distiller: Distiller | None = None,
                 energy: EnergyLoss | None = None):
        super().__init__()
        self.model, self.kind, self.distiller, self.energy = model, kind, distiller, energy

    def forward(self, x: torch.Tensor, y: torch.Tensor, teacher_out=None):
        out = self.model(x)
        if self.kind == "teacher":
            loss = self.model.stream_loss(out, y) if hasattr(self.model, "stream_loss") \
                else F.cross_entropy(out.logits, y)
            return loss, out.logits.detach(), {"ce": float(loss.detach())}
        mi = None
        if self.distiller.kd.w_mi > 0 and hasattr(self.model, "mi_loss"):
            mi = self.model.mi_loss(out, y)
        loss, parts = self.distiller.loss(out, teacher_out, y, mi)
        if self.energy is not None:
            e_loss, e_parts = self.energy(out)
            loss = loss + e_loss
            parts.update(e_parts, energy_loss=float(e_loss.detach()))
        return loss, out.logits.detach(), parts


def wrap_distributed(objective: nn.Module, info: DistInfo, device: torch.device,
                     sync_bn: bool = True) -> nn.Module:
    """DDP around the objective when running distributed (else the objective itself)."""
    if not info.active:
        return objective
    if sync_bn and device.type == "cuda":
        objective = nn.SyncBatchNorm.convert_sync_batchnorm(objective)
    kw = {"device_ids": [device.index]} if device.type == "cuda" else {}
    # the student's auxiliary heads / FTMs may not reach the loss (a term switched off)
    return nn.parallel.DistributedDataParallel(objective, find_unused_parameters=objective.kind != "teacher",
                                               **kw)


# ------------------------------------------------------------------------------------------------
# evaluation

@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device,
             info: DistInfo | None = None, progress: Callable[[int], None] | None = None) -> dict:
    """Accuracy and mean cross entropy over the loader's samples (summed over processes).

    Returns {"acc", "loss", "samples", "firing_rate" (spiking students, else absent)}.
    """
    info = info or DistInfo()
    was = model.training
    model.eval()
    correct = loss_sum = count = spikes = steps = 0.0
    try:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            out = model(x)
            loss_sum += float(F.cross_entropy(out.logits.float(), y, reduction="sum"))
            correct += float((out.logits.argmax(1) == y).sum())
            count += len(y)
            tot = spike_totals(model)
            if tot is not None:
                spikes, steps = spikes + tot[0], steps + tot[1]
            if progress:
                progress(len(y))
    finally:
        model.train(was)
    correct, loss_sum, count, spikes, steps = _all_reduce([correct, loss_sum, count, spikes, steps],
                                                           info, device)
    res = {"acc": correct / max(count, 1), "loss": loss_sum / max(count, 1), "samples": int(count)}
    if steps > 0:
        res["firing_rate"] = spikes / steps
    return res


# ------------------------------------------------------------------------------------------------
# training

@dataclass
class TrainResult:
    out: Path | None
    metrics: list[dict]
    best_acc: float
    model: nn.Module


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                               weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def _load_teacher(path: str, device: torch.device, num_classes: int, layout, modalities) -> nn.Module:
    teacher, info = load_model(path, map_location=device)
    if info["kind"] != "teacher":
        raise ValueError(f"{info['path']}: is a {info['kind']} checkpoint, not a teacher")
    if info["num_classes"] != num_classes or info["layout"].name != layout.name:
        raise ValueError(f"{info['path']}: teacher has {info['num_classes']} classes on "
                         f"{info['layout'].name}, the data {num_classes} on {layout.name}")
    if tuple(teacher.cfg.modalities) != tuple(modalities):
        raise ValueError(f"{info['path']}: teacher modalities {list(teacher.cfg.modalities)} "
                         f"differ from the student's {list(modalities)}")
    return freeze(teacher)


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)


def _write_metrics(out: Path, rows: list[dict], best: dict | None) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in keys})
    write_text_atomic(out / "metrics.csv", buf.getvalue())
    write_text_atomic(out / "metrics.json", json.dumps({"epochs": rows, "best": best}, indent=1))


def train(cfg: RunConfig, out: str | Path | None, *, resume: bool = False,
          stop_after: int | None = None, datasets: tuple[Dataset, Dataset] | None = None,
          progress: bool = True, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train a teacher or a student as ``cfg`` says; write RUN files under ``out`` (rank 0).

    resume: continue from ``out/last.pt`` (its config wins; must match ``cfg`` if both given).
    stop_after: stop after this many epochs in this call (e.g. a job's time limit), leaving a
        resumable run. datasets: (train, test) instead of the config's prepared data (tests).
    """
    info, device = init_distributed(cfg.device)
    custom_log = log is not None
    log = log or (lambda s: print(s, file=sys.stderr))
    say = log if info.is_main else (lambda s: None)
    out = Path(out) if out is not None else None
    ckpt = None
    if resume:
        if out is None or not (out / "last.pt").is_file():
            raise FileNotFoundError(f"{out}/last.pt: nothing to resume")
        ckpt = load_checkpoint(out / "last.pt", map_location="cpu")
        saved = from_dict(ckpt["config"], where=str(out / "last.pt"))
        if to_dict(saved) != to_dict(cfg):
            raise ValueError(f"{out}/last.pt: the run's config differs from the one given; "
                             "resume continues a run unchanged (start a new --out to change it)")
    _seed_everything(cfg.seed)
    train_ds, test_ds = datasets if datasets is not None else make_datasets(cfg)
    num_classes, layout = train_ds.num_classes, train_ds.layout
    bodies = getattr(train_ds, "num_persons", None)
    if bodies is not None and getattr(cfg.model, "persons", bodies) != bodies:
        raise ValueError(f"model.persons is {cfg.model.persons} but the prepared data holds "
                         f"{bodies} body slot(s) per sample; set model.persons: {bodies}")

    model = build_model(cfg.kind, cfg.model, num_classes, layout).to(device)
    teacher, distiller = None, None
    if cfg.kind == "student":
        kd = cfg.kd
        if kd.use_soft or kd.use_ftm:
            if not cfg.teacher:
                raise ValueError("student distillation needs a teacher run (--teacher RUN), or "
                                 "switch kd.soft_labels and kd.ftm off")
            teacher = _load_teacher(cfg.teacher, device, num_classes, layout, cfg.modalities)
        probe = torch.stack([train_ds[i][0] for i in range(min(2, len(train_ds)))]).to(device)
        if teacher is not None:
            distiller = Distiller.for_models(kd, model, teacher, probe).to(device)
        else:
            distiller = Distiller(kd, [], []).to(device)
    energy = None
    if cfg.kind == "student" and cfg.energy.active:
        energy = EnergyLoss(cfg.energy, cfg.model.time_steps)
    if cfg.init and ckpt is None:
        init, init_info = load_model(cfg.init, map_location=device)
        if (init_info["kind"] != cfg.kind or to_dict(init.cfg) != to_dict(cfg.model)
                or init_info["num_classes"] != num_classes
                or init_info["layout"].name != layout.name):
            raise ValueError(f"{init_info['path']}: init needs a {cfg.kind} of this run's model "
                             f"config, {num_classes} classes and layout {layout.name}")
        model.load_state_dict(init.state_dict())
        init_state = load_checkpoint(init_info["path"], map_location="cpu")
        if distiller is not None and "distiller" in init_state:
            try:                                        # the same teacher's FTMs, if they fit
                distiller.load_state_dict(init_state["distiller"])
            except RuntimeError:
                say(f"{init_info['path']}: its FTMs do not fit this teacher; they start anew")
        say(f"initial weights from {init_info['path']}")
    objective = Objective(model, cfg.kind, distiller, energy)
    optimizer = _optimizer(cfg, [p for p in objective.parameters() if p.requires_grad])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cfg.optim.lr_factor)
    metrics: list[dict] = []
    start = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if distiller is not None and "distiller" in ckpt:
            distiller.load_state_dict(ckpt["distiller"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        metrics = list(ckpt["metrics"])
        start = int(ckpt["epoch"])
        ranks = ckpt.get("rng_ranks")
        set_rng_state(ranks[info.rank] if ranks and len(ranks) == info.world else ckpt["rng"])
        say(f"resuming {out} after epoch {start}")
    net = wrap_distributed(objective, info, device, cfg.sync_bn)

    if out is not None and info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    train_loader, sampler = _train_loader(train_ds, cfg, info)
    test_loader = _eval_loader(test_ds, cfg.eval_batch_size or cfg.batch_size, info,
                               cfg.data.num_workers)
    best = max((m for m in metrics if m.get("test_acc") is not None),
               key=lambda m: m["test_acc"], default=None)
    end = cfg.optim.epochs if stop_after is None else min(cfg.optim.epochs, start + stop_after)
    base = {"kind": cfg.kind, "config": to_dict(cfg), "num_classes": num_classes,
            "layout": layout.name, "teacher": cfg.teacher}

    show = progress and info.is_main and sys.stderr.isatty()
    with _progress(show) as bar:
        if show and not custom_log:   # print above the live bar, not through it
            say = lambda s: bar.console.print(s, markup=False, highlight=False)  # noqa: E731
        for epoch in range(start, end):
            t0 = time.perf_counter()
            keep = cfg.energy.graph_sources(epoch, cfg.optim.epochs, layout.num_joints)
            if keep is not None:
                model.prune_graph(keep)
            _set_epoch(train_ds, sampler, epoch)
            kept = cfg.energy.synapse_cut(epoch, cfg.optim.epochs)
            if kept is not None:
                loads = None
                if cfg.energy.synapse_keep_by == "energy":     # this epoch's probe, no RNG
                    loads = synapse_loads(model, probe_batch(train_ds).to(device))
                    if info.active:                 # one cut on every rank: rank 0's counts
                        box = [loads]
                        dist.broadcast_object_list(box, src=0)
                        loads = box[0]
                model.prune_weights(kept, loads, cfg.energy.cost_power)
            if energy is not None:
                energy.refresh(model)
            lr = optimizer.param_groups[0]["lr"]
            task = bar.add_task(f"{cfg.kind} epoch {epoch + 1}/{cfg.optim.epochs}",
                                total=len(train_loader), stats="")
            net.train()
            sums = {"loss": 0.0, "correct": 0.0, "n": 0.0, "spikes": 0.0, "steps": 0.0}
            parts_sum: dict[str, float] = {}
            for x, y in train_loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                t_out = None
                if teacher is not None:
                    with torch.no_grad():
                        t_out = teacher(x)
                loss, logits, parts = net(x, y, t_out)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.optim.grad_clip > 0:
                    nn.utils.clip_grad_norm_(objective.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                n = len(y)
                sums["loss"] += float(loss.detach()) * n
                sums["correct"] += float((logits.argmax(1) == y).sum())
                sums["n"] += n
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v * n
                tot = spike_totals(model)
                if tot is not None:
                    sums["spikes"] += tot[0]
                    sums["steps"] += tot[1]
                bar.update(task, advance=1, stats=f"loss {sums['loss'] / sums['n']:.3f} "
                                                  f"acc {sums['correct'] / sums['n']:.3f}")
            scheduler.step()
            keys = sorted(parts_sum)
            red = _all_reduce([sums[k] for k in ("loss", "correct", "n", "spikes", "steps")]
                              + [parts_sum[k] for k in keys], info, device)
            n = max(red[2], 1.0)
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": red[0] / n, "train_acc": red[1] / n}
            row.update({f"train_{k}": v / n for k, v in zip(keys, red[5:])})
            if red[4] > 0:
                row["train_firing_rate"] = red[3] / red[4]
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.optim.epochs:
                ev = evaluate(model, test_loader, device, info)
                row.update({"test_loss": ev["loss"], "test_acc": ev["acc"]})
                if "firing_rate" in ev:
                    row["test_firing_rate"] = ev["firing_rate"]
            row["time_s"] = time.perf_counter() - t0
            metrics.append(row)
            bar.remove_task(task)
            is_best = row.get("test_acc") is not None and (best is None or row["test_acc"] > best["test_acc"])
            if is_best:
                best = row
            say(f"epoch {epoch + 1}/{cfg.optim.epochs}  loss {row['train_loss']:.4f}  "
                f"train acc {row['train_acc']:.4f}  test acc {row.get('test_acc', float('nan')):.4f}"
                + (f"  rate {row['test_firing_rate']:.4f}" if "test_firing_rate" in row else "")
                + f"  ({row['time_s']:.1f} s)")
            rngs = _gather_rng(info)
            if out is not None and info.is_main:
                state = dict(base, model=model.state_dict(), epoch=epoch + 1,
                             optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                             rng=rngs[0], metrics=metrics)
                if info.active:
                    state["rng_ranks"] = rngs
                if distiller is not None:
                    state["distiller"] = distiller.state_dict()
                save_atomic(state, out / "last.pt")
                if is_best:
                    save_atomic(state, out / "best.pt")
                _write_metrics(out, metrics, best)
    return TrainResult(out, metrics, best["test_acc"] if best else math.nan, model)


def _gather_rng(info: DistInfo) -> list[dict]:
    state = rng_state()
    if not info.active:
        return [state]
    states: list = [None] * info.world
    dist.all_gather_object(states, state)
    return states
