"""Teacher training speed: the NW-UCLA input with an empty second body (before) and with the one
body NW-UCLA has (after), side by side, at the CPU-budget and half that width.

The 4-stream CTR-GCN-class teacher (train/configs/ucla_cpu_teacher.yaml: 52 frames, base 16) on
random NW-UCLA-shaped batches of 16; a train step is forward + backward of the summed stream
losses. The teacher folds bodies into the batch, so the empty body cost a full second pass.
Threads: torch's default (all cores).
"""
from __future__ import annotations

import time

import torch

from mksgn.data.layouts import get_layout
from mksgn.train.teacher import TeacherConfig, build_teacher

N = 16


def rate(base: int, persons: int) -> float:
    torch.manual_seed(0)
    model = build_teacher(TeacherConfig(base_channels=base, persons=persons), 10, get_layout("ucla"))
    x = torch.rand(N, 4, 3, 52, 20, persons) * 2 - 1
    if persons == 2:
        x[..., 1] = 0       # NW-UCLA has one actor: the second slot was zeros
    y = torch.randint(0, 10, (N,))

    def step():
        model.zero_grad()
        model.stream_loss(model(x), y).backward()

    step()
    t = time.perf_counter()
    for _ in range(3):
        step()
    return 3 * N / (time.perf_counter() - t)


def main() -> None:
    print(f"teacher train step (fwd+bwd), batch {N}, {torch.get_num_threads()} threads")
    for base in (8, 16):
        before, after = rate(base, 2), rate(base, 1)
        print(f"  base {base:2d}: before (M=2) {before:5.1f} samples/s, after (M=1) "
              f"{after:5.1f} samples/s: {after / before:.2f}x")


if __name__ == "__main__":
    main()
