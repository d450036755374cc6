"""Writing outputs so that nothing half-written is ever left behind, and naming files by content.

Every stage writes through ``atomic_write``: the bytes go to a temporary file in the destination's
directory, which then replaces the destination in one ``os.replace`` (atomic on POSIX), so an
interrupted run leaves either the old file or the new one, never a torn one. A directory of
files is built the same way (``staged``): in a temporary directory beside it, swapped in whole
(``replace_dir``) only when every file is written.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``path``; on any error remove the temp."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (reports name the network they belong to by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def staged(out: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``out``; on a normal exit it replaces ``out``
    (``replace_dir``), on any error it is removed and ``out`` is left as it was."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp: str | Path, out: str | Path) -> None:
    """Move the finished directory ``tmp`` to ``out`` (replacing it), as atomically as a
    directory can be: ``out`` is either the old or the new content, never a mix."""
    tmp, out = Path(tmp), Path(out)
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
