"""``DIR/manifest.json``: what was converted, how input is encoded, and a per-layer table.

Schema ``mksgn-manifest/1`` (a ``Manifest`` dataclass; ``to_dict``/``from_dict`` round-trip JSON):

- ``tool``, ``created``, ``versions`` (mksgn, torch, lava-nc, lava-dl, numpy, h5py, onnx,
  onnxruntime when installed), ``source`` (student checkpoint path, sha256, kind, epoch, the run
  config as written in the checkpoint) and ``teacher`` (the same for the teacher, when given).
- ``input``: modalities (in the network's order), window T, dataset, benchmark, the data
  pipeline (``mksgn.data.dataset.PIPELINES``), layout, persons
  ("fold": the bodies are input channels ``c * M + m``), and ``encoding``: how a skeleton sample
  becomes the input of time step t (``text``) and, per encoder, ``input_frac_bits`` and ``shift``.
- ``num_steps``, ``time_steps`` (S) and ``readout`` (group, ``logit_scale``).
- ``layers``: one row per neuron group in network order: neurons, CUBA parameters (iDecay,
  vDecay, vThMant and the threshold in slayer units), static bias range, synapses in, fan-in
  (mean per neuron, and ``fan_in_max``: the sum over incoming groups of each group's largest
  per-neuron count, an upper bound that is exact for interior neurons), fan-out (mean per
  neuron), and its incoming synapse groups, each with
  kind, source, synapses, weight bits (8; ``weight_bits_used``: the bits the largest mantissa
  needs), exponent, delay and its quantisation error; ``quant_error`` of the layer pools them.
- ``encoders``: per encoder its integer formats and the quantisation error of weight and bias.
- ``files``: sha256 of every file written.

Quantisation error of a synapse group: the float weights ``w_a`` (a-units: ``64 * w_real``) that
training quantised, against the chip's ``m * 2**e``: ``rel_l2 = |m 2**e - w_a|_2 / |w_a|_2``,
``max_abs`` (a-units) and ``max_abs_lsb`` (in units of ``2**e``, the mantissa's last bit; the
even-mantissa quantiser keeps it <= 1 unless a weight clipped).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from importlib import metadata

import numpy as np

from mksgn import loihi
from mksgn.netgraph import Network

from .compat import fan_in_max, synapse_count
from .student_io import FloatWeight

__all__ = ["SCHEMA", "QuantError", "SynapseRow", "LayerRow", "EncoderRow", "Manifest",
           "quant_error", "layer_table", "encoder_table", "versions", "encoding_text"]

SCHEMA = "mksgn-manifest/1"
VERSIONED = ("mksgn", "torch", "lava-nc", "lava-dl", "numpy", "h5py", "onnx", "onnxruntime")


@dataclass
class QuantError:
    """Float weights vs the chip's integers (see module docstring). n: weights compared."""
    rel_l2: float
    max_abs: float
    max_abs_lsb: float
    n: int


@dataclass
class SynapseRow:
    name: str
    kind: str
    src: str
    synapses: int
    fan_in_max: int
    weight_bits: int
    weight_bits_used: int
    weight_exp: int
    delay: int | str
    module: str = ""
    quant_error: QuantError | None = None


@dataclass
class LayerRow:
    name: str
    shape: list[int]
    neurons: int
    kind: str                    # neurons | readout | source
    i_decay: int
    v_decay: int
    vth_mant: int
    threshold: float             # slayer units: vth_mant / 64
    bias_min: int | None
    bias_max: int | None
    synapses_in: int
    fan_in_mean: float
    fan_in_max: int
    fan_out_mean: float
    attention_in: list[str] = field(default_factory=list)
    synapses: list[SynapseRow] = field(default_factory=list)
    quant_error: QuantError | None = None


@dataclass
class EncoderRow:
    name: str
    modality: str
    dst: str
    in_channels: int
    out_channels: int
    kernel: list[int]
    stride: list[int]
    padding: list[int]
    input_frac_bits: int
    shift: int
    weight_bits_used: int
    module: str = ""
    weight_error: QuantError | None = None
    bias_error: QuantError | None = None


