"""An install of the old extension (schema version 2, with data) upgrades in
place: every row survives with its cents."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run_check(database_url: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="satmachine-migration-") as run_dir:
        args = [sys.executable, str(HERE / "migration_check.py"), run_dir]
        if database_url:
            args.append(database_url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LNBITS_")}
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=300, env=env
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0 and "MIGRATION OK" in result.stdout, output[
            -4000:
        ]


def test_old_install_upgrades_in_place():
    database_url = os.environ.get("LNBITS_DATABASE_URL")
    if database_url:
        # Postgres mode: a fresh database of its own on the session's server.
        import conftest

        assert conftest._pg is not None
        conftest._pg.create_database("migration_check")
        database_url = conftest._pg.dsn("migration_check")
    _run_check(database_url)
