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
from dataclasses import dataclass, field
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
from .distill import Distiller, freeze, teacher_view
from .energy_loss import EnergyLoss, probe_batch, synapse_loads
from .teacher_cache import Indexed, TeacherCache

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


def _train_loader(ds: Dataset, cfg: RunConfig, info: DistInfo,
                  indexed: bool = False) -> tuple[DataLoader, DistributedSampler]:
    """The shuffled training batches; ``indexed``: (x, y, sample indices) batches."""
    if cfg.batch_size % info.world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {info.world} processes")
    ds = Indexed(ds) if indexed else ds
    sampler = DistributedSampler(ds, num_replicas=info.world, rank=info.rank, shuffle=True,
                                 seed=cfg.seed)
    loader = DataLoader(ds, batch_size=cfg.batch_size // info.world, sampler=sampler,
                        drop_last=True, num_workers=cfg.data.num_workers,
                        pin_memory=torch.cuda.is_available())
    return loader, sampler


def _eval_loader(ds: Dataset, batch_size: int, info: DistInfo, workers: int = 0) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, sampler=ShardSampler(len(ds), info.rank, info.world),
                      num_workers=workers)


def _set_epoch(ds: Dataset, sampler, epoch: int, draw: int | None = None) -> None:
    """The sampler shuffles as ``epoch``; the data draws as ``draw`` (default: ``epoch``)."""
    if sampler is not None:
        sampler.set_epoch(epoch)
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch if draw is None else draw)


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
    """The run directory (None: nothing written), the per-epoch metrics rows, the best test
    accuracy (NaN when no epoch was tested) and the trained model."""
    out: Path | None
    metrics: list[dict]
    best_acc: float
    model: nn.Module


@dataclass
class _Run:
    """What one training run holds between epochs: the trained parts, the teacher, the optimiser
    state and the metrics so far; built once (fresh, from ``cfg.init`` or from a checkpoint)."""
    cfg: RunConfig
    info: DistInfo
    device: torch.device
    num_classes: int
    layout: str                             # the data's skeleton layout name
    model: nn.Module
    objective: Objective
    net: nn.Module                          # the objective, under DDP when distributed
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    teacher: nn.Module | None = None
    teacher_cache: TeacherCache | None = None   # kd.teacher_draws > 0
    metrics: list[dict] = field(default_factory=list)
    start: int = 0                          # epochs done before this call

    @property
    def distiller(self) -> Distiller | None:
        return self.objective.distiller

    @property
    def energy(self) -> EnergyLoss | None:
        return self.objective.energy

    @property
    def best(self) -> dict | None:
        """The metrics row with the highest test accuracy so far (the first of equals)."""
        return max((m for m in self.metrics if m.get("test_acc") is not None),
                   key=lambda m: m["test_acc"], default=None)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    """The optimiser a run config names (``optim.name``: sgd or adamw) over ``params``."""
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
    try:
        return freeze(teacher_view(teacher, modalities))
    except ValueError as e:
        raise ValueError(f"{info['path']}: {e}") from None


def _resume_checkpoint(cfg: RunConfig, out: Path | None) -> dict:
    """``out/last.pt``, refused unless it was written with ``cfg``."""
    if out is None or not (out / "last.pt").is_file():
        raise FileNotFoundError(f"{out}/last.pt: nothing to resume")
    ckpt = load_checkpoint(out / "last.pt", map_location="cpu")
    saved = from_dict(ckpt["config"], where=str(out / "last.pt"))
    if to_dict(saved) != to_dict(cfg):
        raise ValueError(f"{out}/last.pt: the run's config differs from the one given; "
                         "resume continues a run unchanged (start a new --out to change it)")
    return ckpt


def _check_persons(cfg: RunConfig, ds: Dataset) -> None:
    bodies = getattr(ds, "num_persons", None)
    if bodies is not None and getattr(cfg.model, "persons", bodies) != bodies:
        raise ValueError(f"model.persons is {cfg.model.persons} but the prepared data holds "
                         f"{bodies} body slot(s) per sample; set model.persons: {bodies}")


