"""Spike trains: which neuron fired at which step, for a few network runs (``spike_trains.npz``).

``mksgn simulate --spike-trains N`` writes it beside ``activity.{json,npz}`` for the first N runs
of the fast engine; a time-stepped chip simulator replays it (``mksgn energy --backend sanafe``).
The activity file holds per-neuron totals over all runs; this file holds the time axis those
totals lose, for as many runs as a replay needs.

``OUT/spike_trains.npz`` (schema ``mksgn-spike-trains/1``): ``schema``, ``network_sha256`` of the
model.net that ran, ``runs`` R, ``samples`` S (the samples those runs belong to: R = S x persons
run), ``num_steps`` T; per group ``spikes/<group>``: bool (R, T, *group shape), neuron fired at
step t of run r (graded outputs: non-zero); ``active/<group>``: int64 (R, *group shape), active
neuron-steps of each run (``mksgn.opcount``'s rule).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mksgn import netgraph
from mksgn.files import atomic_write, sha256

SCHEMA = "mksgn-spike-trains/1"
NAME = "spike_trains.npz"


class SpikeTrainsError(ValueError):
    """A spike-trains file that cannot be read or does not fit the network (one line naming it)."""


@dataclass
class SpikeTrains:
    """Per-step spikes of ``runs`` network runs (of ``samples`` samples) and their active counts.

    spikes: group -> bool (runs, num_steps, *shape); active: group -> int64 (runs, *shape).
    """
    spikes: dict[str, np.ndarray]
    active: dict[str, np.ndarray]
    samples: int
    num_steps: int
    network_sha256: str = ""

    @property
    def runs(self) -> int:
        return int(next(iter(self.spikes.values())).shape[0]) if self.spikes else 0

    def counts(self) -> dict[str, np.ndarray]:
        """Per-neuron spike totals over all runs: group -> int64 (*shape)."""
        return {g: s.sum(axis=(0, 1), dtype=np.int64) for g, s in self.spikes.items()}

    def active_totals(self) -> dict[str, np.ndarray]:
        """Per-neuron active neuron-steps over all runs: group -> int64 (*shape)."""
        return {g: a.sum(axis=0, dtype=np.int64) for g, a in self.active.items()}


def write(out_dir: str | Path, trains: SpikeTrains) -> Path:
    """Write ``out_dir/spike_trains.npz`` atomically (bools bit-packed by npz compression)."""
    path = Path(out_dir) / NAME
    arrays = {f"spikes/{g}": s.astype(bool) for g, s in trains.spikes.items()}
    arrays.update({f"active/{g}": a.astype(np.int64) for g, a in trains.active.items()})

    def save(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, schema=SCHEMA, network_sha256=trains.network_sha256,
                                samples=np.int64(trains.samples),
                                num_steps=np.int64(trains.num_steps), **arrays)
    atomic_write(path, save)
    return path


def read(path: str | Path, net: netgraph.Network, net_path: str | Path) -> SpikeTrains:
    """Load ``path`` (a directory holding spike_trains.npz, or the file) measured on ``net``.

    Raises SpikeTrainsError, one line naming the file, when it is missing, malformed or from
    another network (hash, steps, group shapes), or a neuron is active less often than it fires.
    """
    path = Path(path)
    if path.is_dir():
        path = path / NAME
    if not path.is_file():
        raise SpikeTrainsError(f"{path}: no such file (run `mksgn simulate --spike-trains N`)")
    try:
        with np.load(path) as z:
            meta = {k: z[k].item() for k in ("schema", "network_sha256", "samples", "num_steps")
                    if k in z}
            if meta.get("schema") != SCHEMA:
                raise SpikeTrainsError(f"{path}: schema {meta.get('schema')!r}, "
                                       f"expected {SCHEMA!r}")
            if meta.get("network_sha256") != sha256(net_path):
                raise SpikeTrainsError(f"{path}: spike trains are from another network "
                                       f"(network_sha256 differs from {net_path})")
            spikes, active = {}, {}
            for g in net.groups:
                for kind, into in (("spikes", spikes), ("active", active)):
                    if f"{kind}/{g.name}" not in z:
                        raise SpikeTrainsError(f"{path}: no {kind} for group {g.name!r}")
                    into[g.name] = np.asarray(z[f"{kind}/{g.name}"])
    except SpikeTrainsError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise SpikeTrainsError(f"{path}: cannot read ({e})") from None
    trains = SpikeTrains(spikes, active, int(meta["samples"]), int(meta["num_steps"]),
                         str(meta["network_sha256"]))
    _check(path, trains, net)
    return trains


def _check(path: Path, trains: SpikeTrains, net: netgraph.Network) -> None:
    if trains.num_steps != net.num_steps:
        raise SpikeTrainsError(f"{path}: num_steps {trains.num_steps} != the network's "
                               f"{net.num_steps}")
    runs = trains.runs
    if runs <= 0 or trains.samples <= 0 or runs % trains.samples:
        raise SpikeTrainsError(f"{path}: {runs} runs do not divide into {trains.samples} samples")
    for g in net.groups:
        s, a = trains.spikes[g.name], trains.active[g.name]
        if s.shape != (runs, net.num_steps, *g.shape) or a.shape != (runs, *g.shape):
            raise SpikeTrainsError(f"{path}: group {g.name!r}: shapes {s.shape} / {a.shape} do "
                                   f"not fit {runs} runs of {net.num_steps} steps of {g.shape}")
        if (a < s.sum(axis=1)).any():
            raise SpikeTrainsError(f"{path}: active/{g.name}: fewer active steps than spikes")
