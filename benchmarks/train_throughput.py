"""Training throughput measured against the machine: FLOPs per step, achieved FLOP/s, and the
machine's own matmul peak measured in the same process, so every rate says how far from the
hardware it is.

Rows (random inputs of the configs' shapes, 10 classes, NW-UCLA's 20 joints; no data needed):

- peak: the best of ``--repeats`` square float32 and bfloat16 matmuls, float32 both on all
  threads and on one (the faster of the two is the float32 peak of the rows below). The size
  doubles from 256 until one product takes ``MIN_PEAK_S`` or reaches 2048 (a CPU without
  bfloat16 units runs bfloat16 far below float32, so a 2048 product there would take minutes).
- train steps, batch 16: the student of ``train/configs/ucla_cpu_student.yaml`` without
  distillation (cross entropy + its mutual-information term), with distillation from a
  ``ucla_cpu_teacher.yaml`` teacher (random weights, frozen: the FLOPs do not depend on them),
  the same with the teacher's outputs kept (computed once before the steps, as
  ``kd.teacher_draws`` does after its first N epochs; the ratio of the two is printed), the
  student under ``torch.autocast("cpu", bfloat16)`` and with one thread, and the teacher of
  ``ucla_cpu_teacher.yaml`` (on all threads and on one). A step is what ``train.loop`` runs per batch: the frozen teacher's
  forward (distillation), the objective's forward (``train.loop.Objective``), backward and the
  optimiser step the config names. FLOPs are counted by ``torch.utils.flop_counter``
  (``FlopCounterMode``: matmuls and convolutions, forward and backward; element-wise work is
  not counted, so a step dominated by it shows a low fraction of peak). Below them, the share of
  the float32 student step's operator time spent in the counted operators, and the speed-up
  that bounds (Amdahl): what faster matmuls alone (bfloat16, AMX) could give.
- the student + KD step as ``torchrun --nproc-per-node W`` runs it on CPU (``--ddp W``, default
  2): W gloo processes of one thread, each with ``16 / W`` of the batch, gradients all-reduced
  by DDP as ``train.loop`` wraps the objective; the step time is from barrier to barrier, and
  the ratio against the one-process row says whether processes beat threads on this CPU.
- the student's temporal-conv shape alone (forward): (9, 1) kernel, 64 -> 64 channels, 32 frames
  x 20 joints, 64 images (batch 16 x 4 spike steps) as float32 NCHW, float32 channels_last,
  float32 as one matmul (unfold + mm, the conv's im2col) and bfloat16.

Times are the best of ``--repeats`` after one warm-up (the median is printed beside it); the
header names the thread count, the CPU capability torch uses and whether oneDNN has bfloat16
kernels for it. On shared cores every figure moves with the other load: run it a few times.

    python benchmarks/train_throughput.py [--repeats 3] [--threads N] [--ddp W] [--no-bf16-step]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from mksgn.data.layouts import get_layout
from mksgn.train.checkpoint import build_model
from mksgn.train.config import KDConfig, RunConfig, load_config
from mksgn.train.distill import Distiller, freeze
from mksgn.train.loop import DistInfo, Objective, build_optimizer, wrap_distributed

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"
BATCH = 16
CLASSES = 10
LAYOUT = "ucla"
MIN_PEAK_S = 0.25        # seconds one peak matmul should take at least
MAX_PEAK_N = 2048


@dataclass
class Rate:
    """One measured row: FLOPs per call and the seconds of each timed call."""
    name: str
    flops: int
    seconds: list[float]

    @property
    def best_s(self) -> float:
        return min(self.seconds)

    @property
    def flop_s(self) -> float:
        """Achieved FLOP/s of the best call."""
        return self.flops / self.best_s


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` as ``FlopCounterMode`` counts them (matmuls, convolutions;
    forward and backward), 2 per multiply-add."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


class _OpTimes(TorchDispatchMode):
    """Wall seconds of every aten operator call, split into those ``FlopCounterMode`` counts
    (matmuls, convolutions) and the rest (element-wise work, copies, reductions)."""

    def __init__(self):
        super().__init__()
        self.counted = self.other = 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        t = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        dt = time.perf_counter() - t
        if func._overloadpacket in flop_registry:
            self.counted += dt
        else:
            self.other += dt
        return out


def counted_share(fn: Callable[[], object]) -> float:
    """Fraction of one call's operator time spent in the operators whose FLOPs ``count_flops``
    counts (forward and backward)."""
    with _OpTimes() as times:
        fn()
    return times.counted / max(times.counted + times.other, 1e-12)


def time_calls(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of each of ``repeats`` calls of ``fn``."""
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def measure(name: str, fn: Callable[[], object], repeats: int) -> Rate:
    """Count the FLOPs of a warm-up call, then time ``repeats`` calls."""
    return Rate(name, count_flops(fn), time_calls(fn, repeats))


