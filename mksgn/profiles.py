"""Hardware energy profiles: one YAML file per device, checked against a typed schema.

A profile says what one elementary operation costs on a device, each number with its unit and the
publication it comes from (see ``hw_profiles/README.md`` for the schema and the model that uses it).
``load_profile("loihi")`` reads a bundled profile; ``load_profile("path/to/my_chip.yaml")`` reads a
user's. Every schema error is one line naming the file, the line and the field::

    my_chip.yaml:7: energy.synop.unit: expected one of pJ, nJ, uJ, mJ, J, got 'pj'
"""
from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import click
import yaml

# the bundled device files live with the energy stage; training reads them too (energy loss)
PROFILE_DIR = Path(str(importlib.resources.files("mksgn.hw_profiles")))

#: energy units accepted in a profile and their size in picojoules (exact powers of ten)
UNIT_PJ: dict[str, float] = {"pJ": 1.0, "nJ": 1e3, "uJ": 1e6, "mJ": 1e9, "J": 1e12}

ProfileKind = Literal["neuromorphic", "cmos", "ann_device"]

# Energy entries per kind: (required, optional). Unknown entries are errors, so a typo in a user's
# file cannot silently drop a cost from the model.
ENERGY_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # synop: one synaptic event delivered to one target (spike x weight lookup + accumulate);
    # neuron_update: one active neuron-step (mksgn.opcount's rule), neuron_update_idle: one
    # idle neuron-step;
    # spike_out: one spike leaving its neuron (the soma's output stage, once per spike);
    # spike_core: delivering one spike to one destination core; hop_ew / hop_ns: one east-west /
    # north-south mesh hop between tiles (priced on our placement, which needs mesh_width);
    # input_mac: one MAC of a real-valued input layer (host-side encoder).
    "neuromorphic": (("synop", "neuron_update"),
                     ("neuron_update_idle", "spike_out", "spike_core", "hop_ew", "hop_ns",
                      "input_mac")),
    # ac: one accumulate (a synop of a binary spike), mac: one multiply-accumulate.
    "cmos": (("ac", "mac"), ("input_mac", "neuron_update")),
    # op: one MAC-equivalent operation of a conventional processor running the network densely.
    "ann_device": (("op",), ("input_mac",)),
}
TOP_KEYS_REQUIRED = ("name", "kind", "description", "energy")
#: time units accepted in a profile's ``latency`` and their size in seconds
UNIT_S: dict[str, float] = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
# Latency entries (optional, neuromorphic only; mksgn.hw_profiles.latency's model): step_sync:
# the barrier that ends every time step; neuron_update / neuron_update_idle: one active / idle
# neuron-step, serial on its core; synop: one synaptic event, serial on the destination core;
# spike_core: receiving one spike message on a core; spike_out: one spike leaving its neuron.
LATENCY_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "neuromorphic": (("step_sync", "neuron_update", "synop"),
                     ("neuron_update_idle", "spike_core", "spike_out")),
}
TOP_KEYS_OPTIONAL = ("latency", "neurons_per_core", "cores_per_chip", "cores_per_tile",
                     "mesh_width", "estimate", "basis", "references")
INT_KEYS = ("neurons_per_core", "cores_per_chip", "cores_per_tile", "mesh_width")


@dataclass(frozen=True)
class EnergyEntry:
    """One cost: ``value`` in ``unit`` and where it comes from."""
    value: float
    unit: str
    source: str

    @property
    def pj(self) -> float:
        """The cost in picojoules."""
        return self.value * UNIT_PJ[self.unit]


@dataclass(frozen=True)
class LatencyEntry:
    """One time: ``value`` in ``unit`` and where it comes from."""
    value: float
    unit: str
    source: str

    @property
    def seconds(self) -> float:
        return self.value * UNIT_S[self.unit]


@dataclass(frozen=True)
class Profile:
    """A device's per-operation energies (see README.md for what each kind's entries mean)."""
    name: str
    kind: ProfileKind
    description: str
    energy: dict[str, EnergyEntry]
    neurons_per_core: int | None = None
    cores_per_chip: int | None = None
    cores_per_tile: int | None = None  # cores sharing one mesh router (default 1)
    mesh_width: int | None = None      # tiles per mesh row (our placement, mksgn.opcount)
    estimate: bool = False             # True: derived, not published; ``basis`` says how
    basis: str = ""
    references: tuple[str, ...] = ()
    path: str = ""                     # the file it was read from
    latency: dict[str, "LatencyEntry"] = field(default_factory=dict)  # LATENCY_KEYS; {}: none

    def seconds(self, key: str, default: float | None = None) -> float:
        """Seconds of one ``key`` operation; ``default`` when the profile does not give it."""
        if key in self.latency:
            return self.latency[key].seconds
        if default is None:
            raise KeyError(f"profile {self.name} has no latency.{key}")
        return default

    def pj(self, key: str, default: float | None = None) -> float:
        """Energy of one ``key`` operation in pJ; ``default`` when the profile does not give it."""
        if key in self.energy:
            return self.energy[key].pj
        if default is None:
            raise KeyError(f"profile {self.name} has no energy.{key}")
        return default

    def has(self, key: str) -> bool:
        return key in self.energy

    def to_dict(self) -> dict:
        """Plain dict (the YAML schema, minus ``path``) for JSON reports."""
        d = {"name": self.name, "kind": self.kind, "description": self.description,
             "estimate": self.estimate,
             "energy": {k: {"value": e.value, "unit": e.unit, "source": e.source}
                        for k, e in self.energy.items()}}
        for key in INT_KEYS:
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.basis:
            d["basis"] = self.basis
        if self.references:
            d["references"] = list(self.references)
        if self.latency:
            d["latency"] = {k: {"value": e.value, "unit": e.unit, "source": e.source}
                            for k, e in self.latency.items()}
        return d


