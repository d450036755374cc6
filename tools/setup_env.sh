#!/usr/bin/env bash
# One setup path for a fresh machine: .venv with torch+torchvision, lava-nc/lava-dl and their real
# runtime needs, the Python>=3.11 compatibility fix to lava-nc, then mksgn in editable mode.
# Idempotent: a stamp records what was installed; a second run with nothing changed does nothing.
# Every install is constrained by tools/requirements.lock (the exact versions CI tests); set
# MKSGN_UNLOCKED=1 to take the registry's newest instead (tools/refresh_lock.sh does, to renew it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.mksgn-setup
# Anything that changes what gets installed changes this key.
KEY=$(cat tools/setup_env.sh tools/pip_lava_pins.awk tools/requirements.lock setup.cfg \
      mksgn/lava_compat.py 2>/dev/null \
      | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ]; then
  echo "setup: .venv is up to date (nothing to do)"
  exit 0
fi
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
# -qq: only errors (this machine's pip config may name find-links folders that pip warns about)
PIP="$VENV/bin/python -m pip --disable-pip-version-check -qq"
# pip reports lava-nc/lava-dl's declared pins as "ERROR: ... dependency conflicts" after every
# install; expected (they are installed without them) and no failure, so those lines go to $PINS
# (tools/pip_lava_pins.awk). Every other line pip prints, and its exit status (pipefail), stay.
PINS=$VENV/pip-lava-pins.txt
rm -f "$PINS"
LOCK=()
[ "${MKSGN_UNLOCKED:-0}" = 1 ] || LOCK=(-c tools/requirements.lock)
pip_install() { $PIP install "${LOCK[@]}" "$@" 2>&1 | awk -v pins="$PINS" -f tools/pip_lava_pins.awk; }
echo "setup: torch 2.14.1 + torchvision 0.29.1"
pip_install "torch==2.14.1" "torchvision==0.29.1"
echo "setup: lava-nc 0.10.0 + lava-dl 0.6.0 (declared <3.11; installed without their tight pins)"
pip_install --no-deps --ignore-requires-python "lava-nc==0.10.0" "lava-dl==0.6.0"
echo "setup: their runtime needs"
pip_install "numpy<2" scipy "networkx<=2.8.7" "asteval<0.10" scikit-learn h5py matplotlib ninja \
  "opencv-python-headless<5" pillow
$VENV/bin/python mksgn/lava_compat.py --apply
echo "setup: mksgn (editable) with test extras"
pip_install -e ".[test,sanafe,nir]"
if [ "${MKSGN_UNLOCKED:-0}" != 1 ]; then
  echo "setup: every package at its locked version (tools/requirements.lock)"
  pip_install --no-deps --ignore-requires-python -r tools/requirements.lock
fi
if [ -s "$PINS" ]; then
  echo "setup: lava-nc/lava-dl declare older pins (torch<2.4, ...) than these versions; expected,"
  echo "       not an error: mksgn's tests prove the toolchain on them (pip's list: $PINS)"
fi
echo "$KEY" > "$STAMP"
echo "setup: done"
