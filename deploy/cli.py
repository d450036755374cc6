"""``mksgn simulate`` and ``mksgn run``: a converted student on a test split, or any netx file.

``simulate`` evaluates DIR/model.net on a prepared split with the fast engine (``--engine fast``,
the default) or Lava's bit-accurate simulator (``--engine lava``), and writes the activity file
(``OUT/activity.json`` and ``OUT/activity.npz``, format ``mksgn.activity``) that the energy stage
reads; with ``--spike-trains N`` also the first N samples' per-step spikes
(``OUT/spike_trains.npz``, format ``mksgn.spike_trains``). ``run`` runs one input through a netx file, fed and recorded as lava-dl's
``io.source.RingBuffer`` and ``io.sink.RingBuffer`` would, and saves spikes (and u, v); on a
converted student's model.net the input is one skeleton (``deploy.skeleton_input``), and the
class scores are saved too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click
import numpy as np

from mksgn import activity, netx_io
from mksgn.files import atomic_write, sha256
from mksgn.netgraph import Network

from .skeleton_input import InputError, class_name, encoder_feeds, network_input


def _fail(msg: str):
    raise click.ClickException(msg)


class BadInput(click.ClickException):
    """Input data that cannot mean anything (NaN, inf, not numbers): one line, exit status 2."""
    exit_code = 2


def _load_network(path: Path) -> Network:
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
# simulate

@dataclass
class _Evaluation:
    """What ``simulate`` evaluates: the network, the split and how a sample becomes its input."""
    net: Network
    net_path: Path
    ds: object                         # mksgn.data.dataset.SkeletonDataset
    prepared: Path
    modalities: list[str]
    persons: str                       # fold | merge | first
    n: int                             # samples evaluated

    def feeds(self, lo: int, hi: int) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
        """Samples lo..hi: (xs (B, K, 3, T, V, M), {modality: (B*m, C, T, V)}, m runs each)."""
        xs = np.stack([self.ds.sample(i) for i in range(lo, hi)])
        return xs, *encoder_feeds(xs, self.modalities, self.persons)


@dataclass
class _Tally:
    """What the runs add up: per-group counts (int64, group shape), predictions, agreement."""
    counts: dict[str, np.ndarray]
    active: dict[str, np.ndarray] | None          # None: spikes only (Lava)
    preds: np.ndarray
    runs: int = 0
    agree: dict = field(default_factory=lambda: {"predictions": 0, "compared": 0})
    trains_wanted: int = 0                        # samples whose per-step spikes are kept
    trains: list = field(default_factory=list)    # per batch: (spikes, active) of kept runs

    @classmethod
    def empty(cls, net: Network, n: int, record_active: bool) -> "_Tally":
        zeros = lambda: {g.name: np.zeros(g.shape, np.int64) for g in net.groups}  # noqa: E731
        return cls(zeros(), zeros() if record_active else None, np.zeros(n, np.int64))


def _read_manifest(net_dir: Path) -> dict:
    path = net_dir / "manifest.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        _fail(f"{path}:{e.lineno}: {e.msg}")


def _evaluation(net_dir: Path, data: Path, split: str, samples: int | None,
                persons: str | None) -> _Evaluation:
    """Load DIR/model.net, its manifest and the split; one-line errors for what does not fit."""
    from mksgn.data.dataset import SkeletonDataset

    net_path = net_dir / "model.net"
    net = _load_network(net_path)
    inp = _read_manifest(net_dir).get("input", {})
    modalities = list(inp.get("modalities") or sorted({e.modality for e in net.encoders}))
    if not modalities:
        _fail(f"{net_path}: the network has no encoders, so it takes no skeleton input")
    window = int(inp.get("window") or net.meta.get("window") or _infer_window(net))
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
    return _Evaluation(net, net_path, ds, prepared, modalities,
                       persons or inp.get("persons") or _default_persons(net), n)


def _simulate_fast(ev: _Evaluation, tally: _Tally, student, batch_size: int,
                   device: str | None, advance: Callable[[int], None]) -> None:
    import torch

    from mksgn.deploy.engine import Engine
    try:
        eng = Engine(ev.net, device)
    except ValueError as e:
        _fail(f"{ev.net_path}: {e}")
    for lo in range(0, ev.n, batch_size):
        hi = min(ev.n, lo + batch_size)
        xs, feeds, m = ev.feeds(lo, hi)
        try:
            keep = lo < tally.trains_wanted       # this batch holds samples whose trains we keep
            res = eng.run({k: torch.from_numpy(v) for k, v in feeds.items()},
                          record=("active", "s") if keep else ("active",))
        except ValueError as e:
            _fail(f"{ev.net_path}: {e}")
        tally.runs += (hi - lo) * m
        scores = res.scores.reshape(hi - lo, m, -1).sum(1).cpu().numpy()
        tally.preds[lo:hi] = scores.argmax(1)
        for g, c in res.counts.items():
            tally.counts[g] += c.sum(0).cpu().numpy().astype(np.int64)
        for g, c in res.active.items():
            tally.active[g] += c.sum(0).cpu().numpy()
        if keep:
            r = (min(hi, tally.trains_wanted) - lo) * m                    # runs kept
            tally.trains.append(({g: x[:r].cpu().numpy() for g, x in res.spikes.items()},
                                 {g: x[:r].cpu().numpy() for g, x in res.active.items()}))
        _compare(student, xs, tally.preds[lo:hi], tally.agree)
        advance(hi - lo)


def _simulate_lava(ev: _Evaluation, tally: _Tally, student, timeout: float | None,
                   advance: Callable[[int], None]) -> None:
    from mksgn.deploy.lava_graph import LavaError, LavaNetwork
    try:
        with LavaNetwork(ev.net, timeout=timeout) as ln:
            for i in range(ev.n):
                xs, feeds, m = ev.feeds(i, i + 1)
                total = 0
                for p in range(m):
                    tally.runs += 1
                    r = ln.run(inputs={k: v[p] for k, v in feeds.items()})
                    total = total + r.scores.reshape(-1)
                    for g, s in r.spikes.items():
                        tally.counts[g] += s.sum(0)
                tally.preds[i] = int(np.argmax(total))
                _compare(student, xs, tally.preds[i:i + 1], tally.agree)
                advance(1)
    except LavaError as e:
        _fail(f"{ev.net_path}: {e}")


def _agreement(student, agree: dict) -> dict | str:
    if student is None:
        return "n/a"
    if isinstance(student, str):
        return f"n/a ({student})"
    return {"prediction_agreement": agree["predictions"] / max(1, agree["compared"]),
            "compared": agree["compared"]}


def _activity(ev: _Evaluation, tally: _Tally, engine: str, split: str, labels: np.ndarray,
              student) -> tuple[activity.ActivityReport, activity.Activity]:
    """The activity file's two halves: the report (json) and the counts (npz)."""
    act = activity.Activity(counts=tally.counts, samples=ev.n, num_steps=ev.net.num_steps,
                            runs=tally.runs, engine=engine, network_sha256=sha256(ev.net_path),
                            active=tally.active)
    correct = int((tally.preds == labels).sum())
    report = activity.ActivityReport(
        network_file=str(ev.net_path), network_sha256=act.network_sha256, engine=engine,
        samples=ev.n, runs=tally.runs, num_steps=ev.net.num_steps, split=split,
        dataset=str(ev.prepared), persons=ev.persons, accuracy=correct / ev.n, correct=correct,
        groups=activity.group_summary(ev.net, act), agreement=_agreement(student, tally.agree),
        active_updates=act.active_rule)
    return report, act


