"""Test harness: a real LNbits app, in-process, with this extension loaded from
the checkout, FakeWallet funding, and a throwaway database.

Every LNBITS_* variable must be set before the first `import lnbits` (settings,
database type and data folder are fixed at import), so they are set here at
module level. `tests/` has no __init__.py and the repo root has no conftest.py,
so pytest does not import the extension package before this runs.

SATMACHINE_TEST_DB=postgres runs the same suite with LNbits on a real PostgreSQL
server started for the session (see pg_server.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import pytest_asyncio

RUN_DIR = Path(tempfile.mkdtemp(prefix="satmachine-test-"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from lnbits_sandbox import (  # noqa: E402
    IN_PROCESS_SETTINGS,
    offline_settings,
    payments_in_flight,
    prepare_run_dir,
)

prepare_run_dir(RUN_DIR)

_pg = None
if os.environ.get("SATMACHINE_TEST_DB") == "postgres":
    from pg_server import start_postgres

    _pg = start_postgres(RUN_DIR / "pg")
    _pg.create_database("lnbits")
    os.environ["LNBITS_DATABASE_URL"] = _pg.dsn("lnbits")
else:
    os.environ.pop("LNBITS_DATABASE_URL", None)

os.environ.update(offline_settings(RUN_DIR))
# No periodic recovery loop in this app: tests run passes themselves.
os.environ.update(IN_PROCESS_SETTINGS)
os.chdir(RUN_DIR)

SUPER_USERNAME = "operator"
SUPER_PASSWORD = "secret-password-1"


def pytest_sessionfinish(session, exitstatus):
    if _pg is not None:
        _pg.stop()
    shutil.rmtree(RUN_DIR, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def app():
    from lnbits.app import create_app

    application = create_app()
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def http(app):
    import httpx

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield client


class Env:
    """Handles for the tests: the HTTP client, the super user, helpers."""

    def __init__(self, http, token: str, super_user_id: str):
        self.http = http
        self.token = token
        self.super_user_id = super_user_id

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    async def wallet(self, name: str = "wallet", user_id: str | None = None):
        from lnbits.core.crud import create_wallet

        return await create_wallet(
            user_id=user_id or self.super_user_id, wallet_name=name
        )

    async def user_with_wallet(self, name: str):
        from lnbits.core.services import create_user_account

        account = await create_user_account()
        wallet = await self.wallet(name, account.id)
        await self.enable_for(account.id)
        return account, wallet

    async def enable_for(self, user_id: str) -> None:
        from lnbits.core.crud import create_user_extension, get_user_extension
        from lnbits.core.models.extensions import UserExtension

        existing = await get_user_extension(user_id, "satmachineadmin")
        if existing and existing.active:
            return
        if existing:
            from lnbits.core.crud import update_user_extension

            existing.active = True
            await update_user_extension(existing)
        else:
            await create_user_extension(
                UserExtension(user="", extension="satmachineadmin", active=True).copy(
                    update={"user": user_id}
                )
            )

    async def fund(self, wallet_id: str, sats: int) -> None:
        """Tests may mint (an admin credit); the extension never does."""
        from lnbits.core.crud import get_wallet
        from lnbits.core.services import update_wallet_balance

        wallet = await get_wallet(wallet_id)
        assert wallet
        await update_wallet_balance(wallet, sats)

    async def balance(self, wallet_id: str) -> int:
        from lnbits.core.crud import get_wallet

        wallet = await get_wallet(wallet_id)
        assert wallet
        return wallet.balance

    def market(self, currency: str, fiat_per_btc) -> None:
        """What LNbits' exchange-rate service answers for `currency` (offline,
        its cache is the service): the independent price settlements are
        checked against."""
        from lnbits.utils.cache import cache

        cache.set(f"btc-price-{currency}", float(fiat_per_btc), expiry=3600)

    async def pay(self, from_wallet_id: str, to_wallet_id: str, sats: int, **kw) -> str:
        """A real internal payment between two wallets; returns the payment hash.
        An honest bitSpire ATM: the market price is the one its metadata
        reports, unless `market=False` (the test sets the market itself)."""
        from lnbits.core.services import create_invoice, pay_invoice

        extra = kw.get("extra")
        if kw.pop("market", True) and isinstance(extra, dict):
            try:
                self.market(str(extra["currency"]), float(extra["exchange_rate"]))
            except (KeyError, TypeError, ValueError, OverflowError):
                pass
        invoice = await create_invoice(
            wallet_id=to_wallet_id,
            amount=sats,
            memo=kw.pop("memo", "ATM Lightning Sale"),
            extra=kw.pop("extra", None),
        )
        await pay_invoice(wallet_id=from_wallet_id, payment_request=invoice.bolt11)
        return invoice.payment_hash

    async def api(self, method: str, path: str, **kw):
        headers = kw.pop("headers", None) or self.auth
        return await self.http.request(
            method, f"/satmachineadmin/api/v1/dca{path}", headers=headers, **kw
        )

    async def settle(self, timeout: float = 60.0) -> None:
        """Wait until the listener and processor have nothing left to do: no
        payment waiting in LNbits' queues or the listener's, none in hand, the
        money lock free, twice in a row. Returns as soon as that holds, so a
        generous timeout costs nothing on a fast machine and keeps a loaded
        one (CI) from reading state the listener has not reached yet."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await asyncio.sleep(0.05)
        while loop.time() < deadline:
            await asyncio.sleep(0.1)
            if not payments_in_flight():
                await asyncio.sleep(0.1)
                if not payments_in_flight():
                    return


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def env(http) -> Env:
    response = await http.put(
        "/api/v1/auth/first_install",
        json={
            "username": SUPER_USERNAME,
            "password": SUPER_PASSWORD,
            "password_repeat": SUPER_PASSWORD,
        },
    )
    assert response.status_code == 200, response.text
    response = await http.post(
        "/api/v1/auth", json={"username": SUPER_USERNAME, "password": SUPER_PASSWORD}
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    from lnbits.settings import settings

    super_user = settings.super_user
    response = await http.put(
        "/api/v1/extension/satmachineadmin/enable",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return Env(http, token, super_user)


@pytest.fixture
def anyio_backend():
    return "asyncio"
