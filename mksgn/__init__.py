"""mksgn: MK-SGN spiking graph convolutional networks, from PyTorch to Loihi.

Stages (data flows one way): ``mksgn.data`` -> ``mksgn.train`` -> ``mksgn.convert`` ->
``mksgn.deploy`` -> ``mksgn.hw_profiles``, with ``mksgn.pipeline`` (the command line, demo,
sweep) on top. This package is the core below them all: it imports no stage (pyproject.toml's
import-linter contracts, checked in the tests). Shared facts live in ``mksgn.loihi`` (fixed
point) and ``mksgn.netgraph`` (the converted network, read and written in one place).
"""
__version__ = "0.1.0"

from mksgn import quiet as _quiet

_quiet.install()   # two foreign import notices that say nothing about mksgn (see mksgn/quiet.py)
