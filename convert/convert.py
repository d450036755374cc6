"""``mksgn convert``: student -> DIR/{model.net, manifest.json, compat.json, ONNX, student.pt}.

Order of work (every check that can fail comes before anything is written, and everything is
written into a temporary directory beside DIR that replaces DIR only at the end):

1. refuse an existing non-empty DIR without ``force``; check the teacher path exists;
2. load the student (kind checked), refuse unknown modules and out-of-range neuron parameters;
3. export the network while recording the float weights behind every integer weight, and
   refuse weights that overflow Loihi's formats;
4. for a chain network, lower it to stock-netx layers (``netx_lower``) - written as ``/layer``
   beside the ``/mksgn`` graph section;
5. write model.net, student_float.onnx (+ teacher.onnx), compat.json, student.pt, manifest.json;
6. rename the temporary directory into place.
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mksgn import netgraph, netx_io
from mksgn.data.prepare import prepared_dataset
from mksgn.files import sha256

from . import compat, manifest as mf, netx_lower, onnx_export, student_io
from .outdir import check_out, staged
from .student_io import ConvertError

__all__ = ["ConvertError", "ConvertResult", "convert", "convert_model", "OUTPUT_FILES"]

OUTPUT_FILES = ("model.net", "manifest.json", "compat.json", "student_float.onnx", "student.pt",
                "teacher.onnx")


@dataclass
class ConvertResult:
    out: Path
    network: netgraph.Network
    report: compat.CompatReport
    manifest: mf.Manifest
    seconds: dict[str, float]


def _run_info(info: dict, file: Path) -> dict:
    from mksgn.train.config import to_dict
    metrics = info.get("metrics") or []
    return {"checkpoint": str(Path(file).resolve()), "sha256": sha256(Path(file)),
            "kind": info.get("kind"), "epoch": info.get("epoch"),
            "num_classes": info.get("num_classes"),
            "layout": getattr(info.get("layout"), "name", None),
            "metrics": metrics[-1] if metrics else None,
            "config": to_dict(info["config"])}


def _netx_layer_map(lowered: netgraph.Network, layout: dict[str, str]) -> list[dict]:
    """Write the lowered chain's /layer section into a throw-away in-memory file (raising the
    writer's ValueError if netx cannot hold it) and map every netx layer index to its group."""
    import io

    import h5py

    names = [g.name for g in lowered.groups]
    out = []
    with h5py.File(io.BytesIO(), "w") as h5:
        netx_io.write_netx_layers(lowered, h5)
        idx = 0
        for i in range(len(h5["layer"])):
            kind = h5["layer"][str(i)]["type"][()]
            kind = (kind[0] if isinstance(kind, np.ndarray) else kind).decode()
            if kind == "flatten":
                continue
            out.append({"index": i, "type": kind, "group": names[idx],
                        "layout": layout[names[idx]]})
            idx += 1
    return out


def convert(checkpoint: str | Path, out: str | Path, teacher: str | Path | None = None,
            force: bool = False) -> ConvertResult:
    """Convert the student in ``checkpoint`` (a .pt or a run directory) into ``out``."""
    out = Path(out)
    check_out(out, force)
    if teacher is not None and not Path(teacher).exists():
        raise ConvertError(f"{teacher}: no such teacher checkpoint or run directory")
    threads = torch.get_num_threads()
    # the models are small: one thread is fastest, and on a shared machine torch's OpenMP pool
    # can be ~100x slower than one thread (measured: the synthetic teacher's forward, 22 s vs
    # 0.05 s on 2 busy cores)
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        model, info = student_io.load(checkpoint, "student")
        teacher_model = teacher_info = None
        if teacher is not None:
            teacher_model, teacher_info = student_io.load(teacher, "teacher")
        seconds = {"load": time.perf_counter() - t0}
        return convert_model(model, info, out, teacher_model, teacher_info, force=force,
                             seconds=seconds)
    finally:
        torch.set_num_threads(threads)


@dataclass
class _NetxForm:
    """The stock-netx form of a network: ``lowered`` (None when there is none: ``note`` says
    why) and per netx layer its index, type, group and layout (``_netx_layer_map``)."""
    lowered: netgraph.Network | None = None
    note: str = ""
    layers: list[dict] = field(default_factory=list)


