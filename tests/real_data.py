"""The real NW-UCLA archive (``../shared/data``, present in CI; never inside the repository).

Tests that need it are marked ``needs_archive`` (they skip with the reason when it is absent) and
take the session fixture ``ucla_prepared`` (``conftest.py``): the archive unpacked into a
temporary folder and prepared there once per test session.
"""
from __future__ import annotations

import lzma
import tarfile
from pathlib import Path

import pytest

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nw-ucla-all_sqe.tar.xz"

needs_archive = pytest.mark.skipif(not ARCHIVE.is_file(),
                                   reason=f"real NW-UCLA data not found at {ARCHIVE}")


def unpack_and_prepare(raw: Path, out: Path):
    """Unpack the archive into ``raw`` and prepare it into ``out``: (raw, out/xview, report)."""
    from mksgn.data.prepare import PrepareConfig, prepare

    with lzma.open(ARCHIVE) as xz, tarfile.open(fileobj=xz) as tar:
        tar.extractall(raw, filter="data")
    report = prepare(PrepareConfig("ucla", raw, out, workers=1))
    return raw, out / "xview", report
