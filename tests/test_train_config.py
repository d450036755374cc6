"""Run configs: YAML round trip, errors that name file, line and key, shipped configs."""
from __future__ import annotations

from pathlib import Path

import pytest

from mksgn.train.config import (ConfigError, KDConfig, OptimConfig, RunConfig, from_dict,
                                load_config, save_config, to_dict)
from mksgn.train.teacher import TeacherConfig

CONFIGS = sorted((Path(__file__).parents[1] / "train" / "configs").glob("*.yaml"))


def test_teacher_config_round_trips(tmp_path):
    cfg = RunConfig(seed=3, batch_size=7, model=TeacherConfig(base_channels=8, modalities=("joint",)),
                    optim=OptimConfig(name="adamw", lr=0.01, milestones=(3, 4)),
                    kd=KDConfig(stages=((0, 1), (2, 5))))
    save_config(cfg, tmp_path / "c.yaml")
    back = load_config(tmp_path / "c.yaml")
    assert back == cfg
    assert to_dict(back) == to_dict(cfg)


def test_student_config_round_trips(tmp_path):
    from mksgn.train.student import StudentConfig
    cfg = RunConfig(kind="student", model=StudentConfig.small(attention="static", attn_shift=3),
                    teacher="runs/t")
    cfg.data.window = 32
    save_config(cfg, tmp_path / "s.yaml")
    back = load_config(tmp_path / "s.yaml")
    assert back == cfg and isinstance(back.model, StudentConfig)


def test_unknown_key_names_file_line_and_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("kind: teacher\noptim:\n  lr: 0.1\n  lrr: 0.2\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"{p}:4: optim.lrr: unknown key")


def test_unknown_model_key_and_bad_type(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("kind: teacher\nmodel:\n  base_channels: 8\n  widht: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:4: model.widht: unknown key"):
        load_config(p)
    p.write_text("kind: teacher\nbatch_size: many\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2: batch_size: expected int"):
        load_config(p)
    p.write_text("kind: teacher\noptim: {schedule: linear}\n")
    with pytest.raises(ConfigError, match=r"optim.schedule: must be one of step, cosine"):
        load_config(p)


def test_inconsistent_modalities_are_rejected():
    with pytest.raises(ConfigError, match="differ"):
        from_dict({"kind": "teacher", "data": {"modalities": ["joint"]},
                   "model": {"modalities": ["joint", "bone"]}})


def test_overrides_apply_before_checking(tmp_path):
    p = tmp_path / "c.yaml"
    save_config(RunConfig(), p)
    cfg = load_config(p, {"optim.lr": 0.5, "data.prepared": "/x"})
    assert cfg.optim.lr == 0.5 and cfg.data.prepared == "/x"


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-3 as the text '1e-3'; a float field takes it as 0.001
    p = tmp_path / "c.yaml"
    p.write_text("kind: teacher\noptim:\n  lr: 1e-3\n  weight_decay: 5E-4\n")
    cfg = load_config(p, {"optim.momentum": "+2e0"})
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.momentum) == (0.001, 0.0005, 2.0)
    for bad in ("1e", "e-3", "fast", "nan"):
        with pytest.raises(ConfigError, match=r"c.yaml:3: optim.lr: expected float"):
            load_config(p, {"optim.lr": bad})


def test_lr_schedule():
    o = OptimConfig(lr=1.0, epochs=10, warmup_epochs=2, schedule="step", milestones=(5, 8), gamma=0.1)
    assert [round(o.lr_factor(e), 6) for e in range(10)] == [0.5, 1, 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01]
    c = OptimConfig(epochs=5, warmup_epochs=0, schedule="cosine")
    assert c.lr_factor(0) == 1.0 and c.lr_factor(4) == 0.0


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load_and_build(path):
    cfg = load_config(path)
    assert cfg.kind in path.stem
    assert tuple(cfg.modalities) == ("joint", "bone", "joint_motion", "bone_motion")
    if path.stem.startswith("ucla"):
        # the real-data recipe: CTR-GCN's NW-UCLA feeder, 52 frames, one body
        assert cfg.data.pipeline == "body_view_norm"
        assert cfg.data.window == (32 if "_cpu_" in path.stem else 52)
        assert cfg.model.persons == 1
    elif not path.stem.startswith("synth"):
        assert cfg.data.window == 64 and cfg.data.pipeline == "crop_resize"
    if not path.stem.startswith("synth"):
        if cfg.kind == "student":
            assert cfg.model.time_steps == 4 and len(cfg.model.channels) == 6
        else:
            assert len(cfg.model.channels) == 10
            assert cfg.model.base_channels == (16 if "_cpu_" in path.stem else 64)
