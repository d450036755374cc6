"""Benchmark: prepare >= 2,000 synthetic NTU ``.skeleton`` files; print files/second and peak memory.

Generates the files first (timed separately), then runs ``mksgn.data.prepare`` once with one
worker and once with all cores. Peak memory is the largest resident set of this process and of
its (joined) worker processes, from ``resource.getrusage``.

    .venv/bin/python benchmarks/data_prepare.py [--files 2000] [--frames 100] [--workers N]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from mksgn.data.prepare import PrepareConfig, prepare
from mksgn.data.synth import SynthConfig, generate


def _peak_mib() -> tuple[float, float]:
    """(this process, largest finished child) peak RSS in MiB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, kids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--frames", type=int, default=100, help="mean frames per sample")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--keep", type=Path, default=None, help="work here and keep the files")
    args = ap.parse_args()

    classes = 20
    per_class = -(-args.files // classes)
    work = args.keep or Path(tempfile.mkdtemp(prefix="mksgn-bench-"))
    try:
        cfg = SynthConfig("ntu60", classes=classes, subjects=20, samples_per_class=per_class,
                          frames=args.frames, seed=0)
        t0 = time.perf_counter()
        specs = generate(cfg, work / "raw", workers=args.workers)
        t_gen = time.perf_counter() - t0
        n = len(specs)
        size_mb = sum(p.stat().st_size for p in (work / "raw").rglob("*.skeleton")) / 2**20
        print(f"generated {n} .skeleton files ({size_mb:.0f} MiB, mean {args.frames} frames) "
              f"in {t_gen:.1f} s = {n / t_gen:.0f} files/s with {args.workers} workers")

        rates = {}
        for workers in sorted({1, args.workers}):
            out = work / f"prep{workers}"
            t0 = time.perf_counter()
            report = prepare(PrepareConfig("ntu60", work / "raw", out, workers=workers))
            dt = time.perf_counter() - t0
            rates[workers] = n / dt
            own, kids = _peak_mib()
            print(f"prepare, {workers} worker(s): {report.samples_kept} kept, {len(report.skipped)} skipped, "
                  f"{dt:.1f} s = {rates[workers]:.0f} files/s; peak RSS main {own:.0f} MiB, "
                  f"largest worker so far {kids:.0f} MiB; T_max {report.t_max}, "
                  f"xsub {report.counts['xsub']}, xview {report.counts['xview']}")
        if len(rates) == 2:
            print(f"speed-up {args.workers} workers vs 1: {rates[args.workers] / rates[1]:.2f}x")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
