"""Reading the activity that ``mksgn simulate`` measured (contract 5) and checking it fits the network.

``OUT/activity.json`` (schema ``mksgn-activity/2``): ``network_sha256`` of the model.net it ran,
``engine``, ``samples``, ``runs`` (network runs: samples x persons), ``num_steps``,
``active_updates`` ("recorded" or "spikes") and per group ``{neurons, spikes_per_sample,
firing_rate, active_per_sample}``. ``OUT/activity.npz``: ``spikes/<group>`` per-neuron spike counts
summed over all runs (int64, group shape), ``samples``, and, when ``active_updates`` is
"recorded" (the fast engine), ``active/<group>``: per-neuron active neuron-steps summed over all
runs (int64, group shape; the rule is ``mksgn.opcount``'s).

Schema ``mksgn-activity/1`` (no ``active_updates``, no ``active/``) is still read; its active
neuron updates are counted by the old lower-bound rule (a step is active when the neuron fires),
as are those of a /2 file whose ``active_updates`` is "spikes" (a Lava run).
"""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from mksgn import netgraph
from mksgn.deploy.cli import ACTIVITY_SCHEMA as SCHEMA   # the writer's format, one home
from mksgn.files import sha256
from mksgn.hw_profiles.energy import Activity

SCHEMAS = ("mksgn-activity/1", SCHEMA)       # every schema this reader understands
FOREIGN = "activity report is from another network"


def read_activity(act_dir: Path, net: netgraph.Network, net_path: Path) -> Activity:
    """Load ``act_dir/activity.{json,npz}``; one-line ``ClickException`` when it does not fit ``net``."""
    act_dir = Path(act_dir)
    jpath, npath = act_dir / "activity.json", act_dir / "activity.npz"
    if act_dir.is_file() and act_dir.name == "activity.json":
        jpath, npath = act_dir, act_dir.with_suffix(".npz")
    for p in (jpath, npath):
        if not p.is_file():
            raise click.ClickException(f"{p}: no such file (run `mksgn simulate` first)")
    try:
        meta = json.loads(jpath.read_text())
    except json.JSONDecodeError as e:
        raise click.ClickException(f"{jpath}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(meta, dict) or meta.get("schema") not in SCHEMAS:
        got = meta.get("schema") if isinstance(meta, dict) else None
        raise click.ClickException(f"{jpath}: schema {got!r}, expected "
                                   + " or ".join(repr(k) for k in SCHEMAS))
    recorded = meta["schema"] != SCHEMAS[0] and meta.get("active_updates") == "recorded"
    for key in ("network_sha256", "samples", "num_steps"):
        if key not in meta:
            raise click.ClickException(f"{jpath}: {key}: missing field")
    if meta["network_sha256"] != sha256(net_path):
        raise click.ClickException(f"{jpath}: {FOREIGN} (network_sha256 differs from {net_path})")
    samples = int(meta["samples"])
    if samples <= 0:
        raise click.ClickException(f"{jpath}: samples: expected a positive count, got {samples}")
    if int(meta["num_steps"]) != net.num_steps:
        raise click.ClickException(f"{jpath}: {FOREIGN} (num_steps {meta['num_steps']} "
                                   f"!= {net.num_steps})")
    counts: dict[str, np.ndarray] = {}
    active: dict[str, np.ndarray] | None = {} if recorded else None
    try:
        with np.load(npath) as z:
            for g in net.groups:
                for kind, into in (("spikes", counts), ("active", active)):
                    if into is None:
                        continue
                    key = f"{kind}/{g.name}"
                    if key not in z:
                        raise click.ClickException(f"{npath}: {FOREIGN} (no {kind} for group "
                                                   f"{g.name!r})")
                    c = np.asarray(z[key])
                    if tuple(c.shape) != tuple(g.shape):
                        raise click.ClickException(f"{npath}: {FOREIGN} ({key} has shape "
                                                   f"{tuple(c.shape)}, the group {tuple(g.shape)})")
                    if c.size and c.min() < 0:
                        raise click.ClickException(f"{npath}: {key}: negative count")
                    into[g.name] = c.astype(np.int64)
            if "samples" in z and int(z["samples"]) != samples:
                raise click.ClickException(f"{npath}: samples {int(z['samples'])} differs from "
                                           f"{jpath}'s {samples}")
    except (OSError, ValueError) as e:
        raise click.ClickException(f"{npath}: cannot read ({e})") from None
    runs = int(meta.get("runs", samples))
    max_spikes = runs * net.num_steps
    for name, c in counts.items():
        if c.size and c.max() > max_spikes:
            raise click.ClickException(f"{npath}: spikes/{name}: a neuron fired {int(c.max())} "
                                       f"times in {runs} runs of {net.num_steps} steps")
    for name, a in (active or {}).items():
        if a.size and a.max() > max_spikes:
            raise click.ClickException(f"{npath}: active/{name}: a neuron was active "
                                       f"{int(a.max())} times in {runs} runs of "
                                       f"{net.num_steps} steps")
        if (a < counts[name]).any():     # a neuron that fires is active in that step
            raise click.ClickException(f"{npath}: active/{name}: fewer active steps than spikes")
    return Activity(counts=counts, samples=samples, num_steps=int(meta["num_steps"]), runs=runs,
                    engine=str(meta.get("engine", "")), network_sha256=meta["network_sha256"],
                    active=active)