@dataclass
class Manifest:
    schema: str
    tool: str
    created: str
    versions: dict
    source: dict
    input: dict
    num_steps: int
    time_steps: int | None
    readout: dict
    layers: list[LayerRow]
    encoders: list[EncoderRow]
    netx: dict
    onnx: dict
    teacher: dict | None = None
    totals: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        def qe(x):
            return None if x is None else QuantError(**x)

        layers = []
        for row in d["layers"]:
            row = dict(row)
            row["synapses"] = [SynapseRow(**{**s, "quant_error": qe(s["quant_error"])})
                               for s in row["synapses"]]
            row["quant_error"] = qe(row["quant_error"])
            layers.append(LayerRow(**row))
        encoders = [EncoderRow(**{**e, "weight_error": qe(e["weight_error"]),
                                  "bias_error": qe(e["bias_error"])}) for e in d["encoders"]]
        rest = {k: v for k, v in d.items() if k not in ("layers", "encoders")}
        return cls(layers=layers, encoders=encoders, **rest)


# ---------------------------------------------------------------------------------------------
def quant_error(float_w: np.ndarray, chip_w: np.ndarray, lsb: float) -> QuantError:
    """Error of ``chip_w`` (what the chip uses) against ``float_w``, both in the same units;
    ``lsb``: the value of one step of the integer's last bit in those units."""
    f = np.asarray(float_w, np.float64).reshape(-1)
    c = np.asarray(chip_w, np.float64).reshape(-1)
    d = c - f
    norm = float(np.linalg.norm(f))
    rel = float(np.linalg.norm(d) / norm) if norm > 0 else (0.0 if not d.any() else math.inf)
    mx = float(np.abs(d).max()) if d.size else 0.0
    return QuantError(rel_l2=rel, max_abs=mx, max_abs_lsb=mx / lsb, n=int(f.size))


def _pool(errors: list[tuple[QuantError, np.ndarray, np.ndarray]]) -> QuantError | None:
    if not errors:
        return None
    sq_d = sum(float(np.sum((c - f) ** 2)) for _, f, c in errors)
    sq_f = sum(float(np.sum(f ** 2)) for _, f, _ in errors)
    rel = math.sqrt(sq_d / sq_f) if sq_f > 0 else 0.0
    return QuantError(rel_l2=rel, max_abs=max(e.max_abs for e, _, _ in errors),
                      max_abs_lsb=max(e.max_abs_lsb for e, _, _ in errors),
                      n=sum(e.n for e, _, _ in errors))


def _bits_used(w: np.ndarray) -> int:
    """Two's-complement bits the largest magnitude needs (sign included)."""
    w = np.asarray(w)
    if not w.size or not w.any():
        return 1
    return int(max(int(w.max()), -int(w.min()) - 1)).bit_length() + 1


def _delay(d) -> int | str:
    return int(d) if np.ndim(d) == 0 else f"per-synapse {int(np.min(d))}..{int(np.max(d))}"