def _student_parts(cfg: RunConfig, model: nn.Module, train_ds: Dataset, device: torch.device
                   ) -> tuple[nn.Module | None, Distiller, EnergyLoss | None]:
    """(frozen teacher or None, distiller, energy term or None) of a student run."""
    kd, teacher = cfg.kd, None
    if kd.use_soft or kd.use_ftm:
        if not cfg.teacher:
            raise ValueError("student distillation needs a teacher run (--teacher RUN), or "
                             "switch kd.soft_labels and kd.ftm off")
        teacher = _load_teacher(cfg.teacher, device, train_ds.num_classes, train_ds.layout,
                                cfg.modalities)
    probe = torch.stack([train_ds[i][0] for i in range(min(2, len(train_ds)))]).to(device)
    if teacher is not None:
        distiller = Distiller.for_models(kd, model, teacher, probe).to(device)
    else:
        distiller = Distiller(kd, [], []).to(device)
    energy = EnergyLoss(cfg.energy, cfg.model.time_steps) if cfg.energy.active else None
    return teacher, distiller, energy


def _load_init(cfg: RunConfig, model: nn.Module, distiller: Distiller | None, train_ds: Dataset,
               device: torch.device, say: Callable[[str], None]) -> None:
    """Start from the weights (and, where they fit, the FTMs) of the run ``cfg.init``."""
    num_classes, layout = train_ds.num_classes, train_ds.layout
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


def _restore(run: _Run, ckpt: dict) -> None:
    """Continue ``run`` where the checkpoint of its last epoch left it, random draws included."""
    run.model.load_state_dict(ckpt["model"])
    if run.distiller is not None and "distiller" in ckpt:
        run.distiller.load_state_dict(ckpt["distiller"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.metrics = list(ckpt["metrics"])
    run.start = int(ckpt["epoch"])
    ranks = ckpt.get("rng_ranks")
    set_rng_state(ranks[run.info.rank] if ranks and len(ranks) == run.info.world else ckpt["rng"])


def _build_run(cfg: RunConfig, train_ds: Dataset, info: DistInfo, device: torch.device,
               ckpt: dict | None, say: Callable[[str], None]) -> _Run:
    """The model (fresh, from ``cfg.init`` or from ``ckpt``), its objective and optimiser. The
    order of construction fixes the random draws a run makes: keep it."""
    model = build_model(cfg.kind, cfg.model, train_ds.num_classes, train_ds.layout).to(device)
    teacher, distiller, energy = None, None, None
    if cfg.kind == "student":
        teacher, distiller, energy = _student_parts(cfg, model, train_ds, device)
    if cfg.init and ckpt is None:
        _load_init(cfg, model, distiller, train_ds, device, say)
    objective = Objective(model, cfg.kind, distiller, energy)
    optimizer = build_optimizer(cfg, [p for p in objective.parameters() if p.requires_grad])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cfg.optim.lr_factor)
    run = _Run(cfg, info, device, train_ds.num_classes, train_ds.layout.name, model, objective,
               objective, optimizer, scheduler, teacher)
    if teacher is not None and cfg.kd.teacher_draws > 0:
        run.teacher_cache = TeacherCache(teacher, distiller, cfg.kd.teacher_draws,
                                         cfg.eval_batch_size or cfg.batch_size, device,
                                         cfg.data.num_workers)
    if ckpt is not None:
        _restore(run, ckpt)
    run.net = wrap_distributed(objective, info, device, cfg.sync_bn)   # after the restore: DDP
    return run                                                          # starts from rank 0's


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)


def _prune_for_epoch(run: _Run, train_ds: Dataset, epoch: int) -> None:
    """The cuts ``cfg.energy``'s schedule makes at the start of ``epoch`` (graph sources, then
    weights: by count, or by energy from this epoch's probe, no random draw)."""
    cfg, model = run.cfg, run.model
    kept = cfg.energy.synapse_cut(epoch, cfg.optim.epochs)
    if kept is None:
        return
    loads = None
    if cfg.energy.synapse_keep_by == "energy":
        loads = synapse_loads(model, probe_batch(train_ds).to(run.device))
        if run.info.active:                 # one cut on every rank: rank 0's counts
            box = [loads]
            dist.broadcast_object_list(box, src=0)
            loads = box[0]
    model.prune_weights(kept, loads, cfg.energy.cost_power)