def builtin_names() -> list[str]:
    """Names of the bundled profiles (``hw_profiles/*.yaml``), sorted."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def resolve(name_or_path: str) -> Path:
    """A bundled profile's name, or a path to a YAML file -> the file. Unknown names list the known."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise click.ClickException(f"{name_or_path}: no such profile file")
        return p
    bundled = PROFILE_DIR / f"{name_or_path}.yaml"
    if bundled.is_file():
        return bundled
    raise click.ClickException(f"unknown profile {name_or_path!r}; known profiles: "
                               f"{', '.join(builtin_names())} (or give a path to a .yaml file)")


class _Doc:
    """A parsed YAML mapping that remembers line numbers, for error messages naming the field."""

    def __init__(self, path: Path):
        self.label = path.name
        try:
            text = path.read_text()
            self.node = yaml.compose(text)
            self.data = yaml.safe_load(text)
        except (OSError, yaml.YAMLError) as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise click.ClickException(f"{self.label}{where}: not valid YAML ({problem})") from None

    def line(self, dotted: str) -> int | None:
        """1-based line of the field ``a.b.c`` (or of its nearest existing parent)."""
        node, line = self.node, None
        if node is not None:
            line = node.start_mark.line + 1
        for part in dotted.split(".") if dotted else []:
            if not isinstance(node, yaml.MappingNode):
                break
            for k, v in node.value:
                if k.value == part:
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                break
        return line

    def fail(self, dotted: str, what: str) -> click.ClickException:
        line = self.line(dotted)
        where = f":{line}" if line is not None else ""
        return click.ClickException(f"{self.label}{where}: {dotted}: {what}")


