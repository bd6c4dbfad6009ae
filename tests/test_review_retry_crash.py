"""SIGKILL inside a retry (transfer() resuming payouts that hold a stored,
unpaid invoice): the first life dies right after paying the first payout of
a batch (the other eleven hold stored, unpaid invoices, which LNbits'
start-up check then fails); the second life dies at a point of the retry
(after abandoning the stored invoice, after creating its replacement, after
storing it, after paying it, after confirming); the third finishes. Every
client is paid exactly once, and not a sat is created or lost.
"""

from __future__ import annotations

import pytest
from crash_helpers import arm, die_at, power_back, wait_for_settlement
from test_crash import CLIENTS, FEE, PRINCIPAL, _deposit_for_everyone, crash_world

RETRY_CRASHES = [
    "payout_invoice_abandoned:1",
    "payout_invoice_abandoned:3",
    "payout_invoice_created:2",
    "payout_invoice_stored:2",
    "payout_paid:2",
    "payout_confirmed:3",
]


@pytest.fixture(scope="module")
def world():
    with crash_world("retrycrash") as built:
        yield built


@pytest.mark.parametrize("crash_at", RETRY_CRASHES)
def test_sigkill_inside_a_retry_then_everyone_is_paid_once(world, crash_at):
    live, wallets, clients = world
    _deposit_for_everyone(live, clients)
    client_wallets = [wallet for _, wallet in clients]
    everyone = [wallets["source"], wallets["commission"], wallets["payer"]]
    everyone += client_wallets
    before = [live.balance(w) for w in everyone]

    arm(live, "payout_paid:1")
    extra = {
        "source": "bitspire",
        "principal_sats": PRINCIPAL,
        "fee_sats": FEE,
        "exchange_rate": "1000000",
        "currency": "GTQ",
        "txid": f"retry-crash-{crash_at}",
    }
    invoice = live.invoice(wallets["source"], PRINCIPAL + FEE, extra=extra)
    payment_hash = invoice["payment_hash"]
    die_at(
        live,
        "payout_paid:1",
        lambda: live.pay_invoice(wallets["payer"], invoice["bolt11"]),
    )
    # Second life: its start-up recovery pass retries and dies inside it.
    arm(live, crash_at, at_start=True)
    die_at(live, crash_at)

    power_back(live)
    settlement = wait_for_settlement(live, payment_hash, "completed")
    assert settlement and settlement["status"] == "completed", (
        settlement and settlement["status_detail"],
        [p["error"] for p in (settlement or {}).get("payouts", []) if p["error"]],
    )
    after = [live.balance(w) for w in everyone]
    delta = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(delta) == 0, delta
    assert delta[2] == -(PRINCIPAL + FEE)
    assert delta[1] == FEE == settlement["commission_sats"]
    payouts = settlement["payouts"]
    assert len(payouts) == CLIENTS
    assert all(p["status"] == "confirmed" for p in payouts)
    by_wallet = {p["wallet_id"]: p["amount_sats"] for p in payouts}
    for wallet, change in zip(client_wallets, delta[3:], strict=True):
        assert change == by_wallet[wallet["id"]], (wallet["id"], change)
    assert delta[0] == (settlement["orphan_sats"] or 0)
