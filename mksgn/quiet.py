"""Two notices from our dependencies that say nothing about mksgn, silenced at import; nothing else.

- torch (``torch/utils/cpp_extension.py``, logger ``torch.utils.cpp_extension``) logs
  ``No CUDA runtime is found, using CUDA_HOME='...'`` when it is imported on a machine with a
  CUDA toolkit but no CUDA runtime. lava-dl imports it for its optional CUDA kernels, which mksgn
  never builds. A ``logging.Filter`` on that one logger drops that one message.
- lava-dl (``lava/lib/dl/slayer/object_detection/dataset/prophesee_automotive.py``) ``print``s
  three lines (``WARNING: Prophesee Dataset Toolbox could not be found! ... Please install it
  from ...``) when imported without that toolbox, which only lava-dl's own object-detection
  demo uses. A meta path finder runs that one module's import with stdout captured and writes
  back every line that is not one of those three.

``mksgn doctor`` reports both optional parts (CUDA runtime, Prophesee toolbox) once.
``mksgn/__init__.py`` calls :func:`install`, so every verb, test and library use gets it before
torch or lava is imported; it imports neither.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import logging
import sys

CPP_EXTENSION_LOGGER = "torch.utils.cpp_extension"
NO_CUDA_RUNTIME = "No CUDA runtime is found"          # start of the message, before CUDA_HOME
PROPHESEE_MODULE = "lava.lib.dl.slayer.object_detection.dataset.prophesee_automotive"
PROPHESEE_TOOLBOX_MODULE = "src.io.psee_loader"      # what lava-dl tries to import
PROPHESEE_TOOLBOX = "https://github.com/prophesee-ai/prophesee-automotive-dataset-toolbox"
PROPHESEE_LINES = frozenset({                          # the notice, as lava-dl 0.6.0 prints it
    "WARNING: Prophesee Dataset Toolbox could not be found!",
    "Only Prophesee DVS demo will not run properly.",
    f"Please install it from {PROPHESEE_TOOLBOX}",
})


class _NoCudaRuntimeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(NO_CUDA_RUNTIME))


class _QuietLoader(importlib.abc.Loader):
    """Wraps the real loader of PROPHESEE_MODULE; its import prints everything but the notice."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def __getattr__(self, name):                      # get_source, get_filename, ...: the real one
        return getattr(self._loader, name)

    def exec_module(self, module) -> None:
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                self._loader.exec_module(module)
        finally:
            rest = [ln for ln in buf.getvalue().splitlines(keepends=True)
                    if ln.strip() not in PROPHESEE_LINES]
            sys.stdout.write("".join(rest))


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != PROPHESEE_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


_FILTER = _NoCudaRuntimeFilter()
_FINDER = _QuietFinder()


def install() -> None:
    """Silence the two notices (idempotent). Every other warning, log record and print stays."""
    logger = logging.getLogger(CPP_EXTENSION_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
