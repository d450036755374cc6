"""``mksgn simulate`` and ``mksgn run``: a converted student on a test split, or any netx file.

``simulate`` evaluates DIR/model.net on a prepared split with the fast engine (``--engine fast``,
the default) or Lava's bit-accurate simulator (``--engine lava``), and writes
``OUT/activity.json`` (schema ``mksgn-activity/2``, read by the energy stage) and
``OUT/activity.npz`` (per-neuron spike counts; with the fast engine also active neuron-steps).
``run`` runs one input through a netx file and saves spikes (and u, v).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import numpy as np

from mksgn.files import atomic_write, sha256
from mksgn.netgraph import fold_persons

ACTIVITY_SCHEMA = "mksgn-activity/2"


# ---------------------------------------------------------------------------------------------
@dataclass
class GroupActivity:
    neurons: int
    spikes_per_sample: float           # spikes of the whole group per sample (all steps)
    firing_rate: float                 # spikes per neuron per step
    active_per_sample: float | None = None   # active neuron-steps per sample (None: not recorded)


@dataclass
class ActivityReport:
    """What ``mksgn simulate`` measured; ``activity.json``. ``spikes_per_sample`` counts every
    run of a sample (two persons = two runs, as the chip would run both); ``firing_rate`` is per
    neuron per step of one run. ``active_updates``: "recorded" when activity.npz holds
    ``active/<group>`` (active neuron-steps by ``mksgn.opcount``'s rule; the fast engine),
    "spikes" when it does not (Lava: the energy stage then counts a step active only when the
    neuron fires, a lower bound)."""
    network_file: str
    network_sha256: str
    engine: str
    samples: int
    runs: int                          # network runs: samples x persons run
    num_steps: int
    split: str
    dataset: str
    persons: str
    accuracy: float
    correct: int
    groups: dict[str, GroupActivity] = field(default_factory=dict)
    agreement: dict | str = "n/a"
    active_updates: str = "spikes"
    schema: str = ACTIVITY_SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ActivityReport":
        d = json.loads(text)
        d["groups"] = {k: GroupActivity(**v) for k, v in d["groups"].items()}
        return cls(**d)


def _fail(msg: str):
    raise click.ClickException(msg)


def _load_network(path: Path):
    from mksgn import netgraph
    if not path.is_file():
        _fail(f"{path}: no such file (run `mksgn convert` first)")
    try:
        return netgraph.load(path)
    except (OSError, ValueError, KeyError) as e:
        _fail(f"{path}: not a converted mksgn network: {e}")


def _prepared_dir(data: Path, benchmark: str | None) -> Path:
    if (data / "info.json").is_file():
        return data
    if benchmark and (data / benchmark / "info.json").is_file():
        return data / benchmark
    found = sorted(p.parent for p in data.glob("*/info.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        _fail(f"{data}: no prepared data (info.json) here or in a sub-directory; "
              f"run `mksgn data prepare`")
    _fail(f"{data}: several benchmarks ({', '.join(p.name for p in found)}); "
          f"the manifest does not say which, pass the benchmark directory")


# ---------------------------------------------------------------------------------------------
@click.command("simulate")
@click.argument("net_dir", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="Prepared data: a benchmark directory, or the root `mksgn data prepare` wrote.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "test"]))
@click.option("--samples", type=click.IntRange(min=1), help="Only the first N samples.")
@click.option("--engine", default="fast", show_default=True, type=click.Choice(["fast", "lava"]),
              help="fast: the integer PyTorch engine; lava: Lava's bit-accurate simulator.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Where activity.json/.npz go (default: DIR).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default=None, help="torch device for the fast engine (default: cuda "
              "when present, else cpu).")
@click.option("--persons", type=click.Choice(["fold", "merge", "first"]), default=None,
              help="fold: both bodies as input channels in one run (MK-SGN students); merge: "
                   "run every body and add their class scores; first: body 0 only. Default: "
                   "the manifest's input.persons, else fold when the encoders take 3*M channels.")
@click.option("--timeout", type=float, default=None,
              help="Stop a Lava run that takes longer than this many seconds per sample.")
def simulate(net_dir: Path, data: Path, split: str, samples: int | None, engine: str,
             out: Path | None, batch_size: int, device: str | None, persons: str | None,
             timeout: float | None) -> None:
    """Evaluate DIR/model.net on a prepared split: accuracy, per-layer activity, agreement.

    \b
    Reads DIR/model.net (from `mksgn convert`) and DIR/manifest.json when present (input
    modalities, window, dataset, benchmark). Prints accuracy, spikes per sample and firing rate
    of every neuron group, and the agreement with the PyTorch quantised student when DIR holds
    student.pt; writes OUT/activity.json (read by the energy stage) and OUT/activity.npz.
    """
    import torch
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from mksgn.data.dataset import SkeletonDataset

    console = Console()
    net_path = net_dir / "model.net"
    net = _load_network(net_path)
    manifest = {}
    if (net_dir / "manifest.json").is_file():
        try:
            manifest = json.loads((net_dir / "manifest.json").read_text())
        except json.JSONDecodeError as e:
            _fail(f"{net_dir / 'manifest.json'}:{e.lineno}: {e.msg}")
    inp = manifest.get("input", {})
    modalities = list(inp.get("modalities") or sorted({e.modality for e in net.encoders}))
    if not modalities:
        _fail(f"{net_path}: the network has no encoders, so it takes no skeleton input")
    window = int(inp.get("window") or net.meta.get("window") or _infer_window(net))
    persons = persons or inp.get("persons") or _default_persons(net)
    prepared = _prepared_dir(data, inp.get("benchmark"))
    try:
        ds = SkeletonDataset(prepared, split, window=window, modalities=modalities, train=False,
                             pipeline=inp.get("pipeline", "crop_resize"))
    except (FileNotFoundError, ValueError, KeyError) as e:
        _fail(f"{prepared}: {e}")
    n = len(ds) if samples is None else min(samples, len(ds))
    if n == 0:
        _fail(f"{prepared}: the {split} split is empty")
    if net.readout == "":
        _fail(f"{net_path}: the network has no readout group (no class scores)")
    n_cls = int(np.prod(net.group(net.readout).shape))
    if n_cls != ds.num_classes:
        _fail(f"{net_path}: readout has {n_cls} classes, {prepared} has {ds.num_classes}")

    def batch(lo, hi):
        xs = np.stack([ds.sample(i) for i in range(lo, hi)])           # (B, K, 3, T, V, M)
        if persons == "fold":
            # bodies into channels, channel c * M + m (the student's input layout, net.meta)
            xf = fold_persons(xs)
            return xs, {mod: xf[:, i] for i, mod in enumerate(modalities)}, 1
        if persons == "first":
            xs = xs[..., :1]
        m = xs.shape[-1]
        # persons become extra samples: (B*M, K, 3, T, V), person fastest
        xm = np.moveaxis(xs, -1, 1).reshape(-1, *xs.shape[1:-1])
        return xs, {mod: xm[:, k] for k, mod in enumerate(modalities)}, m

    labels = np.asarray(ds.labels[:n], dtype=np.int64)
    counts = {g.name: np.zeros(g.shape, np.int64) for g in net.groups}
    active = {g.name: np.zeros(g.shape, np.int64) for g in net.groups} if engine == "fast" \
        else None                       # Lava runs record spikes only
    preds = np.zeros(n, np.int64)
    student = _load_student(net_dir, console)
    agree = {"predictions": 0, "compared": 0}
    runs = 0
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"{engine}: {split}", total=n)
            if engine == "fast":
                from mksgn.deploy.engine import Engine
                try:
                    eng = Engine(net, device)
                except ValueError as e:
                    _fail(f"{net_path}: {e}")
                for lo in range(0, n, batch_size):
                    hi = min(n, lo + batch_size)
                    xs, feeds, m = batch(lo, hi)
                    try:
                        res = eng.run({k: torch.from_numpy(v) for k, v in feeds.items()},
                                      record=("active",))
                    except ValueError as e:
                        _fail(f"{net_path}: {e}")
                    runs += (hi - lo) * m
                    scores = res.scores.reshape(hi - lo, m, -1).sum(1).cpu().numpy()
                    preds[lo:hi] = scores.argmax(1)
                    for g, c in res.counts.items():
                        counts[g] += c.sum(0).cpu().numpy().astype(np.int64)
                    for g, c in res.active.items():
                        active[g] += c.sum(0).cpu().numpy()
                    _compare(student, xs, preds[lo:hi], agree)
                    progress.advance(task, hi - lo)
            else:
                from mksgn.deploy.lava_graph import LavaError, LavaNetwork
                try:
                    with LavaNetwork(net, timeout=timeout) as ln:
                        for i in range(n):
                            xs, feeds, m = batch(i, i + 1)
                            total = 0
                            for p in range(m):
                                runs += 1
                                r = ln.run(inputs={k: v[p] for k, v in feeds.items()})
                                total = total + r.scores.reshape(-1)
                                for g, s in r.spikes.items():
                                    counts[g] += s.sum(0)
                            preds[i] = int(np.argmax(total))
                            _compare(student, xs, preds[i:i + 1], agree)
                            progress.advance(task, 1)
                except LavaError as e:
                    _fail(f"{net_path}: {e}")
    except KeyboardInterrupt:
        raise click.Abort() from None

    correct = int((preds == labels).sum())
    report = ActivityReport(
        network_file=str(net_path), network_sha256=sha256(net_path), engine=engine, samples=n,
        runs=runs, num_steps=net.num_steps, split=split, dataset=str(prepared), persons=persons,
        accuracy=correct / n, correct=correct,
        active_updates="recorded" if active is not None else "spikes")
    for g in net.groups:
        tot = int(counts[g.name].sum())
        report.groups[g.name] = GroupActivity(
            neurons=g.size, spikes_per_sample=tot / n,
            firing_rate=tot / (runs * g.size * max(1, net.num_steps)),
            active_per_sample=None if active is None else int(active[g.name].sum()) / n)
    if student is None:
        report.agreement = "n/a"
    elif isinstance(student, str):
        report.agreement = f"n/a ({student})"
    else:
        report.agreement = {"prediction_agreement": agree["predictions"] / max(1, agree["compared"]),
                            "compared": agree["compared"]}
    out = out or net_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "activity.json", lambda t: Path(t).write_text(report.to_json()))

    def write_npz(t):
        with open(t, "wb") as f:
            np.savez(f, samples=np.int64(n), predictions=preds, labels=labels,
                     **{f"spikes/{g}": c for g, c in counts.items()},
                     **{f"active/{g}": c for g, c in (active or {}).items()})
    atomic_write(out / "activity.npz", write_npz)

    table = Table(title=f"{net_path} on {split} ({n} samples, {engine} engine)")
    if active is not None:
        table.caption = "active: share of neuron-steps with a non-zero state or a spike"
    for col in ("group", "neurons", "spikes/sample", "firing rate", "active"):
        table.add_column(col, justify="right" if col != "group" else "left")
    for name, a in report.groups.items():
        busy = "-" if a.active_per_sample is None else \
            f"{a.active_per_sample * n / (runs * a.neurons * max(1, net.num_steps)):.4f}"
        table.add_row(name, str(a.neurons), f"{a.spikes_per_sample:.1f}", f"{a.firing_rate:.4f}",
                      busy)
    console.print(table)
    console.print(f"accuracy {report.accuracy:.4f} ({correct}/{n})")
    ag = report.agreement
    console.print("agreement with the PyTorch quantised student: " + (
        f"{ag['prediction_agreement']:.4f} of predictions" if isinstance(ag, dict) else ag))
    console.print(f"wrote {out / 'activity.json'} and {out / 'activity.npz'}")


def _infer_window(net) -> int:
    """The encoder input window when nothing else says: the first encoder's dst T (stride 1)."""
    for e in net.encoders:
        return int(net.group(e.dst).shape[1]) * int(e.stride[0])
    return 64


def _load_student(net_dir: Path, console):
    """The quantised PyTorch student from DIR/student.pt, a reason string, or None if absent."""
    path = net_dir / "student.pt"
    if not path.is_file():
        return None
    try:
        from mksgn.train.checkpoint import load_model
    except ImportError:
        return "mksgn.train.checkpoint is not available"
    try:
        model, _info = load_model(path)
        model.eval()
        return model
    except Exception as e:  # noqa: BLE001 - a broken checkpoint must not stop the simulation
        return f"could not load {path.name}: {type(e).__name__}: {e}"


def _default_persons(net) -> str:
    """'fold' when the encoders take all bodies as channels (3 * M), else one run per body."""
    folded = any(e.weight.shape[1] > 3 for e in net.encoders)
    return "fold" if folded else "merge"


def _compare(student, xs: np.ndarray, preds: np.ndarray, agree: dict) -> None:
    if student is None or isinstance(student, str):
        return
    import torch
    with torch.no_grad():
        logits = student(torch.from_numpy(np.ascontiguousarray(xs))).logits
    agree["predictions"] += int((logits.argmax(1).cpu().numpy() == preds).sum())
    agree["compared"] += len(preds)


# ---------------------------------------------------------------------------------------------
@click.command("run")
@click.argument("net_file", metavar="NET.net", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--steps", required=True, type=click.IntRange(min=1), help="Time steps to run.")
@click.option("--input", "input_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Input sequence .npy in netx order (x, y, z, t) or (n, t): spikes into the "
                   "first layer's synapses, or currents into an input layer's neurons.")
@click.option("--input-bias", "bias_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Bias mantissa .npy of the input layer, netx order (x, y, z) or (n,).")
@click.option("--input-shape", default=None, metavar="C,H,W",
              help="Input shape for a file that starts with a conv layer (netx's input_shape, "
                   "file order C,H,W).")
@click.option("--layers", "num_layers", type=click.IntRange(min=1), default=None,
              help="Run only the first N layers of the file (netx's num_layers).")
@click.option("--reset-interval", type=click.IntRange(min=1), default=None,
              help="Reset every CUBA layer's u and v every R steps (netx's reset_interval).")
@click.option("--engine", default="fast", show_default=True, type=click.Choice(["fast", "lava"]))
@click.option("--record", default="s", show_default=True,
              help="What to save per layer and step, comma separated: s (output messages) and "
                   "neuron states: u,v (CUBA), sigma,act,residue (SDNN), real,imag (RF).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Output .npz: `spikes` (output layer, x, y, z, t) and `<layer>/<name>`.")
@click.option("--timeout", type=float, default=None, help="Stop a Lava run after this many s.")
@click.option("--compile", "compile_", is_flag=True,
              help="Fast engine: fuse the neuron updates with torch.compile (same results; "
                   "pays off on long runs, costs seconds to compile).")
def run(net_file: Path, steps: int, input_path: Path | None, bias_path: Path | None,
        input_shape: str | None, num_layers: int | None, reset_interval: int | None,
        engine: str, record: str, out: Path, timeout: float | None, compile_: bool) -> None:
    """Run a lava-dl netx file on one input, bit-exactly (fast engine or Lava).

    \b
    Runs everything netx builds: input, flatten, dense (with delays),
    dense_rec and conv layers; CUBA, LOIHI, SDNN (graded sigma-delta,
    sigma_output) and RF/RF_IZ (complex dense) neurons. Layer types netx
    lists but cannot build (pool, convT, unpool, concat, average,
    dense_comp) get mksgn's semantics (mksgn.netx_io.LAYER_TYPES).
    --engine lava runs stock netx.hdf5.Network, or for those layers the
    same network built from Lava processes. Arrays use netx's (x, y, z[, t])
    order: x = width, y = height, z = channels. Graded outputs are saved as
    integers.
    """
    import torch

    from mksgn import netx_io
    from mksgn.deploy import engine as fast

    rec = tuple(dict.fromkeys(r.strip() for r in record.split(",") if r.strip()))
    if (input_path is None) == (bias_path is None):
        _fail("give exactly one of --input X.npy or --input-bias B.npy")
    if not net_file.is_file():
        _fail(f"{net_file}: no such file")
    shape_in = None
    if input_shape is not None:
        try:
            shape_in = tuple(int(x) for x in input_shape.split(","))
        except ValueError:
            _fail(f"--input-shape: give integers like 2,32,32, got {input_shape!r}")
    try:
        net = netx_io.read(net_file, input_shape=shape_in, num_layers=num_layers)
    except netx_io.NetxFormatError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"{net_file}: cannot read: {e}")
    known = {"s", "u", "v"} | {k for g in net.groups if g.model is not None
                               for k in g.model.states}
    if set(rec) - known:
        _fail(f"--record: {', '.join(sorted(set(rec) - known))} is no state of this network "
              f"(it has {', '.join(sorted(known))})")
    first = net.groups[0]

    def load(p: Path) -> np.ndarray:
        if not p.is_file():
            _fail(f"{p}: no such file")
        try:
            return np.load(p)
        except (OSError, ValueError) as e:
            _fail(f"{p}: not a .npy array: {e}")

    netx_shape = tuple(first.shape[::-1]) if len(first.shape) == 3 else tuple(first.shape)
    spikes_in = current = bias = None
    if input_path is not None:
        x = load(input_path)
        if tuple(x.shape[:-1]) != netx_shape or x.shape[-1] < steps:
            _fail(f"{input_path}: shape {tuple(x.shape)} does not match the network input "
                  f"{netx_shape + (steps,)} (x, y, z, t)")
        x = np.moveaxis(netx_io.from_netx_array(x), -1, 0)[:steps]         # (t, C, H, W)
        if first.source:
            spikes_in = x
        else:
            current = x.astype(np.int64)
    else:
        if first.source:
            _fail(f"{net_file}: the first layer has no neurons, so it has no bias; use --input")
        if first.model is not None and not getattr(first.model, "has_bias", False):
            _fail(f"{net_file}: the input layer's {type(first.model).__name__} neurons have no "
                  f"bias; use --input (currents)")
        b = load(bias_path)
        if tuple(b.shape) != netx_shape:
            _fail(f"{bias_path}: shape {tuple(b.shape)} does not match the input layer "
                  f"{netx_shape} (x, y, z)")
        bias = netx_io.from_netx_array(b).astype(np.int64)
    if bias is not None:
        from mksgn import loihi
        if bias.min() < loihi.BIAS_MANT_MIN or bias.max() > loihi.BIAS_MANT_MAX:
            _fail(f"{bias_path}: bias mantissas must lie in [{loihi.BIAS_MANT_MIN}, "
                  f"{loihi.BIAS_MANT_MAX}]")

    layers = [m["group"] for m in net.meta["layers"]]
    netx_ok = net.meta["netx"] == "ok"
    if not netx_ok:
        click.echo(f"note: stock netx cannot build {net_file} ({net.meta['netx']}); "
                   f"running mksgn's semantics of that layer type")
    want = tuple(dict.fromkeys(("s",) + rec))
    if engine == "fast":
        kw = {}
        if spikes_in is not None:
            kw["source_spikes"] = {first.name: torch.from_numpy(spikes_in != 0)[None]}
        if current is not None:
            kw["currents"] = {first.name: torch.from_numpy(current)[None]}
        if bias is not None:
            kw["biases"] = {first.name: torch.from_numpy(bias)[None]}
        try:
            res = fast.Engine(net, "cpu", compile=compile_).run(
                None, num_steps=steps, record=want, reset_interval=reset_interval, **kw)
        except ValueError as e:
            _fail(f"{net_file}: {e}")
        per = {"s": {g: res.spikes[g][0].cpu().numpy() for g in layers}}
        for k in rec:
            if k != "s":
                per[k] = {g: x[0].cpu().numpy() for g, x in res.states.get(k, {}).items()
                          if g in layers}
    else:
        from mksgn.deploy.lava_graph import LavaError, run_netx, run_netx_graph
        runner = run_netx if netx_ok else run_netx_graph
        try:
            lr = runner(net_file, steps, input_spikes=spikes_in, input_current=current,
                        input_bias=bias, reset_interval=reset_interval, record=want,
                        timeout=timeout, num_layers=num_layers, input_shape=shape_in)
        except LavaError as e:
            _fail(f"{net_file}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        except KeyboardInterrupt:
            raise click.Abort() from None
        per = {"s": lr.spikes}
        for k in rec:
            if k != "s":
                per[k] = lr.states.get(k, {})

    def netx_order(a: np.ndarray) -> np.ndarray:        # (t, *ours) -> netx (*xyz, t)
        return netx_io.to_netx_array(np.moveaxis(a, 0, -1))

    def as_saved(a: np.ndarray) -> np.ndarray:
        return a.astype(np.uint8) if a.dtype == bool else a.astype(np.int64)

    arrays = {"spikes": as_saved(netx_order(per["s"][layers[-1]]))}
    for k in rec:
        for g, a in per.get(k, {}).items():
            arrays[f"{g}/{k}"] = as_saved(netx_order(a))
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(t):
        with open(t, "wb") as f:
            np.savez(f, **arrays)
    atomic_write(out, write)
    total = int(np.count_nonzero(arrays["spikes"]))
    click.echo(f"{net_file}: {steps} steps on {engine}; output layer {layers[-1]} "
               f"{tuple(arrays['spikes'].shape[:-1])} sent {total} messages; wrote {out}")
