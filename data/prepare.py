"""``mksgn data prepare``: raw files -> the prepared arrays training reads (parsed once, cached).

Layout written under ``out``::

    <benchmark>/{train,test}_data.npy   float32 (N, 3, T_max, V, 2), zero padded, mmap-able
    <benchmark>/{train,test}_label.npy  int64 (N,)
    <benchmark>/{train,test}_meta.json  {"names": [...], "num_frames": [...]}
    <benchmark>/info.json               dataset, benchmark, layout, num_classes, t_max, counts
    prepare_report.json                 every skipped file with path, line and reason

T_max is the longest kept sequence (at most ``max_frames``; longer ones are subsampled), as in
CTR-GCN's ``align_frames``. Files are parsed in parallel (one process per core by default). A
benchmark directory is built under a temporary name and swapped in only when complete, so an
interrupted run never leaves a half-written cache; its temporary files are removed.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from mksgn.files import atomic_write_text, replace_dir

from . import ntu, ucla
from .errors import SkeletonFileError, SkippedFile
from .layouts import get_layout
from .preprocess import DenoiseConfig, prepare_ntu_sequence, prepare_ucla_sequence

__all__ = ["DatasetSpec", "DATASET_SPECS", "DATASETS", "DEFAULT_MAX_FRAMES", "PrepareConfig", "PrepareReport", "prepare",
           "prepared_dataset", "atomic_write_text", "load_skip_list", "read_sequence"]



@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is, whatever subset of its files is present.

    num_classes: the dataset's own class count (a subset of NTU60 is still 60 classes).
    persons: body slots M of the prepared arrays (NW-UCLA has one actor: no empty second body).
    max_frames: longest kept sequence; longer ones are subsampled uniformly. NTU: 300 frames, the
        longest real sample (CTR-GCN pads to 300). NW-UCLA: the longest real sequence is 201
        frames; frames are sampled at train time from the whole sequence, as CTR-GCN's UCLA
        feeder does, so nothing is dropped here.
    pattern: the raw files' glob.
    """
    name: str
    num_classes: int
    persons: int
    max_frames: int
    pattern: str


DATASET_SPECS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("ntu60", 60, 2, 300, "*.skeleton"),
    DatasetSpec("ntu120", 120, 2, 300, "*.skeleton"),
    DatasetSpec("ucla", len(ucla.ACTIONS), 1, 256, "*.json"),
)}
DATASETS = tuple(DATASET_SPECS)
DEFAULT_MAX_FRAMES = {k: s.max_frames for k, s in DATASET_SPECS.items()}
# 2: NW-UCLA arrays hold one body (M = 1); version 1 padded a zero second body
FORMAT_VERSION = 2
_CHANNELS = 3


@dataclass
class PrepareConfig:
    dataset: str
    root: Path
    out: Path
    max_frames: int | None = None  # None: DEFAULT_MAX_FRAMES[dataset]
    workers: int | None = None  # None: all cores
    skip_lists: tuple[Path, ...] = ()
    default_skip_list: bool = True  # the NTU authors' missing-skeleton list
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)}")
        self.root, self.out = Path(self.root), Path(self.out)
        if self.max_frames is None:
            self.max_frames = DEFAULT_MAX_FRAMES[self.dataset]
        if self.max_frames < 1:
            raise ValueError("max_frames must be >= 1")


@dataclass
class PrepareReport:
    """What ``prepare`` did (saved as ``prepare_report.json``)."""

    dataset: str
    root: str
    out: str
    files_found: int
    samples_kept: int
    t_max: int
    num_classes: int
    counts: dict[str, dict[str, int]]
    skipped: list[SkippedFile]
    notes: dict[str, int]
    seconds: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "PrepareReport":
        d = json.loads(text)
        d["skipped"] = [SkippedFile(**s) for s in d["skipped"]]
        return cls(**d)


# ----------------------------------------------------------------------------- file helpers


def load_skip_list(path: Path) -> set[str]:
    """Sample names, one per line; blank lines and ``#`` comments ignored; extensions stripped."""
    names = set()
    for ln in Path(path).read_text().splitlines():
        ln = ln.split("#", 1)[0].strip()
        if ln:
            names.add(ln.split(".")[0])
    return names