def matmul_peak(dtype: torch.dtype, repeats: int, max_n: int = MAX_PEAK_N) -> Rate:
    """The rates of square ``n x n`` products in ``dtype``: n doubles from 256 (at most to
    ``max_n``) until one product takes ``MIN_PEAK_S``; then ``repeats`` timed products."""
    n = min(256, max_n)
    while True:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        fn = lambda: a @ b   # noqa: E731
        fn()
        once = time_calls(fn, 1)[0]
        if once >= MIN_PEAK_S or n >= max_n:
            break
        n *= 2
    return Rate(f"{str(dtype).removeprefix('torch.')} n={n}", 2 * n ** 3,
                [once] + time_calls(fn, repeats - 1))


# ---------------------------------------------------------------------------------------------
# training steps

def _inputs(cfg: RunConfig, seed: int = 0,
            batch: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (N, K, 3, T, V, M) inputs in [-1, 1] and labels of the config's shapes."""
    g = torch.Generator().manual_seed(seed)
    m = cfg.model
    frames = getattr(m, "frames", cfg.data.window)
    joints = get_layout(LAYOUT).num_joints
    x = torch.rand(batch, len(m.modalities), 3, frames, joints, m.persons, generator=g) * 2 - 1
    return x, torch.randint(0, CLASSES, (batch,), generator=g)


def train_step(cfg: RunConfig, teacher_cfg: RunConfig | None = None,
               autocast: torch.dtype | None = None,
               dist_info: DistInfo | None = None, kept: bool = False) -> Callable[[], float]:
    """One training step of ``cfg``'s model on a fixed random batch, as a closure returning the
    loss. Students without ``teacher_cfg`` train without distillation (CE + the MI term).
    ``dist_info``: this process's share of the batch, its objective in DDP as ``train.loop``
    wraps it (the process group joined already). ``kept``: the teacher's outputs computed
    once, before the steps, and each step gathers its rows of them, as ``kd.teacher_draws``
    does in its epochs after the first N (``train.teacher_cache``)."""
    torch.manual_seed(cfg.seed)
    layout = get_layout(LAYOUT)
    model = build_model(cfg.kind, cfg.model, CLASSES, layout)
    info = dist_info or DistInfo(0, 1, 0)
    x, y = _inputs(cfg, seed=info.rank, batch=BATCH // info.world)
    teacher = distiller = None
    if cfg.kind == "student":
        kd = cfg.kd if teacher_cfg is not None else KDConfig(soft_labels=False, ftm=False,
                                                             w_mi=cfg.kd.w_mi)
        if teacher_cfg is not None:
            teacher = freeze(build_model("teacher", teacher_cfg.model, CLASSES, layout))
            distiller = Distiller.for_models(kd, model, teacher, x[:2])
        else:
            distiller = Distiller(kd, [], [])
    objective = Objective(model, cfg.kind, distiller).train()
    opt = build_optimizer(cfg, [p for p in objective.parameters() if p.requires_grad])
    objective = wrap_distributed(objective, info, torch.device("cpu"))
    cast = (lambda: torch.autocast("cpu", dtype=autocast)) if autocast else nullcontext
    kept_out = None
    if kept and teacher is not None:
        with torch.no_grad():
            kept_out = distiller.teach(teacher(x))
    rows = torch.arange(len(y))

    def step() -> float:
        with cast():
            t_out = None
            if kept_out is not None:
                t_out = kept_out.rows(rows)
            elif teacher is not None:
                with torch.no_grad():
                    t_out = teacher(x)
            loss = objective(x, y, t_out)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def with_threads(n: int, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run with torch's intra-op thread count set to ``n`` (restored after)."""
    def run():
        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(old)
    return run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, repeats: int, out) -> None:
    """One of ``world`` gloo processes, 1 thread each, timing the student + KD step on its
    ``BATCH / world`` samples; every step starts and ends at a barrier (the slowest process)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        step = train_step(load_config(CONFIGS / "ucla_cpu_student.yaml"),
                          load_config(CONFIGS / "ucla_cpu_teacher.yaml"),
                          dist_info=DistInfo(rank, world, rank))

        def synced() -> None:
            dist.barrier()
            step()
            dist.barrier()
        synced()                                                    # warm-up
        times = time_calls(synced, repeats)
        if rank == 0:
            out.put(times)
    finally:
        dist.destroy_process_group()


def ddp_rate(repeats: int, world: int, flops: int) -> Rate:
    """The student + KD step of batch ``BATCH`` as ``torchrun --nproc-per-node world`` runs it
    on CPU (``train.loop``: DDP over gloo, the batch split, 1 thread per process)."""
    ctx = mp.get_context("spawn")
    out, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, world, port, repeats, out))
             for r in range(world)]
    for p in procs:
        p.start()
    times = out.get(timeout=3600)
    for p in procs:
        p.join()
    return Rate(f"student + KD, {world} proc x 1", flops, times)


# ---------------------------------------------------------------------------------------------
# the student's temporal convolution alone

def temporal_conv_calls() -> dict[str, Callable[[], torch.Tensor]]:
    """Forward calls of the (9, 1) conv, 64 -> 64 channels, over (64, 64, 32, 20) 0/1 spikes."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(BATCH * 4, 64, 32, 20, generator=g) < 0.2).float()
    w = torch.randn(64, 64, 9, 1, generator=g)
    pad = (4, 0)
    x_cl, w_cl = x.contiguous(memory_format=torch.channels_last), \
        w.contiguous(memory_format=torch.channels_last)
    x_bf, w_bf = x.bfloat16(), w.bfloat16()
    w_mat = w.reshape(64, 64 * 9).T.contiguous()                         # (C_in k, C_out)

    def as_matmul() -> torch.Tensor:
        cols = F.unfold(x, (9, 1), padding=pad)                          # (N, C_in k, T V)
        return (cols.transpose(1, 2) @ w_mat).transpose(1, 2).reshape(x.shape[0], 64, 32, 20)

    return {"float32": lambda: F.conv2d(x, w, padding=pad),
            "float32 channels_last": lambda: F.conv2d(x_cl, w_cl, padding=pad),
            "float32 unfold + matmul": as_matmul,
            "bfloat16": lambda: F.conv2d(x_bf, w_bf, padding=pad)}


# ---------------------------------------------------------------------------------------------
# the report

def _pct(x: float) -> str:
    return f"{x:6.1f}%" if x < 999.5 else f"{x:6.0f}%"


def _row(r: Rate, peaks: tuple[Rate, Rate], name_width: int = 26) -> str:
    f32, bf16 = (p.flop_s for p in peaks)
    med = statistics.median(r.seconds)
    return (f"  {r.name:<{name_width}}{r.flops / 1e9:8.2f}{r.best_s:8.3f}{med:8.3f}"
            f"{r.flop_s / 1e9:8.1f}{_pct(100 * r.flop_s / f32)}{_pct(100 * r.flop_s / bf16)}")


def _header(first: str) -> str:
    cols = "".join(f"{c:>8}" for c in ("GFLOP", "best s", "med s", "GFLOP/s"))
    return f"  {first:<26}{cols}{'f32pk':>7}{'bf16pk':>7}"


def _step_rows(reps: int, peaks: tuple[Rate, Rate], threads: int, bf16_step: bool,
               ddp: int) -> None:
    student = load_config(CONFIGS / "ucla_cpu_student.yaml")
    teacher = load_config(CONFIGS / "ucla_cpu_teacher.yaml")
    steps = [("student", lambda: train_step(student))]
    if threads > 1:     # next to the default-thread row: the load changes by the minute
        steps.append(("student, 1 thread", lambda: with_threads(1, train_step(student))))
    steps.append(("student + KD", lambda: train_step(student, teacher)))
    steps.append(("student + KD, kept teacher", lambda: train_step(student, teacher, kept=True)))
    if bf16_step:
        steps.append(("student, bf16 autocast",
                      lambda: train_step(student, autocast=torch.bfloat16)))
    steps.append(("teacher", lambda: train_step(teacher)))
    if threads > 1:
        steps.append(("teacher, 1 thread", lambda: with_threads(1, train_step(teacher))))
    print(_header(f"train step, batch {BATCH}"))
    rates = {}
    for name, make in steps:
        rates[name] = measure(name, make(), reps)
        print(_row(rates[name], peaks), flush=True)
    print(f"  teacher outputs kept (kd.teacher_draws): "
          f"{rates['student + KD'].best_s / rates['student + KD, kept teacher'].best_s:.2f}x "
          f"the steps per second of student + KD")
    if ddp > 1:         # the same step as torchrun runs it: processes instead of threads
        kd = rates["student + KD"]
        par = ddp_rate(reps, ddp, kd.flops)
        print(_row(par, peaks), flush=True)
        print(f"  {ddp} processes x 1 thread against {threads} thread(s) in one: "
              f"{kd.best_s / par.best_s:.2f}x the steps per second (best of each)")
    step = train_step(student)
    step()                                           # warm-up
    share = counted_share(step)
    print(f"  student step: {100 * share:.0f}% of its op time in the counted matmuls and "
          f"convolutions;\n  infinitely fast ones would make it at most "
          f"{1 / max(1 - share, 1e-9):.2f}x faster")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per row (after warm-up)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--ddp", type=int, default=2, metavar="W",
                    help="also time the student + KD step in W gloo processes of 1 thread "
                         "(torchrun's CPU path; 0 or 1: skip)")
    ap.add_argument("--no-bf16-step", action="store_true",
                    help="skip the bfloat16-autocast student step (slow without bf16 units)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = max(1, args.repeats)
    threads = torch.get_num_threads()
    bf16 = "yes" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "no"
    print(f"training throughput: torch {torch.__version__.split('+')[0]}, {threads} threads, "
          f"CPU {torch.backends.cpu.get_cpu_capability()}, oneDNN bf16 {bf16}")
    peaks = (matmul_peak(torch.float32, reps), matmul_peak(torch.bfloat16, reps))
    print(_header("machine peak (matmul)"))
    for p in peaks:
        print(_row(p, peaks))
    if threads > 1:     # on busy shared cores one thread can beat all of them
        one = with_threads(1, lambda: matmul_peak(torch.float32, reps))()
        one.name += ", 1 thread"
        print(_row(one, peaks))
        peaks = (max(peaks[0], one, key=lambda r: r.flop_s), peaks[1])
        print(f"  (fractions below: of {peaks[0].name})")
    _step_rows(reps, peaks, threads, not args.no_bf16_step, args.ddp)
    print(_header("temporal conv (9,1) 64ch"))
    for name, fn in temporal_conv_calls().items():
        print(_row(measure(name, fn, reps), peaks), flush=True)


if __name__ == "__main__":
    main()
