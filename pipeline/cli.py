"""The ``mksgn`` command line: one verb per stage.

Verbs are imported lazily, so ``mksgn --help`` stays fast and a stage's heavy imports (torch, lava)
happen only when that verb runs. A stage registers its verb by adding one line to ``COMMANDS``.
"""
from __future__ import annotations

import importlib

import click

# verb -> "module:attribute" of a click command or group.
COMMANDS: dict[str, str] = {
    "doctor": "mksgn.pipeline.doctor:doctor",
    "data": "mksgn.data.cli:data",
    "simulate": "mksgn.deploy.cli:simulate",
    "run": "mksgn.deploy.cli:run",
    "energy": "mksgn.hw_profiles.cli:energy",
    "train": "mksgn.train.cli:train",
    "evaluate": "mksgn.train.cli:evaluate",
    "summary": "mksgn.train.cli:summary",
    "convert": "mksgn.convert.cli:convert",
    "export": "mksgn.convert.nir_cli:export",
    "import": "mksgn.convert.nir_cli:import_",
    "demo": "mksgn.pipeline.demo:demo",
    "sweep": "mksgn.pipeline.sweep:sweep",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use (click's documented pattern)."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self._lazy:
            module_name, attr = self._lazy[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The whole first sentence of each verb's help; write_dl wraps it to the terminal.
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=200)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mksgn")
def main() -> None:
    """mksgn: train MK-SGN spiking GCNs for skeleton action recognition and deploy them on Loihi.

    \b
    Pipeline: data -> train -> convert -> deploy (simulate/run) -> energy.
    Start with `mksgn doctor`; then `make demo` runs every stage on
    synthetic data.
    """


if __name__ == "__main__":
    main()
