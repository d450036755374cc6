"""The activity file: what ``mksgn simulate`` measured, which the energy stage reads.

``OUT/activity.json`` (schema ``mksgn-activity/2``, an ``ActivityReport``): the network it ran
(``network_file``, ``network_sha256``), ``engine``, ``samples``, ``runs`` (network runs: samples x
persons run), ``num_steps``, the split and its accuracy, the agreement with the PyTorch student,
``active_updates`` ("recorded" or "spikes") and per group ``{neurons, spikes_per_sample,
firing_rate, active_per_sample}``.

``OUT/activity.npz``: ``samples``; ``predictions`` and ``labels`` (int64, (samples,));
``spikes/<group>``: per-neuron spike counts summed over all runs (int64, group shape); and, when
``active_updates`` is "recorded" (the fast engine), ``active/<group>``: per-neuron active
neuron-steps summed over all runs (int64, group shape; the rule is ``mksgn.opcount``'s).

Schema ``mksgn-activity/1`` (no ``active_updates``, no ``active/``) is still read; its active
neuron updates are counted by the old lower-bound rule (a step is active when the neuron fires),
as are those of a /2 file whose ``active_updates`` is "spikes" (a Lava run).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mksgn import netgraph
from mksgn.files import atomic_write, atomic_write_text, sha256

SCHEMA = "mksgn-activity/2"                  # what ``write`` writes
SCHEMAS = ("mksgn-activity/1", SCHEMA)       # every schema ``read`` understands
FOREIGN = "activity report is from another network"
JSON_NAME, NPZ_NAME = "activity.json", "activity.npz"


class ActivityFileError(ValueError):
    """An activity file that cannot be read or does not fit the network (one line naming it)."""


@dataclass
class Activity:
    """Measured activity: per group, per-neuron spike counts (and, when recorded, active
    neuron-steps, see ``mksgn.opcount``) summed over all runs of ``samples`` samples."""
    counts: dict[str, np.ndarray]      # group name -> int64 (group shape)
    samples: int
    num_steps: int
    runs: int | None = None            # network runs (samples x persons run); default: samples
    engine: str = ""
    network_sha256: str = ""
    active: dict[str, np.ndarray] | None = None  # group -> int64 active steps; None: not recorded

    @property
    def active_rule(self) -> str:
        """How active neuron updates are counted: "recorded" or "spikes" (a lower bound)."""
        return "recorded" if self.active is not None else "spikes"

    @property
    def runs_per_sample(self) -> float:
        return (self.runs if self.runs is not None else self.samples) / self.samples


@dataclass
class GroupActivity:
    neurons: int
    spikes_per_sample: float           # spikes of the whole group per sample (all steps)
    firing_rate: float                 # spikes per neuron per step
    active_per_sample: float | None = None   # active neuron-steps per sample (None: not recorded)


@dataclass
class ActivityReport:
    """``activity.json``. ``spikes_per_sample`` counts every run of a sample (two persons = two
    runs, as the chip would run both); ``firing_rate`` is per neuron per step of one run.
    ``active_updates``: "recorded" when activity.npz holds ``active/<group>``, "spikes" when it
    does not (the energy stage then counts a step active only when the neuron fires)."""
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
    schema: str = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ActivityReport":
        d = json.loads(text)
        d["groups"] = {k: GroupActivity(**v) for k, v in d["groups"].items()}
        return cls(**d)


def group_summary(net: netgraph.Network, act: Activity) -> dict[str, GroupActivity]:
    """Per group of ``net``: spikes and active neuron-steps per sample, firing rate per step."""
    runs = act.runs if act.runs is not None else act.samples
    out = {}
    for g in net.groups:
        total = int(act.counts[g.name].sum())
        out[g.name] = GroupActivity(
            neurons=g.size, spikes_per_sample=total / act.samples,
            firing_rate=total / (runs * g.size * max(1, act.num_steps)),
            active_per_sample=None if act.active is None
            else int(act.active[g.name].sum()) / act.samples)
    return out


def write(out_dir: str | Path, report: ActivityReport, act: Activity, predictions: np.ndarray,
          labels: np.ndarray) -> tuple[Path, Path]:
    """Write ``out_dir/activity.json`` and ``.npz`` atomically; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath, npath = out_dir / JSON_NAME, out_dir / NPZ_NAME
    atomic_write_text(jpath, report.to_json())
    arrays = {f"spikes/{g}": c for g, c in act.counts.items()}
    arrays.update({f"active/{g}": c for g, c in (act.active or {}).items()})

    def save(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, samples=np.int64(act.samples), predictions=predictions, labels=labels,
                     **arrays)
    atomic_write(npath, save)
    return jpath, npath


