"""Fixtures shared by test files."""
from __future__ import annotations

import pytest

from real_data import unpack_and_prepare


@pytest.fixture(scope="session")
def ucla_prepared(tmp_path_factory):
    """The real NW-UCLA archive unpacked and prepared once per session (tests marked
    ``real_data.needs_archive``): (raw folder, prepared xview folder, PrepareReport)."""
    return unpack_and_prepare(tmp_path_factory.mktemp("ucla_raw"),
                              tmp_path_factory.mktemp("ucla_prep"))
