"""A converted student in snnTorch through NIR, against the fast engine (issue 22).

    .venv/bin/python benchmarks/nir_snntorch.py CONVERT_DIR --data PREPARED [--samples N]

Exports CONVERT_DIR/model.net with ``mksgn.nir_io`` (as ``mksgn export nir`` does), reads it
back with ``nir.read`` (type-checked) and imports it with snnTorch's own
``snntorch.import_nir.import_from_nir``. Three things snnTorch 1.0.0 / nirtorch 2.6 cannot take
are adapted here, around the importer, not inside it:

- the readout: snnTorch has no mapping for NIR's ``I`` (integrator); its input current is taken
  as the graph's output and summed over the steps, which is what ``I`` computes;
- several ``Input`` nodes: nirtorch 2.6 builds a graph with one (a second one redefines its
  ``is_none`` node), so the modalities enter as one Input, their folded channels stacked, and each
  encoder's Conv1d reads its own block of channels (zero weights elsewhere);
- ``Flatten``: NIR's ``start_dim`` counts without the batch axis, but the importer passes it to
  ``torch.nn.Flatten`` unchanged (start_dim 0 would flatten the batch), so it is set to 1.

Runs the NIR graph for ``steps = num_steps - latency`` steps with the input held constant (the
encoders' output is constant on Loihi too) and reports accuracy of both and their prediction
agreement as JSON. Differences: float versus integer arithmetic (snnTorch's float decays and
exact encoder, Loihi's truncating decays, floored right shifts and rounded, clipped encoder
input); latency is accounted for exactly (module docstring of ``mksgn.nir_io``). The mapping
itself agrees (reset to zero, current before voltage, ``v > threshold``: docs/nir.md). The result's
``chip_readout`` repeats the comparison with the readout's floored shift applied to snnTorch's
current (``chip_current``), the largest single rounding step (a readout exponent far below 0).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def single_input(graph):
    """Merge the graph's Input nodes into one "input" (folded channels stacked)."""
    import nir

    ins = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    sizes = [int(graph.nodes[k].input_type["input"][0]) for k in ins]
    t = int(graph.nodes[ins[0]].input_type["input"][1])
    offsets = np.cumsum([0] + sizes)
    edges = []
    for a, b in graph.edges:
        if a in ins:
            c = graph.nodes[b]
            k = ins.index(a)
            w = np.zeros((c.weight.shape[0], offsets[-1], c.weight.shape[2]), c.weight.dtype)
            w[:, offsets[k]:offsets[k + 1]] = c.weight
            graph.nodes[b] = nir.Conv1d(input_shape=t, weight=w, stride=c.stride,
                                        padding=c.padding, dilation=c.dilation, groups=1,
                                        bias=c.bias)
            edges.append(("input", b))
        else:
            edges.append((a, b))
    for k in ins:
        del graph.nodes[k]
    graph.nodes["input"] = nir.Input(input_type=np.array([offsets[-1], t]))
    graph.edges = edges
    return ins


def readout_as_output(graph) -> int:
    """Drop the readout integrator: its input current becomes the graph's output. Returns the
    weight exponent of the synapse into it (``mksgn`` metadata of the node before it)."""
    import nir

    from mksgn import nir_io

    ro = next(k for k, n in graph.nodes.items() if isinstance(n, nir.I))
    out = next(b for a, b in graph.edges if a == ro)
    pre = next(a for a, b in graph.edges if b == ro)
    del graph.nodes[ro]
    graph.edges = [(a, out if b == ro else b) for a, b in graph.edges if a != ro]
    graph.nodes[out] = nir.Output(output_type=np.array(graph.nodes[pre].output_type["output"]))
    return int(nir_io.graph_meta(graph.nodes[pre]).get("weight_exp", 0))


def chip_current(current: torch.Tensor, weight_exp: int) -> torch.Tensor:
    """The readout's current of one step as the chip delivers it: the integer sum of
    mantissas (recovered exactly from the float current, slayer units) shifted by the weight
    exponent, flooring (``loihi.shift``), back in slayer units."""
    from mksgn import loihi

    a = current.double() * loihi.STATE_SCALE * 2.0 ** -weight_exp
    return loihi.shift(torch.round(a).long(), weight_exp).double() / loihi.STATE_SCALE


def snntorch_model(nir_file: Path):
    import nir
    import snntorch
    from snntorch.import_nir import import_from_nir

    graph = nir.read(str(nir_file))
    order = single_input(graph)
    readout_exp = readout_as_output(graph)
    with contextlib.redirect_stdout(io.StringIO()):      # the importer prints per node
        model = import_from_nir(graph)
    for m in model.modules():
        if isinstance(m, torch.nn.Flatten):
            m.start_dim = 1
    return model, order, snntorch, readout_exp


