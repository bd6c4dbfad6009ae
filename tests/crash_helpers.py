"""What the crash tests share (test_crash.py, test_crash_commission.py and the
delivery-slot test of test_fixed_mode.py): a real LNbits process on a database
of its own, restarted with a fault point armed (faults.py:
`SATMACHINE_CRASH_AT=<point>:<n>` makes it SIGKILL itself the n-th time it
reaches the point), left to die there, started again, and watched while its
start-up recovery finishes the job.

    with live_world("crash", GTQ=1_000_000) as live:   # in a module fixture
        ...
        arm(live, crash_at)
        invoice = live.invoice(...)
        die_at(live, crash_at, lambda: live.pay_invoice(payer, invoice["bolt11"]))
        power_back(live)
        settlement = wait_for_settlement(live, invoice["payment_hash"], "completed")
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
from live_server import LiveLNbits

POSTGRES = os.environ.get("SATMACHINE_TEST_DB") == "postgres"


@contextmanager
def live_world(database: str, **prices: float) -> Iterator[LiveLNbits]:
    """A started LNbits with the super user logged in and the extension
    enabled, on SQLite in its own folder or on the PostgreSQL database
    `database` of the session's server; `prices`: what its exchange-rate
    feed answers per currency (GTQ=1_000_000). Closed (data removed) at the
    end."""
    database_url = None
    if POSTGRES:
        import conftest  # the session's PostgreSQL server

        assert conftest._pg is not None
        conftest._pg.create_database(database)
        database_url = conftest._pg.dsn(database)
    live = LiveLNbits(database_url)
    for currency, fiat_per_btc in prices.items():
        live.market(currency, fiat_per_btc)
    try:
        live.start()
        live.first_install()
        yield live
    finally:
        live.close()


def arm(live: LiveLNbits, crash_at: str, *, at_start: bool = False) -> None:
    """Restart `live` with the fault point armed. at_start: the start-up
    recovery pass reaches the point, so the process may die before it answers
    (then there is nobody to log in to); otherwise logged in again."""
    live.stop()
    if at_start:
        try:
            live.start(SATMACHINE_CRASH_AT=crash_at)
        except RuntimeError:
            pass  # it died in the start-up pass before it answered: the point
        return
    live.start(SATMACHINE_CRASH_AT=crash_at)
    live.login()


def die_at(
    live: LiveLNbits, crash_at: str, trigger: Callable[[], object] | None = None
) -> None:
    """Run `trigger` (the request whose handling reaches the point; None: the
    start-up pass does) and wait for the armed process to have killed itself."""
    if trigger is not None:
        try:
            trigger()
        except httpx.TransportError:
            pass  # killed before it could answer; the outcome is checked later
    assert live.wait_exit(60) is not None, f"never reached {crash_at}"


def power_back(live: LiveLNbits) -> None:
    """Start again, unarmed: the start-up recovery finishes what the crash
    interrupted."""
    live.start()
    live.login()


def settlement_of(live: LiveLNbits, payment_hash: str) -> dict | None:
    """The settlement detail (payouts, commission parts, reconciliation) of
    the payment, None if it has no settlement (yet)."""
    response = live.api("GET", "/settlements", params={"search": payment_hash})
    assert response.status_code == 200, response.text
    found = [s for s in response.json()["data"] if s["payment_hash"] == payment_hash]
    if not found:
        return None
    return live.api("GET", f"/settlements/{found[0]['id']}").json()


def wait_for_settlement(
    live: LiveLNbits,
    payment_hash: str,
    status: str,
    timeout: float = 60,
    interval: float = 0.3,
) -> dict | None:
    """The settlement detail as soon as it has `status`; after `timeout`, the
    last one seen (None: never recorded), for the caller's assertion. A
    server that does not answer yet is waited for."""
    deadline = time.monotonic() + timeout
    settlement = None
    while time.monotonic() < deadline:
        try:
            settlement = settlement_of(live, payment_hash)
        except httpx.TransportError:
            time.sleep(interval)
            continue
        if settlement and settlement["status"] == status:
            return settlement
        time.sleep(interval)
    return settlement
