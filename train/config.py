"""Run configuration: one typed dataclass tree that round-trips YAML.

A run file looks like (every key optional except ``kind``; see ``configs/*.yaml``)::

    kind: teacher            # or student
    seed: 0
    device: auto             # auto (CUDA when present), cpu, cuda, cuda:1
    batch_size: 64
    data: {prepared: data/prepared/ntu60, benchmark: xsub, window: 64,
           modalities: [joint, bone, joint_motion, bone_motion], rotate: false}
    model: {...}             # TeacherConfig or StudentConfig fields, by kind
    optim: {name: sgd, lr: 0.1, weight_decay: 4.0e-4, epochs: 65, warmup_epochs: 5,
            schedule: step, milestones: [35, 55]}
    kd: {temperature: 4.0, w_soft: 1.0, w_ftm: 1.0, stages: [[1, 3], [3, 6], [5, 9]]}

Unknown keys and wrongly typed values are errors naming the file, the line and the key path
(``ValueError("run.yaml:7: optim.lrr: unknown key; known: ...")``).
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import click
import yaml

from .energy_loss import EnergyConfig
from .teacher import TeacherConfig

__all__ = ["DataConfig", "OptimConfig", "KDConfig", "EnergyConfig", "RunConfig", "ConfigError", "load_config",
           "save_config", "from_dict", "to_dict", "student_config_class"]


class ConfigError(ValueError):
    """A bad configuration; the message is one line ``file:line: key: what was wrong``."""


@dataclass
class DataConfig:
    """Where the prepared data lives and how samples are drawn.

    prepared: the dataset's prepared root (``mksgn data prepare --out``); the benchmark directory
        is ``prepared/benchmark`` (or ``prepared`` itself when it holds ``info.json``).
    benchmark: ``xsub``/``xview`` (NTU60), ``xsub``/``xset`` (NTU120), ``xview`` (NW-UCLA).
    window: frames per sample the pipeline yields. modalities: input streams, in order
        (empty: the model's). pipeline: how a sample's frames become ``window`` frames and how
        it is augmented (``mksgn.data.dataset.PIPELINES``: ``crop_resize`` is CTR-GCN's NTU
        feeder, ``view_norm`` its NW-UCLA feeder). rotate: ``crop_resize`` only, random
        rotation augmentation in training.
    num_workers: DataLoader worker processes (0: load in the training process).
    """
    prepared: str = "data/prepared/ntu60"
    benchmark: str = "xsub"
    window: int = 64
    modalities: tuple[str, ...] = ()
    pipeline: Literal["crop_resize", "view_norm", "body_view_norm"] = "crop_resize"
    rotate: bool = False
    num_workers: int = 0

    def benchmark_dir(self) -> Path:
        root = Path(self.prepared)
        return root if (root / "info.json").is_file() else root / self.benchmark

    def dataset(self, split: str, modalities: tuple[str, ...], train: bool | None = None,
                seed: int = 0):
        """The SkeletonDataset of ``split`` as this config draws it (augmented when training)."""
        from mksgn.data.dataset import SkeletonDataset
        return SkeletonDataset(self.benchmark_dir(), split, window=self.window,
                               modalities=modalities, train=train, rotate=self.rotate, seed=seed,
                               pipeline=self.pipeline)


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (per epoch).

    name: ``sgd`` (momentum, Nesterov) or ``adamw``. schedule: ``step`` (times ``gamma`` at each
    milestone epoch) or ``cosine`` (to ``min_lr_ratio * lr`` at the last epoch); both after a
    linear warm-up over ``warmup_epochs`` epochs (factor (e + 1) / warmup, CTR-GCN's).
    grad_clip: max global gradient norm (0: off).
    """
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 4e-4
    epochs: int = 65
    warmup_epochs: int = 5
    schedule: Literal["step", "cosine"] = "step"
    milestones: tuple[int, ...] = (35, 55)
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0

    def lr_factor(self, epoch: int) -> float:
        """Multiplier of ``lr`` during 0-based ``epoch``."""
        import math
        if epoch < self.warmup_epochs:
            return (epoch + 1) / self.warmup_epochs
        if self.schedule == "step":
            return self.gamma ** sum(epoch >= m for m in self.milestones)
        span = max(1, self.epochs - self.warmup_epochs - 1)
        prog = min(1.0, (epoch - self.warmup_epochs) / span)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog))


