"""Student training speed before and after the exact float64 neuron update, side by side.

The CPU-budget NW-UCLA student (train/configs/ucla_cpu_student.yaml: 52 frames, stem 16, blocks
16-16-32-32-64-64, spiking attention, 0.26 M neurons) on random NW-UCLA-shaped batches of 16.

- before: the CUBA update in int64 (``torch.div`` for the decays), as up to commit d280922, with
  the input carrying an empty second body (M = 2), as the NW-UCLA arrays did then;
- float64 update: the same update in exact float64 (``train.spiking.cuba_states``), M = 2;
- after: float64 update and one body (M = 1), what training runs now.

Also checks that the int64 and float64 updates give bit-identical logits and gradients.
Threads: torch's default (all cores).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from mksgn import loihi
from mksgn.data.layouts import get_layout
from mksgn.train import spiking
from mksgn.train.student import StudentConfig, build_student

N = 16


def _int64_update(a, bias_eff, p, spiking_, traces):
    """The int64 update of commit d280922 (its within-range branch), for the 'before' rows."""
    a = a.to(torch.int64)
    bias = bias_eff.to(torch.int64) if torch.is_tensor(bias_eff) else int(bias_eff)
    u = torch.zeros(a.shape[:-1], dtype=torch.int64)
    v = torch.zeros_like(u)
    out = {k: [] for k in traces}
    vth = p.vth_mant << loihi.VTH_SHIFT
    for t in range(a.shape[-1]):
        u = loihi.decay(u, p.i_decay) + (a[..., t] << loihi.ACT_SHIFT)
        v = loihi.decay(v, p.v_decay) + u + bias
        if "v_pre" in out:
            out["v_pre"].append(v)
        s = v > vth if spiking_ else torch.zeros_like(v, dtype=torch.bool)
        if spiking_:
            v = v.masked_fill(s, 0)
        for k, x in (("u", u), ("v", v), ("s", s)):
            if k in out:
                out[k].append(x)
    return tuple(torch.stack(out[k], -1) for k in traces)


def run(persons: int, update) -> tuple[float, torch.Tensor, torch.Tensor]:
    float_update = spiking._cuba_float
    spiking._cuba_float = update
    try:
        torch.manual_seed(0)
        cfg = StudentConfig(persons=persons, frames=52, stem_channels=16,
                            channels=(16, 16, 32, 32, 64, 64))
        model = build_student(cfg, 10, get_layout("ucla"))
        g = torch.Generator().manual_seed(1)
        x = torch.rand(N, 4, 3, 52, 20, persons, generator=g) * 2 - 1
        y = torch.randint(0, 10, (N,), generator=g)

        def step():
            model.zero_grad()
            out = model(x)
            (F.cross_entropy(out.logits, y) + 0.1 * model.mi_loss(out, y)).backward()
            return out.logits.detach()

        step()
        t = time.perf_counter()
        for _ in range(3):
            logits = step()
        rate = 3 * N / (time.perf_counter() - t)
        return rate, logits, model.blocks[0].tcn.weight.grad.clone()
    finally:
        spiking._cuba_float = float_update


def main() -> None:
    print(f"student train step (fwd+bwd), batch {N}, {torch.get_num_threads()} threads")
    before, lb, gb = run(2, _int64_update)
    mid, lm, gm = run(2, spiking._cuba_float)
    after, _, _ = run(1, spiking._cuba_float)
    print(f"  before (int64 update, M=2)   {before:6.1f} samples/s")
    print(f"  float64 update, M=2          {mid:6.1f} samples/s   {mid / before:.2f}x")
    print(f"  after (float64 update, M=1)  {after:6.1f} samples/s   {after / before:.2f}x")
    print(f"  int64 vs float64 update: logits equal {torch.equal(lb, lm)}, "
          f"gradients equal {torch.equal(gb, gm)}")


if __name__ == "__main__":
    main()
