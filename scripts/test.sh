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
node_modules/.bin/prettier --check static templates

if [ $# -gt 0 ]; then
  echo "== tests (SQLite)"
  exec $PY -m pytest -q tests "$@"
fi

# The two databases' runs go side by side (each is mostly waiting on its
# database, LNbits or the browser), which keeps CI well under its limit; each
# log is printed whole when both are done, with the slowest tests listed.
echo "== tests (SQLite and PostgreSQL, side by side)"
$PY -m pytest -q --durations=15 tests >test-artifacts/tests-sqlite.log 2>&1 &
sqlite_run=$!
SATMACHINE_TEST_DB=postgres $PY -m pytest -q --durations=15 -m "not sqlite_only" \
  tests >test-artifacts/tests-postgres.log 2>&1 &
postgres_run=$!
sqlite_rc=0 postgres_rc=0
wait $sqlite_run || sqlite_rc=$?
wait $postgres_run || postgres_rc=$?
echo "== tests (SQLite): exit $sqlite_rc"
cat test-artifacts/tests-sqlite.log
echo "== tests (PostgreSQL): exit $postgres_rc"
cat test-artifacts/tests-postgres.log
[ $sqlite_rc -eq 0 ] && [ $postgres_rc -eq 0 ]
