"""Reading a trained model for conversion: checkpoint checks, the op whitelist, float weights.

The student describes itself for export (``Student.to_network``, every part's ``export``). What the
converter adds here:

- ``load``: a checkpoint file or run directory -> (model, info), with one-line errors for files
  that are not mksgn checkpoints or hold the wrong kind of model.
- ``check_modules``: every leaf module must be a part the converter knows how to map to Loihi
  (``EXPORTED``), a part folded into one (``FOLDED``), or a training-only part (``TRAINING_ONLY``);
  anything else is refused naming its module path and type.
- ``export_with_float``: runs ``to_network`` once while recording which module exported which
  synapse / encoder (by wrapping each part's ``export`` for the duration of the call), so that
  every exported integer weight can be set beside the float weight it was quantised from. The
  float weight is re-quantised with the training-time quantiser (``mksgn.quant``) and must
  reproduce the exported mantissas exactly: there is one quantiser, not a second implementation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mksgn import loihi
from mksgn.netgraph import Encoder, Network, NeuronGroup, Synapse

__all__ = ["ConvertError", "FloatWeight", "first_line", "load", "check_modules",
           "check_neuron_params", "export_with_float", "requantize_matches", "check_ranges",
           "TRAINING_ONLY"]

# Top-level children of the student that exist only for training losses and are not deployed:
# ``aux``: the per-modality auxiliary heads of the mutual-information loss (train/student.py).
TRAINING_ONLY = ("aux",)


class ConvertError(Exception):
    """A conversion that cannot go on; ``str(e)`` is one line naming the file/module and why."""


@dataclass
class FloatWeight:
    """The float (unquantised) weights behind one exported synapse or encoder.

    Synapses: ``weight`` in a-units (``64 * w_real``, the synaptic input one spike gives), laid out
    exactly as ``Synapse.weight``; the chip uses ``mantissa * 2**weight_exp`` in its place.
    Encoders: ``weight`` (C_out, C_in, k_t, k_v) and ``bias`` (C_out,) such that the encoder's
    output in a-units is ``conv(x, weight) + bias`` for x in real units.
    module: the student's module path that exported it.
    """
    module: str
    weight: np.ndarray
    bias: np.ndarray | None = None


# ---------------------------------------------------------------------------------------------
def load(path: str | Path, kind: str) -> tuple[nn.Module, dict]:
    """(model, info) of a ``kind`` ("student" | "teacher") checkpoint file or run directory.

    info is ``mksgn.train.checkpoint.load_model``'s plus ``file`` (the .pt actually read).
    Raises ConvertError with one line for a missing file, a file that is not an mksgn checkpoint,
    a checkpoint of the other kind, or one whose model cannot be rebuilt.
    """
    from mksgn.train import checkpoint as ck

    path = Path(path)
    try:
        file = ck.resolve(path)
    except FileNotFoundError as e:
        raise ConvertError(str(e)) from None
    try:
        model, info = ck.load_model(file)
    except Exception as e:  # noqa: BLE001 - diagnose below, one line for the user
        raise ConvertError(_diagnose(file, kind, e)) from None
    if info["kind"] != kind:
        raise ConvertError(_wrong_kind(file, info["kind"], kind))
    model.eval()
    info = dict(info)
    info["file"] = file
    return model, info


def _wrong_kind(file: Path, got, kind: str) -> str:
    hint = ("give the student's run (mksgn train student)" if kind == "student"
            else "give the teacher's run (mksgn train teacher)")
    return f"{file}: a {got!r} checkpoint where a {kind} is needed; {hint}"


def _diagnose(file: Path, kind: str, err: BaseException) -> str:
    """Why ``load_model`` failed on ``file``, in one line (the file is read once more only on
    this error path)."""
    try:
        raw = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        return f"{file}: not a readable checkpoint ({type(e).__name__}: {first_line(e)})"
    if not isinstance(raw, dict) or not {"kind", "config", "model"} <= set(raw):
        return f"{file}: not an mksgn checkpoint (no kind/config/model entries)"
    if raw["kind"] != kind:
        return _wrong_kind(file, raw["kind"], kind)
    return (f"{file}: cannot rebuild the {kind} from this checkpoint "
            f"({type(err).__name__}: {first_line(err)})")


def first_line(e: BaseException) -> str:
    """The first line of ``str(e)`` (its type's name when empty), for one-line errors."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# ---------------------------------------------------------------------------------------------
def _part_types():
    from mksgn.train.spiking import (ConvSynapse, GraphSynapse, LoihiCuba, PooledReadout,
                                     SkeletonSpikingCoding, SpikingJointAttention)
    exported = (LoihiCuba, ConvSynapse, GraphSynapse, SpikingJointAttention, PooledReadout,
                SkeletonSpikingCoding)
    return exported


# Leaf types that live inside an exported part and are folded into it (SSC's batch norm is folded
# into the encoder's integer conv).
FOLDED = (nn.BatchNorm2d,)


def check_modules(model: nn.Module) -> None:
    """Refuse a model with a module the converter has no Loihi mapping for.

    Walks the module tree: exported parts (neurons, synapse groups, attention, readout, SSC) and
    what they fold in are known; ``TRAINING_ONLY`` top-level children are skipped; any other leaf
    module raises ConvertError("cannot convert <module.path> (<Type>): no Loihi mapping").
    """
    exported = _part_types()

    def walk(mod: nn.Module, path: str) -> None:
        if isinstance(mod, exported):
            for sub_path, sub in mod.named_modules(prefix=path):
                if sub is not mod and not isinstance(sub, FOLDED + exported):
                    raise ConvertError(f"convert: cannot convert {sub_path} "
                                       f"({type(sub).__name__}): no Loihi mapping")
            return
        children = list(mod.named_children())
        if not children:
            raise ConvertError(f"convert: cannot convert {path or '<model>'} "
                               f"({type(mod).__name__}): no Loihi mapping")
        for name, child in children:
            if not path and name in TRAINING_ONLY:
                continue
            walk(child, f"{path}.{name}" if path else name)

    walk(model, "")


# ---------------------------------------------------------------------------------------------
def _float_of(mod: nn.Module, obj, args: tuple, kwargs: dict) -> FloatWeight | None:
    """The float weights behind what ``mod.export(*args, **kwargs)`` returned (None: no weights)."""
    from mksgn.train.spiking import (ConvSynapse, GraphSynapse, PooledReadout,
                                     SkeletonSpikingCoding)
    scale = float(loihi.STATE_SCALE)
    with torch.no_grad():
        if isinstance(mod, ConvSynapse):
            s = kwargs.get("scale", args[3] if len(args) > 3 else None)
            w = mod.real_weight(s)
        elif isinstance(mod, GraphSynapse):
            w = mod.real_weight()
        elif isinstance(mod, PooledReadout):
            w = torch.repeat_interleave(mod.real_weight(), mod.positions, dim=1)
        elif isinstance(mod, SkeletonSpikingCoding):
            w, b = mod.folded(None)
            return FloatWeight("", (w.double() * scale).cpu().numpy(),
                               (b.double() * scale).cpu().numpy())
        elif hasattr(mod, "real_weight"):
            w = mod.real_weight()
        else:
            return None
    return FloatWeight("", (w.detach().double() * scale).cpu().numpy())


def export_with_float(model: nn.Module) -> tuple[Network, dict[str, FloatWeight], dict[str, str]]:
    """``model.to_network()`` plus, per exported synapse/encoder name, its float weights.

    Returns (network, floats, sources): ``floats[name]`` for every synapse and encoder whose
    exporting module has float weights; ``sources[name]`` the module path that exported each
    group, synapse, attention and encoder. Raises ConvertError when the model has no
    ``to_network``, when export fails, or when a known part was not exported (its computation
    would be missing from the network).
    """
    if not hasattr(model, "to_network"):
        raise ConvertError(f"convert: cannot convert <model> ({type(model).__name__}): "
                           f"it has no to_network() (not an MK-SGN student)")
    exported = _part_types()
    records: dict[str, tuple[str, nn.Module, tuple, dict]] = {}
    wrapped = []
    for path, mod in model.named_modules():
        if isinstance(mod, exported) and "export" not in mod.__dict__:
            def export(*args, _orig=mod.export, _mod=mod, _path=path, **kwargs):
                obj = _orig(*args, **kwargs)
                records[obj.name] = (_path, _mod, args, kwargs)
                return obj
            mod.__dict__["export"] = export        # shadows the method for this call only
            wrapped.append(mod)
    try:
        model.eval()
        net = model.to_network()
    except ValueError as e:
        raise ConvertError(f"convert: the student's export failed: {first_line(e)}") from None
    finally:
        for mod in wrapped:
            mod.__dict__.pop("export", None)
    used = {id(m) for _, m, _, _ in records.values()}
    for path, mod in model.named_modules():
        if isinstance(mod, exported) and id(mod) not in used \
                and not any(path == t or path.startswith(t + ".") for t in TRAINING_ONLY):
            raise ConvertError(f"convert: {path} ({type(mod).__name__}) was not exported by "
                               f"to_network(): the network would miss its computation")
    floats: dict[str, FloatWeight] = {}
    for name, (path, mod, args, kwargs) in records.items():
        obj = [o for o in (*net.synapses, *net.encoders) if o.name == name]
        if not obj:
            continue
        fw = _float_of(mod, obj[0], args, kwargs)
        if fw is not None:
            fw.module = path
            floats[name] = fw
    sources = {name: rec[0] for name, rec in records.items()}
    return net, floats, sources


# ---------------------------------------------------------------------------------------------
def requantize_matches(syn: Synapse, fw: FloatWeight, exp: int | None = None) -> bool:
    """Whether the training-time quantiser, run on the float weights, gives the exported ones.

    exp: the student's fixed weight exponent (``StudentConfig.weight_exp``), None when the
    quantiser chooses one per group."""
    from mksgn import quant
    w_real = torch.from_numpy(fw.weight / float(loihi.STATE_SCALE))
    m, e = quant.quantize_weight(w_real, exp)
    return e == syn.weight_exp and np.array_equal(m.numpy().astype(np.int64),
                                                  np.asarray(syn.weight, dtype=np.int64))


def check_ranges(net: Network, floats: dict[str, FloatWeight], sources: dict[str, str],
                 fixed_exp: int | None = None) -> None:
    """Refuse values that do not fit Loihi's formats, naming the layer and the value.

    - a synapse whose float weights exceed what 8-bit mantissas with the largest exponent hold
      (the quantiser would have clipped them): ``|w_a - m 2**e| > 2**e``. With a fixed exponent
      (``fixed_exp``, the student's ``weight_exp``) clamping to the 8-bit mantissa range is the
      trained behaviour, so weights are compared with their clamped values there;
    - exported mantissas outside [WEIGHT_MIN, WEIGHT_MAX], exponents outside the 4-bit range;
    - static bias mantissas beyond 13-bit signed; thresholds beyond 17-bit unsigned; decays
      beyond 12 bits;
    - encoder float weights/bias the host integer encoder clipped.
    """
    def where(name: str) -> str:
        return f"{name} ({sources[name]})" if name in sources else name

    for s in net.synapses:
        _check_synapse_format(s, where(s.name))
        fw = floats.get(s.name)
        if fw is not None and fw.weight.size:
            _check_weight_overflow(s, fw, fixed_exp, where(s.name))
    for g in net.groups:
        _check_group(g, where(g.name))
    for e in net.encoders:
        fw = floats.get(e.name)
        if fw is not None:
            _check_encoder(e, fw, where(e.name))


def _check_synapse_format(s: Synapse, where: str) -> None:
    """The exported weight exponent and mantissas are within Loihi's 4-bit and 8-bit ranges."""
    w = np.asarray(s.weight)
    if not loihi.WEIGHT_EXP_MIN <= s.weight_exp <= loihi.WEIGHT_EXP_MAX:
        raise ConvertError(f"convert: {where}: weight exponent {s.weight_exp} outside "
                           f"Loihi's [{loihi.WEIGHT_EXP_MIN}, {loihi.WEIGHT_EXP_MAX}]")
    if w.size and (w.min() < loihi.WEIGHT_MIN or w.max() > loihi.WEIGHT_MAX):
        bad = int(w.min()) if w.min() < loihi.WEIGHT_MIN else int(w.max())
        raise ConvertError(f"convert: {where}: weight mantissa {bad} outside Loihi's "
                           f"8-bit [{loihi.WEIGHT_MIN}, {loihi.WEIGHT_MAX}]")


def _check_weight_overflow(s: Synapse, fw: FloatWeight, fixed_exp: int | None,
                           where: str) -> None:
    """The float weights (a-units) are within one exponent step of the exported ``m * 2**e``:
    further away, the quantiser clipped them (``check_ranges``)."""
    eff = np.asarray(s.weight).astype(np.float64) * 2.0 ** s.weight_exp
    ref = fw.weight
    if fixed_exp is not None and s.weight_exp == fixed_exp:
        ref = np.clip(ref, loihi.WEIGHT_MIN * 2.0 ** fixed_exp,
                      loihi.WEIGHT_MAX * 2.0 ** fixed_exp)
    err = np.abs(ref - eff)
    i = int(np.argmax(err))
    if err.flat[i] > 2.0 ** s.weight_exp * (1 + 1e-6):
        big = float(fw.weight.flat[i])
        lim = loihi.WEIGHT_MAX * 2.0 ** loihi.WEIGHT_EXP_MAX
        raise ConvertError(
            f"convert: {where}: weight {big / loihi.STATE_SCALE:.6g} "
            f"({big:.6g} a-units) overflows Loihi's range: 8-bit mantissa x 2**"
            f"{loihi.WEIGHT_EXP_MAX} holds at most +/-{lim:.0f} a-units")


def _check_group(g: NeuronGroup, where: str) -> None:
    """A group's bias mantissas (13-bit signed), threshold (17-bit) and decays (12-bit)."""
    p = g.params
    if g.bias is not None and np.size(g.bias):
        b = np.asarray(g.bias)
        if b.min() < loihi.BIAS_MANT_MIN or b.max() > loihi.BIAS_MANT_MAX:
            bad = int(b.min()) if b.min() < loihi.BIAS_MANT_MIN else int(b.max())
            raise ConvertError(f"convert: {where}: bias mantissa {bad} outside "
                               f"Loihi's 13-bit [{loihi.BIAS_MANT_MIN}, {loihi.BIAS_MANT_MAX}]")
    if not 0 <= p.vth_mant <= loihi.VTH_MANT_MAX:
        raise ConvertError(f"convert: {where}: threshold vThMant {p.vth_mant} outside "
                           f"Loihi's 17-bit [0, {loihi.VTH_MANT_MAX}]")
    for key, d in (("iDecay", p.i_decay), ("vDecay", p.v_decay)):
        if not 0 <= d <= loihi.DECAY_UNITY:
            raise ConvertError(f"convert: {where}: {key} {d} outside Loihi's "
                               f"12-bit [0, {loihi.DECAY_UNITY}]")


def _check_encoder(e: Encoder, fw: FloatWeight, where: str) -> None:
    """The host's integer encoder holds the float weights and bias (rounding only, no clip)."""
    from mksgn import quant
    scale = 2.0 ** (e.shift - e.input_frac_bits)
    werr = np.abs(fw.weight * scale - np.asarray(e.weight, np.float64))
    if werr.size and werr.max() > 0.5 + 1e-6:
        raise ConvertError(f"convert: {where}: encoder weight overflows the host's "
                           f"{quant.ENCODER_WEIGHT_MAX.bit_length() + 1}-bit integer conv")
    berr = np.abs(fw.bias * 2.0 ** e.shift - np.asarray(e.bias, np.float64))
    if berr.size and berr.max() > 0.5 + 1e-6:
        raise ConvertError(f"convert: {where}: encoder bias "
                           f"{float(fw.bias.flat[int(np.argmax(berr))]):.6g} a-units "
                           f"overflows the host's 32-bit integer bias")


def check_neuron_params(model: nn.Module) -> None:
    """Thresholds and decays of every neuron module fit Loihi (checked before export, which would
    fail with a message that does not name the layer)."""
    from mksgn.train.spiking import LoihiCuba
    for path, mod in model.named_modules():
        if not isinstance(mod, LoihiCuba):
            continue
        vth = float(mod.threshold) * loihi.STATE_SCALE
        if not math.isfinite(vth) or not 0 <= int(vth) <= loihi.VTH_MANT_MAX:
            raise ConvertError(f"convert: {path} (LoihiCuba): threshold {float(mod.threshold):.6g} "
                               f"(vThMant {vth:.6g}) outside Loihi's 17-bit [0, "
                               f"{loihi.VTH_MANT_MAX}]")
        for key, d in (("iDecay", mod.cx_current_decay), ("vDecay", mod.cx_voltage_decay)):
            if not 0 <= int(d) <= loihi.DECAY_UNITY:
                raise ConvertError(f"convert: {path} (LoihiCuba): {key} {int(d)} outside Loihi's "
                                   f"12-bit [0, {loihi.DECAY_UNITY}]")