def _print_activity(console, report: activity.ActivityReport, paths: tuple[Path, Path]) -> None:
    from rich.table import Table

    n, steps = report.samples, max(1, report.num_steps)
    table = Table(title=f"{report.network_file} on {report.split} ({n} samples, "
                        f"{report.engine} engine)")
    if report.active_updates == "recorded":
        table.caption = "active: share of neuron-steps with a non-zero state or a spike"
    for col in ("group", "neurons", "spikes/sample", "firing rate", "active"):
        table.add_column(col, justify="right" if col != "group" else "left")
    for name, a in report.groups.items():
        busy = "-" if a.active_per_sample is None else \
            f"{a.active_per_sample * n / (report.runs * a.neurons * steps):.4f}"
        table.add_row(name, str(a.neurons), f"{a.spikes_per_sample:.1f}", f"{a.firing_rate:.4f}",
                      busy)
    console.print(table)
    console.print(f"accuracy {report.accuracy:.4f} ({report.correct}/{n})")
    ag = report.agreement
    console.print("agreement with the PyTorch quantised student: " + (
        f"{ag['prediction_agreement']:.4f} of predictions" if isinstance(ag, dict) else ag))
    console.print(f"wrote {paths[0]} and {paths[1]}")


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
@click.option("--spike-trains", "train_samples", type=click.IntRange(min=1), default=None,
              metavar="N", help="Also keep which neuron fired at which step in the first N "
              "samples (OUT/spike_trains.npz; fast engine), for `mksgn energy --backend sanafe`.")
