"""Python >= 3.11 compatibility fix for lava-nc 0.10.0.

lava-nc 0.10.0 declares ``python < 3.11``. The one thing that stops it importing on 3.11 is in
``lava/magma/compiler/var_model.py``: dataclass fields default to ``ByteEncoder()`` *instances*,
which Python 3.11 rejects as mutable defaults (``ValueError: mutable default ... use
default_factory``). The fix rewrites those defaults to ``field(default_factory=ByteEncoder)``.

This file runs standalone (``python mksgn/lava_compat.py --apply``) during setup, before mksgn or
lava can be imported, and is imported by ``mksgn doctor`` to report the state. It never imports lava.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path

RELATIVE_PATH = Path("lava/magma/compiler/var_model.py")
_BAD_DEFAULT = re.compile(r"^(\s+\w+: ByteEncoder) = ByteEncoder\(\)\s*$", re.MULTILINE)
_FIXED_DEFAULT = r"\1 = field(default_factory=ByteEncoder)"
_IMPORT_OLD = "from dataclasses import dataclass, InitVar"
_IMPORT_NEW = "from dataclasses import dataclass, InitVar, field"


def find_var_model() -> Path | None:
    """Path of lava-nc's var_model.py in the running interpreter, or None when lava-nc is absent."""
    spec = importlib.util.find_spec("lava")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root).parent / RELATIVE_PATH
        if candidate.is_file():
            return candidate
    return None


def needs_fix(source: str) -> bool:
    return bool(_BAD_DEFAULT.search(source))


def fixed_source(source: str) -> str:
    out = _BAD_DEFAULT.sub(_FIXED_DEFAULT, source)
    if _IMPORT_NEW not in out:
        out = out.replace(_IMPORT_OLD, _IMPORT_NEW, 1)
    return out


def status() -> str:
    """'applied', 'not needed' (Python < 3.11 or already fine), 'needed', or 'lava-nc missing'."""
    path = find_var_model()
    if path is None:
        return "lava-nc missing"
    source = path.read_text()
    if needs_fix(source):
        return "needed" if sys.version_info >= (3, 11) else "not needed"
    return "applied" if "default_factory=ByteEncoder" in source else "not needed"


def apply() -> str:
    """Apply the fix when this Python needs it; idempotent. Returns what happened, in words."""
    path = find_var_model()
    if path is None:
        raise SystemExit("lava_compat: lava-nc is not installed in this environment")
    source = path.read_text()
    if not needs_fix(source):
        return f"lava_compat: fix already present in {path} (nothing to do)"
    if sys.version_info < (3, 11):
        return f"lava_compat: Python {sys.version.split()[0]} needs no fix"
    new = fixed_source(source)
    # Atomic replace: a crash mid-write must not leave lava half-patched.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(new)
    os.replace(tmp, path)
    for cached in (path.parent / "__pycache__").glob("var_model.*.pyc"):
        cached.unlink(missing_ok=True)
    n = len(_BAD_DEFAULT.findall(source))
    return (f"lava_compat: applied Python>=3.11 fix to {path}: "
            f"{n} ByteEncoder() defaults -> field(default_factory=ByteEncoder)")


if __name__ == "__main__":
    if "--apply" in sys.argv[1:]:
        print(apply())
    else:
        print(status())
