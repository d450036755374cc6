"""Student speed on the small (CPU) config: training step and eval forward, samples per second.

Also the cost ratio of the chip-length simulation (every group for all num_steps steps) to the
training forward (S steps per group), and the neuron count / firing rates. One run, one thread.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from mksgn.data.layouts import get_layout
from mksgn.train.student import StudentConfig, build_student


def timed(fn, reps: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    n, reps = 16, 3
    for attention in ("spiking", "static"):
        cfg = StudentConfig.small(attention=attention)
        model = build_student(cfg, 8, get_layout("ntu25"))
        x = torch.randn(n, 4, 3, cfg.frames, 25, 2) * 0.3
        y = torch.randint(0, 8, (n,))

        def train_step():
            out = model(x)
            (F.cross_entropy(out.logits, y) + 0.1 * model.mi_loss(out, y)).backward()

        model.train()
        t_train = timed(train_step, reps)
        model.eval()
        with torch.no_grad():
            t_eval = timed(lambda: model(x), reps)
            t_sim = timed(lambda: model.simulate(x), 1)
        rates = model.firing_rates()
        print(f"attention={attention}: {model.neuron_count()} neurons, "
              f"num_steps={model.num_steps}, S={cfg.time_steps}")
        print(f"  train step (fwd+bwd): {n / t_train:.1f} samples/s ({t_train:.2f} s per {n})")
        print(f"  eval forward:         {n / t_eval:.1f} samples/s")
        print(f"  full simulation / eval forward time ratio: {t_sim / t_eval:.2f}")
        print(f"  mean firing rate: {sum(rates.values()) / len(rates):.3f} spikes/neuron/step")


if __name__ == "__main__":
    main()
