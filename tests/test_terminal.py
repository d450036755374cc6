"""What a newcomer's terminal shows: no foreign import notices, tables that fit 80 columns, and no
pip ERROR lines about lava-nc/lava-dl's declared pins during setup."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from convert_helpers import student_checkpoint, teacher_checkpoint
from mksgn import netgraph, quiet
from mksgn.pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = "No CUDA runtime is found"
PROPHESEE = "Prophesee Dataset Toolbox could not be found"


def assert_fits_80(text: str) -> None:
    """No line longer than 80 columns and no cell cut to an ellipsis."""
    long = [ln for ln in text.splitlines() if len(ln.rstrip()) > 80]
    assert not long, "\n".join(long)
    assert "\u2026" not in text and "..." not in text, text


def invoke80(*args) -> str:
    res = CliRunner(env={"COLUMNS": "80"}).invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


# ---------------------------------------------------------------------------------------------
# Tables at 80 columns

@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("term")
    student_checkpoint(d / "student" / "best.pt")
    teacher_checkpoint(d / "teacher" / "best.pt")
    out = d / "convert"
    text = invoke80("convert", d / "student", "--teacher", d / "teacher", "--out", out)
    return d, out, text


def _activity(net_dir: Path, out: Path, samples: int = 64) -> Path:
    """A `mksgn simulate`-shaped activity report with large random spike counts for every group,
    so that the energy tables carry wide numbers."""
    net = netgraph.load(net_dir / "model.net")
    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256((net_dir / "model.net").read_bytes()).hexdigest()
    (out / "activity.json").write_text(json.dumps({
        "schema": "mksgn-activity/1", "network_sha256": sha, "engine": "fast",
        "samples": samples, "runs": samples, "num_steps": net.num_steps, "groups": {}}))
    np.savez(out / "activity.npz", samples=np.int64(samples),
             **{f"spikes/{g.name}": rng.integers(0, samples * net.num_steps, g.shape)
                for g in net.groups})
    return out


def test_convert_prints_a_summary_that_fits_80_columns(converted):
    _, out, text = converted
    assert_fits_80(text)
    assert "Nodes that are not native" in text and "Chip resources" in text
    assert "b1/attention" in text and "unsupported" in text     # the rows that matter
    assert "b1_q " not in text                                  # a native node: compat.json only
    assert f"{out / 'compat.json'}" in "".join(text.split())    # names the file with the rest


def test_convert_wide_prints_every_node(converted, tmp_path):
    d, out, _ = converted
    res = CliRunner(env={"COLUMNS": "80"}).invoke(main, [
        "convert", str(d / "student"), "--out", str(tmp_path / "c"), "--wide"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "c" / "compat.json").read_text())
    rows = {ln.split()[1] for ln in res.output.splitlines() if ln.startswith("\u2502")}
    assert {n["name"] for n in rep["nodes"]} <= rows
    assert max(len(ln) for ln in res.output.splitlines()) > 80   # at its natural width
    assert "\u2026" not in res.output


def test_energy_prints_a_summary_that_fits_80_columns(converted, tmp_path):
    _, conv, _ = converted
    act = _activity(conv, tmp_path / "sim")
    text = invoke80("energy", conv, "--activity", act, "--profile", "loihi", "--profile",
                    "loihi2", "--profile", "cmos45nm_fp32", "--profile", "cmos45nm_int8",
                    "--out", tmp_path / "energy")
    assert_fits_80(text)
    for table in ("Energy and time per sample", "using the most energy on loihi", "Energy reduction"):
        assert table in text
    assert f"{tmp_path / 'energy' / 'energy.csv'}" in "".join(text.split())
    net = netgraph.load(conv / "model.net")
    rows = [ln for ln in text.splitlines() if ln.startswith("\u2502")]
    layer_rows = [r for r in rows if r.split()[1] in {g.name for g in net.groups}]
    assert len(layer_rows) == 5 < len(net.groups)               # the top five, not all


def test_energy_wide_prints_every_layer(converted, tmp_path):
    _, conv, _ = converted
    act = _activity(conv, tmp_path / "sim")
    res = CliRunner(env={"COLUMNS": "80"}).invoke(main, [
        "energy", str(conv), "--activity", str(act), "--out", str(tmp_path / "e"), "--wide"])
    assert res.exit_code == 0, res.output
    net = netgraph.load(conv / "model.net")
    rows = {ln.split()[1] for ln in res.output.splitlines() if ln.startswith("\u2502")}
    assert {g.name for g in net.groups} <= rows
    assert "\u2026" not in res.output


def test_other_output_fits_80_columns():
    assert_fits_80(invoke80("energy", "--list-profiles"))
    assert_fits_80(invoke80("doctor"))
    for verb in ("convert", "energy"):
        assert_fits_80(invoke80(verb, "--help"))


# ---------------------------------------------------------------------------------------------
# Foreign import notices

def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where torch finds a CUDA toolkit but no CUDA runtime
    (what makes torch log its notice; on any machine)."""
    env = dict(os.environ, CUDA_HOME=str(tmp_path), CUDA_VISIBLE_DEVICES="", COLUMNS="80")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_lava_dl_import_notices_are_silenced_and_others_kept(tmp_path):
    bare = _python("import lava.lib.dl.slayer", tmp_path)
    assert bare.returncode == 0, bare.stderr
    if PROPHESEE not in bare.stdout:
        pytest.skip("the Prophesee toolbox is installed here: lava-dl prints no notice")
    assert NO_CUDA in bare.stderr                      # the notices exist without mksgn
    ours = _python(
        "import logging, warnings\n"
        "from mksgn.pipeline.cli import main\n"
        "main(['doctor'], standalone_mode=False)\n"    # a verb that imports lava-dl
        "logging.getLogger('torch.utils.cpp_extension').warning('another torch notice')\n"
        "warnings.warn('a different warning')\n", tmp_path)
    assert ours.returncode == 0, ours.stderr
    both = ours.stdout + ours.stderr
    assert NO_CUDA not in both and PROPHESEE not in both and "Please install it" not in both
    assert "another torch notice" in ours.stderr and "a different warning" in ours.stderr
    assert "prophesee toolbox" in ours.stdout and "absent (optional" in ours.stdout
    assert "verdict: ready" in ours.stdout