def _export_checked(model: torch.nn.Module
                    ) -> tuple[netgraph.Network, dict[str, student_io.FloatWeight], dict[str, str]]:
    """``student_io.export_with_float`` after the module and neuron checks, then every range
    check; raises ConvertError when a synapse's float weights do not re-quantise to its own."""
    student_io.check_modules(model)
    student_io.check_neuron_params(model)
    net, floats, sources = student_io.export_with_float(model)
    # a student trained with one fixed weight exponent (StudentConfig.weight_exp) clamps its
    # mantissas instead of choosing exponents: the checks below re-quantise the same way
    fixed_exp = getattr(getattr(model, "cfg", None), "weight_exp", None)
    student_io.check_ranges(net, floats, sources, fixed_exp)
    not_requant = [n for n, fw in floats.items() if n in {s.name for s in net.synapses}
                   and not student_io.requantize_matches(
                       next(s for s in net.synapses if s.name == n), fw, fixed_exp)]
    if not_requant:
        raise ConvertError(f"convert: {not_requant[0]} ({sources.get(not_requant[0], '?')}): its "
                           f"float weights do not re-quantise to the exported ones")
    return net, floats, sources


def _netx_form(net: netgraph.Network) -> _NetxForm:
    """Stock netx: chain networks only, lowered to netx's layer types."""
    try:
        order = netx_io.chain_order(net)
    except ValueError as e:
        return _NetxForm(note=f"graph network ({e}); /mksgn section only")
    try:
        lowered, layout = netx_lower.lower(net, order)
    except ValueError as e:
        return _NetxForm(note=f"chain network, but {e}")
    try:
        layers = _netx_layer_map(lowered, layout)
    except ValueError as e:     # the writer refuses it (e.g. netx's weight sign modes)
        return _NetxForm(note=f"chain network, but netx cannot hold it: {e}")
    note = f"{len(layers)} layers; " + (
        netx_lower.FOLD_TEXT if "folded" in layout.values() else "same layout as /mksgn")
    return _NetxForm(lowered, note, layers)


def _stamp_meta(net: netgraph.Network, info: dict, window: int, netx: _NetxForm) -> None:
    """Record in ``net.meta`` the window, the tool, the source's sha256 and, for a network with a
    /layer section, which netx layer holds which of its groups, and how."""
    net.meta = dict(net.meta)
    net.meta.update({"window": window, "converted_by": "mksgn convert",
                     "source_sha256": sha256(Path(info["file"])) if "file" in info else None})
    if netx.lowered is not None:
        net.meta["netx"] = {"layers": netx.layers, "fold": netx_lower.FOLD_TEXT}


def _student_onnx(tmp: Path, net: netgraph.Network, floats: dict[str, student_io.FloatWeight],
                  info: dict, window: int) -> dict:
    """Write tmp/student_float.onnx (``onnx_export.FloatRateModel``); its manifest entry."""
    cfg = info["config"]
    example = onnx_export.example_input(cfg.model, info["layout"], window)
    rate_model = onnx_export.FloatRateModel(net, floats, [e.modality for e in net.encoders]).eval()
    onnx_export.export_onnx(rate_model, example, tmp / "student_float.onnx")
    return {"contents": "float rate-coded ANN counterpart of the student (float "
                        "weights, CUBA groups as clip((a/d_i + b)/vth, 0, 1) rates; "
                        "see docs/netfile.md)",
            "input": "x float32 (N, K, 3, T, V, M)", "output": "logits (N, classes)",
            "max_rel_diff_onnxruntime": onnx_export.check_onnx(
                tmp / "student_float.onnx", rate_model, example)}


def _teacher_onnx(tmp: Path, teacher_model: torch.nn.Module, teacher_info: dict) -> dict:
    """Write tmp/teacher.onnx (the trained teacher's logits); its manifest entry."""
    tcfg = teacher_info["config"]
    # one sample: tracing and the onnxruntime check each run the teacher once
    t_example = onnx_export.example_input(tcfg.model, teacher_info["layout"],
                                          int(tcfg.data.window), batch=1)
    wrapper = onnx_export.LogitsOnly(teacher_model).eval()
    try:
        onnx_export.export_onnx(wrapper, t_example, tmp / "teacher.onnx")
    except Exception as e:  # noqa: BLE001
        raise ConvertError(f"{teacher_info['file']}: the teacher does not export to ONNX "
                           f"({type(e).__name__}: {student_io.first_line(e)})") from None
    return {"input": "x float32 (N, K, 3, T, V, M)", "output": "logits (N, classes)",
            "max_rel_diff_onnxruntime": onnx_export.check_onnx(tmp / "teacher.onnx",
                                                               wrapper, t_example)}


