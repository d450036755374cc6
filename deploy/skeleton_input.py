"""One skeleton sequence as a converted student's encoders take it.

``mksgn simulate`` reads samples from a prepared split; ``mksgn run`` on a student's
``model.net`` reads one raw dataset file (an NW-UCLA ``.json``, an NTU ``.skeleton``) or one
prepared (C, T, V[, M]) ``.npy`` row. Both go through the same steps: the dataset's own parsing and
preprocessing (``mksgn.data.prepare.read_sequence``), the manifest's test pipeline and modalities
(``mksgn.data.dataset.test_input``), then :func:`encoder_feeds`, which lays the bodies out as
the network was trained on them. The manifest's ``input`` section (written by ``mksgn convert``
beside ``model.net``) says which dataset, pipeline, window and modalities.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mksgn.data import ntu, ucla
from mksgn.data.dataset import PIPELINES, test_input
from mksgn.data.errors import SkeletonFileError
from mksgn.data.layouts import get_layout
from mksgn.data.modalities import MODALITIES
from mksgn.data.prepare import DATASET_SPECS, read_sequence
from mksgn.data.preprocess import valid_length
from mksgn.netgraph import fold_persons

__all__ = ["InputError", "encoder_feeds", "network_input", "class_name"]


class InputError(ValueError):
    """An input that does not fit the network (one line, names the file)."""


def encoder_feeds(xs: np.ndarray, modalities: list[str],
                  persons: str) -> tuple[dict[str, np.ndarray], int]:
    """(B, K, 3, T, V, M) test inputs -> ({modality: (B*m, C, T, V)}, m runs per sample).

    ``persons``: ``fold`` (bodies into channels, ``netgraph.fold_persons``: one run each),
    ``first`` (the first body only) or ``merge`` (one run per body, person fastest; the class
    scores of a sample are the sum over its runs)."""
    if persons == "fold":
        xf = fold_persons(xs)
        return {mod: xf[:, i] for i, mod in enumerate(modalities)}, 1
    if persons == "first":
        xs = xs[..., :1]
    m = xs.shape[-1]
    xm = np.moveaxis(xs, -1, 1).reshape(-1, *xs.shape[1:-1])
    return {mod: xm[:, k] for k, mod in enumerate(modalities)}, m


def _spec(inp: dict, manifest: Path) -> tuple[str, int, list[str], str]:
    """(dataset, window, modalities, pipeline) of a manifest's input section."""
    dataset, window = inp.get("dataset"), inp.get("window")
    mods, pipeline = list(inp.get("modalities") or []), inp.get("pipeline", "crop_resize")
    if dataset not in DATASET_SPECS or not isinstance(window, int) or window < 1:
        raise InputError(f"{manifest}: input section needs a dataset ({', '.join(DATASET_SPECS)}) "
                         f"and a window; re-run `mksgn convert`")
    if not mods or set(mods) - set(MODALITIES) or pipeline not in PIPELINES:
        raise InputError(f"{manifest}: input modalities {mods} / pipeline {pipeline!r} unknown")
    return dataset, window, mods, pipeline


def _read_array(path: Path, joints: int, persons: int) -> np.ndarray:
    """A prepared row (C, T, V[, M]): float, 3 coordinates, the layout's joints, <= M bodies."""
    try:
        x = np.load(path)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a .npy array: {e}") from None
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "iuf":
        raise InputError(f"{path}: give one .npy array of numbers (C, T, V[, M])")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[0] != 3 or x.shape[2] != joints or not 1 <= x.shape[3] <= persons:
        raise InputError(f"{path}: shape {x.shape}; expected (3, T, {joints}[, M <= {persons}]) "
                         f"as `mksgn data prepare` stores a sample")
    if not np.isfinite(x).all():
        raise InputError(f"{path}: NaN or infinite coordinates")
    pad = np.zeros((*x.shape[:3], persons - x.shape[3]), np.float32)
    return np.concatenate([x.astype(np.float32), pad], axis=-1)


def network_input(path: Path, inp: dict, manifest: Path) -> np.ndarray:
    """(1, K, 3, window, V, M) float32 of one raw file or prepared row, as ``simulate`` feeds a
    test sample of the same sequence (raises :class:`InputError`)."""
    dataset, window, mods, pipeline = _spec(inp, manifest)
    layout = get_layout(dataset)
    suffix = path.suffix.lower()
    raw = DATASET_SPECS[dataset].pattern.removeprefix("*")      # the files prepare reads
    if suffix == ".npy":
        x = _read_array(path, layout.num_joints, DATASET_SPECS[dataset].persons)
        n = valid_length(x)
        if n == 0:
            raise InputError(f"{path}: every frame is zero")
    elif suffix == raw:
        try:
            x, _notes = read_sequence(dataset, path)
        except SkeletonFileError as e:
            raise InputError(str(e)) from None
        n = x.shape[1]
    else:
        raise InputError(f"{path}: the network was trained on {dataset}; give one of its {raw} "
                         f"files or a prepared (3, T, V, M) .npy")
    return test_input(x, n, window, mods, layout, pipeline)[None]


def class_name(dataset: str, k: int) -> str:
    """The dataset's own name of class index k (NW-UCLA a01.., NTU A001..)."""
    if dataset == "ucla":
        return f"a{ucla.ACTIONS[k]:02d}"
    return f"A{k + 1:03d}" if dataset in ntu.BENCHMARKS else str(k)
