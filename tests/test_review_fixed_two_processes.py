"""Adversarial review: two real LNbits processes on one PostgreSQL database
deliver the same fixed-mode slot (fail-over, a second worker). Both run
recovery passes (`POST /manual-poll`: resume payouts, then the due slots)
from threads, two each, at the moment the slot comes. The slot's row is
taken once, every payout is paid once, at its first attempt, and every
client's wallet holds exactly its confirmed payouts.

PostgreSQL only: on SQLite LNbits keeps one process per data folder.
"""

from __future__ import annotations

import os
import threading
import time

import httpx
import pytest
from crash_helpers import wait_for_settlement
from live_server import PREFIX, LiveLNbits

pytestmark = pytest.mark.skipif(
    os.environ.get("SATMACHINE_TEST_DB") != "postgres",
    reason="two LNbits processes can share a database only on PostgreSQL",
)

DATABASE = "fixed_two_processes"
CLIENTS = 6
SETTLEMENTS = 3
ZONE = "America/Guatemala"


def _sql(query: str) -> list[list[str]]:
    import conftest

    out = conftest._pg.psql(query, database=DATABASE)
    return [line.split("|") for line in out.splitlines() if line]


@pytest.fixture(scope="module")
def fixed_pair():
    import conftest

    conftest._pg.create_database(DATABASE)
    dsn = conftest._pg.dsn(DATABASE)
    a, b = LiveLNbits(dsn), LiveLNbits(dsn)
    for live in (a, b):
        live.market("GTQ", 1_000_000)
    try:
        a.start()
        a.first_install()
        b.start()
        b.login()
        wallets = {
            "source": a.create_wallet("Source"),
            "payer": a.create_wallet("ATM payer"),
        }
        a.credit(wallets["payer"]["id"], 1_000_000)
        response = a.api(
            "POST",
            "/config",
            json={
                "source_wallet_id": wallets["source"]["id"],
                "time_zone": ZONE,
                "fixed_delivery": "daily",
                "fixed_delivery_time": "18:00",
            },
        )
        assert response.status_code == 201, response.text
        yield a, b, wallets
    finally:
        a.close()
        b.close()


def test_two_processes_deliver_one_slot_once(fixed_pair):
    a, b, wallets = fixed_pair
    clients = []
    for i in range(CLIENTS):
        wallet = a.create_user_wallet(f"fixed{i}")
        response = a.api(
            "POST",
            "/clients",
            json={
                "wallet_id": wallet["id"],
                "dca_mode": "fixed",
                "fixed_mode_daily_limit": "1000",
            },
        )
        assert response.status_code == 201, response.text
        client = response.json()
        response = a.api(
            "POST", "/deposits", json={"client_id": client["id"], "amount": "20"}
        )
        a.api(
            "PUT",
            f"/deposits/{response.json()['id']}/status",
            json={"status": "confirmed"},
        )
        clients.append((client, wallet))
    hashes = []
    for i in range(SETTLEMENTS):
        extra = {
            "source": "bitspire",
            "principal_sats": 6_000,
            "fee_sats": 0,
            "exchange_rate": "1000000",
            "currency": "GTQ",
            "txid": f"fixed-two-{i}",
        }
        invoice = a.invoice(wallets["source"], 6_000, extra=extra)
        a.pay_invoice(wallets["payer"], invoice["bolt11"])
        detail = wait_for_settlement(a, invoice["payment_hash"], "scheduled")
        # The third finds every balance reserved: all of it is an orphan.
        if i == SETTLEMENTS - 1 and detail and detail["status"] == "completed":
            assert detail["orphan_sats"] == 6_000
        else:
            assert detail and detail["status"] == "scheduled", detail
        hashes.append(invoice["payment_hash"])
    before = [a.balance(w) for _, w in clients] + [a.balance(wallets["source"])]
    # Time passes: the slot is due (the rows are moved a day back), and both
    # processes run recovery passes at once.
    _sql(
        "UPDATE satoshimachine.dca_payments "
        "SET deliver_after = deliver_after - INTERVAL '1 day' "
        "WHERE deliver_after IS NOT NULL AND delivery_slot IS NULL"
    )
    stop = threading.Event()
    failures: list[str] = []
    waiters = 0

    def poll(server: LiveLNbits) -> None:
        with httpx.Client(base_url=server.url, headers=server.auth, timeout=90) as h:
            while not stop.is_set():
                response = h.post(f"{PREFIX}/manual-poll")
                if response.status_code != 200:
                    failures.append(f"{server.port}: {response.text[:300]}")

    threads = [
        threading.Thread(target=poll, args=(server,), daemon=True)
        for server in (a, b, a, b)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        waiting = _sql(
            "SELECT count(*) FROM pg_locks "
            "WHERE locktype = 'advisory' AND NOT granted"
        )
        waiters = max(waiters, int(waiting[0][0]))
        left = _sql(
            "SELECT count(*) FROM satoshimachine.dca_payments "
            "WHERE status <> 'confirmed' AND deliver_after IS NOT NULL"
        )
        if int(left[0][0]) == 0:
            break
        time.sleep(0.1)
    time.sleep(2)  # a few more passes on both, racing over nothing
    stop.set()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    assert waiters >= 1  # the two really raced for the money lock
    after = [a.balance(w) for _, w in clients] + [a.balance(wallets["source"])]
    delta = [x - y for x, y in zip(after, before, strict=True)]
    assert delta == [2_000] * CLIENTS + [-2_000 * CLIENTS], delta
    rows = _sql(
        "SELECT client_id, status, attempts, amount_sats, delivery_slot "
        "FROM satoshimachine.dca_payments WHERE deliver_after IS NOT NULL"
    )
    assert len(rows) == 2 * CLIENTS
    assert {(r[1], r[2]) for r in rows} == {("confirmed", "1")}, rows
    assert len({r[4] for r in rows}) == 1  # one slot
    slots = _sql("SELECT id, status, payouts FROM satoshimachine.fixed_delivery_slots")
    assert [(s[1], s[2]) for s in slots] == [("done", str(2 * CLIENTS))], slots
    for client, wallet in clients:
        paid = sum(int(r[3]) for r in rows if r[0] == client["id"])
        assert a.balance(wallet) == paid == 2_000
    for payment_hash in hashes:
        detail = wait_for_settlement(a, payment_hash, "completed")
        assert detail and detail["status"] == "completed", detail
