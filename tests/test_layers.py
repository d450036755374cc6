"""The floors hold: import-linter's contracts (pyproject.toml) run on the package as installed.

The stages live in top-level folders that setup.cfg installs as ``mksgn.<stage>``; import-linter
finds a package's modules by walking its folder, so the test copies the tree into that installed
layout first and runs the real ``lint-imports`` on the copy.
"""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")
pytestmark = pytest.mark.skipif(not LINT.is_file(), reason="import-linter is not installed")


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _stage_folders() -> dict[str, str]:
    """setup.cfg's package_dir: ``mksgn.<stage>`` -> its folder in the repository."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    rows = [line.split("=") for line in cfg["options"]["package_dir"].strip().splitlines()]
    return {name.strip(): folder.strip() for name, folder in rows if name.strip() != "mksgn"}


def _installed_layout(dest: Path) -> Path:
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "mksgn", dest / "mksgn", ignore=skip)
    for package, folder in _stage_folders().items():
        shutil.copytree(ROOT / folder, dest / package.replace(".", "/"), ignore=skip)
    return dest


def _lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)


def test_every_stage_is_a_layer_and_every_core_module_is_checked():
    layers, core, _gpl = _contracts()
    assert set(layers["layers"]) == set(_stage_folders())
    assert set(core["forbidden_modules"]) == set(_stage_folders())
    on_disk = {f"mksgn.{p.stem}" for p in (ROOT / "mksgn").glob("*.py") if p.stem != "__init__"}
    assert set(core["source_modules"]) == on_disk


def test_the_contracts_hold(tmp_path):
    res = _lint(_installed_layout(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 kept, 0 broken" in res.stdout


def test_an_upward_import_breaks_a_contract(tmp_path):
    """The check can fail: the core importing a stage is reported."""
    tree = _installed_layout(tmp_path)
    (tree / "mksgn" / "loihi.py").open("a").write("\nimport mksgn.deploy.engine  # noqa\n")
    res = _lint(tree)
    assert res.returncode == 1
    assert "mksgn.loihi -> mksgn.deploy.engine" in res.stdout
