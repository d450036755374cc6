"""A network trained in snnTorch, imported through NIR, on Loihi's integers (issue 22).

    .venv/bin/python benchmarks/nir_import_digits.py [--epochs 12] [--lava-samples 3]

Trains a small CUBA network in snnTorch (``Synaptic`` neurons, 64-64-10, the 10-class 8x8
digits that scikit-learn ships: 1347 training and 450 test images, each pixel a Bernoulli spike
train of rate value/16 over 16 steps, fixed seed), exports it with snnTorch's own
``export_to_nir``, imports the file with ``mksgn.nir_io.read`` (``mksgn import nir``), and reports
the float (snnTorch) and integer (fast engine) test accuracy, their prediction agreement, and
whether Lava's bit-accurate simulator gives the engine's spikes and scores exactly on the first
``--lava-samples`` test images. The last ``Linear`` has a bias and no neuron: its summed output
is the class score (the importer gives it an integrating readout group). JSON on stdout.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np
import torch

T = 16


def data(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=450, random_state=seed,
                                          stratify=y)
    g = np.random.default_rng(seed)
    spikes = lambda a: (g.random((len(a), T, 64)) < a[:, None, :]).astype(np.float32)  # noqa
    return spikes(xtr), ytr, spikes(xte), yte


def build():
    import snntorch as snn
    from snntorch import surrogate

    # per-neuron parameters: snnTorch 1.0.0 exports scalar ones as 0-d arrays, which nir 1.0.8's
    # type inference rejects
    cuba = lambda: snn.Synaptic(  # noqa: E731
        alpha=torch.full((64,), 0.75), beta=torch.full((64,), 0.9), threshold=torch.ones(64),
        spike_grad=surrogate.fast_sigmoid(), init_hidden=True, reset_mechanism="zero")
    return torch.nn.Sequential(torch.nn.Linear(64, 64, bias=False), cuba(),
                               torch.nn.Linear(64, 64, bias=False), cuba(),
                               torch.nn.Linear(64, 10))


def forward(model, x: torch.Tensor) -> torch.Tensor:
    """x (N, T, 64) spikes -> logits (N, 10): the last Linear's output summed over steps."""
    for m in model.modules():
        if hasattr(m, "reset_hidden"):
            m.reset_hidden()
    return sum(model(x[:, t]) for t in range(x.shape[1]))


def train(model, xtr, ytr, epochs: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            loss = torch.nn.functional.cross_entropy(forward(model, x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def main() -> None:
    import nir
    from snntorch.export_nir import export_to_nir

    from mksgn import nir_io
    from mksgn.deploy import engine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lava-samples", type=int, default=3)
    ap.add_argument("--nir", type=Path, default=Path("/tmp/mksgn_digits.nir"))
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    xtr, ytr, xte, yte = data()
    model = build()
    t0 = time.perf_counter()
    train(model, xtr, ytr, a.epochs)
    t_train = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        pf = forward(model, torch.from_numpy(xte)).argmax(1).numpy()
    with contextlib.redirect_stdout(io.StringIO()):
        graph = export_to_nir(model, torch.zeros(1, 64), ignore_dims=[0])
    nir.write(a.nir, graph)
    net, report = nir_io.read(a.nir, steps=T)
    src = net.meta["sources"][0]
    x = np.zeros((len(xte), net.num_steps, 64), bool)
    x[:, :T] = xte != 0
    res = engine.run(net, None, source_spikes={src: torch.from_numpy(x)}, device="cpu")
    pi = res.predictions().numpy()
    lava = None
    if a.lava_samples:
        from mksgn.deploy.lava_graph import LavaNetwork
        with LavaNetwork(net, timeout=300) as ln:
            same = [bool(np.array_equal(r.scores, res.scores[i].numpy())
                         and all(np.array_equal(s, res.spikes[g][i].numpy())
                                 for g, s in r.spikes.items()))
                    for i in range(a.lava_samples)
                    for r in [ln.run(source_spikes={src: x[i]})]]
        lava = {"samples": a.lava_samples, "identical": sum(same)}
    print(json.dumps({
        "train_seconds": round(t_train, 1), "epochs": a.epochs, "test_samples": len(yte),
        "snntorch_accuracy": float((pf == yte).mean()),
        "imported_accuracy": float((pi == yte).mean()),
        "agreement": float((pf == pi).mean()), "num_steps": net.num_steps,
        "latency": report.latency,
        "quant_rel_l2": {q.name: round(q.rel_l2, 5) for q in report.layers},
        "assumed": report.assumed, "engine_equals_lava": lava}, indent=1))


if __name__ == "__main__":
    main()
