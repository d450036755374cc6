"""Hardware-compatibility report: what of a converted network Loihi-class chips run, at what cost.

Every node of a ``netgraph.Network`` gets one verdict:

- ``native``: the chip's own parts do it as is. CUBA neuron groups (the readout too: a neuron
  that never spikes, its voltage read by the host), dense and conv synapse groups (a conv is
  stored as its per-position synapses), several synapse groups summing into one group (residual
  and fusion sums: dendritic accumulation adds every incoming synapse), and delays up to the
  axonal-delay limit (``loihi.MAX_AXON_DELAY``) that align branches of different depth.
- ``workaround``: expressible with the chip's parts at a price we state. A ``graph`` synapse
  (graph convolution over joints) has no hardware primitive: it is expanded to the per-frame
  channel x joint matrix (``w[o, i, v, u]`` as a (C_out V) x (C_in V) matrix, the same at each of
  the T frames, block diagonal over frames); we count its synapses as nonzeros x T. Delays above
  the axonal limit need chains of relay neurons.
- ``host``: runs on the host CPU. Encoders (the SSC's real-valued input convolution, whose result
  is written as per-neuron bias every sample) and ``source`` groups (input spikes from outside).
- ``unsupported``: no mapping to synapses and CUBA neurons. Spiking joint attention
  ``q (k^T x)`` multiplies spikes of three groups within one step; a synapse only scales one
  presynaptic spike by a stored weight. (Loihi 2's programmable neurons and graded spikes could
  compute products, at extra layers of latency that change the timing; the deploy stage runs it
  as a custom Lava process on the host side of the simulation.) ``attention: static`` in the
  student config folds attention into the graph weight instead.

Resources: neurons of every neuron group; synapses as above (dense: nonzero weights; conv:
nonzero taps x the output positions each tap reaches inside the input; graph: nonzeros x T);
cores ``ceil(neurons / per-core)`` per group, for Loihi (``loihi.LOIHI_NEURONS_PER_CORE``) and
Loihi 2 (``loihi.LOIHI2_NEURONS_PER_CORE``), against one Loihi 2 chip
(``loihi.LOIHI2_CORES_PER_CHIP`` cores, ``loihi.LOIHI2_NEURONS_PER_CHIP`` neurons). Synaptic
memory per core is not modelled (``mksgn.loihi`` holds no figure for it).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from mksgn import loihi
from mksgn.netgraph import Network, NeuronGroup, Synapse

__all__ = ["Support", "NodeReport", "Resources", "CompatReport", "synapse_count", "fan_in_max",
           "conv_out_shape", "compat_report", "print_report"]

Support = Literal["native", "workaround", "host", "unsupported"]
SUPPORT_ORDER = ("native", "workaround", "host", "unsupported")


@dataclass
class NodeReport:
    """One node of the network. kind: encoder | neurons | readout | source | dense | conv |
    graph | attention. synapses: synapses the node needs on chip (0 for neurons/host/attention);
    neurons: neurons it needs (groups only); detail: one sentence saying how or why not; note:
    the same in a few words."""
    name: str
    kind: str
    support: Support
    neurons: int = 0
    synapses: int = 0
    detail: str = ""
    note: str = ""              # a few words for the terminal table


@dataclass
class Resources:
    """Chip resources of the whole network (every count is for one sample, one network copy)."""
    neuron_groups: int
    neurons: int
    synapses: int
    loihi_cores: int            # sum over groups of ceil(neurons / LOIHI_NEURONS_PER_CORE)
    loihi2_cores: int           # sum over groups of ceil(neurons / LOIHI2_NEURONS_PER_CORE)
    loihi2_chip_cores: int
    loihi2_chip_neurons: int
    loihi2_chips: int           # chips needed by cores and by neurons
    fits_one_loihi2: bool


@dataclass
class CompatReport:
    """The report: per-node verdicts, resources, and whether stock netx loads the file."""
    nodes: list[NodeReport]
    resources: Resources
    stock_netx: bool = False
    stock_netx_note: str = ""
    summary: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CompatReport":
        return cls(nodes=[NodeReport(**n) for n in d["nodes"]],
                   resources=Resources(**d["resources"]), stock_netx=bool(d["stock_netx"]),
                   stock_netx_note=str(d["stock_netx_note"]), summary=dict(d["summary"]))


# ---------------------------------------------------------------------------------------------
def conv_out_shape(syn: Synapse, src_shape: tuple[int, ...]) -> tuple[int, int]:
    """(T_out, V_out) of a conv synapse on a (C, T, V) source."""
    kt, kv = np.asarray(syn.weight).shape[2:]
    out = []
    for k, n in ((kt, src_shape[1]), (kv, src_shape[2])):
        ax = len(out)
        out.append((n + 2 * syn.padding[ax] - syn.dilation[ax] * (k - 1) - 1) // syn.stride[ax] + 1)
    return out[0], out[1]


def _valid_positions(n_in: int, n_out: int, k: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """For each kernel tap, how many output positions read an input inside [0, n_in)."""
    pos = np.arange(n_out)[:, None] * stride - pad + np.arange(k)[None, :] * dil
    return ((pos >= 0) & (pos < n_in)).sum(0)


def synapse_count(syn: Synapse, src: NeuronGroup, dst: NeuronGroup) -> int:
    """Synapses a synapse group needs on chip (see the module docstring)."""
    w = np.asarray(syn.weight)
    if syn.kind == "dense":
        return int(np.count_nonzero(w))
    if syn.kind == "graph":
        return int(np.count_nonzero(w)) * int(dst.shape[1])
    t_out, v_out = conv_out_shape(syn, src.shape)
    kt, kv = w.shape[2:]
    taps = np.count_nonzero(w, axis=(0, 1))                       # (k_t, k_v)
    vt = _valid_positions(src.shape[1], t_out, kt, syn.stride[0], syn.padding[0], syn.dilation[0])
    vv = _valid_positions(src.shape[2], v_out, kv, syn.stride[1], syn.padding[1], syn.dilation[1])
    return int((taps * vt[:, None] * vv[None, :]).sum())


def fan_in_max(syn: Synapse) -> int:
    """Largest number of this synapse group's synapses onto one destination neuron (interior
    positions for conv; ``loihi.row_sums`` says which weights reach one neuron)."""
    w = np.asarray(syn.weight)
    return int(loihi.row_sums(w != 0, syn.kind).max()) if w.size else 0


def _delay_note(syn: Synapse) -> tuple[Support, str]:
    d = int(np.max(syn.delay)) if np.size(syn.delay) else 0
    if d == 0:
        return "native", ""
    if d <= loihi.MAX_AXON_DELAY:
        return "native", f"; delay {d} step(s) aligns it with the other inputs of {syn.dst}"
    return "workaround", (f"; delay {d} exceeds the {loihi.MAX_AXON_DELAY}-step axonal limit: "
                          f"needs {math.ceil(d / loihi.MAX_AXON_DELAY) - 1} relay neuron layer(s)")


def compat_report(net: Network, stock_netx: bool = False,
                  stock_netx_note: str = "") -> CompatReport:
    """Classify every node of ``net`` and total its chip resources."""
    groups = {g.name: g for g in net.groups}
    nodes = ([_encoder_node(e) for e in net.encoders]
             + [_group_node(net, g) for g in net.groups]
             + [_synapse_node(s, groups[s.src], groups[s.dst]) for s in net.synapses]
             + [_attention_node(a, groups[a.q], groups[a.x]) for a in net.attentions])
    summary = {k: sum(nd.support == k for nd in nodes) for k in SUPPORT_ORDER}
    return CompatReport(nodes=nodes, resources=_resources(net, nodes), stock_netx=stock_netx,
                        stock_netx_note=stock_netx_note, summary=summary)


def _encoder_node(e) -> NodeReport:
    w = np.asarray(e.weight)
    return NodeReport(
        e.name, "encoder", "host",
        detail=f"{e.modality}: real-valued {w.shape[2]}x{w.shape[3]} conv of the input "
               f"({w.shape[1]} -> {w.shape[0]} channels) on the host; written as the bias "
               f"of {e.dst} each sample",
        note=f"{w.shape[2]}x{w.shape[3]} conv -> bias of {e.dst}")


def _group_node(net: Network, g: NeuronGroup) -> NodeReport:
    n = g.size
    if g.source:
        return NodeReport(g.name, "source", "host",
                          detail=f"{n} input spike channels sent by the host",
                          note="input spikes from the host")
    p = g.params
    incoming = net.incoming(g.name)
    att_into = [a for a in net.attentions if a.dst == g.name]
    kind = "readout" if (g.readout or g.name == net.readout) else "neurons"
    sums = len(incoming) + len(att_into)
    detail = (f"CUBA iDecay {p.i_decay}, vDecay {p.v_decay}, vThMant {p.vth_mant}")
    if kind == "readout":
        detail += "; never spikes, its voltage is read as the class scores"
    if sums > 1:
        detail += (f"; sums {sums} inputs ({', '.join(s.name for s in incoming)}"
                   f"{', ' if att_into else ''}"
                   f"{', '.join(a.name for a in att_into)})")
    note = "CUBA, never spikes (scores)" if kind == "readout" else "CUBA"
    if sums > 1:
        note += f", sums {sums} inputs"
    return NodeReport(g.name, kind, "native", neurons=n, detail=detail, note=note)


def _synapse_node(s: Synapse, src: NeuronGroup, dst: NeuronGroup) -> NodeReport:
    support, note = _delay_note(s)
    w = np.asarray(s.weight)
    exp = f"8-bit weights x 2**{s.weight_exp}"
    if s.kind == "dense":
        detail = f"dense {w.shape[1]} -> {w.shape[0]}, {exp}"
        short = f"{w.shape[1]} -> {w.shape[0]}"
    elif s.kind == "conv":
        detail = (f"conv {w.shape[2]}x{w.shape[3]} stride {tuple(s.stride)}, {w.shape[1]} -> "
                  f"{w.shape[0]} channels, {exp}, stored per position")
        short = f"{w.shape[2]}x{w.shape[3]}, {w.shape[1]} -> {w.shape[0]} ch"
    else:
        o, i, v, u = w.shape
        t = dst.shape[1]
        nnz = int(np.count_nonzero(w))
        support = "workaround" if support == "native" else support
        detail = (f"graph conv over {u} joints: expanded to a ({o}x{v}) x ({i}x{u}) "
                  f"channel x joint matrix ({nnz} nonzeros of {w.size}) repeated for {t} "
                  f"frames (block diagonal over frames), {exp}")
        short = f"({o}*{v})x({i}*{u}) matrix x {t} frames"
    d = int(np.max(s.delay)) if np.size(s.delay) else 0
    if d:
        short += f", delay {d}"
    return NodeReport(s.name, s.kind, support, synapses=synapse_count(s, src, dst),
                      detail=detail + note, note=short)


def _attention_node(a, q: NeuronGroup, x: NeuronGroup) -> NodeReport:
    c_qk, t, v = q.shape
    mult = 2 * c_qk * x.shape[0] * t * v
    return NodeReport(
        a.name, "attention", "unsupported",
        detail=f"q (k^T x) multiplies spikes of {a.q}, {a.k}, {a.x} in one step ({mult} "
               f"products per step); synapses only scale single spikes. Runs as a custom "
               f"process in Lava simulation; use attention: static to fold it into the graph "
               f"weight",
        note="products of spikes: no synapse form")


def _resources(net: Network, nodes: list[NodeReport]) -> Resources:
    neuron_groups = [g for g in net.groups if not g.source]
    neurons = sum(g.size for g in neuron_groups)
    c1 = sum(math.ceil(g.size / loihi.LOIHI_NEURONS_PER_CORE) for g in neuron_groups)
    c2 = sum(math.ceil(g.size / loihi.LOIHI2_NEURONS_PER_CORE) for g in neuron_groups)
    chips = max(math.ceil(c2 / loihi.LOIHI2_CORES_PER_CHIP),
                math.ceil(neurons / loihi.LOIHI2_NEURONS_PER_CHIP), 1)
    return Resources(neuron_groups=len(neuron_groups), neurons=neurons,
                     synapses=sum(nd.synapses for nd in nodes), loihi_cores=c1, loihi2_cores=c2,
                     loihi2_chip_cores=loihi.LOIHI2_CORES_PER_CHIP,
                     loihi2_chip_neurons=loihi.LOIHI2_NEURONS_PER_CHIP, loihi2_chips=chips,
                     fits_one_loihi2=chips == 1)


# ---------------------------------------------------------------------------------------------
_STYLE = {"native": "green", "workaround": "yellow", "host": "cyan", "unsupported": "red"}


def _node_table(rep: CompatReport):
    """Every node, one row each (``--wide``)."""
    from rich.table import Table

    t = Table(title="Loihi compatibility, every node", title_justify="left")
    for col, kw in (("node", {}), ("kind", {}), ("support", {}),
                    ("neurons", {"justify": "right"}), ("synapses", {"justify": "right"}),
                    ("how / why (details: compat.json)", {})):
        t.add_column(col, no_wrap=True, **kw)
    for nd in rep.nodes:
        t.add_row(nd.name, nd.kind, f"[{_STYLE[nd.support]}]{nd.support}[/]",
                  f"{nd.neurons:,}" if nd.neurons else "",
                  f"{nd.synapses:,}" if nd.synapses else "",
                  nd.note)
    return t


def _not_native_table(rep: CompatReport, names_shown: int = 4):
    """The nodes that matter: those not native, one row per (support, kind), fits 80 columns."""
    from rich.table import Table

    groups: dict[tuple[str, str], list[NodeReport]] = {}
    for nd in rep.nodes:
        if nd.support != "native":
            groups.setdefault((nd.support, nd.kind), []).append(nd)
    t = Table(title="Nodes that are not native", title_justify="left")
    t.add_column("support", no_wrap=True)
    t.add_column("kind", no_wrap=True)
    t.add_column("nodes", justify="right", no_wrap=True)
    t.add_column("synapses", justify="right", no_wrap=True)
    t.add_column("names", overflow="fold")
    order = {k: i for i, k in enumerate(SUPPORT_ORDER)}
    for (support, kind), nds in sorted(groups.items(), key=lambda kv: -order[kv[0][0]]):
        names = ", ".join(nd.name for nd in nds[:names_shown])
        if len(nds) > names_shown:
            names += f", +{len(nds) - names_shown} more"
        syn = sum(nd.synapses for nd in nds)
        t.add_row(f"[{_STYLE[support]}]{support}[/]", kind, str(len(nds)),
                  f"{syn:,}" if syn else "", names)
    return t


def print_report(rep: CompatReport, console=None, wide: bool = False,
                 details: str = "compat.json") -> None:
    """Print the report with rich: the nodes that are not native (grouped), the resources against
    one Loihi 2 and the verdict, in 80 columns; with ``wide`` also every node, one row each.
    ``details`` names the file that holds every node (printed so the reader can find it)."""
    from rich.console import Console
    from rich.table import Table

    from mksgn.terminal import print_wide

    console = console or Console()
    counts = ", ".join(f"{rep.summary.get(k, 0)} {k}" for k in SUPPORT_ORDER)
    console.print(f"[bold]Loihi compatibility[/]: {len(rep.nodes)} nodes ({counts})")
    if wide:
        print_wide(console, _node_table(rep))
    elif any(nd.support != "native" for nd in rep.nodes):
        console.print(_not_native_table(rep))
    r = rep.resources
    u = Table(title="Chip resources (one sample)", title_justify="left")
    u.add_column("resource")
    u.add_column("needed", justify="right", no_wrap=True)
    u.add_column("one Loihi 2 chip", justify="right", no_wrap=True)
    u.add_row("neurons", f"{r.neurons:,}", f"{r.loihi2_chip_neurons:,}")
    u.add_row("synapses", f"{r.synapses:,}", "not modelled")
    u.add_row(f"Loihi 2 cores ({loihi.LOIHI2_NEURONS_PER_CORE:,} neurons each)",
              f"{r.loihi2_cores:,}", f"{r.loihi2_chip_cores:,}")
    u.add_row(f"Loihi cores ({loihi.LOIHI_NEURONS_PER_CORE:,} neurons each)",
              f"{r.loihi_cores:,}", "")
    console.print(u)
    verdict = ("[green]fits one Loihi 2 chip[/]" if r.fits_one_loihi2
               else f"[red]needs {r.loihi2_chips} Loihi 2 chips[/]")
    console.print(f"verdict: {verdict}")
    console.print(("stock netx: loads /layer" if rep.stock_netx else "stock netx: no /layer "
                   "section") + (f" ({rep.stock_netx_note})" if rep.stock_netx_note else ""))
    if not wide:
        console.print(f"every node, how and why: {details} (--wide prints them here)")
