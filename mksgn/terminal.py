"""How verbs print tables: a summary that fits 80 columns by default, the full tables behind --wide.

A verb's report lives whole in the files it writes (JSON, CSV); the terminal gets the totals and
the few rows that matter, in tables that fit the console's width (rich: the terminal's width,
``COLUMNS``, or 80 when output goes to a file or pipe) without cutting a cell to ``…``, and a line
naming the file that holds the rest. ``--wide`` adds the full per-row tables, printed at their
own natural width (for a wide terminal, ``less -S`` or a log).
"""
from __future__ import annotations

import click

WIDE_HELP = ("Also print the full per-row tables here, at their natural width (wider than 80 "
             "columns; the files hold them too).")


def wide_option(func):
    """``--wide``: the same flag, with the same help, on every verb that has full tables."""
    return click.option("--wide", is_flag=True, help=WIDE_HELP)(func)


def print_wide(console, renderable) -> None:
    """Print ``renderable`` (a rich Table) at its natural width, however narrow the console."""
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update_width(100_000), renderable).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(renderable)
    finally:
        console.width = width