def run_snntorch(model, snntorch, x: torch.Tensor, steps: int, readout_exp: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """x: (B, C, T) folded input. Returns the readout's input current summed over the steps
    (B, classes), as snnTorch computes it and as the chip's floored readout shift does
    (``chip_current`` each step)."""
    for m in model.modules():                           # fresh state for every batch
        if hasattr(m, "reset_hidden"):
            m.reset_hidden()
    total = chip = 0
    with torch.no_grad():
        for _ in range(steps):
            out = model(x)
            out = out[0] if isinstance(out, tuple) else out
            total = total + out
            chip = chip + chip_current(out, readout_exp)
    return total, chip


def main() -> None:
    from mksgn import netgraph, nir_io
    from mksgn.data.dataset import SkeletonDataset
    from mksgn.deploy.engine import Engine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("convert_dir", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="prepared benchmark directory")
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--nir", type=Path, default=Path("/tmp/mksgn_check.nir"))
    ap.add_argument("--out", type=Path, default=None, help="write the JSON result here too")
    a = ap.parse_args()
    torch.set_num_threads(1)

    net = netgraph.load(a.convert_dir / "model.net")
    man = json.loads((a.convert_dir / "manifest.json").read_text())["input"]
    t0 = time.perf_counter()
    nir_io.write(net, a.nir)
    meta = nir_io.graph_meta(__import__("nir").read(str(a.nir)))
    model, order, snn, readout_exp = snntorch_model(a.nir)
    t_export = time.perf_counter() - t0
    mods = [next(e.modality for e in net.encoders if f"in_{e.modality}" == k) for k in order]
    ds = SkeletonDataset(a.data, "test", window=man["window"], modalities=man["modalities"],
                         train=False, pipeline=man.get("pipeline", "crop_resize"))
    n = len(ds) if a.samples is None else min(a.samples, len(ds))
    eng = Engine(net, "cpu")
    labels = np.asarray(ds.labels[:n])
    pe, ps, pc = np.zeros(n, int), np.zeros(n, int), np.zeros(n, int)
    se, ss = [], []
    t_eng = t_snn = 0.0
    for lo in range(0, n, a.batch_size):
        hi = min(n, lo + a.batch_size)
        xf = netgraph.fold_persons(np.stack([ds.sample(i) for i in range(lo, hi)]))
        feeds = {m: xf[:, man["modalities"].index(m)] for m in man["modalities"]}
        t = time.perf_counter()
        r = Engine.run(eng, {k: torch.from_numpy(v) for k, v in feeds.items()})
        pe[lo:hi] = r.predictions().numpy()
        se.append(r.scores.double().numpy() / float(meta.get("logit_scale") or 1))
        t_eng += time.perf_counter() - t
        x = torch.from_numpy(np.concatenate([nir_io.fold(feeds[m]) for m in mods], 1)).float()
        t = time.perf_counter()
        logits, chip = run_snntorch(model, snn, x, meta["steps"], readout_exp)
        ps[lo:hi] = logits.argmax(1).numpy()
        pc[lo:hi] = chip.argmax(1).numpy()
        ss.append(logits.double().numpy())
        t_snn += time.perf_counter() - t
        print(f"{hi}/{n}: agreement {(pe[:hi] == ps[:hi]).mean():.4f}, accuracy engine "
              f"{(pe[:hi] == labels[:hi]).mean():.4f} snntorch "
              f"{(ps[:hi] == labels[:hi]).mean():.4f}; chip readout agreement "
              f"{(pe[:hi] == pc[:hi]).mean():.4f} ({t_eng:.0f} s, {t_snn:.0f} s)",
              file=sys.stderr, flush=True)
    res = {"network": str(a.convert_dir / "model.net"), "samples": n,
           "steps": meta["steps"], "latency": meta["latency"],
           "nir_mb": round(a.nir.stat().st_size / 1e6, 2),
           "engine_accuracy": float((pe == labels).mean()),
           "snntorch_accuracy": float((ps == labels).mean()),
           "agreement": float((pe == ps).mean()), "disagreeing": int((pe != ps).sum()),
           "chip_readout": {"snntorch_accuracy": float((pc == labels).mean()),
                            "agreement": float((pe == pc).mean()),
                            "disagreeing": int((pe != pc).sum())},
           "logits_corr": float(np.corrcoef(np.concatenate(se).ravel(),
                                            np.concatenate(ss).ravel())[0, 1]),
           "seconds": {"export+import": round(t_export, 1), "engine": round(t_eng, 1),
                       "snntorch": round(t_snn, 1)}}
    print(json.dumps(res, indent=1))
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