def simulate(net_dir: Path, data: Path, split: str, samples: int | None, engine: str,
             out: Path | None, batch_size: int, device: str | None, persons: str | None,
             timeout: float | None, train_samples: int | None = None) -> None:
    """Evaluate DIR/model.net on a prepared split: accuracy, per-layer activity, agreement.

    Reads DIR/model.net (from `mksgn convert`) and DIR/manifest.json when present (input
    modalities, window, dataset, benchmark). Prints accuracy, spikes per sample and firing rate
    of every neuron group, and the agreement with the PyTorch quantised student when DIR holds
    student.pt; writes OUT/activity.json (read by the energy stage) and OUT/activity.npz.
    """
    from rich.console import Console
    from rich.progress import Progress

    console = Console()
    ev = _evaluation(net_dir, data, split, samples, persons)
    labels = np.asarray(ev.ds.labels[:ev.n], dtype=np.int64)
    tally = _Tally.empty(ev.net, ev.n, record_active=engine == "fast")   # Lava: spikes only
    if train_samples is not None:
        if engine != "fast":
            raise click.UsageError("--spike-trains needs --engine fast")
        tally.trains_wanted = min(train_samples, ev.n)
    student = _load_student(net_dir)
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"{engine}: {split}", total=ev.n)
            advance = lambda k: progress.advance(task, k)  # noqa: E731
            if engine == "fast":
                _simulate_fast(ev, tally, student, batch_size, device, advance)
            else:
                _simulate_lava(ev, tally, student, timeout, advance)
    except KeyboardInterrupt:
        raise click.Abort() from None
    report, act = _activity(ev, tally, engine, split, labels, student)
    paths = activity.write(out or net_dir, report, act, tally.preds, labels)
    _print_activity(console, report, paths)
    if tally.trains:
        _write_trains(out or net_dir, tally, ev, act.network_sha256, console)


def _write_trains(out: Path, tally: _Tally, ev: _Evaluation, network_sha256: str,
                  console) -> None:
    """OUT/spike_trains.npz: the kept runs' per-step spikes and active counts."""
    from mksgn import spike_trains

    cat = lambda i: {g: np.concatenate([b[i][g] for b in tally.trains])  # noqa: E731
                     for g in tally.trains[0][i]}
    st = spike_trains.SpikeTrains(cat(0), cat(1), samples=tally.trains_wanted,
                                  num_steps=ev.net.num_steps, network_sha256=network_sha256)
    console.print(f"wrote {spike_trains.write(out, st)} ({st.runs} runs of "
                  f"{st.samples} samples)")


def _infer_window(net) -> int:
    """The encoder input window when nothing else says: the first encoder's dst T (stride 1)."""
    for e in net.encoders:
        return int(net.group(e.dst).shape[1]) * int(e.stride[0])
    return 64


def _load_student(net_dir: Path):
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
# run

@dataclass
class _Drive:
    """How one ``run`` drives the first group, in our (steps, C, H, W) / (steps, N) order:
    ``spikes`` into a source group (non-zero = spike), ``current`` (int64) into the input
    layer's neurons, or a constant ``bias`` mantissa (int64, group shape)."""
    spikes: np.ndarray | None = None
    current: np.ndarray | None = None
    bias: np.ndarray | None = None
    frames: int = 0                    # the input's own time axis, before ring-buffer cycling


