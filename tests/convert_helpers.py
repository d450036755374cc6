"""Tiny checkpoints for the convert tests: students and teachers saved in the training contract's
checkpoint format (``mksgn.train.checkpoint``), small enough to convert in a second or two."""
from __future__ import annotations

from pathlib import Path

import torch

from mksgn.data.layouts import get_layout
from mksgn.train.config import DataConfig, RunConfig, to_dict
from mksgn.train.spiking import ConvSynapse, GraphSynapse, PooledReadout
from mksgn.train.student import StudentConfig, build_student
from mksgn.train.teacher import TeacherConfig, build_teacher

LAYOUT = "ucla20"
CLASSES = 4
FRAMES = 8


def tiny_student_config(**kw) -> StudentConfig:
    """Two spiking-attention blocks, two modalities, 8 frames: every node kind of the student."""
    base = dict(frames=FRAMES, stem_channels=4, channels=(4, 8), strides=(1, 2),
                temporal_kernel=3, modalities=("joint", "bone"))
    base.update(kw)
    return StudentConfig.small(**base)


def chain_student_config(**kw) -> StudentConfig:
    base = dict(frames=FRAMES, stem_channels=4, channels=(4, 8), strides=(1, 2),
                temporal_kernel=3)
    base.update(kw)
    return StudentConfig.chain_config(**base)


def warm_up(model, steps: int = 2, seed: int = 0) -> None:
    """Move the SSC batch-norm running statistics off their (0, 1) initial values."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            x = torch.randn(4, len(cfg.modalities), 3, cfg.frames, model.layout.num_joints, 2,
                            generator=g) * 0.5
            model(x)
    model.eval()


def exponent_zero(model) -> None:
    """Scale every synapse group's weights so that the quantiser picks exponent 0 (largest weight
    ~200 a-units): what stock netx can hold exactly."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, ConvSynapse):
                mod.weight.mul_(200 / 64 / mod.weight.abs().max())
            elif isinstance(mod, GraphSynapse):
                mod.W.mul_(200 / 64 / mod.real_weight().abs().max())
            elif isinstance(mod, PooledReadout):
                mod.W.mul_(200 / 64 / (mod.W / mod.positions).abs().max())


def make_student(cfg: StudentConfig, seed: int = 0, tweak=None):
    torch.manual_seed(seed)
    model = build_student(cfg, CLASSES, get_layout(LAYOUT))
    warm_up(model)
    if tweak is not None:
        tweak(model)
    return model.eval()


def save_checkpoint(model, kind: str, path: Path, model_cfg) -> Path:
    """torch.save the training contract's checkpoint dict for ``model``."""
    mods = tuple(model_cfg.modalities)
    window = getattr(model_cfg, "frames", FRAMES)
    run = RunConfig(kind=kind, data=DataConfig(prepared=str(path.parent / "no-data"),
                                               window=window, modalities=mods),
                    model=model_cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": kind, "config": to_dict(run), "model": model.state_dict(),
                "num_classes": CLASSES, "layout": LAYOUT, "epoch": 1, "optimizer": {},
                "scheduler": {}, "rng": {}, "metrics": [{"epoch": 1, "test_acc": 0.5}]}, path)
    return path


def student_checkpoint(path: Path, cfg: StudentConfig | None = None, seed: int = 0,
                       tweak=None) -> Path:
    cfg = cfg or tiny_student_config()
    return save_checkpoint(make_student(cfg, seed, tweak), "student", path, cfg)


def teacher_checkpoint(path: Path, modalities=("joint", "bone")) -> Path:
    torch.manual_seed(0)
    cfg = TeacherConfig(modalities=modalities, base_channels=4, widths=(1, 1, 2),
                        strides=(1, 2, 1))
    model = build_teacher(cfg, CLASSES, get_layout(LAYOUT)).eval()
    return save_checkpoint(model, "teacher", path, cfg)


def sample(cfg, n: int = 2, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, len(cfg.modalities), 3, cfg.frames, get_layout(LAYOUT).num_joints, 2,
                       generator=g) * 0.5


def stock_netx_matches_engine(net_file: Path, cfg: StudentConfig, seed: int = 5):
    """Run ``net_file`` (a converted chain student) in our fast engine and, through stock
    ``netx.hdf5.Network`` under ``Loihi2SimCfg(select_tag='fixed_pt')``, in Lava, on one sample
    (only the input layer's bias, the host encoder's output, is set); assert every layer's spikes
    at every step are identical. Returns (our network, engine result, Lava result)."""
    import numpy as np

    from mksgn import netgraph
    from mksgn.convert.netx_lower import fold_array
    from mksgn.deploy import engine, lava_graph
    from mksgn.train.student import fold_persons

    ours = netgraph.load(net_file)
    x = fold_persons(sample(cfg, 1, seed=seed))[:, 0]
    a = engine.run(ours, {"joint": x}, record=("s",))
    bias = engine.encode(ours.encoders[0], x)[0].numpy()
    lr = lava_graph.run_netx(net_file, ours.num_steps, input_bias=bias, record=("s", "v"))
    total = 0
    for m in ours.meta["netx"]["layers"]:
        sa = a.spikes[m["group"]][0].numpy()
        if m["layout"] == "folded":
            sa = fold_array(sa)
        sl = lr.spikes[f"layer{m['index']}"]
        assert np.array_equal(sa, sl.reshape(sa.shape)), m["group"]
        total += int(sa.sum())
    assert total > 0
    return ours, a, lr
