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
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mksgn import netgraph, netx_io
from mksgn.files import sha256

from . import compat, manifest as mf, netx_lower, onnx_export, student_io
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


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConvertError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConvertError(f"{out}: exists and is not empty (use --force to replace it)")


def _commit(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` directory to ``out`` (replacing it), as atomically as a
    directory can be: ``out`` is either the old or the new content, never a mix."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _example_input(cfg_model, layout, window: int, batch: int = 2) -> torch.Tensor:
    """A deterministic sample (N, K, 3, T, V, M) of skeleton-like magnitudes for ONNX checks."""
    k = len(cfg_model.modalities)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, k, getattr(cfg_model, "coords", 3), window, layout.num_joints,
                    getattr(cfg_model, "persons", 2), generator=g) * 0.5
    return x


def _run_info(info: dict, file: Path) -> dict:
    from mksgn.train.config import to_dict
    metrics = info.get("metrics") or []
    return {"checkpoint": str(Path(file).resolve()), "sha256": sha256(Path(file)),
            "kind": info.get("kind"), "epoch": info.get("epoch"),
            "num_classes": info.get("num_classes"),
            "layout": getattr(info.get("layout"), "name", None),
            "metrics": metrics[-1] if metrics else None,
            "config": to_dict(info["config"])}


def _dataset_name(cfg) -> str | None:
    """The dataset named in the prepared data's info.json, when that is still on disk."""
    try:
        p = cfg.data.benchmark_dir() / "info.json"
        return json.loads(p.read_text()).get("dataset") if p.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None


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
    _check_out(out, force)
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


def convert_model(model: torch.nn.Module, info: dict, out: Path,
                  teacher_model: torch.nn.Module | None = None, teacher_info: dict | None = None,
                  force: bool = False, seconds: dict[str, float] | None = None) -> ConvertResult:
    """Convert an already loaded student (``info`` as from ``student_io.load``)."""
    out = Path(out)
    _check_out(out, force)
    seconds = dict(seconds or {})
    t = time.perf_counter()
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
    # stock netx: chain networks only, lowered to netx's layer types
    lowered, netx_note, layout = None, "", {}
    try:
        order = netx_io.chain_order(net)
    except ValueError as e:
        netx_note = f"graph network ({e}); /mksgn section only"
    else:
        try:
            lowered, layout = netx_lower.lower(net, order)
        except ValueError as e:
            netx_note = f"chain network, but {e}"
    netx_layers: list[dict] = []
    if lowered is not None:
        try:
            netx_layers = _netx_layer_map(lowered, layout)
        except ValueError as e:     # the writer refuses it (e.g. netx's weight sign modes)
            netx_note = f"chain network, but netx cannot hold it: {e}"
            lowered = None
    seconds["export"] = time.perf_counter() - t

    cfg = info["config"]
    layout_obj = info["layout"]
    window = int(getattr(cfg.model, "frames", cfg.data.window))
    modalities = [e.modality for e in net.encoders]
    net.meta = dict(net.meta)
    net.meta.update({"window": window, "converted_by": "mksgn convert",
                     "source_sha256": sha256(Path(info["file"])) if "file" in info else None})
    if lowered is not None:
        # the graph section records which /layer holds which of its groups, and how
        net.meta["netx"] = {"layers": netx_layers, "fold": netx_lower.FOLD_TEXT}
        netx_note = f"{len(netx_layers)} layers; " + (
            netx_lower.FOLD_TEXT if "folded" in layout.values() else "same layout as /mksgn")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        t = time.perf_counter()
        netgraph.save(net, tmp / "model.net", extra_writer=None if lowered is None else (
            lambda h5: netx_io.write_netx_layers(lowered, h5)))
        seconds["model.net"] = time.perf_counter() - t

        t = time.perf_counter()
        example = _example_input(cfg.model, layout_obj, window)
        rate_model = onnx_export.FloatRateModel(net, floats, modalities).eval()
        onnx_export.export_onnx(rate_model, example, tmp / "student_float.onnx")
        onnx_info = {"opset": onnx_export.OPSET,
                     "student_float.onnx": {
                         "contents": "float rate-coded ANN counterpart of the student (float "
                                     "weights, CUBA groups as clip((a/d_i + b)/vth, 0, 1) rates; "
                                     "see docs/netfile.md)",
                         "input": "x float32 (N, K, 3, T, V, M)", "output": "logits (N, classes)",
                         "max_rel_diff_onnxruntime": onnx_export.check_onnx(
                             tmp / "student_float.onnx", rate_model, example)}}
        teacher_entry = None
        if teacher_model is not None:
            tcfg = teacher_info["config"]
            # one sample: tracing and the onnxruntime check each run the teacher once
            t_example = _example_input(tcfg.model, teacher_info["layout"], int(tcfg.data.window),
                                       batch=1)
            wrapper = onnx_export.LogitsOnly(teacher_model).eval()
            try:
                onnx_export.export_onnx(wrapper, t_example, tmp / "teacher.onnx")
            except Exception as e:  # noqa: BLE001
                raise ConvertError(f"{teacher_info['file']}: the teacher does not export to ONNX "
                                   f"({type(e).__name__}: {student_io._first_line(e)})") from None
            onnx_info["teacher.onnx"] = {
                "input": "x float32 (N, K, 3, T, V, M)", "output": "logits (N, classes)",
                "max_rel_diff_onnxruntime": onnx_export.check_onnx(tmp / "teacher.onnx",
                                                                   wrapper, t_example)}
            teacher_entry = _run_info(teacher_info, teacher_info["file"])
        seconds["onnx"] = time.perf_counter() - t

        report = compat.compat_report(net, stock_netx=lowered is not None,
                                      stock_netx_note=netx_note)
        (tmp / "compat.json").write_text(json.dumps(report.to_dict(), indent=1))
        shutil.copyfile(info["file"], tmp / "student.pt")

        encoders = mf.encoder_table(net, floats, sources)
        layers = mf.layer_table(net, floats, sources)
        man = mf.Manifest(
            schema=mf.SCHEMA, tool="mksgn convert",
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            versions=mf.versions(), source=_run_info(info, info["file"]),
            input={"modalities": modalities, "window": window,
                   "dataset": _dataset_name(cfg), "benchmark": cfg.data.benchmark,
                   "pipeline": cfg.data.pipeline,
                   "layout": layout_obj.name, "joints": layout_obj.num_joints,
                   "persons": "fold",
                   "encoding": {"text": mf.encoding_text(net),
                                "encoders": [{"modality": e.modality, "group": e.dst,
                                              "input_frac_bits": e.input_frac_bits,
                                              "shift": e.shift} for e in encoders]}},
            num_steps=net.num_steps, time_steps=net.meta.get("time_steps"),
            readout={"group": net.readout, "logit_scale": net.meta.get("logit_scale"),
                     "classes": int(np.prod(net.group(net.readout).shape)) if net.readout else 0,
                     "text": "class scores: the readout group's v after the last step; "
                             "logits = v / logit_scale"},
            layers=layers, encoders=encoders,
            netx={"stock_netx": lowered is not None, "note": netx_note, "layers": netx_layers},
            onnx=onnx_info, teacher=teacher_entry,
            totals={"neurons": report.resources.neurons, "synapses": report.resources.synapses,
                    "loihi2_cores": report.resources.loihi2_cores,
                    "quant_rel_l2_max": max((r.quant_error.rel_l2 for r in layers
                                             if r.quant_error), default=None)},
            files={p.name: sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()})
        (tmp / "manifest.json").write_text(json.dumps(man.to_dict(), indent=1))
        _commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ConvertResult(out=out, network=net, report=report, manifest=man, seconds=seconds)