def ring_buffer(frames: np.ndarray, steps: int) -> np.ndarray:
    """lava's ``io.source.RingBuffer``: step t (1-based) sends ``data[..., (t - 1) % T]``; on
    time-first ``frames`` (T, ...) that is ``frames[arange(steps) % T]``, (steps, ...)."""
    return frames[np.arange(steps) % len(frames)]


def _load_array(p: Path) -> np.ndarray:
    """A .npy array of real numbers; NaN, inf or a non-numeric dtype are a one-line exit 2."""
    if not p.is_file():
        _fail(f"{p}: no such file")
    try:
        a = np.load(p)
    except (OSError, ValueError) as e:
        _fail(f"{p}: not a .npy array: {e}")
    if not isinstance(a, np.ndarray):
        a.close()
        _fail(f"{p}: an .npz archive; give one .npy array")
    if a.dtype.kind not in "biuf":
        raise BadInput(f"{p}: dtype {a.dtype}; give integers or real numbers")
    bad = np.argwhere(~np.isfinite(a)) if a.dtype.kind == "f" else ()
    if len(bad):
        first = tuple(int(i) for i in bad[0])
        raise BadInput(f"{p}: NaN or infinite values ({len(bad)} of {a.size}, the first "
                       f"{a[first]} at {first}); inputs must be finite numbers")
    return a


def _input_frames(x: np.ndarray, path: Path, net: Network, steps: int) -> np.ndarray:
    """(T, *first group shape) from a time-last input in netx order: the first layer's shape
    (x, y, z, T) / (N, T), or lava-dl's input port shape (``netx_io.input_port_shape``: (N, T)
    for a dense first block). Any T >= 1 (``ring_buffer`` cycles it).

    The rule where forms meet: the last axis is always time and every array is read as the
    RingBuffer reads it, so an (x, y, z, t) array with t < steps cycles (once refused) and
    t > steps uses its first frames. Port and layer shapes differ only as flat (N,) against
    (x, y, z), so no array fits both with different meanings."""
    first = net.groups[0]
    layer, port = netx_io.to_netx_shape(first.shape), netx_io.input_port_shape(net)
    forms = (layer,) if port == layer else (layer, port)
    got = tuple(x.shape)
    if x.ndim == 0 or got[-1] == 0 or got[:-1] not in forms:
        want = " or ".join(str(f + (steps,)) for f in forms)
        _fail(f"{path}: shape {got} does not match the network input {want} (netx order, "
              f"time last; a shorter time axis cycles)")
    if got[:-1] == layer:
        ours = netx_io.from_netx_array(x)                       # (C, H, W, T) / (N, T)
    else:
        ours = x.reshape(*first.shape, got[-1])                  # the row-major (C, H, W) index
    return np.moveaxis(ours, -1, 0)


def _sequence_drive(net: Network, path: Path, steps: int) -> _Drive:
    frames = _input_frames(_load_array(path), path, net, steps)
    x = ring_buffer(frames, steps)
    if net.groups[0].source:
        return _Drive(spikes=x, frames=len(frames))
    return _Drive(current=x.astype(np.int64), frames=len(frames))


def _bias_drive(net: Network, net_file: Path, path: Path) -> _Drive:
    from mksgn import loihi
    first = net.groups[0]
    if first.source:
        _fail(f"{net_file}: the first layer has no neurons, so it has no bias; use --input")
    if first.model is not None and not getattr(first.model, "has_bias", False):
        _fail(f"{net_file}: the input layer's {type(first.model).__name__} neurons have no "
              f"bias; use --input (currents)")
    b = _load_array(path)
    layer = netx_io.to_netx_shape(first.shape)
    if tuple(b.shape) != layer:
        _fail(f"{path}: shape {tuple(b.shape)} does not match the input layer {layer} (x, y, z)")
    bias = netx_io.from_netx_array(b).astype(np.int64)
    if bias.min() < loihi.BIAS_MANT_MIN or bias.max() > loihi.BIAS_MANT_MAX:
        _fail(f"{path}: bias mantissas must lie in [{loihi.BIAS_MANT_MIN}, "
              f"{loihi.BIAS_MANT_MAX}]")
    return _Drive(bias=bias)


