"""ONNX files of the conversion: the teacher, and the student's float rate-coded ANN counterpart.

``teacher.onnx`` is the teacher's ``forward(x) -> logits`` traced on one sample
(``LogitsOnly``, batch 1, the config's window), opset 17, with a dynamic batch axis.
``teacher_graph`` writes the same file for a teacher built from a run config with its initial
(untrained) weights: the graph, its shapes and so its MACs depend only on the config, the
dataset's classes, skeleton and bodies, and the window, never on the weight values (eval-mode
export folds every BN that follows a conv into it whatever its statistics), so the energy stage
can price a teacher nobody trained, e.g. the paper-scale ``train/configs/ucla_teacher.yaml``. Such a
file says what it is in its ONNX ``metadata_props`` (``TEACHER_GRAPH_KEYS``, all ``mksgn.*``):
the config file, the dataset, the weights ("untrained ...") and the input shape.

``student_float.onnx`` is NOT the spiking student. The spiking student's forward runs integer
CUBA dynamics step by step with data-dependent integer-width choices (``quant.exact_dtype``),
custom autograd functions and 32/24-bit wraps: a trace would freeze choices made for the traced
sample and would be the quantised network anyway (which ``model.net`` already is). What the file
holds instead is ``FloatRateModel``: the same graph (``netgraph.Network`` topology: encoders,
neuron groups, dense/conv/graph synapses, joint attention, the readout) with the *float*
(unquantised) weights training learned, and every CUBA group replaced by its steady-state firing
rate:

- input: ``x`` float32 (N, K, 3, T, V, M) as the student takes it; bodies folded into channels
  (``c * M + m``); no int16 input quantisation, no 13-bit clip;
- encoder: ``b = conv2d(x_k, W) + B`` in a-units (the float SSC conv with batch norm folded in);
- synapse group: ``a = W_a * r_src`` (W_a: float weights in a-units, r_src: the source's rates);
  attention: ``a = 2**-shift q (k^T x)`` on rates;
- neuron group: ``r = clip((a / d_i + b) / vth_mant, 0, 1)`` with d_i = iDecay / 4096 (the
  steady current of a CUBA neuron under constant input a is a / d_i; floored at 1 / 4096), b the
  bias (encoder + static), vth_mant the threshold mantissa: a rate in spikes per step;
- readout: ``logits = S (a / d_i + b) / 64`` with S the spike steps the readout integrates
  (``meta["time_steps"]``): what the readout's v / 4096 is for constant input over S steps.

Delays and the per-group timing are ignored (all rates are steady state). The model is a
differentiable ANN with the student's topology and float weights, for inspection and for ANN
operation counts; its accuracy is not the spiking student's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mksgn import loihi
from mksgn.netgraph import Network

from .outdir import check_out, staged
from .student_io import ConvertError, FloatWeight, first_line

if TYPE_CHECKING:
    from mksgn.data.layouts import Layout
    from mksgn.data.prepare import DatasetSpec
    from mksgn.train.config import RunConfig

__all__ = ["FloatRateModel", "LogitsOnly", "export_onnx", "check_onnx", "OPSET", "TeacherGraph",
           "teacher_graph", "TEACHER_GRAPH_KEYS", "example_input"]

OPSET = 17
# ONNX metadata_props of a teacher graph built from a config (``teacher_graph``)
TEACHER_GRAPH_KEYS = ("mksgn.config", "mksgn.dataset", "mksgn.weights", "mksgn.input")
UNTRAINED = ("untrained: the config's initial weights (seed 0); the graph and its MACs do not "
             "depend on them")


def _topo_order(net: Network) -> list[str]:
    """Neuron groups in an order where every group comes after all groups that feed it."""
    deps = {g.name: set() for g in net.groups}
    for s in net.synapses:
        deps[s.dst].add(s.src)
    for a in net.attentions:
        deps[a.dst] |= {a.q, a.k, a.x}
    order, done = [], set()
    while len(order) < len(deps):
        ready = [n for n in deps if n not in done and deps[n] <= done]
        if not ready:
            raise ValueError("the network has a cycle; a rate model needs a feed-forward graph")
        for n in ready:
            order.append(n)
            done.add(n)
    return order


class FloatRateModel(nn.Module):
    """The float rate-coded counterpart of a converted student (see the module docstring).

    net: the converted network (topology, neuron parameters, encoders' formats).
    floats: float weights per synapse/encoder name (``student_io.export_with_float``); a synapse
    without float weights uses its chip weights ``m * 2**e``.
    modalities: encoder modalities in input order. forward(x (N, K, C, T, V, M)) -> logits.
    """

    def __init__(self, net: Network, floats: dict[str, FloatWeight], modalities: list[str]):
        super().__init__()
        self.net = net
        self.order = [n for n in _topo_order(net) if n]
        self.modalities = list(modalities)
        self.groups = {g.name: g for g in net.groups}
        steps = net.meta.get("time_steps", net.num_steps)
        self.readout_steps = float(steps)
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        for s in net.synapses:
            fw = floats.get(s.name)
            w = fw.weight if fw is not None and fw.weight.shape == np.shape(s.weight) else \
                np.asarray(s.weight, np.float64) * 2.0 ** s.weight_exp
            self.weights[_key(s.name)] = nn.Parameter(torch.tensor(w, dtype=torch.float32),
                                                      requires_grad=False)
        for e in net.encoders:
            fw = floats.get(e.name)
            if fw is not None and fw.bias is not None:
                w, b = fw.weight, fw.bias
            else:
                w = np.asarray(e.weight, np.float64) * 2.0 ** (e.input_frac_bits - e.shift)
                b = np.asarray(e.bias, np.float64) * 2.0 ** -e.shift
            self.weights[_key(e.name)] = nn.Parameter(torch.tensor(w, dtype=torch.float32),
                                                      requires_grad=False)
            self.biases[_key(e.name)] = nn.Parameter(torch.tensor(b, dtype=torch.float32),
                                                     requires_grad=False)
        for g in net.groups:
            if g.bias is not None:
                b = np.broadcast_to(np.asarray(g.bias, np.float64), g.shape)
                self.biases[_key("group:" + g.name)] = nn.Parameter(
                    torch.tensor(np.ascontiguousarray(b), dtype=torch.float32),
                    requires_grad=False)

    def _synapse(self, s, r: torch.Tensor) -> torch.Tensor:
        w = self.weights[_key(s.name)]
        n = r.shape[0]
        if s.kind == "dense":
            a = F.linear(r.reshape(n, -1), w)
            return a.reshape(n, *self.groups[s.dst].shape)
        if s.kind == "conv":
            return F.conv2d(r, w, stride=tuple(s.stride), padding=tuple(s.padding),
                            dilation=tuple(s.dilation), groups=s.groups)
        return torch.einsum("oivu,nitu->notv", w, r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x float (N, K, C, T, V, M) -> logits float (N, classes)."""
        n, k, c, t, v, m = x.shape
        xs = x.permute(0, 1, 2, 5, 3, 4).reshape(n, k, c * m, t, v)
        bias: dict[str, torch.Tensor] = {}
        for e in self.net.encoders:
            xk = xs[:, self.modalities.index(e.modality)]
            b = F.conv2d(xk, self.weights[_key(e.name)], self.biases[_key(e.name)],
                         stride=tuple(e.stride), padding=tuple(e.padding))
            bias[e.dst] = bias[e.dst] + b if e.dst in bias else b
        rates: dict[str, torch.Tensor] = {}
        logits = None
        for name in self.order:
            g = self.groups[name]
            if g.source:
                raise ValueError(f"group {name}: source groups take spikes, not skeletons")
            a = None
            for s in self.net.synapses:
                if s.dst == name:
                    y = self._synapse(s, rates[s.src])
                    a = y if a is None else a + y
            for att in self.net.attentions:
                if att.dst == name:
                    kx = torch.einsum("nctu,ndtu->ncdt", rates[att.k], rates[att.x])
                    y = torch.einsum("nctv,ncdt->ndtv", rates[att.q], kx) * 2.0 ** -att.shift
                    a = y if a is None else a + y
            d_i = max(g.params.i_decay, 1) / loihi.DECAY_UNITY
            drive = a / d_i if a is not None else 0.0
            b = bias.get(name)
            if _key("group:" + name) in self.biases:
                sb = self.biases[_key("group:" + name)]
                b = sb if b is None else b + sb
            if b is not None:
                drive = drive + b
            if g.readout or name == self.net.readout:
                out = drive * (self.readout_steps / loihi.STATE_SCALE)
                rates[name] = torch.zeros_like(out)      # a readout never spikes
                if name == self.net.readout:
                    logits = out
            else:
                rates[name] = torch.clamp(drive / float(g.params.vth_mant), 0.0, 1.0)
        if logits is None:
            raise ValueError("the network has no readout group")
        return logits.reshape(n, -1)


def _key(name: str) -> str:
    # ParameterDict keys may not contain "."; "/" and ":" are fine in ONNX initialiser names
    return name.replace(".", "_")


class LogitsOnly(nn.Module):
    """Wraps a model whose forward returns ``ModelOutput`` so that it returns only the logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out.logits if hasattr(out, "logits") else out


def export_onnx(module: nn.Module, example: torch.Tensor, path: str | Path,
                metadata: dict[str, str] | None = None) -> None:
    """Export ``module(x) -> logits`` to ONNX (opset 17, input ``x`` and output ``logits`` with a
    dynamic batch axis), add ``metadata`` to its ``metadata_props`` and check it with
    ``onnx.checker``."""
    import contextlib
    import io

    import onnx

    module.eval()
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(module, (example,), str(path), opset_version=OPSET, dynamo=False,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    model = onnx.load(str(path))
    if metadata:
        onnx.helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
        onnx.save(model, str(path))
    onnx.checker.check_model(model, full_check=True)


@dataclass
class TeacherGraph:
    """What ``teacher_graph`` wrote: ``path`` (DIR/teacher.onnx) and the facts it was built from."""
    path: Path
    config: str
    dataset: str
    num_classes: int
    layout: str
    persons: int
    window: int
    modalities: tuple[str, ...]
    params: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's input (1, K, 3, T, V, M)."""
        from mksgn.data.layouts import get_layout
        return (1, len(self.modalities), 3, self.window, get_layout(self.layout).num_joints,
                self.persons)


def _teacher_spec(config: Path, dataset: str | None
                  ) -> tuple[RunConfig, str, DatasetSpec, Layout]:
    """(run config, dataset name, its DatasetSpec, its layout) for ``teacher_graph``; raises
    ConvertError naming ``config`` when it is not a teacher's or does not fit the dataset."""
    from mksgn.data.layouts import get_layout
    from mksgn.data.prepare import DATASET_SPECS, prepared_dataset
    from mksgn.train.config import ConfigError, load_config

    try:
        cfg = load_config(config)
    except ConfigError as e:
        raise ConvertError(str(e)) from None
    if cfg.kind != "teacher":
        raise ConvertError(f"{config}: a {cfg.kind!r} run config where a teacher's is needed")
    dataset = dataset or prepared_dataset(cfg.data.benchmark_dir())
    if dataset is None:
        raise ConvertError(f"{config}: which dataset? its prepared data ({cfg.data.prepared}) is "
                           "not there to say; give --dataset")
    if dataset not in DATASET_SPECS:
        raise ConvertError(f"{config}: unknown dataset {dataset!r}; choose from "
                           f"{', '.join(DATASET_SPECS)}")
    spec = DATASET_SPECS[dataset]
    if int(cfg.model.persons) != spec.persons:
        # training refuses this too (train.loop): the data_bn width is persons x joints x coords
        raise ConvertError(f"{config}: model.persons is {int(cfg.model.persons)} but {dataset} "
                           f"holds {spec.persons} body slot(s) per sample; set model.persons: "
                           f"{spec.persons}")
    return cfg, dataset, spec, get_layout(dataset)


def teacher_graph(config: str | Path, dataset: str | None, out: str | Path,
                  force: bool = False) -> TeacherGraph:
    """Write ``out/teacher.onnx``: the teacher of run config ``config`` for ``dataset``, untrained.

    The model is built as ``mksgn train`` builds it (``train.checkpoint.build_model``) for the
    dataset's classes and skeleton (``data.prepare.DATASET_SPECS``, ``data.layouts``) and exported
    as ``mksgn convert --teacher`` exports a trained one: the same graph, with initial weights.
    dataset: ``ntu60`` | ``ntu120`` | ``ucla``; None: the one in the config's prepared data's
    info.json. ``out`` is written like convert's output directory (all or nothing; an existing
    non-empty ``out`` only with ``force``). Raises ConvertError with one line naming the file.
    """
    from mksgn.train.checkpoint import build_model

    out, config = Path(out), Path(config)
    check_out(out, force)
    cfg, dataset, spec, layout = _teacher_spec(config, dataset)
    window = int(cfg.data.window)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # see convert.convert: one thread is fastest for one sample
    try:
        torch.manual_seed(0)
        model = build_model("teacher", cfg.model, spec.num_classes, layout).eval()
        example = example_input(cfg.model, layout, window, batch=1)
        meta = {"mksgn.config": str(config), "mksgn.dataset": dataset, "mksgn.weights": UNTRAINED,
                "mksgn.input": "x float32 (N, K, C, T, V, M) = (n, "
                                + ", ".join(map(str, example.shape[1:])) + ")"}
        with staged(out) as tmp:
            try:
                export_onnx(LogitsOnly(model), example, tmp / "teacher.onnx", meta)
            except Exception as e:  # noqa: BLE001
                raise ConvertError(f"{config}: the teacher does not export to ONNX "
                                   f"({type(e).__name__}: {first_line(e)})") from None
    finally:
        torch.set_num_threads(threads)
    return TeacherGraph(path=out / "teacher.onnx", config=str(config), dataset=dataset,
                        num_classes=spec.num_classes, layout=layout.name,
                        persons=int(cfg.model.persons), window=window,
                        modalities=tuple(cfg.model.modalities),
                        params=sum(p.numel() for p in model.parameters()))


def example_input(cfg_model, layout, window: int, batch: int = 2) -> torch.Tensor:
    """A deterministic sample (N, K, 3, T, V, M) of skeleton-like magnitudes for ONNX checks
    (N = batch; K, M from the model config ``cfg_model``; V from the skeleton ``layout``)."""
    k = len(cfg_model.modalities)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, k, getattr(cfg_model, "coords", 3), window, layout.num_joints,
                    getattr(cfg_model, "persons", 2), generator=g) * 0.5
    return x


def check_onnx(path: str | Path, module: nn.Module, example: torch.Tensor) -> float | None:
    """Largest |onnxruntime - torch| on ``example``, relative to the largest |torch| logit (None
    when onnxruntime is not installed: it is a test-time dependency)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    with torch.no_grad():
        ref = module(example).float().numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": example.numpy()})[0]
    scale = max(float(np.abs(ref).max()), 1e-12)
    return float(np.abs(got - ref).max()) / scale
