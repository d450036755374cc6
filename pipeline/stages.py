"""Orchestration shared by ``mksgn demo`` and ``mksgn sweep``: run ``mksgn`` verbs in-process as
named stages that are done once and remembered (re-running a job reuses finished stages)."""
from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import click

from mksgn.files import atomic_write_json

__all__ = ["invoke", "Stages"]


def invoke(args: list[str]) -> None:
    """Run one ``mksgn`` verb in this process; a failure becomes a one-line ClickException."""
    from mksgn.pipeline.cli import main
    try:
        main.main(args=args, prog_name="mksgn", standalone_mode=False)
    except click.exceptions.Exit as e:
        if e.exit_code:
            raise click.ClickException(f"`mksgn {' '.join(args)}` exited with {e.exit_code}")
    except Terminated:
        raise                                       # SIGTERM: the process ends as it asked
    except SystemExit as e:
        if e.code:
            raise click.ClickException(f"`mksgn {' '.join(args)}` exited with {e.code}") from None


UNFINISHED = "unfinished"       # stages.json: {stage: seconds} of resumable stages cut short
RECIPE_FILE = "plan.json"       # OUT/plan.json: what the finished stages in OUT were made from


class Terminated(SystemExit):
    """SIGTERM received inside a resumable stage (exit status 143)."""


@contextmanager
def _terminate_as_exit():
    """SIGTERM (a closing session, ``kill``) ends the block as :class:`Terminated`, so a
    resumable stage cut short that way records its time too; Ctrl-C already does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated(128 + signum)
    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if old is None else old)


class Stages:
    """Runs named stages once; remembers finished ones in OUT/stages.json ({stage: seconds},
    and under ``UNFINISHED`` the seconds spent so far in interrupted resumable stages).

    ``recipe``: what every stage's result depends on (a JSON object), kept in OUT/plan.json; a
    later job with another recipe is refused in one line before any stage runs (it would reuse
    stages made from the other), unless ``force``."""

    def __init__(self, out: Path, force: bool, recipe: dict | None = None):
        self.out = out
        self.file = out / "stages.json"
        self.force = force
        out.mkdir(parents=True, exist_ok=True)
        if recipe is not None:
            self._claim(recipe)
        if force:               # nothing finished earlier counts, even if this run stops early
            self.file.unlink(missing_ok=True)
        self.done: dict = json.loads(self.file.read_text()) if self.file.is_file() else {}
        self.seconds: dict = {}

    def _claim(self, mine: dict) -> None:
        out, file = self.out, self.out / RECIPE_FILE
        if file.exists() and not self.force:
            theirs = _read_recipe(file)
            differ = _first_difference(theirs, mine)
            if differ:
                k, was, now = differ
                raise click.UsageError(
                    f"{file}: {out} holds another recipe's job ({k}: {_brief(was)}, "
                    f"now {_brief(now)}); give another --out, or --force to redo it")
        elif self.file.is_file() and not self.force:
            click.echo(f"note: {out} has no {RECIPE_FILE} (a job from before it was kept); "
                       f"taken as this recipe's")
        atomic_write_json(file, mine)

    def run(self, name: str, outputs: list[Path], fn, resumable: bool = False) -> None:
        """Run ``fn`` unless ``name`` finished earlier and its ``outputs`` exist. An unfinished
        stage's outputs are removed first, except a ``resumable`` one's (a training run that
        continues from its ``last.pt``) when not forced."""
        from rich.console import Console
        from rich.markup import escape
        console = Console()
        if name in self.done and all(p.exists() for p in outputs):
            console.print(f"[dim]· {escape(name)}: done earlier (--force to redo)[/dim]")
            self.seconds[name] = self.done[name]
            return
        for p in outputs if self.force or not resumable else ():
            # a stage that did not finish leaves nothing to trust
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        console.rule(f"[bold]{escape(name)}")
        # a resumed stage's time is the sum of its sittings (the unfinished ones kept apart)
        unfinished = self.done.setdefault(UNFINISHED, {})
        earlier = unfinished.pop(name, 0.0) if resumable and not self.force else 0.0
        t0 = time.perf_counter()
        try:
            with _terminate_as_exit() if resumable else nullcontext():
                fn()
        except BaseException:
            if resumable:
                unfinished[name] = round(earlier + time.perf_counter() - t0, 1)
                atomic_write_json(self.file, self.done)
            raise
        self.seconds[name] = round(earlier + time.perf_counter() - t0, 1)
        self.done[name] = self.seconds[name]
        atomic_write_json(self.file, self.done)


def _read_recipe(file: Path) -> dict:
    try:
        recipe = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise click.UsageError(f"{file}: not readable as a recipe ({e}); --force to rewrite "
                               f"it") from None
    if not isinstance(recipe, dict):
        raise click.UsageError(f"{file}: not a recipe (a JSON object expected); --force to "
                               f"rewrite it")
    return recipe


def _first_difference(theirs, mine, key: str = "") -> tuple[str, object, object] | None:
    """(dotted key, their value, mine) of the first value of ``mine`` that ``theirs`` lacks or
    holds otherwise, descending into the objects both hold; None where none differs."""
    if isinstance(theirs, dict) and isinstance(mine, dict):
        for k, v in mine.items():
            found = _first_difference(theirs.get(k), v, f"{key}.{k}" if key else k)
            if found:
                return found
        return None
    return None if theirs == mine else (key, theirs, mine)


def _brief(value, width: int = 60) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, dict):
        text = " ".join(f"{k}={v}" for k, v in value.items())
    else:
        text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= width else text[:width - 3] + "..."