def test_quiet_import_keeps_every_other_line(tmp_path, monkeypatch, capsys):
    """The module's own notice goes; anything else it prints stays."""
    (tmp_path / "fake_prophesee.py").write_text(
        'print("WARNING: Prophesee Dataset Toolbox could not be found!")\n'
        'print("         Only Prophesee DVS demo will not run properly.")\n'
        f'print("         Please install it from {quiet.PROPHESEE_TOOLBOX}")\n'
        'print("something else")\nVALUE = 3\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(quiet, "PROPHESEE_MODULE", "fake_prophesee")
    monkeypatch.delitem(sys.modules, "fake_prophesee", raising=False)
    import fake_prophesee
    assert fake_prophesee.VALUE == 3
    assert capsys.readouterr().out == "something else\n"


# ---------------------------------------------------------------------------------------------
# pip during setup

PIP_OUTPUT = """\
ERROR: pip's dependency resolver does not currently take into account all the packages that are \
installed. This behaviour is the source of the following dependency conflicts.
lava-dl 0.6.0 requires pytest<8.0.0,>=7.2.0, which is not installed.
lava-dl 0.6.0 requires torch<2.4.0,>=2.3.1, but you have torch 2.14.1 which is incompatible.
lava-nc 0.10.0 requires numpy<2.0, but you have numpy 2.1 which is incompatible.
Successfully installed x-1.0
ERROR: pip's dependency resolver does not currently take into account all the packages that are \
installed. This behaviour is the source of the following dependency conflicts.
lava-dl 0.6.0 requires pillow<11.0,>=10.0.1, but you have pillow 13.0.0 which is incompatible.
torchvision 0.29.1 requires torch==2.14.1, but you have torch 2.13.0 which is incompatible.
ERROR: Could not find a version that satisfies the requirement nosuch==1
"""


def test_setup_filters_exactly_lava_pin_lines_and_keeps_pips_status(tmp_path):
    (tmp_path / "pip.txt").write_text(PIP_OUTPUT)
    pins = tmp_path / "pins.txt"
    awk = ROOT / "tools" / "pip_lava_pins.awk"
    res = subprocess.run(
        ["bash", "-c", f'set -o pipefail; {{ cat pip.txt; exit 3; }} 2>&1 | '
                       f'awk -v pins="{pins}" -f "{awk}"'],
        capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 3                          # pip's exit status survives the filter
    lines = PIP_OUTPUT.splitlines()
    assert res.stdout.splitlines() == [lines[4], lines[5], lines[7], lines[8]]
    assert pins.read_text().splitlines() == [lines[1], lines[2], lines[3], lines[6]]
    script = (ROOT / "tools" / "setup_env.sh").read_text()
    pip_calls = [ln for ln in script.splitlines() if "install" in ln and not ln.startswith("#")
                 and ("$PIP" in ln or "pip_install" in ln)]
    assert all(ln.strip().startswith(("pip_install ", "pip_install()")) for ln in pip_calls), pip_calls
