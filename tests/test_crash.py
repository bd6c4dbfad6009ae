"""Crash safety: a real LNbits server process is SIGKILLed at a different point
of a settlement's distribution each time, restarted, and left to recover.

The kill comes from inside (faults.py: `SATMACHINE_CRASH_AT=<point>:<n>` makes
the process SIGKILL itself the n-th time it reaches that point), so every run
hits exactly the point it names: before the payment is recorded, between each
step of a payout (invoice created, invoice stored, paid, confirmed), and of the
commission. After the restart, the start-up recovery must finish the job with
every client paid exactly once and not a sat created or lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from crash_helpers import (
    arm,
    die_at,
    live_world,
    power_back,
    wait_for_settlement,
)
from live_server import LiveLNbits

CLIENTS = 12
PRINCIPAL = 6_000  # sats for 60.00 GTQ at 1,000,000 GTQ/BTC
FEE = 330
CRASH_POINTS = [
    "before_record",  # paid, never recorded: the start-up scan must find it
    "recorded",
    "looked_up",
    "planned",  # payout rows stored, nothing paid
    "payout_invoice_created:1",  # an invoice the row does not know about
    "payout_invoice_stored:2",
    "payout_paid:1",  # paid, the row still says pending
    "payout_paid:7",
    "payout_confirmed:4",
    "payout_invoice_stored:12",
    "payout_paid:12",  # the last payout
    "commission_invoice_stored",
    "commission_paid",
]


@contextmanager
def crash_world(name: str) -> Iterator[tuple]:
    """A live LNbits with a source, commission and payer wallet, the
    configuration and CLIENTS clients (shared by test_review_retry_crash)."""
    # The market agrees with the ATM's price (rate_check.py).
    with live_world(name, GTQ=1_000_000, USD=1_000_000) as live:
        wallets = {
            "source": live.create_wallet("Source"),
            "commission": live.create_wallet("Commission"),
            "payer": live.create_wallet("ATM payer"),
        }
        live.credit(wallets["payer"]["id"], 10_000_000)
        response = live.api(
            "POST",
            "/config",
            json={
                "source_wallet_id": wallets["source"]["id"],
                "commission_wallet_id": wallets["commission"]["id"],
            },
        )
        assert response.status_code == 201, response.text
        clients = []
        for i in range(CLIENTS):
            wallet = live.create_user_wallet(f"client{i:02d}")
            response = live.api(
                "POST",
                "/clients",
                json={"wallet_id": wallet["id"], "username": f"client{i:02d}"},
            )
            assert response.status_code == 201, response.text
            clients.append((response.json(), wallet))
        yield live, wallets, clients


@pytest.fixture(scope="module")
def world():
    with crash_world("crash") as built:
        yield built


def _deposit_for_everyone(live: LiveLNbits, clients) -> None:
    for i, (client, _) in enumerate(clients):
        amount = Decimal("5.00") + Decimal(i) * Decimal("0.37")
        response = live.api(
            "POST", "/deposits", json={"client_id": client["id"], "amount": str(amount)}
        )
        assert response.status_code == 201, response.text
        deposit_id = response.json()["id"]
        response = live.api(
            "PUT", f"/deposits/{deposit_id}/status", json={"status": "confirmed"}
        )
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_sigkill_mid_distribution_then_recovery_pays_everyone_once(world, crash_at):
    live, wallets, clients = world
    _deposit_for_everyone(live, clients)
    client_wallets = [wallet for _, wallet in clients]
    everyone = [wallets["source"], wallets["commission"], wallets["payer"]]
    everyone += client_wallets
    before = [live.balance(w) for w in everyone]

    # Restart with the crash armed, then the ATM settles.
    arm(live, crash_at)
    extra = {
        "source": "bitspire",
        "principal_sats": PRINCIPAL,
        "fee_sats": FEE,
        "exchange_rate": "1000000",
        "currency": "GTQ",
        "txid": f"crash-{crash_at}",
    }
    invoice = live.invoice(wallets["source"], PRINCIPAL + FEE, extra=extra)
    payment_hash = invoice["payment_hash"]
    # Killed before it could answer; the payment itself is checked below.
    die_at(
        live, crash_at, lambda: live.pay_invoice(wallets["payer"], invoice["bolt11"])
    )

    # Power back: the start-up recovery finishes what the crash interrupted.
    power_back(live)
    settlement = wait_for_settlement(live, payment_hash, "completed")
    assert settlement and settlement["status"] == "completed", (
        settlement and settlement["status_detail"],
        [p["error"] for p in (settlement or {}).get("payouts", []) if p["error"]],
    )

    after = [live.balance(w) for w in everyone]
    delta = [a - b for a, b in zip(after, before, strict=True)]
    # Nothing created or lost: every sat moved from one wallet to another.
    assert sum(delta) == 0, delta
    assert delta[2] == -(PRINCIPAL + FEE)  # the payer paid once
    assert delta[1] == FEE == settlement["commission_sats"]
    # Every client paid exactly once, exactly its payout.
    payouts = settlement["payouts"]
    assert len(payouts) == CLIENTS
    assert len({p["client_id"] for p in payouts}) == CLIENTS
    assert all(p["status"] == "confirmed" for p in payouts)
    by_wallet = {p["wallet_id"]: p["amount_sats"] for p in payouts}
    for wallet, change in zip(client_wallets, delta[3:], strict=True):
        assert change == by_wallet[wallet["id"]], (wallet["id"], change)
    assert sum(by_wallet.values()) == PRINCIPAL - (settlement["orphan_sats"] or 0)
    # What no client could take stays in the source wallet, recorded as orphan.
    assert delta[0] == (settlement["orphan_sats"] or 0)


RESOLUTION_CRASHES = [
    ("operator_funds", "resolution_claimed"),
    ("send_to_wallet", "resolution_claimed"),
    ("send_to_wallet", "orphan_invoice_created"),
    ("send_to_wallet", "orphan_invoice_stored"),
    ("send_to_wallet", "orphan_paid"),
    ("attribute_to_client", "resolution_claimed"),
    ("attribute_to_client", "attribution_recorded"),
    ("attribute_to_client", "payout_invoice_stored"),
    ("attribute_to_client", "payout_paid"),
]


@pytest.mark.parametrize(("action", "crash_at"), RESOLUTION_CRASHES)
def test_sigkill_mid_resolution_then_recovery_resolves_once(world, action, crash_at):
    """An orphan (a USD settlement: nobody holds USD) is resolved; the process
    dies at a point inside the resolution; after the restart the recovery pass
    finishes it: the orphan's sats moved once, to the chosen target, and an
    attribution is one deposit and one payout."""
    live, wallets, clients = world
    client, client_wallet = clients[0]
    target = live.create_wallet(f"target {action} {crash_at}")
    sats = 5_000
    extra = {
        "source": "bitspire",
        "principal_sats": sats,
        "fee_sats": 0,
        "exchange_rate": "1000000",
        "currency": "USD",
        "txid": f"orphan-{action}-{crash_at}",
    }
    invoice = live.invoice(wallets["source"], sats, extra=extra)
    live.pay_invoice(wallets["payer"], invoice["bolt11"])
    settlement = wait_for_settlement(
        live, invoice["payment_hash"], "completed", timeout=30, interval=0.2
    )
    assert settlement and settlement["reconciliation"], settlement
    rec = settlement["reconciliation"]
    assert rec["orphan_sats"] == sats
    watched = [wallets["source"], target, client_wallet]
    before = [live.balance(w) for w in watched]

    arm(live, crash_at)
    body: dict = {"action": action}
    if action == "send_to_wallet":
        body["wallet_id"] = target["id"]
    if action == "attribute_to_client":
        body["client_id"] = client["id"]
    die_at(
        live,
        crash_at,
        lambda: live.api("POST", f"/reconciliations/{rec['id']}/resolve", json=body),
    )

    power_back(live)
    deadline = time.monotonic() + 60
    final = None
    while time.monotonic() < deadline:
        final = live.api("GET", f"/reconciliations/{rec['id']}").json()
        if final["status"] == "resolved":
            break
        time.sleep(0.3)
    assert final and final["status"] == "resolved", final
    # A second resolution is refused; a recovery pass changes nothing.
    again = live.api("POST", f"/reconciliations/{rec['id']}/resolve", json=body)
    assert again.status_code == 409
    live.api("POST", "/manual-poll")
    delta = [live.balance(w) - b for w, b in zip(watched, before, strict=True)]
    expected = {
        "operator_funds": [0, 0, 0],
        "send_to_wallet": [-sats, sats, 0],
        "attribute_to_client": [-sats, 0, sats],
    }[action]
    assert delta == expected, delta
    if action == "attribute_to_client":
        deposits = live.api(
            "GET", "/deposits", params={"client_id": client["id"], "limit": 1000}
        ).json()
        rows = deposits["data"] if isinstance(deposits, dict) else deposits
        orphan_deposits = [
            d for d in rows if f"settlement {settlement['id']}" in (d["notes"] or "")
        ]
        assert len(orphan_deposits) == 1, orphan_deposits
