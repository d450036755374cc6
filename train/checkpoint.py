"""Checkpoints: what a run directory holds, written atomically, and rebuilding models from it.

A run directory ``RUN/`` (written by ``mksgn train``, read by convert/deploy/energy)::

    RUN/config.yaml            the full RunConfig
    RUN/last.pt, RUN/best.pt   torch.save(dict) - see below; best = highest test accuracy
                               (a run directory given for a checkpoint means last.pt)
    RUN/metrics.csv, .json     one row per epoch

A checkpoint dict holds only tensors and plain Python data, so ``torch.load(weights_only=True)``
reads it: ``kind`` ("teacher" | "student"), ``config`` (RunConfig as a plain dict), ``model``
(state_dict), ``num_classes``, ``layout`` (name), ``epoch`` (epochs completed), ``optimizer``,
``scheduler``, ``rng`` (torch/numpy/python/cuda generator states), ``metrics`` (list of per-epoch
dicts) and, for students trained with FTMs, ``distiller`` (the FTM state_dict).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mksgn.files import atomic_write, atomic_write_text

__all__ = ["save_atomic", "write_text_atomic", "load_checkpoint", "resolve", "load_model",
           "rng_state", "set_rng_state", "build_model", "RELEASE_KEYS", "for_release"]

# what a checkpoint that ships keeps: the model and how it was made, not how to go on training
RELEASE_KEYS = ("kind", "config", "num_classes", "layout", "model", "epoch", "metrics")


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temp file in the same directory, then ``os.replace`` (never half-written)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


write_text_atomic = atomic_write_text


def resolve(path: str | Path) -> Path:
    """A checkpoint file from a run directory (last.pt, else best.pt) or a file path.

    A run directory stands for its last epoch: best.pt is the epoch with the highest test
    accuracy, so taking it by default (to convert, evaluate or distil from) would select on the
    test split; name RUN/best.pt to mean it."""
    path = Path(path)
    if path.is_dir():
        for name in ("last.pt", "best.pt"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path}: no last.pt or best.pt in this run directory")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint dict (weights-only unpickling: tensors and plain data)."""
    return torch.load(resolve(path), map_location=map_location, weights_only=True)


def for_release(ckpt: dict) -> dict:
    """The checkpoint without optimiser, scheduler, generator and distiller state (what
    ``convert``, ``simulate`` and ``load_model`` read; ``--resume`` needs the full one)."""
    missing = [k for k in RELEASE_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"not a training checkpoint: no {', '.join(missing)}")
    return {k: ckpt[k] for k in RELEASE_KEYS}


def build_model(kind: str, model_cfg, num_classes: int, layout) -> torch.nn.Module:
    """A fresh teacher or student from its model config."""
    if kind == "teacher":
        from .teacher import build_teacher
        return build_teacher(model_cfg, num_classes, layout)
    if kind == "student":
        from .student import build_student
        return build_student(model_cfg, num_classes, layout)
    raise ValueError(f"unknown model kind {kind!r}")


def load_model(path: str | Path, map_location: str | torch.device = "cpu"
               ) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model saved in a checkpoint (file or run directory), in eval mode.

    Returns (model, info): info has ``kind``, ``config`` (a RunConfig), ``num_classes``,
    ``layout`` (a data Layout), ``epoch``, ``metrics`` and ``path``.
    """
    from mksgn.data.layouts import get_layout

    from .config import from_dict
    file = resolve(path)
    ckpt = load_checkpoint(file, map_location)
    cfg = from_dict(ckpt["config"], where=str(file))
    layout = get_layout(ckpt["layout"])
    model = build_model(ckpt["kind"], cfg.model, ckpt["num_classes"], layout)
    model.load_state_dict(ckpt["model"])
    model.to(map_location).eval()
    info = {"kind": ckpt["kind"], "config": cfg, "num_classes": ckpt["num_classes"],
            "layout": layout, "epoch": ckpt["epoch"], "metrics": ckpt.get("metrics", []),
            "path": file}
    return model, info


def rng_state() -> dict:
    """Every global generator's state as tensors/plain data (weights-only loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": _py_state_to_plain(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    random.setstate(_py_state_from_plain(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_plain(s: tuple) -> list:
    version, internal, gauss = s
    return [version, list(internal), gauss]


def _py_state_from_plain(s: list) -> tuple:
    version, internal, gauss = s
    return (version, tuple(internal), gauss)