def _read_netx(net_file: Path, input_shape: str | None, num_layers: int | None):
    """(network, input shape in our (C, H, W) order or None) of a netx file; one-line errors."""
    if not net_file.is_file():
        _fail(f"{net_file}: no such file")
    shape_in = None
    if input_shape is not None:
        try:
            shape_in = tuple(int(x) for x in input_shape.split(","))
        except ValueError:
            _fail(f"--input-shape: give integers like 2,32,32, got {input_shape!r}")
    try:
        return netx_io.read(net_file, input_shape=shape_in, num_layers=num_layers), shape_in
    except netx_io.NetxFormatError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"{net_file}: cannot read: {e}")


def _record_names(net: Network, record: str) -> tuple[str, ...]:
    rec = tuple(dict.fromkeys(r.strip() for r in record.split(",") if r.strip()))
    known = {"s", "u", "v"} | {k for g in net.groups if g.model is not None
                               for k in g.model.states}
    if set(rec) - known:
        _fail(f"--record: {', '.join(sorted(set(rec) - known))} is no state of this network "
              f"(it has {', '.join(sorted(known))})")
    return rec


def _run_fast(net: Network, net_file: Path, drive: _Drive, steps: int, want: tuple[str, ...],
              reset_interval: int | None, compile_: bool) -> dict[str, dict[str, np.ndarray]]:
    """{"s" or state: {group: (steps, *shape)}} from the fast engine."""
    import torch

    from mksgn.deploy import engine as fast
    first, kw = net.groups[0].name, {}
    if drive.spikes is not None:
        kw["source_spikes"] = {first: torch.from_numpy(drive.spikes != 0)[None]}
    if drive.current is not None:
        kw["currents"] = {first: torch.from_numpy(drive.current)[None]}
    if drive.bias is not None:
        kw["biases"] = {first: torch.from_numpy(drive.bias)[None]}
    try:
        res = fast.Engine(net, "cpu", compile=compile_).run(
            None, num_steps=steps, record=want, reset_interval=reset_interval, **kw)
    except ValueError as e:
        _fail(f"{net_file}: {e}")
    layers = [m["group"] for m in net.meta["layers"]]
    per = {"s": {g: res.spikes[g][0].cpu().numpy() for g in layers}}
    for k in want:
        if k != "s":
            per[k] = {g: x[0].cpu().numpy() for g, x in res.states.get(k, {}).items()
                      if g in layers}
    return per


