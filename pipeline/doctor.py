"""``mksgn doctor``: is this environment able to run every stage?"""
from __future__ import annotations

import importlib.metadata as md
import platform
import re
import sys
from pathlib import Path

import click

from mksgn import lava_compat, quiet

LOCK = Path(__file__).resolve().parent.parent / "tools" / "requirements.lock"


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
    rows.append(("lock", lock_state(LOCK)[0]))
    return rows, problems


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(lock: Path) -> dict[str, str]:
    """``tools/requirements.lock`` as {canonical name: exact version} (``name==version`` lines)."""
    pins = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_canonical(name)] = version.strip()
    return pins


def lock_differences(pins: dict[str, str]) -> list[str]:
    """``name installed != locked`` for every locked package whose installed version differs."""
    # the distribution Python imports (the first on sys.path; vendored copies come later)
    installed = {name: _version(name) for name in pins}
    return [f"{name} {installed[name].replace('not installed', 'absent')} != {version}"
            for name, version in sorted(pins.items()) if installed[name] != version]


def lock_state(lock: Path) -> tuple[str, list[str]]:
    """Whether the installed packages are the exact set tools/setup_env.sh installs from the lock:
    a one-line state and the differing packages (``name installed != locked``)."""
    if not lock.is_file():
        return "no tools/requirements.lock here (installed outside the repo)", []
    pins = read_lock(lock)
    diff = lock_differences(pins)
    if not diff:
        return f"installed set = tools/requirements.lock ({len(pins)} packages)", []
    return f"{len(diff)} of {len(pins)} packages differ from tools/requirements.lock", diff


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
    differ = lock_state(LOCK)[1]
    for line in differ[:5]:
        click.echo(f"note: {line} (untested; `make setup` installs the lock)")
    if len(differ) > 5:
        click.echo(f"note: and {len(differ) - 5} more (`make setup` installs the lock)")
    if problems:
        for p in problems:
            click.echo(f"problem: {p}", err=True)
        click.echo("verdict: NOT READY", err=True)
        sys.exit(1)
    click.echo("verdict: ready (every stage can run on this machine)")
