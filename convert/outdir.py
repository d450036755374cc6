"""Convert's output directories: all or nothing.

``mksgn convert`` (``convert.convert_model``) and ``mksgn convert --teacher-config``
(``onnx_export.teacher_graph``) each write a directory of files. Both refuse an occupied
directory up front (``check_out``) and build the new content in a temporary directory beside it
that replaces it only when every file is written (``staged``), so ``out`` holds either its old
content or the new one, never a mix. Single files go through ``mksgn.files.atomic_write``;
this is the same rule for a directory.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .student_io import ConvertError

__all__ = ["check_out", "staged"]


def check_out(out: Path, force: bool) -> None:
    """Raise ConvertError when ``out`` is a file, or a non-empty directory and not ``force``."""
    if out.exists() and not out.is_dir():
        raise ConvertError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConvertError(f"{out}: exists and is not empty (use --force to replace it)")


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``out``; on a normal exit it replaces ``out``,
    on any error it is removed and ``out`` is left as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        _commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