@dataclass
class KDConfig:
    """Distillation (student runs only). Loss =
    ``w_ce CE + w_soft T^2 KL(teacher_T || student_T) + w_ftm mean_s MSE(FTM_s(student), teacher)
    + w_mi student.mi_loss``; a term is off when its flag is false or its weight is 0.

    stages: (student block, teacher block) pairs, 0-based indices into the models' ``features``.
    The defaults pair the ends of the student's 2nd/4th/6th blocks with the teacher's 4th/7th/10th
    (the last block of each channel width): the same relative depths (1/3, 2/3, 1).

    teacher_draws (students distilling from a teacher): 0: the teacher runs on every training
    batch. N > 0: the training data cycles through N augmentation draws per sample (epoch e
    draws as epoch e mod N) and the teacher's outputs on a draw are computed once per run and
    kept in memory (``train.teacher_cache``): later epochs of that draw skip its forward.
    """
    soft_labels: bool = True
    ftm: bool = True
    w_ce: float = 1.0
    w_soft: float = 1.0
    temperature: float = 4.0
    w_ftm: float = 1.0
    stages: tuple[tuple[int, int], ...] = ((1, 3), (3, 6), (5, 9))
    w_mi: float = 0.1
    teacher_draws: int = 0

    @property
    def use_soft(self) -> bool:
        return self.soft_labels and self.w_soft > 0

    @property
    def use_ftm(self) -> bool:
        return self.ftm and self.w_ftm > 0 and len(self.stages) > 0


@dataclass
class RunConfig:
    """A whole training run. ``model`` is a TeacherConfig or a StudentConfig (by ``kind``).

    eval_batch_size: 0 means ``batch_size``. device: ``auto`` = CUDA when available.
    sync_bn: under DDP on CUDA, convert BatchNorm to SyncBatchNorm (statistics over the global
        batch); torch has no CPU SyncBatchNorm, so on CPU each process normalises its own shard.
    eval_every: evaluate on the test split every this many epochs (and always at the last).
    teacher: the teacher's run directory or checkpoint (students; ``--teacher`` sets it).
    energy: the student's energy term (``train.energy_loss``; off by default).
    init: start from this run's (or checkpoint's) model weights instead of a fresh model
        (fine-tuning, e.g. a sweep's energy-penalised students from one trained student); the
        optimiser, schedule and epochs start anew. Same kind, config of the model and data.
    """
    kind: Literal["teacher", "student"] = "teacher"
    seed: int = 0
    device: str = "auto"
    batch_size: int = 64
    eval_batch_size: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = field(default_factory=TeacherConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    init: str = ""
    sync_bn: bool = True
    eval_every: int = 1
    teacher: str = ""

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.data.modalities) or tuple(self.model.modalities)

    def validate(self, where: str = "<config>") -> None:
        mods = tuple(self.model.modalities)
        if self.data.modalities and tuple(self.data.modalities) != mods:
            raise ConfigError(f"{where}: data.modalities {list(self.data.modalities)} differ from "
                              f"model.modalities {list(mods)}")
        if self.kind == "student" and getattr(self.model, "frames", self.data.window) != self.data.window:
            raise ConfigError(f"{where}: data.window {self.data.window} differs from the student's "
                              f"model.frames {self.model.frames}")
        if self.kind == "teacher" and self.teacher:
            raise ConfigError(f"{where}: teacher: only student runs have a teacher")
        if self.batch_size < 1 or self.optim.epochs < 1 or self.eval_every < 1:
            raise ConfigError(f"{where}: batch_size and optim.epochs must be >= 1")
        if self.kd.teacher_draws < 0:
            raise ConfigError(f"{where}: kd.teacher_draws must be >= 0 (0: no kept outputs)")
        if self.kd.teacher_draws and self.kind != "student":
            raise ConfigError(f"{where}: kd.teacher_draws: only student runs have a teacher")
        try:
            self.model.validate()
        except ValueError as e:
            raise ConfigError(f"{where}: model: {e}") from None
        if (self.energy.mode != "off" or self.energy.prunes) and self.kind != "student":
            raise ConfigError(f"{where}: energy: only student runs have an energy term")
        try:
            self.energy.validate()
        except (ValueError, click.ClickException) as e:
            raise ConfigError(f"{where}: energy: {getattr(e, 'message', e)}") from None


