"""A throwaway PostgreSQL server for the tests: initdb into a temp folder, listen
on 127.0.0.1 at a free port, password (scram) auth, UTC, stopped at the end.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
system user (created by Debian's postgresql package, which
scripts/system-deps.sh installs when missing).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"
PASSWORD = "pg-test-password"


def _bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server binaries not found; run scripts/system-deps.sh"
        )
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    data_dir: Path
    port: int
    bin_dir: Path
    run_as: str | None

    def _cmd(self, *args: str) -> list[str]:
        if self.run_as:
            return ["runuser", "-u", self.run_as, "--", *args]
        return list(args)

    def dsn(self, database: str, user: str = SUPERUSER, password: str = PASSWORD):
        return f"postgres://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
                "-c",
                sql,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return result.stdout

    def create_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}"')
        self.psql(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        subprocess.run(
            self._cmd(
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "immediate",
                "-w",
                "stop",
            ),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def start_postgres(base: Path | None = None, durable: bool = False) -> PostgresServer:
    """Start a fresh server. `base` is only a hint for the name: the data folder
    lives under /tmp so that the unprivileged server user can reach it.
    Tests trade durability for speed (no fsync); `durable=True` keeps
    PostgreSQL's own defaults, as a production server runs (the benchmark)."""
    bin_dir = _bin_dir()
    run_as = SUPERUSER if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="satmachine-pg-"))
    data_dir = root / "data"
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(data_dir, _free_port(), bin_dir, run_as)
    subprocess.run(
        server._cmd(
            str(bin_dir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ),
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {server.port} -c listen_addresses=127.0.0.1 "
        f"-c unix_socket_directories={root} -c timezone=America/Guatemala "
        "-c max_connections=200"
    )
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(
        server._cmd(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data_dir),
            "-o",
            options,
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ),
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            server.psql("SELECT 1")
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return server