def _run_lava(net: Network, net_file: Path, drive: _Drive, steps: int, want: tuple[str, ...],
              reset_interval: int | None, timeout: float | None, num_layers: int | None,
              shape_in: tuple[int, ...] | None) -> dict[str, dict[str, np.ndarray]]:
    """The same from Lava: stock netx, or for layers netx cannot build, Lava processes."""
    from mksgn.deploy.lava_graph import LavaError, run_netx, run_netx_graph
    spikes = drive.spikes
    if net.meta["netx"] == "ok":
        runner = run_netx
        if spikes is not None and len(netx_io.input_port_shape(net)) == 1:
            spikes = spikes.reshape(steps, -1)      # stock netx: a dense block's flat port
    else:
        runner = run_netx_graph
    try:
        lr = runner(net_file, steps, input_spikes=spikes, input_current=drive.current,
                    input_bias=drive.bias, reset_interval=reset_interval, record=want,
                    timeout=timeout, num_layers=num_layers, input_shape=shape_in)
    except LavaError as e:
        _fail(f"{net_file}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    except KeyboardInterrupt:
        raise click.Abort() from None
    return {"s": lr.spikes, **{k: lr.states.get(k, {}) for k in want if k != "s"}}


def _netx_outputs(per: dict[str, dict[str, np.ndarray]], last: str,
                  rec: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The saved arrays in netx layer shapes with time last (lava's ``io.sink.RingBuffer``):
    ``spikes`` of the last layer and ``<layer>/<name>`` of each recorded name; uint8 for
    binary spikes, int64 for graded messages and states."""
    def saved(a: np.ndarray) -> np.ndarray:               # (t, *ours) -> netx (*xyz, t)
        a = netx_io.to_netx_array(np.moveaxis(a, 0, -1))
        return a.astype(np.uint8) if a.dtype == bool else a.astype(np.int64)

    arrays = {"spikes": saved(per["s"][last])}
    for k in rec:
        for g, a in per.get(k, {}).items():
            arrays[f"{g}/{k}"] = saved(a)
    return arrays


def _save_npz(out: Path, arrays: dict[str, np.ndarray]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(t):
        with open(t, "wb") as f:
            np.savez(f, **arrays)
    atomic_write(out, write)


def _is_graph_network(path: Path) -> bool:
    """A converted student's model.net: an /mksgn graph without a stock-netx /layer section."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            return "mksgn" in f and "layer" not in f
    except OSError:
        return False


def _recorded(res, name: str) -> dict:
    """group -> array of one recorded name of an engine or Lava result ("s": spikes)."""
    if name == "s":
        return res.spikes
    return res.states.get(name) or getattr(res, name, None) or {}


def _graph_fast(net: Network, net_file: Path, feeds: dict[str, np.ndarray],
                want: tuple[str, ...]) -> tuple[np.ndarray, dict]:
    """(scores (runs, classes) int64, {name: {group: (runs, steps, *shape)}}) from the engine."""
    import torch

    from mksgn.deploy.engine import Engine
    try:
        res = Engine(net, "cpu").run({k: torch.from_numpy(v) for k, v in feeds.items()},
                                     record=want)
    except ValueError as e:
        _fail(f"{net_file}: {e}")
    per = {k: {g: x.cpu().numpy() for g, x in _recorded(res, k).items()} for k in want}
    return res.scores.cpu().numpy(), per


def _graph_lava(net: Network, net_file: Path, feeds: dict[str, np.ndarray], runs: int,
                want: tuple[str, ...], timeout: float | None) -> tuple[np.ndarray, dict]:
    """The same from Lava's fixed_pt simulator, one run at a time."""
    from mksgn.deploy.lava_graph import LavaError, LavaNetwork
    try:
        with LavaNetwork(net, timeout=timeout) as ln:
            rs = [ln.run(inputs={k: v[p] for k, v in feeds.items()}, record=want)
                  for p in range(runs)]
    except LavaError as e:
        _fail(f"{net_file}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    except KeyboardInterrupt:
        raise click.Abort() from None
    per = {k: {g: np.stack([_recorded(r, k)[g] for r in rs]) for g in _recorded(rs[0], k)}
           for k in want}
    return np.stack([r.scores.reshape(-1) for r in rs]), per


def _run_graph(net_file: Path, input_path: Path | None, steps: int | None, engine: str,
               record: str, out: Path, timeout: float | None) -> None:
    """``run`` on a converted student: one skeleton file through its encoders to class scores."""
    if input_path is None:
        _fail(f"{net_file}: a student network takes --input SKELETON (a dataset file or a "
              f"prepared .npy row)")
    net = _load_network(net_file)
    if steps is not None and steps != net.num_steps:
        _fail(f"--steps {steps}: {net_file} runs {net.num_steps} steps per sample (its frames "
              f"times spike steps plus latency); leave --steps out")
    manifest = net_file.parent / "manifest.json"
    inp = _read_manifest(net_file.parent).get("input")
    if not inp:
        _fail(f"{manifest}: missing or without an input section; `mksgn convert` writes it "
              f"beside model.net")
    try:
        xs = network_input(input_path, inp, manifest)
    except InputError as e:
        _fail(str(e))
    persons = inp.get("persons") or _default_persons(net)
    feeds, runs = encoder_feeds(xs, list(inp["modalities"]), persons)
    want = tuple(dict.fromkeys(("s",) + _record_names(net, record)))
    scores, per = (_graph_fast(net, net_file, feeds, want) if engine == "fast"
                   else _graph_lava(net, net_file, feeds, runs, want, timeout))
    total = scores.astype(np.int64).sum(0)
    pred = int(np.argmax(total))
    arrays = {"scores": total, "prediction": np.int64(pred)}
    for k in want:                           # (runs, steps, *shape) -> (runs, *shape, steps)
        for g, a in per[k].items():
            a = np.moveaxis(a, 1, -1)
            arrays[f"{g}/{k}"] = a.astype(np.uint8) if a.dtype == bool else a.astype(np.int64)
    _save_npz(out, arrays)
    click.echo(f"{input_path.name}: class {pred} ({class_name(inp['dataset'], pred)}), score "
               f"{int(total[pred])}; {net.num_steps} steps on {engine}, {runs} run(s); "
               f"wrote {out}")


@click.command("run")
@click.argument("net_file", metavar="NET.net", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--steps", type=click.IntRange(min=1),
              help="Time steps to run (netx files; a student's model.net runs its own).")
@click.option("--input", "input_path", type=click.Path(path_type=Path, dir_okay=False),
              help="netx file: input .npy, time last, as lava-dl's RingBuffer takes it: the "
                   "input layer's (x, y, z, T) or (n, T), or the (n, T) of a dense first "
                   "block; step t reads frame t mod T. Spikes into the first layer's "
                   "synapses, or currents into an input layer's neurons. A student's "
                   "model.net: one skeleton, a raw dataset file (NW-UCLA .json, NTU "
                   ".skeleton) or a prepared (3, T, V, M) .npy row.")
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
    """Run a lava-dl netx file, or a converted student, on one input,
    bit-exactly (fast engine or Lava).

    \b
    Runs everything netx builds: input, flatten, dense (with delays),
    dense_rec and conv layers; CUBA, LOIHI, SDNN (graded sigma-delta,
    sigma_output) and RF/RF_IZ (complex dense) neurons. Layer types netx
    lists but cannot build (pool, convT, unpool, concat, average,
    dense_comp) get mksgn's semantics (mksgn.netx_io.LAYER_TYPES).
    --engine lava runs stock netx.hdf5.Network, or for those layers the
    same network built from Lava processes. Arrays use netx's (x, y, z[, t])
    order: x = width, y = height, z = channels. --input takes what
    lava-dl's io.source.RingBuffer takes, a shorter time axis cycling;
    the outputs are what io.sink.RingBuffer gives. Graded outputs are
    saved as integers.

    \b
    A converted student's model.net (mksgn convert) takes one skeleton:
      mksgn run runs/shipped/model.net --input a01_s01_e00_v03.json \\
          --out one.npz
    prepared by the manifest beside it as simulate prepares a test
    sample; it saves `scores`, `prediction` and every group's recorded
    arrays, one row per run, time last.
    """
    if _is_graph_network(net_file):
        netx_only = [o for o, v in (("--input-bias", bias_path), ("--input-shape", input_shape),
                                    ("--layers", num_layers), ("--reset-interval", reset_interval),
                                    ("--compile", compile_ or None)) if v is not None]
        if netx_only:
            _fail(f"{net_file}: a student network (give --input SKELETON); "
                  f"{', '.join(netx_only)}: netx files only")
        _run_graph(net_file, input_path, steps, engine, record, out, timeout)
        return
    if steps is None:
        _fail("--steps: required for a netx file")
    if (input_path is None) == (bias_path is None):
        _fail("give exactly one of --input X.npy or --input-bias B.npy")
    net, shape_in = _read_netx(net_file, input_shape, num_layers)
    rec = _record_names(net, record)
    drive = _sequence_drive(net, input_path, steps) if input_path is not None \
        else _bias_drive(net, net_file, bias_path)
    if net.meta["netx"] != "ok":
        click.echo(f"note: stock netx cannot build {net_file} ({net.meta['netx']}); "
                   f"running mksgn's semantics of that layer type")
    if 0 < drive.frames < steps:
        click.echo(f"note: {input_path}: time axis T = {drive.frames} for {steps} steps; step t "
                   f"reads frame t mod T, as lava-dl's RingBuffer does")
    want = tuple(dict.fromkeys(("s",) + rec))
    if engine == "fast":
        per = _run_fast(net, net_file, drive, steps, want, reset_interval, compile_)
    else:
        per = _run_lava(net, net_file, drive, steps, want, reset_interval, timeout, num_layers,
                        shape_in)
    last = net.meta["layers"][-1]["group"]
    arrays = _netx_outputs(per, last, rec)
    _save_npz(out, arrays)
    total = int(np.count_nonzero(arrays["spikes"]))
    click.echo(f"{net_file}: {steps} steps on {engine}; output layer {last} "
               f"{tuple(arrays['spikes'].shape[:-1])} sent {total} messages; wrote {out}")