def _number(doc: _Doc, dotted: str, value, *, integer: bool = False) -> float | int:
    # bool is an int in Python; `value: yes` is a typo, not the number 1
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        kind = "an integer" if integer else "a number"
        raise doc.fail(dotted, f"expected {kind}, got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise doc.fail(dotted, f"expected a finite number, got {value!r}")
    if value < 0:
        raise doc.fail(dotted, f"must not be negative, got {value!r}")
    return value


def _string(doc: _Doc, dotted: str, value, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        raise doc.fail(dotted, f"expected a non-empty string, got {value!r}")
    return value


def load_profile(name_or_path: str) -> Profile:
    """Read and check one profile (bundled name or YAML path). Raises ``click.ClickException``."""
    path = resolve(name_or_path)
    doc = _Doc(path)
    d = _top_level(doc)
    name = _string(doc, "name", d["name"])
    kind = d["kind"]
    if kind not in ENERGY_KEYS:
        raise doc.fail("kind", f"expected one of {', '.join(ENERGY_KEYS)}, got {kind!r}")
    description = _string(doc, "description", d["description"])
    energy = _energy(doc, d["energy"], kind)
    ints = _hardware_ints(doc, d, energy)
    estimate, basis, refs = _provenance(doc, d)
    latency = _latency(doc, d.get("latency"), kind)
    return Profile(name=name, kind=kind, description=description, energy=energy,
                   estimate=estimate, basis=basis, references=refs, path=str(path),
                   latency=latency, **ints)


def _top_level(doc: _Doc) -> dict:
    """The document's mapping, with every required field and no unknown one."""
    d = doc.data
    if not isinstance(d, dict):
        raise doc.fail("", "expected a mapping with " + ", ".join(TOP_KEYS_REQUIRED))
    for key in TOP_KEYS_REQUIRED:
        if key not in d:
            raise doc.fail(key, "missing field")
    for key in d:
        if key not in TOP_KEYS_REQUIRED + TOP_KEYS_OPTIONAL:
            raise doc.fail(str(key), "unknown field; expected one of "
                           + ", ".join(TOP_KEYS_REQUIRED + TOP_KEYS_OPTIONAL))
    return d


def _energy(doc: _Doc, raw, kind: str) -> dict[str, EnergyEntry]:
    """The ``energy`` mapping: operation -> {value, unit (pJ..J), source}, ENERGY_KEYS[kind]."""
    if not isinstance(raw, dict):
        raise doc.fail("energy", "expected a mapping of operation -> {value, unit, source}")
    required, optional = ENERGY_KEYS[kind]
    for key in raw:     # unknown first: a misspelt entry explains the missing one
        if key not in required + optional:
            raise doc.fail(f"energy.{key}", f"unknown operation for a {kind} profile; expected "
                           "one of " + ", ".join(required + optional))
    for key in required:
        if key not in raw:
            raise doc.fail(f"energy.{key}", f"missing field (a {kind} profile needs "
                           f"{', '.join(required)})")
    return {key: _energy_entry(doc, f"energy.{key}", entry) for key, entry in raw.items()}


def _energy_entry(doc: _Doc, where: str, entry) -> EnergyEntry:
    if not isinstance(entry, dict):
        raise doc.fail(where, "expected {value: number, unit: pJ|nJ|uJ|mJ|J, source: text}")
    for sub in ("value", "unit", "source"):
        if sub not in entry:
            raise doc.fail(f"{where}.{sub}", "missing field")
    for sub in entry:
        if sub not in ("value", "unit", "source"):
            raise doc.fail(f"{where}.{sub}", "unknown field; expected value, unit, source")
    value = _number(doc, f"{where}.value", entry["value"])
    unit = entry["unit"]
    if unit not in UNIT_PJ:
        raise doc.fail(f"{where}.unit", f"expected one of {', '.join(UNIT_PJ)}, got {unit!r}")
    source = _string(doc, f"{where}.source", entry["source"])
    return EnergyEntry(value=float(value), unit=unit, source=source)


def _hardware_ints(doc: _Doc, d: dict, energy: dict[str, EnergyEntry]) -> dict[str, int]:
    """The positive integers of INT_KEYS that the file gives; the mesh ones are required when
    the energy prices mesh hops."""
    ints = {}
    for key in INT_KEYS:
        if d.get(key) is not None:
            ints[key] = int(_number(doc, key, d[key], integer=True))
            if ints[key] == 0:
                raise doc.fail(key, "must be positive, got 0")
    for key in ("hop_ew", "hop_ns"):    # a hop is priced on a placement: it needs the mesh
        for need in ("neurons_per_core", "mesh_width"):
            if key in energy and need not in ints:
                raise doc.fail(need, f"missing field (energy.{key} is priced on our placement, "
                               "which needs neurons_per_core and mesh_width)")
    return ints


def _provenance(doc: _Doc, d: dict) -> tuple[bool, str, tuple[str, ...]]:
    """(estimate, basis, references): an estimate must state its basis."""
    estimate = d.get("estimate", False)
    if not isinstance(estimate, bool):
        raise doc.fail("estimate", f"expected true or false, got {estimate!r}")
    basis = _string(doc, "basis", d["basis"]) if "basis" in d else ""
    if estimate and not basis:
        raise doc.fail("basis", "missing field (an estimate must state its basis)")
    refs = d.get("references", [])
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise doc.fail("references", "expected a list of strings")
    return estimate, basis, tuple(refs)


def _latency(doc: _Doc, raw, kind: str) -> dict[str, "LatencyEntry"]:
    """The optional ``latency`` mapping: operation -> {value, unit (ns|us|ms|s), source}."""
    if raw is None:
        return {}
    if kind not in LATENCY_KEYS:
        raise doc.fail("latency", f"{kind} profiles state no latency model (only "
                       + ", ".join(LATENCY_KEYS) + " profiles do)")
    if not isinstance(raw, dict):
        raise doc.fail("latency", "expected a mapping of operation -> {value, unit, source}")
    required, optional = LATENCY_KEYS[kind]
    for key in raw:
        if key not in required + optional:
            raise doc.fail(f"latency.{key}", "unknown operation; expected one of "
                           + ", ".join(required + optional))
    for key in required:
        if key not in raw:
            raise doc.fail(f"latency.{key}", f"missing field (a latency model needs "
                           f"{', '.join(required)})")
    out = {}
    for key, entry in raw.items():
        where = f"latency.{key}"
        if not isinstance(entry, dict) or set(entry) != {"value", "unit", "source"}:
            raise doc.fail(where, "expected {value: number, unit: ns|us|ms|s, source: text}")
        if entry["unit"] not in UNIT_S:
            raise doc.fail(f"{where}.unit", f"expected one of {', '.join(UNIT_S)}, "
                           f"got {entry['unit']!r}")
        out[key] = LatencyEntry(float(_number(doc, f"{where}.value", entry["value"])),
                                entry["unit"], _string(doc, f"{where}.source", entry["source"]))
    return out


def load_profiles(names: tuple[str, ...] | list[str]) -> list[Profile]:
    """Load several profiles; names must be distinct."""
    out = [load_profile(n) for n in names]
    seen: set[str] = set()
    for p in out:
        if p.name in seen:
            raise click.ClickException(f"profile {p.name!r} given twice")
        seen.add(p.name)
    return out
