"""Convert's output directories: all or nothing.

``mksgn convert`` (``convert.convert_model``) and ``mksgn convert --teacher-config``
(``onnx_export.teacher_graph``) each write a directory of files. Both refuse an occupied
directory up front (``check_out``) and build the new content in a temporary directory beside it
that replaces it only when every file is written (``staged``), so ``out`` holds either its old
content or the new one, never a mix. Single files go through ``mksgn.files.atomic_write``;
``staged`` is the same rule for a directory (``mksgn.files``).
"""
from __future__ import annotations

from pathlib import Path

from mksgn.files import staged

from .student_io import ConvertError

__all__ = ["check_out", "staged"]


def check_out(out: Path, force: bool) -> None:
    """Raise ConvertError when ``out`` is a file, or a non-empty directory and not ``force``."""
    if out.exists() and not out.is_dir():
        raise ConvertError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConvertError(f"{out}: exists and is not empty (use --force to replace it)")
