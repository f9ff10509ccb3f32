#!/usr/bin/env bash
# Create a virtualenv with a pinned Prefect server for tests and `make run`.
#   scripts/prefect-venv.sh [VENV_DIR]      (PREFECT_VERSION, default 3.6.29)
# Idempotent: an existing venv with the right version and the same constraints
# is left alone; a change to either rebuilds it.
# Per-version pins live in scripts/constraints/prefect-<version>.txt.
set -euo pipefail

version="${PREFECT_VERSION:-3.6.29}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="${1:-${PREFECT_VENV:-$root/.venv/prefect-$version}}"
constraints="$here/constraints/prefect-$version.txt"

# One installer per venv at a time (`make run` next to `make test`, or a test
# installing a second release): the others wait, then find it current.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9

# The marker holds what the venv was built from: the version and the constraints.
want="prefect==$version"
if [ -f "$constraints" ]; then
  want="$want $(sha256sum "$constraints" | cut -d' ' -f1)"
fi
if [ "$(cat "$venv/.installed" 2>/dev/null)" = "$want" ] && \
   "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('prefect') != '$version')" 2>/dev/null; then
  exit 0
fi

# The first interpreter that works, has venv, and is a version Prefect supports.
python=""
for p in ${PYTHON:-} python3 python3.12 python3.11 python3.13 python3.10; do
  if command -v "$p" >/dev/null 2>&1 && \
     "$p" -c 'import sys, venv, ensurepip; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 13)))' >/dev/null 2>&1; then
    python="$(command -v "$p")"; break
  fi
done
if [ -z "$python" ]; then
  echo "prefect-venv: no python3 (3.10-3.13) with venv found; run scripts/deps.sh (apt-get install -y python3 python3-venv)" >&2
  exit 1
fi

echo "prefect-venv: installing prefect==$version into $venv (one time, a minute or two)" >&2
# Install in place; the marker file is written last, so an interrupted install
# is redone from scratch next time.
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
args=(--quiet --disable-pip-version-check "prefect==$version")
if [ -f "$constraints" ]; then
  args+=(-c "$constraints")
fi
"$venv/bin/python" -m pip install "${args[@]}" >&2
"$venv/bin/prefect" version >&2
printf '%s\n' "$want" > "$venv/.installed"
