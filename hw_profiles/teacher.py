"""Teacher (ANN) operation counts, per layer, from its ONNX graph or from a JSON file.

Counted per node of ``teacher.onnx`` after ONNX shape inference, batch size 1 (one sample):
- Conv / ConvTranspose: output elements x (C_in / groups) x kernel elements MACs;
- Gemm / MatMul: output elements x K MACs (K: the contracted dimension);
- a bias of Conv / Gemm: one add (AC) per output element;
- Einsum: product of the sizes of all distinct indices (every index combination is one MAC);
- elementwise Mul / Div: one MAC each per output element; Add / Sub: one add (AC) each;
- BatchNormalization (when not folded): one MAC per output element.
Everything else (ReLU, reshapes, pooling, softmax...) is not counted, nor is integer arithmetic
(the Mul / Add of shape computations a trace leaves behind: not work on data).
Nodes are grouped into layers by their module path (TorchScript export names,
``/m/streams.0/layers.1/gcn/conv/Conv``):
the prefix every node shares is dropped (``m``), then the first two components name the layer
(``streams.0/layers.1``); a node with no module path keeps its own name (``Add_2``).

Energy: cmos profiles: MACs E_mac + adds E_ac; ann_device profiles: (MACs + adds) E_op.

``read_teacher`` reads any teacher the report compares the student with: the trained one
(``DIR/teacher.onnx``, ``--teacher-macs``) or a reference one (``--reference-teacher``), e.g. the
paper-scale teacher ``mksgn convert --teacher-config`` builds untrained from its config, whose file
names its config in the ONNX ``metadata_props`` (``mksgn.config``, ``mksgn.weights``, ...).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click
import numpy as np

from mksgn.profiles import Profile


@dataclass
class TeacherLayer:
    """Operations of one teacher layer for one sample."""
    name: str
    macs: int
    adds: int = 0


@dataclass
class TeacherFile:
    """A teacher's per-layer operations (one sample) and where they came from.

    source: the file read. about: its ONNX ``mksgn.*`` metadata without the prefix (``config``,
    ``dataset``, ``weights``, ``input``; empty for a trained teacher's file or a JSON file).
    """
    source: str
    layers: list[TeacherLayer]
    about: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """What to call it: its config's file name when the file names one, else its own."""
        return Path(self.about["config"]).name if self.about.get("config") else \
            Path(self.source).name


def read_teacher(path: str | Path) -> TeacherFile:
    """A teacher from ``path``: an ONNX model, a ``--teacher-macs`` JSON file (``.json``), or a
    directory holding ``teacher.onnx``. Raises a one-line ClickException naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "teacher.onnx"
    if not path.is_file():
        raise click.ClickException(f"{path}: no such teacher file (an ONNX model, e.g. from "
                                   "`mksgn convert --teacher-config`, or a JSON of MACs)")
    if path.suffix.lower() == ".json":
        return TeacherFile(str(path), json_layers(path))
    return TeacherFile(str(path), onnx_layers(path), onnx_about(path))


def onnx_about(path: str | Path) -> dict[str, str]:
    """The ``mksgn.*`` entries of an ONNX model's ``metadata_props``, prefix dropped."""
    return {p.key[len("mksgn."):]: p.value for p in _load_onnx(path).metadata_props
            if p.key.startswith("mksgn.")}


def _load_onnx(path: str | Path):
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(path))
    except (OSError, DecodeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise click.ClickException(f"{path}: not a readable ONNX model ({type(exc).__name__}"
                                   f"{': ' + first if first else ''})") from None


def _scope(node_name: str) -> list[str]:
    """Module path of a TorchScript-exported node: ``/m/streams.0/fc/Gemm`` -> [m, streams.0, fc]."""
    return [p for p in node_name.split("/") if p][:-1]


def _layer_names(nodes: list[tuple[str, str]], depth: int) -> list[str]:
    """Layer name per (node name, op type): its scope without the prefix all nodes share, cut at
    ``depth`` components (a wrapper module's name, e.g. ``m``, says nothing about the layer)."""
    scopes = [_scope(name) for name, _ in nodes]
    common = 0
    while scopes and all(len(s) > common for s in scopes) \
            and len({s[common] for s in scopes}) == 1:
        common += 1
    return ["/".join(s[common:common + depth]) or (name.strip("/").split("/")[-1] or op)
            for s, (name, op) in zip(scopes, nodes)]


@dataclass
class _OnnxShapes:
    """An ONNX graph's tensor shapes after shape inference at batch 1, and which tensors hold
    integers (shape arithmetic, not model work)."""
    path: Path
    shapes: dict[str, tuple[int, ...]]
    integer: set[str]

    def of(self, name: str, node) -> tuple[int, ...]:
        if name not in self.shapes:
            raise click.ClickException(f"{self.path}: node {node.name or node.op_type}: shape of "
                                       f"{name!r} unknown after ONNX shape inference")
        return self.shapes[name]

    def size(self, name: str, node) -> int:
        return int(np.prod(self.of(name, node)))


def _infer_shapes(path: Path):
    """(model, _OnnxShapes): every free input dimension (the batch) fixed to 1, one sample."""
    import onnx
    from onnx import shape_inference

    model = _load_onnx(path)
    for inp in model.graph.input:
        for dim in inp.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value") or dim.dim_value <= 0:
                dim.Clear()
                dim.dim_value = 1
    model = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    int_types = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16,
                 onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.BOOL}
    g = _OnnxShapes(Path(path), {}, set())
    for vi in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        if vi.type.tensor_type.elem_type in int_types:
            g.integer.add(vi.name)
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            g.shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
    for init in model.graph.initializer:
        g.shapes[init.name] = tuple(int(d) for d in init.dims)
    return model, g