# ----------------------------------------------------------------------------- workers
def read_sequence(dataset: str, path: str | Path, max_frames: int | None = None,
                  denoise: DenoiseConfig = DenoiseConfig()) -> tuple[np.ndarray, list[str]]:
    """One raw file of ``dataset`` (NW-UCLA json, NTU .skeleton) -> (C, T, V, M) float32 as
    ``prepare`` stores its rows (M = the dataset's body slots), plus notes. Raises
    :class:`SkeletonFileError` for a file that cannot be read."""
    max_frames = max_frames or DEFAULT_MAX_FRAMES[dataset]
    if dataset == "ucla":
        joints = ucla.read_ucla_file(path)
        return prepare_ucla_sequence(joints, max_frames, get_layout("ucla").center_joint,
                                     persons=DATASET_SPECS["ucla"].persons)
    seq = ntu.read_skeleton_file(path)
    return prepare_ntu_sequence(seq, max_frames, get_layout("ntu").center_joint, denoise)


def _process(dataset: str, path: str, max_frames: int, denoise: DenoiseConfig):
    """Parse + preprocess one file -> (array (C, T, V, 2) float32, notes) or SkippedFile."""
    try:
        return read_sequence(dataset, path, max_frames, denoise)
    except SkeletonFileError as e:
        return e.skipped()
    except Exception as e:  # noqa: BLE001 - one bad file must never stop a run
        return SkippedFile(path, None, f"unexpected {type(e).__name__}: {e}")


def _process_batch(dataset: str, items: list[tuple[int, str]], max_frames: int, denoise: DenoiseConfig):
    return [(i, _process(dataset, p, max_frames, denoise)) for i, p in items]


@dataclass
class _Candidate:
    path: Path
    name: object  # ntu.NTUName | ucla.UCLAName


def _scan(cfg: PrepareConfig) -> tuple[list[_Candidate], list[SkippedFile], int]:
    pattern = DATASET_SPECS[cfg.dataset].pattern
    files = sorted(p for p in cfg.root.rglob(pattern) if p.is_file())
    skip: set[str] = set()
    if cfg.dataset != "ucla" and cfg.default_skip_list:
        skip |= ntu.missing_skeleton_names(cfg.dataset)
    for sl in cfg.skip_lists:
        skip |= load_skip_list(sl)
    seen: dict[str, Path] = {}
    cands, skipped = [], []
    for p in files:
        stem = p.name[: -len(pattern) + 1]
        if cfg.dataset == "ucla":
            name = ucla.parse_name(stem)
            expect = "aAA_sSS_eEE_vVV with a known action"
        else:
            name = ntu.parse_name(stem)
            expect = "SsssCcccPpppRrrrAaaa"
        if name is None:
            skipped.append(SkippedFile(str(p), None, f"unknown file name pattern (expected {expect})"))
        elif cfg.dataset != "ucla" and not ntu.in_dataset(name, cfg.dataset):
            skipped.append(SkippedFile(str(p), None, f"not part of {cfg.dataset} (setup/action out of range)"))
        elif stem in skip:
            skipped.append(SkippedFile(str(p), None, "on the skip list (samples with missing skeletons)"))
        elif stem in seen:
            skipped.append(SkippedFile(str(p), None, f"duplicate sample name (also {seen[stem]})"))
        else:
            seen[stem] = p
            cands.append(_Candidate(p, name))
    return cands, skipped, len(files)