class _EpochSums:
    """One process's sums over an epoch's batches: loss and loss terms weighted by batch size,
    correct predictions, samples, spikes and neuron-steps (spiking students)."""

    def __init__(self):
        self.sums = {"loss": 0.0, "correct": 0.0, "n": 0.0, "spikes": 0.0, "steps": 0.0}
        self.parts: dict[str, float] = {}

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, parts: dict,
            spikes: tuple[float, float] | None) -> None:
        n = len(y)
        self.sums["loss"] += float(loss.detach()) * n
        self.sums["correct"] += float((logits.argmax(1) == y).sum())
        self.sums["n"] += n
        for k, v in parts.items():
            self.parts[k] = self.parts.get(k, 0.0) + v * n
        if spikes is not None:
            self.sums["spikes"] += spikes[0]
            self.sums["steps"] += spikes[1]

    def stats(self) -> str:
        return (f"loss {self.sums['loss'] / self.sums['n']:.3f} "
                f"acc {self.sums['correct'] / self.sums['n']:.3f}")

    def row(self, info: DistInfo, device: torch.device) -> dict:
        """Means over all processes' samples: ``train_loss``, ``train_acc``, ``train_<term>``
        and ``train_firing_rate`` (spikes per neuron-step, spiking students)."""
        keys = sorted(self.parts)
        red = _all_reduce([self.sums[k] for k in ("loss", "correct", "n", "spikes", "steps")]
                          + [self.parts[k] for k in keys], info, device)
        n = max(red[2], 1.0)
        row = {"train_loss": red[0] / n, "train_acc": red[1] / n}
        row.update({f"train_{k}": v / n for k, v in zip(keys, red[5:])})
        if red[4] > 0:
            row["train_firing_rate"] = red[3] / red[4]
        return row


def _train_steps(run: _Run, loader: DataLoader, advance: Callable[[str], None],
                 draw: int | None = None) -> dict:
    """One pass over ``loader`` (one optimiser step per batch), then one scheduler step;
    returns the epoch's ``train_*`` metrics. advance(stats): after each batch. draw: the
    augmentation draw whose kept teacher outputs the batches use (``run.teacher_cache``)."""
    cfg, device = run.cfg, run.device
    run.net.train()
    sums = _EpochSums()
    for x, y, *index in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        t_out = None
        if run.teacher_cache is not None:
            t_out = run.teacher_cache.outputs(draw, index[0])
        elif run.teacher is not None:
            with torch.no_grad():
                t_out = run.teacher(x)
        loss, logits, parts = run.net(x, y, t_out)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            nn.utils.clip_grad_norm_(run.objective.parameters(), cfg.optim.grad_clip)
        run.optimizer.step()
        sums.add(loss, logits, y, parts, spike_totals(run.model))
        advance(sums.stats())
    run.scheduler.step()
    return sums.row(run.info, device)


def _test_row(run: _Run, loader: DataLoader) -> dict:
    ev = evaluate(run.model, loader, run.device, run.info)
    row = {"test_loss": ev["loss"], "test_acc": ev["acc"]}
    if "firing_rate" in ev:
        row["test_firing_rate"] = ev["firing_rate"]
    return row


@dataclass
class _Data:
    train_ds: Dataset
    sampler: DistributedSampler
    train_loader: DataLoader
    test_loader: DataLoader


def _kept_draw(run: _Run, ds: Dataset, epoch: int) -> int | None:
    """The augmentation draw ``epoch`` trains on when the teacher's outputs are kept (computed
    now if new), else None (the epoch draws as itself)."""
    cache = run.teacher_cache
    if cache is None:
        return None
    draw = cache.draw_of(epoch)
    if not cache.has(draw):
        _set_epoch(ds, None, epoch, draw)
        cache.keep(draw, ds)
    return draw


def _epoch(run: _Run, epoch: int, data: _Data, bar) -> dict:
    """Train (and, when due, test) one epoch, 0-based; returns its metrics row."""
    cfg, model = run.cfg, run.model
    t0 = time.perf_counter()
    keep = cfg.energy.graph_sources(epoch, cfg.optim.epochs, data.train_ds.layout.num_joints)
    if keep is not None:
        model.prune_graph(keep)
    draw = _kept_draw(run, data.train_ds, epoch)
    _set_epoch(data.train_ds, data.sampler, epoch, draw)
    _prune_for_epoch(run, data.train_ds, epoch)
    if run.energy is not None:
        run.energy.refresh(model)
    row = {"epoch": epoch + 1, "lr": run.optimizer.param_groups[0]["lr"]}
    task = bar.add_task(f"{cfg.kind} epoch {epoch + 1}/{cfg.optim.epochs}",
                        total=len(data.train_loader), stats="")
    row.update(_train_steps(run, data.train_loader,
                            lambda stats: bar.update(task, advance=1, stats=stats), draw))
    if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.optim.epochs:
        row.update(_test_row(run, data.test_loader))
    row["time_s"] = time.perf_counter() - t0
    bar.remove_task(task)
    return row


