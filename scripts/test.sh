#!/usr/bin/env bash
# The whole test suite: lint, unit + integration tests on SQLite, the
# integration tests again on PostgreSQL. Installs what it needs.
#   scripts/test.sh            everything
#   scripts/test.sh -k seed    extra arguments go to pytest (SQLite run only)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements-test.txt
scripts/system-deps.sh
PY=.venv/bin/python

echo "== lint"
$PY -m ruff check .
$PY -m black --check -q .
$PY -m mypy . --no-error-summary || { echo "mypy failed"; exit 1; }

echo "== tests (SQLite)"
$PY -m pytest -q "$@"

if [ $# -eq 0 ]; then
  echo "== integration tests (PostgreSQL)"
  SATMACHINE_TEST_DB=postgres $PY -m pytest -q -m "not sqlite_only" \
    tests/test_settlement_flow.py tests/test_migrations.py
fi