# ---------------------------------------------------------------------------------------------
def read(path: str | Path, net: netgraph.Network, net_path: str | Path) -> Activity:
    """Load ``path/activity.{json,npz}`` (or ``path`` = the .json) measured on ``net``.

    Raises ActivityFileError, one line naming the file, when a file is missing or malformed, or
    does not fit ``net`` (another network's hash, steps or group shapes; impossible counts).
    """
    jpath, npath = _paths(Path(path))
    meta = _read_meta(jpath, net, Path(net_path))
    samples, runs = int(meta["samples"]), int(meta.get("runs", meta["samples"]))
    recorded = meta["schema"] != SCHEMAS[0] and meta.get("active_updates") == "recorded"
    counts, active = _read_counts(npath, jpath, net, samples, recorded)
    _check_counts(npath, counts, active, runs, net.num_steps)
    return Activity(counts=counts, samples=samples, num_steps=int(meta["num_steps"]), runs=runs,
                    engine=str(meta.get("engine", "")), network_sha256=meta["network_sha256"],
                    active=active)


def _paths(path: Path) -> tuple[Path, Path]:
    jpath, npath = path / JSON_NAME, path / NPZ_NAME
    if path.is_file() and path.name == JSON_NAME:
        jpath, npath = path, path.with_suffix(".npz")
    for p in (jpath, npath):
        if not p.is_file():
            raise ActivityFileError(f"{p}: no such file (run `mksgn simulate` first)")
    return jpath, npath


def _read_meta(jpath: Path, net: netgraph.Network, net_path: Path) -> dict:
    try:
        meta = json.loads(jpath.read_text())
    except json.JSONDecodeError as e:
        raise ActivityFileError(f"{jpath}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(meta, dict) or meta.get("schema") not in SCHEMAS:
        got = meta.get("schema") if isinstance(meta, dict) else None
        raise ActivityFileError(f"{jpath}: schema {got!r}, expected "
                                + " or ".join(repr(k) for k in SCHEMAS))
    for key in ("network_sha256", "samples", "num_steps"):
        if key not in meta:
            raise ActivityFileError(f"{jpath}: {key}: missing field")
    if meta["network_sha256"] != sha256(net_path):
        raise ActivityFileError(f"{jpath}: {FOREIGN} (network_sha256 differs from {net_path})")
    if int(meta["samples"]) <= 0:
        raise ActivityFileError(f"{jpath}: samples: expected a positive count, "
                                f"got {int(meta['samples'])}")
    if int(meta["num_steps"]) != net.num_steps:
        raise ActivityFileError(f"{jpath}: {FOREIGN} (num_steps {meta['num_steps']} "
                                f"!= {net.num_steps})")
    return meta


def _read_counts(npath: Path, jpath: Path, net: netgraph.Network, samples: int,
                 recorded: bool) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """``spikes/<group>`` (and ``active/<group>`` when recorded) of every group of ``net``."""
    counts: dict[str, np.ndarray] = {}
    active: dict[str, np.ndarray] | None = {} if recorded else None
    try:
        with np.load(npath) as z:
            for g in net.groups:
                for kind, into in (("spikes", counts), ("active", active)):
                    if into is not None:
                        into[g.name] = _group_counts(npath, z, kind, g)
            if "samples" in z and int(z["samples"]) != samples:
                raise ActivityFileError(f"{npath}: samples {int(z['samples'])} differs from "
                                        f"{jpath}'s {samples}")
    except ActivityFileError:
        raise
    except (OSError, ValueError) as e:
        raise ActivityFileError(f"{npath}: cannot read ({e})") from None
    return counts, active


def _group_counts(npath: Path, z, kind: str, g: netgraph.NeuronGroup) -> np.ndarray:
    key = f"{kind}/{g.name}"
    if key not in z:
        raise ActivityFileError(f"{npath}: {FOREIGN} (no {kind} for group {g.name!r})")
    c = np.asarray(z[key])
    if tuple(c.shape) != tuple(g.shape):
        raise ActivityFileError(f"{npath}: {FOREIGN} ({key} has shape {tuple(c.shape)}, the "
                                f"group {tuple(g.shape)})")
    if c.size and c.min() < 0:
        raise ActivityFileError(f"{npath}: {key}: negative count")
    return c.astype(np.int64)


def _check_counts(npath: Path, counts: dict[str, np.ndarray],
                  active: dict[str, np.ndarray] | None, runs: int, steps: int) -> None:
    """No neuron fires or is active in more than runs x steps steps; a neuron that fires is
    active in that step."""
    most = runs * steps
    for name, c in counts.items():
        if c.size and c.max() > most:
            raise ActivityFileError(f"{npath}: spikes/{name}: a neuron fired {int(c.max())} "
                                    f"times in {runs} runs of {steps} steps")
    for name, a in (active or {}).items():
        if a.size and a.max() > most:
            raise ActivityFileError(f"{npath}: active/{name}: a neuron was active "
                                    f"{int(a.max())} times in {runs} runs of {steps} steps")
        if (a < counts[name]).any():
            raise ActivityFileError(f"{npath}: active/{name}: fewer active steps than spikes")
