"""Every verb's --help fits an 80-column terminal (click wraps prose; blocks marked \\b it
keeps as written, so those are where a long line can slip in)."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from mksgn.pipeline.cli import COMMANDS, main


def _paths(group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _paths(cmd, click.Context(cmd, parent=ctx), (*prefix, name))


def all_verbs() -> list[tuple[str, ...]]:
    return [(), *_paths(main, click.Context(main))]


def test_every_registered_verb_is_listed():
    assert {p[0] for p in all_verbs() if p} == set(COMMANDS)


@pytest.mark.parametrize("verb", all_verbs(), ids=lambda p: " ".join(p) or "mksgn")
def test_help_fits_80_columns(verb):
    r = CliRunner().invoke(main, [*verb, "--help"], terminal_width=80)
    assert r.exit_code == 0, r.output
    wide = [line for line in r.output.splitlines() if len(line) > 80]
    assert wide == [], wide
