"""A real LNbits server process with this extension loaded from the checkout.

The in-process harness (conftest.py) cannot be killed halfway or driven by a
browser; this one is a separate `lnbits` process on 127.0.0.1 with its own data
folder (SQLite) or its own PostgreSQL database, FakeWallet funding, and the same
settings the run command uses. It survives restarts on the same data, so a test
can SIGKILL it and start it again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from lnbits_sandbox import RECOVERY_LOOP_ENV, offline_settings, prepare_run_dir

SUPER_USERNAME = "operator"
SUPER_PASSWORD = "secret-password-1"
PREFIX = "/satmachineadmin/api/v1/dca"


class PriceFeed:
    """An exchange-rate provider on 127.0.0.1 for the server's LNbits (its
    `LNBITS_EXCHANGE_RATE_PROVIDERS`): `GET /<CODE>` answers the price set with
    `set(code, fiat_per_btc)`, else 404 (LNbits then has no rate for it)."""

    def __init__(self) -> None:
        self.prices: dict[str, float] = {}
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                price = feed.prices.get(self.path.strip("/").upper())
                body = str(price).encode() if price else b"no price"
                self.send_response(200 if price else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set(self, currency: str, fiat_per_btc: float) -> None:
        self.prices[currency.upper()] = fiat_per_btc

    def provider_setting(self) -> str:
        return json.dumps(
            [
                {
                    "name": "test feed",
                    "api_url": f"http://127.0.0.1:{self.port}/{{TO}}",
                    "path": "",
                }
            ]
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveLNbits:
    def __init__(
        self,
        database_url: str | None = None,
        *,
        link_extension: bool = True,
        **extra_env: str,
    ):
        """link_extension=False: an empty extensions folder (the extension is
        then installed through LNbits' own extension manager)."""
        self.dir = prepare_run_dir(Path(tempfile.mkdtemp(prefix="satmachine-live-")))
        if not link_extension:
            (self.dir / "extensions" / "satmachineadmin").unlink()
        # Answers 200 (or 307 before the first install) once the server is up;
        # without the extension its paths are 404 after the first install.
        self.ready_path = (
            f"{PREFIX}/client-limits" if link_extension else "/api/v1/health"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.dir / "server.log"
        # Not the in-process app's switches: this server runs the recovery
        # loop as production does (the crash tests need its start-up pass).
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("LNBITS_") and key != RECOVERY_LOOP_ENV
        }
        self.env.update(
            {
                **offline_settings(self.dir),
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
            }
        )
        # LNbits' exchange-rate service, on loopback: no price until a test
        # sets one with market() (offline, as scripts/run.sh runs, there is
        # none: settlements are then flagged for the operator to accept).
        self.feed = PriceFeed()
        self.env["LNBITS_EXCHANGE_RATE_PROVIDERS"] = self.feed.provider_setting()
        self.env["LNBITS_EXCHANGE_RATE_CACHE_SECONDS"] = "0"
        if database_url:
            self.env["LNBITS_DATABASE_URL"] = database_url
        self.env.update(extra_env)
        self.process: subprocess.Popen | None = None
        self.token = ""
        self.http = httpx.Client(base_url=self.url, timeout=30)

    # ---------------------------------------------------------------- process

    def start(self, timeout: float = 90, **env: str) -> None:
        # uvicorn straight, not the `lnbits` command: that one serves from a
        # child process, so a SIGKILL (or SIGTERM) would not reach the server.
        (self.dir / "data" / "logs").mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "uvicorn", "lnbits.__main__:app"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            command,
            cwd=self.dir,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"LNbits exited:\n{self.log_tail()}")
            try:
                # 307: up, redirecting everything to the first install.
                response = self.http.get(self.ready_path)
                if response.status_code in (200, 307):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"LNbits did not start:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, exactly like a power cut."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def wait_exit(self, timeout: float) -> int | None:
        assert self.process
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def market(self, currency: str, fiat_per_btc: float) -> None:
        """The price LNbits' exchange-rate service answers for `currency`."""
        self.feed.set(currency, fiat_per_btc)

    def close(self) -> None:
        self.stop()
        self.http.close()
        self.feed.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # ---------------------------------------------------------------- setup

    def first_install(self, enable: bool = True) -> None:
        """The super user, logged in, with the extension enabled (unless
        enable=False: e.g. it is not installed yet)."""
        response = self.http.put(
            "/api/v1/auth/first_install",
            json={
                "username": SUPER_USERNAME,
                "password": SUPER_PASSWORD,
                "password_repeat": SUPER_PASSWORD,
            },
        )
        assert response.status_code == 200, response.text
        self.login()
        if enable:
            self.enable_extension()

    def enable_extension(self) -> None:
        """For the super user (every user must enable an extension)."""
        response = self.http.put(
            "/api/v1/extension/satmachineadmin/enable", headers=self.auth
        )
        assert response.status_code == 200, response.text

    def login(self) -> None:
        response = self.http.post(
            "/api/v1/auth",
            json={"username": SUPER_USERNAME, "password": SUPER_PASSWORD},
        )
        assert response.status_code == 200, response.text
        self.token = response.json()["access_token"]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        headers = kw.pop("headers", None) or self.auth
        return self.http.request(method, PREFIX + path, headers=headers, **kw)

    def create_wallet(self, name: str) -> dict:
        response = self.http.post(
            "/api/v1/wallet", json={"name": name}, headers=self.auth
        )
        assert response.status_code == 200, response.text
        return response.json()

    def create_user_wallet(self, name: str) -> dict:
        """A wallet of a new ordinary user (a DCA client)."""
        response = self.http.post(
            "/users/api/v1/user",
            json={"username": name, "extensions": []},
            headers=self.auth,
        )
        assert response.status_code == 200, response.text
        user_id = response.json()["id"]
        response = self.http.post(
            f"/users/api/v1/user/{user_id}/wallet",
            params={"name": name},
            headers=self.auth,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def credit(self, wallet_id: str, sats: int) -> None:
        """Test funding only (an admin credit); the extension never mints."""
        response = self.http.put(
            "/users/api/v1/balance",
            json={"id": wallet_id, "amount": sats},
            headers=self.auth,
        )
        assert response.status_code == 200, response.text

    def balance(self, wallet: dict) -> int:
        response = self.http.get(
            "/api/v1/wallet", headers={"X-Api-Key": wallet["inkey"]}
        )
        assert response.status_code == 200, response.text
        return response.json()["balance"] // 1000

    def invoice(self, payee: dict, sats: int, memo: str = "ATM", extra=None) -> dict:
        response = self.http.post(
            "/api/v1/payments",
            json={"out": False, "amount": sats, "memo": memo, "extra": extra},
            headers={"X-Api-Key": payee["inkey"]},
        )
        assert response.status_code in (200, 201), response.text
        return response.json()

    def pay_invoice(self, payer: dict, bolt11: str) -> None:
        response = self.http.post(
            "/api/v1/payments",
            json={"out": True, "bolt11": bolt11},
            headers={"X-Api-Key": payer["adminkey"]},
        )
        assert response.status_code in (200, 201), response.text

    def pay(
        self, payer: dict, payee: dict, sats: int, memo: str = "ATM", extra=None
    ) -> str:
        """A real internal payment; returns the payment hash."""
        invoice = self.invoice(payee, sats, memo, extra)
        self.pay_invoice(payer, invoice["bolt11"])
        return invoice["payment_hash"]
