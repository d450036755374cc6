#!/usr/bin/env bash
# Renew tools/requirements.lock: set up a throwaway venv from the registry's newest releases that
# setup.cfg and tools/setup_env.sh allow (no lock), then record the exact version of every package
# it installed. Run it, run `make test` on the result, and commit the lock with the test's result.
#   usage: tools/refresh_lock.sh            (takes a few minutes; needs the package registry)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# the working tree as git sees it (tracked and new files; not ignored ones such as .venv)
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  if [ -e "$f" ]; then cp --parents "$f" "$WORK"; fi
done
(cd "$WORK" && MKSGN_UNLOCKED=1 bash tools/setup_env.sh)
{
  echo "# Exact versions that tools/setup_env.sh installs (constraints for every pip call)."
  echo "# Made by tools/refresh_lock.sh on $(date -u +%Y-%m-%d) with $("$WORK/.venv/bin/python" -V)."
  "$WORK/.venv/bin/python" -m pip freeze --exclude-editable --all | grep -vi '^mksgn[= @]' \
    | grep -v '^#' | LC_ALL=C sort -f
} > tools/requirements.lock.new
mv tools/requirements.lock.new tools/requirements.lock
echo "refresh_lock: wrote tools/requirements.lock ($(grep -vc '^#' tools/requirements.lock) packages)"
