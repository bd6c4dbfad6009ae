#!/usr/bin/env bash
# The whole test suite: lint, unit + integration + browser tests on SQLite,
# then the integration suite again with LNbits on PostgreSQL. Installs what it
# needs (Python venv, PostgreSQL, Chromium, prettier).
#   scripts/test.sh            everything
#   scripts/test.sh -k seed    extra arguments go to pytest (SQLite run only)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements-test.txt
scripts/system-deps.sh
[ -x node_modules/.bin/prettier ] || npm ci --no-audit --no-fund -q
PY=.venv/bin/python
mkdir -p test-artifacts

echo "== lint"
$PY -m ruff check .
$PY -m black --check -q .
$PY -m mypy . --no-error-summary || { echo "mypy failed"; exit 1; }
node_modules/.bin/prettier --check static/js templates

echo "== tests (SQLite)"
$PY -m pytest -q tests "$@"

if [ $# -eq 0 ]; then
  echo "== tests (PostgreSQL)"
  SATMACHINE_TEST_DB=postgres $PY -m pytest -q -m "not sqlite_only" tests
fi