def student_config_class():
    """StudentConfig, imported lazily (the student module is heavy and owned by its own file)."""
    from .student import StudentConfig
    return StudentConfig


# ------------------------------------------------------------------------------------------------
# dict <-> dataclass


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain dicts/lists/scalars (YAML/JSON/torch.save(weights_only) safe)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


class _Lines:
    """Line numbers of YAML keys by dotted path ("optim.lr" -> 7), for error messages."""

    def __init__(self, where: str, lines: dict[str, int] | None = None):
        self.where, self.lines = where, lines or {}

    def at(self, path: str) -> str:
        while path:
            if path in self.lines:
                return f"{self.where}:{self.lines[path]}"
            path = path.rpartition(".")[0]
        return self.where


_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _convert(tp: Any, value: Any, path: str, lines: _Lines) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    bad = ConfigError(f"{lines.at(path)}: {path}: expected {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad
        return _from_dict(tp, value, path, lines)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, path, lines)
            except ConfigError:
                pass
        raise bad
    if origin is Literal:
        if value is False and "off" in args:    # YAML 1.1 reads a bare off as false
            value = "off"
        if value not in args:
            raise ConfigError(f"{lines.at(path)}: {path}: must be one of "
                              f"{', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise bad
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise bad
            items = [_convert(a, v, f"{path}[{i}]", lines) for i, (a, v) in enumerate(zip(args, value))]
        else:
            a = args[0] if args else Any
            items = [_convert(a, v, f"{path}[{i}]", lines) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            return float(value)          # YAML 1.1 reads a float without a dot (1e-3) as text
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    if value is None and tp is type(None):
        return None
    raise bad


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _from_dict(cls: type, data: dict, path: str, lines: _Lines) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        sub = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(f"{lines.at(sub)}: {sub}: unknown key; known: {', '.join(sorted(names))}")
        kwargs[key] = _convert(hints[key], value, sub, lines)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{lines.at(path)}: {path or cls.__name__}: {e}") from None


def from_dict(data: dict, where: str = "<config>", lines: dict[str, int] | None = None) -> RunConfig:
    """A RunConfig from plain data (``lines``: key path -> YAML line, for messages)."""
    ln = _Lines(where, lines)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a run config must be a mapping")
    data = dict(data)
    model = data.pop("model", None)
    cfg = _from_dict(RunConfig, data, "", ln)
    model_cls = TeacherConfig if cfg.kind == "teacher" else student_config_class()
    if model is None:
        model = {}
    if not isinstance(model, dict):
        raise ConfigError(f"{ln.at('model')}: model: expected a mapping")
    cfg.model = _from_dict(model_cls, model, "model", ln)
    cfg.validate(where)
    return cfg


def _key_lines(node: yaml.Node, prefix: str, out: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            path = f"{prefix}.{k.value}" if prefix else str(k.value)
            out[path] = k.start_mark.line + 1
            _key_lines(v, path, out)


def load_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Read a run config YAML; ``overrides`` ("optim.lr" -> value) are applied before checking."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {getattr(e, 'problem', e)}") from None
    lines: dict[str, int] = {}
    if node is not None:
        _key_lines(node, "", lines)
    data = data or {}
    for key, value in (overrides or {}).items():
        _set_path(data, key, value)
    return from_dict(data, str(path), lines)


def _set_path(data: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        data = data.setdefault(p, {})
    data[last] = value


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML atomically (temp file + os.replace)."""
    from mksgn.files import atomic_write_text
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None))
