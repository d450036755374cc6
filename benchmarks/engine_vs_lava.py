"""Fast engine vs Lava's bit-accurate simulator on the same network and inputs, in one run.

    .venv/bin/python benchmarks/engine_vs_lava.py                  # a random graph network
    .venv/bin/python benchmarks/engine_vs_lava.py --net RUN/converted --lava-samples 2

Prints samples/second of each engine and their ratio, and checks that every group's spikes agree
at every step on the samples Lava ran (exit status 1 if they do not). Lava's rate excludes the
one-off compile (reported separately); the engine's rate is measured after one warm-up batch of
the same shape (PyTorch/oneDNN set kernels up per shape on the first call).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mksgn import loihi, netgraph
from mksgn.netgraph import Encoder, JointAttention, Network, NeuronGroup, Synapse


def random_student(channels: int, frames: int, joints: int, classes: int, steps: int,
                   seed: int = 0) -> Network:
    """An MK-SGN-shaped graph network: encoder -> graph conv -> temporal conv -> attention
    with a residual -> temporal conv (stride 2) -> dense readout."""
    rng = np.random.default_rng(seed)
    c, t, v = channels, frames, joints
    p = lambda: loihi.CubaParams(1024, 512, int(rng.integers(30, 60)))  # noqa: E731
    w = lambda *s: rng.integers(-40, 60, s).astype(np.int32)  # noqa: E731
    groups = [NeuronGroup("enc", (c, t, v), p()), NeuronGroup("gcn", (c, t, v), p()),
              NeuronGroup("tcn", (c, t, v), p()), NeuronGroup("q", (c // 4, t, v), p()),
              NeuronGroup("k", (c // 4, t, v), p()), NeuronGroup("att", (c, t, v), p()),
              NeuronGroup("tcn2", (c, t // 2, v), p()),
              NeuronGroup("out", (classes,), loihi.CubaParams(0, 0, 1), readout=True)]
    syn = [Synapse("gcn", "enc", "gcn", "graph", w(c, c, v, v) // 4, weight_exp=-3),
           Synapse("tcn", "gcn", "tcn", "conv", w(c, c, 9, 1), padding=(4, 0), weight_exp=-1),
           Synapse("q", "tcn", "q", "conv", w(c // 4, c, 1, 1)),
           Synapse("k", "tcn", "k", "conv", w(c // 4, c, 1, 1)),
           Synapse("res", "gcn", "att", "conv", w(c, c, 1, 1), delay=2),
           Synapse("tcn2", "att", "tcn2", "conv", w(c, c, 9, 1), stride=(2, 1), padding=(4, 0),
                   weight_exp=-1),
           Synapse("out", "tcn2", "out", "dense", w(classes, c * (t // 2) * v))]
    att = [JointAttention("sa", q="q", k="k", x="tcn", dst="att", shift=2)]
    enc = [Encoder("joint", "joint", "enc", w(c, 3, 1, 1), rng.integers(-200, 200, c),
                   input_frac_bits=8, shift=4)]
    return Network(groups, syn, att, enc, num_steps=steps, readout="out",
                   meta={"benchmark": "random_student"})


def input_shapes(net: Network) -> dict[str, tuple[int, ...]]:
    """modality -> (C_in, T, V) for stride-1, shape-keeping encoders."""
    out = {}
    for e in net.encoders:
        g = net.group(e.dst)
        out[e.modality] = (int(np.asarray(e.weight).shape[1]), g.shape[1] * e.stride[0],
                           g.shape[2] * e.stride[1])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", type=Path, help="converted student directory (model.net)")
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--joints", type=int, default=25)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--lava-samples", type=int, default=2)
    ap.add_argument("--engine-samples", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from mksgn.deploy import engine
    from mksgn.deploy.lava_graph import LavaNetwork

    if args.net:
        net = netgraph.load(args.net / "model.net" if args.net.is_dir() else args.net)
        label = str(args.net)
    else:
        net = random_student(args.channels, args.frames, args.joints, 10, args.steps)
        label = (f"random graph student C={args.channels} T={args.frames} V={args.joints} "
                 f"steps={args.steps}")
    neurons = sum(g.size for g in net.groups if not g.source)
    print(f"network: {label}; {len(net.groups)} groups, {neurons} neurons, "
          f"{len(net.synapses)} synapse groups, {len(net.attentions)} attention, "
          f"{net.num_steps} steps")
    shapes = input_shapes(net)
    rng = np.random.default_rng(1)
    n_eng = max(args.engine_samples, args.lava_samples)
    x = {m: torch.tensor(rng.normal(0, 1, (n_eng, *s)), dtype=torch.float32)
         for m, s in shapes.items()}

    eng = engine.Engine(net, args.device)
    ap_batch = min(args.batch_size, n_eng)
    eng.run({m: v[:ap_batch] for m, v in x.items()}, record=())     # warm-up at the batch shape
    if eng.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = eng.run(x, record=("s",), batch_size=ap_batch)
    if eng.device.type == "cuda":
        torch.cuda.synchronize()
    t_eng = time.perf_counter() - t0
    eng_rate = n_eng / t_eng
    print(f"fast engine ({eng.device.type}, {torch.get_num_threads()} threads): {n_eng} samples "
          f"in {t_eng:.2f} s = {eng_rate:.1f} samples/s")

    t0 = time.perf_counter()
    agree = True
    lava_times = []
    with LavaNetwork(net) as ln:
        t_build = time.perf_counter() - t0
        for i in range(args.lava_samples):
            t1 = time.perf_counter()
            lr = ln.run(inputs={m: v[i].numpy() for m, v in x.items()})
            lava_times.append(time.perf_counter() - t1)
            for g, s in lr.spikes.items():
                same = np.array_equal(s, res.spikes[g][i].cpu().numpy())
                agree &= same
                if not same:
                    print(f"  sample {i}: spikes of {g} differ")
            agree &= np.array_equal(lr.scores, res.scores[i].cpu().numpy())
    first = lava_times[0]
    steady = lava_times[1:] or lava_times
    lava_rate = len(steady) / sum(steady)
    print(f"lava fixed_pt: build {t_build:.2f} s, first sample (with compile) {first:.2f} s, "
          f"then {np.mean(steady):.2f} s/sample = {lava_rate:.3f} samples/s")
    ratio = eng_rate / lava_rate
    print(f"speed-up: {ratio:.0f}x (target >= 300x)")
    print(f"spikes agree on all {args.lava_samples} Lava samples, every group and step: "
          f"{'yes' if agree else 'NO'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
