"""Package layout, CLI entry, doctor and the lava-nc Python 3.11 fix."""
from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile

import pytest
from click.testing import CliRunner

from mksgn import lava_compat
from mksgn.pipeline.cli import COMMANDS, main

BROKEN = '''from dataclasses import dataclass, InitVar
class ByteEncoder:
    pass
@dataclass
class ChipEncoding:
    x: ByteEncoder = ByteEncoder()
    y: ByteEncoder = ByteEncoder()
'''


def test_stages_install_under_mksgn():
    for stage in ("data", "train", "convert", "deploy", "hw_profiles"):
        module = importlib.import_module(f"mksgn.{stage}")
        assert module.__name__ == f"mksgn.{stage}"
    # Nothing generic lands in site-packages: from a neutral directory (no repo on sys.path),
    # the stage folders are importable only as mksgn.<stage>.
    probe = "import importlib.util as u; print([n for n in ('train','convert','deploy','hw_profiles','data') if u.find_spec(n)])"
    out = subprocess.run([sys.executable, "-c", probe], cwd=tempfile.gettempdir(),
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_lava_fix_rewrites_defaults_and_is_idempotent():
    assert lava_compat.needs_fix(BROKEN)
    fixed = lava_compat.fixed_source(BROKEN)
    assert not lava_compat.needs_fix(fixed)
    assert fixed.count("field(default_factory=ByteEncoder)") == 2
    assert "from dataclasses import dataclass, InitVar, field" in fixed
    assert lava_compat.fixed_source(fixed) == fixed
    namespace: dict = {}
    exec(compile(fixed, "var_model.py", "exec"), namespace)  # valid Python, dataclass builds
    a, b = namespace["ChipEncoding"](), namespace["ChipEncoding"]()
    assert a.x is not b.x  # a fresh encoder per instance, as the fix intends


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the fix is only needed on 3.11+")
def test_installed_lava_is_fixed():
    assert lava_compat.status() == "applied"


def test_help_lists_only_registered_verbs_and_each_has_help():
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for verb in COMMANDS:
        assert verb in result.output
        sub = runner.invoke(main, [verb, "--help"])
        assert sub.exit_code == 0, sub.output
        assert "Usage:" in sub.output


def test_doctor_reports_ready_here():
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "lava-nc py3.11 fix" in result.output
    assert "verdict: ready" in result.output


def test_doctor_fails_with_reason_when_netx_missing(monkeypatch):
    from mksgn.pipeline import doctor
    real = doctor.importlib_import

    def fake(module):
        if module == "lava.lib.dl.netx":
            raise ImportError("simulated missing netx")
        real(module)

    monkeypatch.setattr(doctor, "importlib_import", fake)
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1
    assert "lava-dl netx cannot be imported" in result.output


def test_doctor_says_when_the_installed_set_differs_from_the_lock(tmp_path):
    from mksgn.pipeline import doctor
    import importlib.metadata as md
    torch_version = md.version("torch")
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"# comment\ntorch=={torch_version}\nClick=={md.version('click')}\n")
    assert doctor.lock_state(lock) == ("installed set = tools/requirements.lock (2 packages)", [])
    lock.write_text(f"torch==0.0.1\nno_such-package==1.0\nclick=={md.version('click')}\n")
    state, differ = doctor.lock_state(lock)
    assert state == "2 of 3 packages differ from tools/requirements.lock"
    assert differ == ["no-such-package absent != 1.0", f"torch {torch_version} != 0.0.1"]
    assert doctor.lock_state(tmp_path / "missing.lock")[0].startswith("no tools/requirements.lock")


def test_the_lock_pins_every_package_setup_installs():
    """tools/requirements.lock pins the exact versions of what the setup asks for by name."""
    from mksgn.pipeline import doctor
    pins = doctor.read_lock(doctor.LOCK)
    for name in ("torch", "torchvision", "lava-nc", "lava-dl", "numpy", "scipy", "h5py", "click",
                 "pytest", "import-linter"):
        assert name in pins, name
    assert pins["torch"] == "2.14.1" and pins["lava-nc"] == "0.10.0" and pins["lava-dl"] == "0.6.0"