def _has_bias(node) -> bool:
    return len(node.input) > 2 and bool(node.input[2])


def _conv(g: _OnnxShapes, node, attrs) -> tuple[int, int]:
    w, out = g.of(node.input[1], node), g.size(node.output[0], node)
    return out * int(np.prod(w[1:])), out if _has_bias(node) else 0


def _conv_transpose(g: _OnnxShapes, node, attrs) -> tuple[int, int]:
    # each input element meets C_out/groups x kernel weights
    w, out = g.of(node.input[1], node), g.size(node.output[0], node)
    return g.size(node.input[0], node) * int(np.prod(w[1:])), out if _has_bias(node) else 0


def _gemm(g: _OnnxShapes, node, attrs) -> tuple[int, int]:
    a, out = g.of(node.input[0], node), g.size(node.output[0], node)
    k = a[0] if attrs.get("transA", 0) else a[1]
    return out * k, out if _has_bias(node) else 0


def _matmul(g: _OnnxShapes, node, attrs) -> tuple[int, int]:
    return g.size(node.output[0], node) * g.of(node.input[0], node)[-1], 0


def _einsum(g: _OnnxShapes, node, attrs) -> tuple[int, int]:
    eq = attrs["equation"]
    eq = eq.decode() if isinstance(eq, bytes) else eq
    sizes: dict[str, int] = {}
    for term, name in zip(eq.split("->")[0].replace(" ", "").split(","), node.input):
        if "." in term:
            raise click.ClickException(f"{g.path}: Einsum {node.name}: ellipsis not supported")
        for letter, n in zip(term, g.of(name, node)):
            sizes[letter] = max(sizes.get(letter, 1), n)
    return int(np.prod(list(sizes.values()))), 0


def _scale(g: _OnnxShapes, node, attrs) -> tuple[int, int] | None:
    if node.output[0] in g.integer and node.op_type != "BatchNormalization":
        return None                                            # shape arithmetic
    return g.size(node.output[0], node), 0


def _add(g: _OnnxShapes, node, attrs) -> tuple[int, int] | None:
    if node.output[0] in g.integer:
        return None
    return 0, g.size(node.output[0], node)


# op type -> (MACs, adds) of one node at batch 1, or None: not model work
_OP_COUNTS: dict[str, Callable] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "Gemm": _gemm, "MatMul": _matmul,
    "Einsum": _einsum, "Mul": _scale, "Div": _scale, "BatchNormalization": _scale,
    "Add": _add, "Sub": _add,
}


def onnx_layers(path: str | Path, depth: int = 2) -> list[TeacherLayer]:
    """Per-layer MACs and adds of an ONNX model (batch 1), in graph order (``_OP_COUNTS``)."""
    import onnx

    model, g = _infer_shapes(path)
    counted: list[tuple[object, int, int]] = []
    for node in model.graph.node:
        count = _OP_COUNTS.get(node.op_type)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        got = count(g, node, attrs) if count else None
        if got is not None:
            counted.append((node, *got))
    layers: dict[str, TeacherLayer] = {}
    names = _layer_names([(n.name, n.op_type) for n, _, _ in counted], depth)
    for key, (node, macs, adds) in zip(names, counted):
        layer = layers.setdefault(key, TeacherLayer(key, 0, 0))
        layer.macs += macs
        layer.adds += adds
    if not layers:
        raise click.ClickException(f"{path}: no countable operations (Conv/Gemm/MatMul/Einsum)")
    return list(layers.values())


def json_layers(path: str | Path) -> list[TeacherLayer]:
    """Teacher ops from JSON: ``{"layers": [{"name", "macs", "adds"?}, ...]}`` or ``{name: macs}``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{path}: cannot read teacher MACs ({exc})") from None
    items = data.get("layers", data) if isinstance(data, dict) else None
    if isinstance(items, dict):
        items = [{"name": k, "macs": v} for k, v in items.items()]
    if not isinstance(items, list) or not items:
        raise click.ClickException(f"{path}: expected {{\"layers\": [{{\"name\", \"macs\"}}, ...]}}")
    out = []
    for i, it in enumerate(items):
        if not isinstance(it, dict) or "name" not in it or "macs" not in it:
            raise click.ClickException(f"{path}: layers[{i}]: expected name and macs")
        for key in ("macs", "adds"):
            v = it.get(key, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise click.ClickException(f"{path}: layers[{i}].{key}: expected a non-negative "
                                           f"integer, got {v!r}")
        out.append(TeacherLayer(str(it["name"]), int(it["macs"]), int(it.get("adds", 0))))
    return out


def teacher_energy_pj(layer: TeacherLayer, profile: Profile) -> float:
    """Energy of one teacher layer on an ANN-capable profile, pJ per sample."""
    if profile.kind == "cmos":
        return layer.macs * profile.pj("mac") + layer.adds * profile.pj("ac")
    if profile.kind == "ann_device":
        return (layer.macs + layer.adds) * profile.pj("op")
    raise click.ClickException(f"profile {profile.name} is {profile.kind}: the ANN teacher needs a "
                               "cmos or ann_device profile (--teacher-profile)")
