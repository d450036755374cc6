"""``mksgn doctor``: is this environment able to run every stage?"""
from __future__ import annotations

import importlib.metadata as md
import platform
import sys

import click

from mksgn import lava_compat, quiet


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def check() -> tuple[list[tuple[str, str]], list[str]]:
    """Rows of (what, state) and the list of problems (empty when everything works)."""
    rows: list[tuple[str, str]] = [("python", platform.python_version())]
    problems: list[str] = []
    for dist in ("torch", "torchvision", "numpy", "lava-nc", "lava-dl", "h5py", "onnx", "click"):
        rows.append((dist, _version(dist)))
    fix = lava_compat.status()
    rows.append(("lava-nc py3.11 fix", fix))
    if fix == "needed":
        problems.append("lava-nc needs the Python>=3.11 fix: run `python mksgn/lava_compat.py --apply`"
                        " (make setup does it)")
    try:
        import torch
        rows.append(("cuda", f"available ({torch.cuda.get_device_name(0)})"
                     if torch.cuda.is_available() else
                     "not available (optional: training runs on the CPU)"))
    except Exception as exc:  # a broken torch is a finding, not a crash
        problems.append(f"torch cannot be imported: {exc}")
    for module, label in (("lava.magma.core.run_configs", "lava-nc"),
                          ("lava.lib.dl.slayer", "lava-dl slayer"),
                          ("lava.lib.dl.netx", "lava-dl netx")):
        try:
            importlib_import(module)
            rows.append((f"import {label}", "ok"))
        except Exception as exc:
            rows.append((f"import {label}", "FAILED"))
            problems.append(f"{label} cannot be imported ({type(exc).__name__}: {exc})")
    rows.append(("prophesee toolbox", prophesee_toolbox()))
    return rows, problems


def importlib_import(module: str) -> None:
    import importlib
    importlib.import_module(module)


def prophesee_toolbox() -> str:
    """The optional Prophesee Dataset Toolbox (lava-dl's object-detection demo reads its data with
    it); its import notice is silenced (``mksgn.quiet``), so this row is where its absence shows."""
    import importlib.util
    try:
        found = importlib.util.find_spec(quiet.PROPHESEE_TOOLBOX_MODULE) is not None
    except (ImportError, ValueError):
        found = False
    return "installed" if found else "absent (optional: only lava-dl's Prophesee demo uses it)"


@click.command()
def doctor() -> None:
    """Check python, torch, lava-nc, lava-dl, the lava fix and CUDA; exit 1 if a stage cannot run."""
    rows, problems = check()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
    if problems:
        for p in problems:
            click.echo(f"problem: {p}", err=True)
        click.echo("verdict: NOT READY", err=True)
        sys.exit(1)
    click.echo("verdict: ready (every stage can run on this machine)")
