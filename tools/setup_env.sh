#!/usr/bin/env bash
# One setup path for a fresh machine: .venv with torch+torchvision, lava-nc/lava-dl and their real
# runtime needs, the Python>=3.11 compatibility fix to lava-nc, then mksgn in editable mode.
# Idempotent: a stamp records what was installed; a second run with nothing changed does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.mksgn-setup
# Anything that changes what gets installed changes this key.
KEY=$(cat tools/setup_env.sh setup.cfg mksgn/lava_compat.py 2>/dev/null | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ]; then
  echo "setup: .venv is up to date (nothing to do)"
  exit 0
fi
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
# -qq: only errors (this machine's pip config may name find-links folders that pip warns about)
PIP="$VENV/bin/python -m pip --disable-pip-version-check -qq"
echo "setup: torch 2.14.1 + torchvision 0.29.1"
$PIP install "torch==2.14.1" "torchvision==0.29.1"
echo "setup: lava-nc 0.10.0 + lava-dl 0.6.0 (declared <3.11; installed without their tight pins)"
$PIP install --no-deps --ignore-requires-python "lava-nc==0.10.0" "lava-dl==0.6.0"
echo "setup: their runtime needs (pip may report lava-dl's old pins as conflicts: expected, they are"
echo "       not its real needs; mksgn's tests prove the toolchain on these versions)"
$PIP install "numpy<2" scipy "networkx<=2.8.7" "asteval<0.10" scikit-learn h5py matplotlib ninja \
  "opencv-python-headless<5" pillow
$VENV/bin/python mksgn/lava_compat.py --apply
echo "setup: mksgn (editable) with test extras"
$PIP install -e ".[test]"
echo "$KEY" > "$STAMP"
echo "setup: done"
