#!/usr/bin/env bash
# Create .venv (Python 3.10-3.12) and install the pinned requirements.
# Usage: scripts/bootstrap.sh [requirements file]
set -euo pipefail
cd "$(dirname "$0")/.."
REQ="${1:-requirements.txt}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.12 python3.11 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] < (3, 13)))' \
        2>/dev/null; then # (a pyenv shim for a version not selected complains)
      PY="$candidate"
      break
    fi
  done
fi
[ -n "$PY" ] || { echo "Python 3.10-3.12 is required" >&2; exit 1; }
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements*.txt | sha1sum | cut -c1-12)-$(basename "$REQ")"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -r "$REQ"
  touch "$stamp"
fi