def _run_all(cfg: PrepareConfig, cands: list[_Candidate], on_result: Callable, on_progress: Callable) -> None:
    """Parse all candidates (in a process pool unless workers == 1), in bounded batches."""
    items = [(i, str(c.path)) for i, c in enumerate(cands)]
    workers = cfg.workers or os.cpu_count() or 1
    if workers <= 1 or len(items) < 4:
        for i, p in items:
            on_result(i, _process(cfg.dataset, p, cfg.max_frames, cfg.denoise))
            on_progress(1)
        return
    size = max(1, min(32, len(items) // (workers * 8)))
    batches = [items[k:k + size] for k in range(0, len(items), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending = set()
        it = iter(batches)
        try:
            # Keep a bounded number of batches in flight so results never pile up in memory.
            for b in it:
                pending.add(pool.submit(_process_batch, cfg.dataset, b, cfg.max_frames, cfg.denoise))
                if len(pending) >= workers * 4:
                    break
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    res = fut.result()
                    for i, r in res:
                        on_result(i, r)
                    on_progress(len(res))
                    nxt = next(it, None)
                    if nxt is not None:
                        pending.add(pool.submit(_process_batch, cfg.dataset, nxt, cfg.max_frames, cfg.denoise))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _note_kind(note: str) -> str:
    for tag in ("length", "spread", "motion"):
        if note.endswith(f"({tag})"):
            return f"spurious bodies removed by {tag}"
    if note.startswith("resampled"):
        return "sequences subsampled to max_frames"
    return "samples whose bodies were all short (longest kept)"


def _split_of(dataset: str, name, benchmark: str) -> str:
    return ucla.split_of(name, benchmark) if dataset == "ucla" else ntu.split_of(name, dataset, benchmark)


def _benchmarks(dataset: str) -> tuple[str, ...]:
    return ucla.BENCHMARKS[dataset] if dataset == "ucla" else ntu.BENCHMARKS[dataset]


class _RowStore:
    """Fixed-size padded rows (C, max_frames, V, M) float32 in a scratch file, by positional I/O.

    Plain pread/pwrite instead of a memmap keeps the main process's resident memory flat: the
    rows live in the page cache, which the kernel can drop, not in this process's mappings.
    """

    def __init__(self, path: Path, n: int, max_frames: int, num_joints: int, persons: int):
        self.shape = (_CHANNELS, max_frames, num_joints, persons)
        self.row_bytes = int(np.prod(self.shape)) * 4
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self.fd, n * self.row_bytes)

    def put(self, i: int, x: np.ndarray) -> None:
        row = np.zeros(self.shape, np.float32)
        row[:, : x.shape[1]] = x
        os.pwrite(self.fd, row.tobytes(), i * self.row_bytes)

    def get(self, i: int, t_max: int) -> np.ndarray:
        buf = os.pread(self.fd, self.row_bytes, i * self.row_bytes)
        return np.frombuffer(buf, np.float32).reshape(self.shape)[:, :t_max]

    def close(self) -> None:
        os.close(self.fd)


def _write_split(d: Path, split: str, store: _RowStore, rows: list[int], t_max: int,
                 labels: np.ndarray, names: list[str], frames: np.ndarray) -> None:
    shape = (len(rows), *store.shape[:1], t_max, *store.shape[2:])
    with open(d / f"{split}_data.npy", "wb") as fh:  # .npy header, then rows streamed in order
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                                  "fortran_order": False, "shape": shape})
        for r in rows:
            fh.write(np.ascontiguousarray(store.get(r, t_max)).tobytes())
    np.save(d / f"{split}_label.npy", labels[rows].astype(np.int64))
    meta = {"names": [names[r] for r in rows], "num_frames": [int(frames[r]) for r in rows]}
    (d / f"{split}_meta.json").write_text(json.dumps(meta))


@dataclass
class _Parsed:
    """What the parse of every candidate gave: rows in ``store``; here per candidate i its frame
    count (``frames[i]``) and whether it was kept (``ok[i]``), the skipped files and the notes
    (kind -> samples)."""
    store: _RowStore
    skipped: list[SkippedFile]
    frames: np.ndarray
    ok: np.ndarray
    notes: dict[str, int] = field(default_factory=dict)

    def add(self, i: int, r) -> None:
        """Record candidate i's result: a SkippedFile or (array (C, T, V, M), notes)."""
        if isinstance(r, SkippedFile):
            self.skipped.append(r)
            return
        x, sample_notes = r
        self.store.put(i, x)
        self.frames[i] = x.shape[1]
        self.ok[i] = True
        for s in sample_notes:
            key = _note_kind(s)
            self.notes[key] = self.notes.get(key, 0) + 1


def _write_benchmark(d: Path, cfg: PrepareConfig, bench: str, cands: list[_Candidate],
                     kept: list[int], parsed: _Parsed, t_max: int) -> dict[str, int]:
    """Write benchmark ``bench``'s splits and its info.json (last: it marks the directory
    complete) into the new directory ``d``; returns the samples per split."""
    layout, spec = get_layout(cfg.dataset), DATASET_SPECS[cfg.dataset]
    labels = np.array([c.name.label for c in cands] or [0], np.int64)
    names = [str(c.name) for c in cands]
    d.mkdir()
    split_rows: dict[str, list[int]] = {"train": [], "test": []}
    for i in kept:
        split_rows[_split_of(cfg.dataset, cands[i].name, bench)].append(i)
    for split, rows in split_rows.items():
        _write_split(d, split, parsed.store, rows, t_max, labels, names, parsed.frames)
    counts = {s: len(r) for s, r in split_rows.items()}
    info = {"format_version": FORMAT_VERSION, "dataset": cfg.dataset, "benchmark": bench,
            "layout": layout.name, "num_classes": spec.num_classes, "num_joints": layout.num_joints,
            "num_persons": spec.persons, "channels": _CHANNELS, "t_max": t_max,
            "max_frames": cfg.max_frames, "counts": counts}
    (d / "info.json").write_text(json.dumps(info, indent=1))
    return counts


def prepared_dataset(benchmark_dir: Path, layout: str | None = None,
                     num_classes: int | None = None) -> str | None:
    """The dataset named in a prepared benchmark directory's info.json; when that file is not
    there or cannot be read (a checkpoint converted on another machine than it was trained on),
    the one dataset with this skeleton ``layout`` and ``num_classes``; else None."""
    try:
        p = Path(benchmark_dir) / "info.json"
        named = json.loads(p.read_text()).get("dataset") if p.is_file() else None
    except (OSError, ValueError):
        named = None
    if named is not None or layout is None:
        return named
    fits = [s.name for s in DATASET_SPECS.values()
            if get_layout(s.name).name == layout and s.num_classes == num_classes]
    return fits[0] if len(fits) == 1 else None


def prepare(cfg: PrepareConfig, on_start: Callable[[int], None] | None = None,
            on_progress: Callable[[int], None] | None = None) -> PrepareReport:
    """Prepare every standard benchmark of ``cfg.dataset`` from the raw files under ``cfg.root``.

    Args:
        on_start: called once with the number of files to parse (for a progress bar).
        on_progress: called with the number of files just finished.
    Raises:
        FileNotFoundError: ``root`` missing or holds no files of the dataset's kind.
        ValueError: no file could be used.
    """
    t0 = time.perf_counter()
    if not cfg.root.is_dir():
        raise FileNotFoundError(f"{cfg.root}: not a directory")
    cands, skipped, n_files = _scan(cfg)
    if n_files == 0:
        raise FileNotFoundError(f"{cfg.root}: no {DATASET_SPECS[cfg.dataset].pattern} files found")
    cfg.out.mkdir(parents=True, exist_ok=True)
    if on_start:
        on_start(len(cands))
    tmp_root = cfg.out / f".prepare-tmp-{os.getpid()}"
    store = None
    try:
        tmp_root.mkdir()
        n = len(cands)
        store = _RowStore(tmp_root / "samples.bin", n, cfg.max_frames,
                          get_layout(cfg.dataset).num_joints, DATASET_SPECS[cfg.dataset].persons)
        parsed = _Parsed(store, skipped, np.zeros(max(n, 1), np.int64), np.zeros(max(n, 1), bool))
        _run_all(cfg, cands, parsed.add, on_progress or (lambda k: None))
        kept = [i for i in range(n) if parsed.ok[i]]
        if not kept:
            raise ValueError(f"{cfg.root}: none of the {n_files} files could be used "
                             f"({len(skipped)} skipped; first: {skipped[0] if skipped else '-'})")
        t_max = int(parsed.frames[kept].max())
        counts = {bench: _write_benchmark(tmp_root / bench, cfg, bench, cands, kept, parsed, t_max)
                  for bench in _benchmarks(cfg.dataset)}
        store.close()
        store = None
        for bench in _benchmarks(cfg.dataset):
            replace_dir(tmp_root / bench, cfg.out / bench)
        skipped.sort(key=lambda s: s.path)
        report = PrepareReport(cfg.dataset, str(cfg.root), str(cfg.out), n_files, len(kept), t_max,
                               DATASET_SPECS[cfg.dataset].num_classes, counts, skipped,
                               parsed.notes, round(time.perf_counter() - t0, 3))
        atomic_write_text(cfg.out / "prepare_report.json", report.to_json())
        return report
    finally:
        if store is not None:
            store.close()
        shutil.rmtree(tmp_root, ignore_errors=True)


def iter_reasons(skipped: Iterable[SkippedFile]) -> dict[str, int]:
    """Skipped files grouped by reason (numbers and names stripped) -> count."""
    out: dict[str, int] = {}
    for s in skipped:
        key = s.reason.split(" (")[0]
        key = "".join("#" if ch.isdigit() else ch for ch in key)
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