def _input_entry(net: netgraph.Network, encoders: list[mf.EncoderRow], cfg, layout_obj,
                 num_classes: int, window: int) -> dict:
    """The manifest's ``input``: modalities, window, data, layout and the input encoding."""
    return {"modalities": [e.modality for e in net.encoders], "window": window,
            "dataset": prepared_dataset(cfg.data.benchmark_dir(), layout_obj.name, num_classes),
            "benchmark": cfg.data.benchmark, "pipeline": cfg.data.pipeline,
            "layout": layout_obj.name, "joints": layout_obj.num_joints, "persons": "fold",
            "encoding": {"text": mf.encoding_text(net),
                         "encoders": [{"modality": e.modality, "group": e.dst,
                                       "input_frac_bits": e.input_frac_bits,
                                       "shift": e.shift} for e in encoders]}}


def _manifest(tmp: Path, net: netgraph.Network, floats: dict[str, student_io.FloatWeight],
              sources: dict[str, str], info: dict, window: int, netx: _NetxForm,
              report: compat.CompatReport, onnx_info: dict,
              teacher_entry: dict | None) -> mf.Manifest:
    """The manifest of the files already in ``tmp`` (their sha256 included)."""
    encoders = mf.encoder_table(net, floats, sources)
    layers = mf.layer_table(net, floats, sources)
    return mf.Manifest(
        schema=mf.SCHEMA, tool="mksgn convert",
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        versions=mf.versions(), source=_run_info(info, info["file"]),
        input=_input_entry(net, encoders, info["config"], info["layout"], info["num_classes"],
                           window),
        num_steps=net.num_steps, time_steps=net.meta.get("time_steps"),
        readout={"group": net.readout, "logit_scale": net.meta.get("logit_scale"),
                 "classes": int(np.prod(net.group(net.readout).shape)) if net.readout else 0,
                 "text": "class scores: the readout group's v after the last step; "
                         "logits = v / logit_scale"},
        layers=layers, encoders=encoders,
        netx={"stock_netx": netx.lowered is not None, "note": netx.note, "layers": netx.layers},
        onnx=onnx_info, teacher=teacher_entry,
        totals={"neurons": report.resources.neurons, "synapses": report.resources.synapses,
                "loihi2_cores": report.resources.loihi2_cores,
                "quant_rel_l2_max": max((r.quant_error.rel_l2 for r in layers
                                         if r.quant_error), default=None)},
        files={p.name: sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()})


def convert_model(model: torch.nn.Module, info: dict, out: Path,
                  teacher_model: torch.nn.Module | None = None, teacher_info: dict | None = None,
                  force: bool = False, seconds: dict[str, float] | None = None) -> ConvertResult:
    """Convert an already loaded student (``info`` as from ``student_io.load``)."""
    out = Path(out)
    check_out(out, force)
    seconds = dict(seconds or {})
    t = time.perf_counter()
    net, floats, sources = _export_checked(model)
    netx = _netx_form(net)
    seconds["export"] = time.perf_counter() - t

    cfg = info["config"]
    window = int(getattr(cfg.model, "frames", cfg.data.window))
    _stamp_meta(net, info, window, netx)
    with staged(out) as tmp:
        t = time.perf_counter()
        netgraph.save(net, tmp / "model.net", extra_writer=None if netx.lowered is None else (
            lambda h5: netx_io.write_netx_layers(netx.lowered, h5)))
        seconds["model.net"] = time.perf_counter() - t

        t = time.perf_counter()
        onnx_info = {"opset": onnx_export.OPSET,
                     "student_float.onnx": _student_onnx(tmp, net, floats, info, window)}
        teacher_entry = None
        if teacher_model is not None:
            onnx_info["teacher.onnx"] = _teacher_onnx(tmp, teacher_model, teacher_info)
            teacher_entry = _run_info(teacher_info, teacher_info["file"])
        seconds["onnx"] = time.perf_counter() - t

        report = compat.compat_report(net, stock_netx=netx.lowered is not None,
                                      stock_netx_note=netx.note)
        (tmp / "compat.json").write_text(json.dumps(report.to_dict(), indent=1))
        shutil.copyfile(info["file"], tmp / "student.pt")
        man = _manifest(tmp, net, floats, sources, info, window, netx, report, onnx_info,
                        teacher_entry)
        (tmp / "manifest.json").write_text(json.dumps(man.to_dict(), indent=1))
    return ConvertResult(out=out, network=net, report=report, manifest=man, seconds=seconds)