def layer_table(net: Network, floats: dict[str, FloatWeight], sources: dict[str, str]
                ) -> list[LayerRow]:
    """One row per neuron group (see module docstring)."""
    groups = {g.name: g for g in net.groups}
    counts = {s.name: synapse_count(s, groups[s.src], groups[s.dst]) for s in net.synapses}
    out_syn = {g.name: sum(counts[s.name] for s in net.synapses if s.src == g.name)
               for g in net.groups}
    rows = []
    for g in net.groups:
        syn_rows, errs = [], []
        for s in net.incoming(g.name):
            w = np.asarray(s.weight)
            fw = floats.get(s.name)
            qe = None
            if fw is not None and fw.weight.shape == w.shape:
                chip = w.astype(np.float64) * 2.0 ** s.weight_exp
                qe = quant_error(fw.weight, chip, 2.0 ** s.weight_exp)
                errs.append((qe, fw.weight.reshape(-1), chip.reshape(-1)))
            syn_rows.append(SynapseRow(
                name=s.name, kind=s.kind, src=s.src, synapses=counts[s.name],
                fan_in_max=fan_in_max(s), weight_bits=loihi.WEIGHT_BITS,
                weight_bits_used=_bits_used(w), weight_exp=int(s.weight_exp),
                delay=_delay(s.delay), module=sources.get(s.name, ""), quant_error=qe))
        n_in = sum(r.synapses for r in syn_rows)
        b = None if g.bias is None else np.asarray(g.bias)
        kind = "source" if g.source else (
            "readout" if g.readout or g.name == net.readout else "neurons")
        rows.append(LayerRow(
            name=g.name, shape=[int(d) for d in g.shape], neurons=g.size, kind=kind,
            i_decay=g.params.i_decay, v_decay=g.params.v_decay, vth_mant=g.params.vth_mant,
            threshold=g.params.vth_mant / loihi.STATE_SCALE,
            bias_min=None if b is None or not b.size else int(b.min()),
            bias_max=None if b is None or not b.size else int(b.max()),
            synapses_in=n_in, fan_in_mean=n_in / g.size if g.size else 0.0,
            fan_in_max=sum(r.fan_in_max for r in syn_rows),
            fan_out_mean=out_syn[g.name] / g.size if g.size else 0.0,
            attention_in=[a.name for a in net.attentions if a.dst == g.name],
            synapses=syn_rows, quant_error=_pool(errs)))
    return rows


def encoder_table(net: Network, floats: dict[str, FloatWeight], sources: dict[str, str]
                  ) -> list[EncoderRow]:
    rows = []
    for e in net.encoders:
        w = np.asarray(e.weight)
        fw = floats.get(e.name)
        we = be = None
        if fw is not None:
            # the encoder computes (conv(x_int, W) + B) >> shift with x_int = x 2**f, i.e. the
            # a-unit weight W 2**(f - shift) and bias B 2**-shift
            step_w = 2.0 ** (e.input_frac_bits - e.shift)
            we = quant_error(fw.weight, w * step_w, step_w)
            if fw.bias is not None:
                step_b = 2.0 ** -e.shift
                be = quant_error(fw.bias, np.asarray(e.bias) * step_b, step_b)
        rows.append(EncoderRow(
            name=e.name, modality=e.modality, dst=e.dst, in_channels=int(w.shape[1]),
            out_channels=int(w.shape[0]), kernel=[int(k) for k in w.shape[2:]],
            stride=[int(s) for s in e.stride], padding=[int(p) for p in e.padding],
            input_frac_bits=int(e.input_frac_bits), shift=int(e.shift),
            weight_bits_used=_bits_used(w), module=sources.get(e.name, ""),
            weight_error=we, bias_error=be))
    return rows


def versions() -> dict[str, str | None]:
    """Installed versions of the tools the conversion depends on (None when not installed)."""
    out = {}
    for dist in VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def encoding_text(net: Network) -> str:
    """How a skeleton sample becomes the input of time step t (for manifest.input.encoding)."""
    return (
        "x float32 (K, 3, T, V, M) in real units (metres; motion: metres per frame), modality k "
        "in input.modalities order; the M bodies are folded into channels, (3, T, V, M) -> "
        "(3*M, T, V) with channel c*M + m. Per modality, on the host: x_int = clip(round(x * "
        "2**input_frac_bits), -32768, 32767); bias = clip((conv2d(x_int, W, stride, padding) + B)"
        " >> shift, -4096, 4095); bias is the bias mantissa (exponent 6) of the encoder's "
        "destination group. The input is the same at every time step t = 0 .. num_steps - 1: "
        "nothing else enters the network; the readout group's voltage after the last step is "
        "the class score vector (logits = v / readout.logit_scale).")
