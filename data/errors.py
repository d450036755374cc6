"""The one error type raised for a bad skeleton file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SkippedFile:
    """A file left out of a prepared set: where, and why (JSON-serialisable report row)."""

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}" if self.line else f"{self.path}: {self.reason}"


class SkeletonFileError(ValueError):
    """A skeleton file that cannot be read: names the path, the 1-based line (if known) and why."""

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(str(self.skipped()))

    def skipped(self) -> SkippedFile:
        return SkippedFile(self.path, self.line, self.reason)