def train(cfg: RunConfig, out: str | Path | None, *, resume: bool = False,
          stop_after: int | None = None, datasets: tuple[Dataset, Dataset] | None = None,
          progress: bool = True, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train a teacher or a student as ``cfg`` says; write RUN files under ``out`` (rank 0).

    resume: continue from ``out/last.pt`` (its config wins; must match ``cfg`` if both given).
    stop_after: stop after this many epochs in this call (e.g. a job's time limit), leaving a
        resumable run. datasets: (train, test) instead of the config's prepared data (tests).
    log: where the per-epoch lines go (default: stderr, above the progress bar on a terminal).
    """
    info, device = init_distributed(cfg.device)
    say = (log or (lambda s: print(s, file=sys.stderr))) if info.is_main else (lambda s: None)
    out = Path(out) if out is not None else None
    ckpt = _resume_checkpoint(cfg, out) if resume else None
    _seed_everything(cfg.seed)
    train_ds, test_ds = datasets if datasets is not None else make_datasets(cfg)
    _check_persons(cfg, train_ds)
    run = _build_run(cfg, train_ds, info, device, ckpt, say)
    if ckpt is not None:
        say(f"resuming {out} after epoch {run.start}")
    if out is not None and info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    train_loader, sampler = _train_loader(train_ds, cfg, info, run.teacher_cache is not None)
    data = _Data(train_ds, sampler, train_loader,
                 _eval_loader(test_ds, cfg.eval_batch_size or cfg.batch_size, info,
                              cfg.data.num_workers))
    end = cfg.optim.epochs if stop_after is None else min(cfg.optim.epochs, run.start + stop_after)
    show = progress and info.is_main and sys.stderr.isatty()
    with _progress(show) as bar:
        if show and log is None:   # print above the live bar, not through it
            say = lambda s: bar.console.print(s, markup=False, highlight=False)  # noqa: E731
        for epoch in range(run.start, end):
            row = _epoch(run, epoch, data, bar)
            best = run.best
            is_best = row.get("test_acc") is not None and (best is None
                                                           or row["test_acc"] > best["test_acc"])
            run.metrics.append(row)
            say(_epoch_line(row, cfg.optim.epochs))
            _save_epoch(run, out, is_best)
    best = run.best
    return TrainResult(out, run.metrics, best["test_acc"] if best else math.nan, run.model)


def _epoch_line(row: dict, epochs: int) -> str:
    return (f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.4f}  "
            f"train acc {row['train_acc']:.4f}  test acc {row.get('test_acc', float('nan')):.4f}"
            + (f"  rate {row['test_firing_rate']:.4f}" if "test_firing_rate" in row else "")
            + f"  ({row['time_s']:.1f} s)")


def _save_epoch(run: _Run, out: Path | None, is_best: bool) -> None:
    """``last.pt`` (and ``best.pt`` when the epoch is the best so far) and the metrics files,
    written by rank 0; every process takes part (its random generators are saved too)."""
    rngs = _gather_rng(run.info)
    if out is None or not run.info.is_main:
        return
    cfg = run.cfg
    state = {"kind": cfg.kind, "config": to_dict(cfg), "num_classes": run.num_classes,
             "layout": run.layout, "teacher": cfg.teacher, "model": run.model.state_dict(),
             "epoch": run.metrics[-1]["epoch"], "optimizer": run.optimizer.state_dict(),
             "scheduler": run.scheduler.state_dict(), "rng": rngs[0], "metrics": run.metrics}
    if run.info.active:
        state["rng_ranks"] = rngs
    if run.distiller is not None:
        state["distiller"] = run.distiller.state_dict()
    save_atomic(state, out / "last.pt")
    if is_best:
        save_atomic(state, out / "best.pt")
    _write_metrics(out, run.metrics, run.best)


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


def _gather_rng(info: DistInfo) -> list[dict]:
    state = rng_state()
    if not info.active:
        return [state]
    states: list = [None] * info.world
    dist.all_gather_object(states, state)
    return states
