"""Crash safety of the commission split (#14): a real LNbits process is
SIGKILLed at a point inside the payment of a three-way commission, restarted,
and left to recover (the pattern of test_crash.py; crash_helpers.py). Every
partner must be paid its part exactly once, and not a sat created or lost."""

from __future__ import annotations

import pytest
from crash_helpers import arm, die_at, live_world, power_back, wait_for_settlement

PRINCIPAL = 6_000  # sats for 60.00 GTQ at 1,000,000 GTQ/BTC
FEE = 1_001  # 60 / 30 / 10 %: 600.6, 300.3, 100.1 -> 601, 300, 100
PARTS = [601, 300, 100]
# Three points keep CI short; test_crash.py covers "planned" and the one-part
# commission's invoice_stored/paid points.
CRASH_POINTS = [
    "commission_invoice_created:2",  # an invoice the part does not know about
    "commission_paid:2",  # paid, the part still says pending
    "commission_confirmed:3",  # every part confirmed, the settlement not yet
]


@pytest.fixture(scope="module")
def world():
    with live_world("crash_commission", GTQ=1_000_000) as live:
        wallets = {
            "source": live.create_wallet("Source"),
            "payer": live.create_wallet("ATM payer"),
        }
        partners = [live.create_wallet(f"Partner {i}") for i in range(3)]
        live.credit(wallets["payer"]["id"], 1_000_000)
        response = live.api(
            "POST", "/config", json={"source_wallet_id": wallets["source"]["id"]}
        )
        assert response.status_code == 201, response.text
        response = live.api(
            "PUT",
            "/commission-recipients",
            json={
                "recipients": [
                    {"wallet_id": partners[0]["id"], "percent": "60"},
                    {"wallet_id": partners[1]["id"], "percent": "30"},
                    {"wallet_id": partners[2]["id"], "percent": "10"},
                ]
            },
        )
        assert response.status_code == 200, response.text
        client_wallet = live.create_user_wallet("client")
        response = live.api(
            "POST",
            "/clients",
            json={"wallet_id": client_wallet["id"], "username": "client"},
        )
        assert response.status_code == 201, response.text
        yield live, wallets, partners, (response.json(), client_wallet)


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_sigkill_mid_commission_split_then_recovery_pays_each_part_once(
    world, crash_at
):
    live, wallets, partners, (client, client_wallet) = world
    response = live.api(
        "POST", "/deposits", json={"client_id": client["id"], "amount": "20"}
    )
    assert response.status_code == 201, response.text
    response = live.api(
        "PUT", f"/deposits/{response.json()['id']}/status", json={"status": "confirmed"}
    )
    assert response.status_code == 200, response.text
    everyone = [wallets["source"], wallets["payer"], client_wallet, *partners]
    before = [live.balance(w) for w in everyone]

    arm(live, crash_at)
    extra = {
        "source": "bitspire",
        "principal_sats": PRINCIPAL,
        "fee_sats": FEE,
        "exchange_rate": "1000000",
        "currency": "GTQ",
        "txid": f"crash-commission-{crash_at}",
    }
    invoice = live.invoice(wallets["source"], PRINCIPAL + FEE, extra=extra)
    die_at(
        live, crash_at, lambda: live.pay_invoice(wallets["payer"], invoice["bolt11"])
    )

    power_back(live)
    settlement = wait_for_settlement(live, invoice["payment_hash"], "completed")
    assert settlement and settlement["status"] == "completed", (
        settlement and settlement["status_detail"]
    )
    parts = settlement["commission_payouts"]
    assert [p["amount_sats"] for p in parts] == PARTS
    assert all(p["status"] == "confirmed" for p in parts), parts
    assert settlement["commission_status"] == "confirmed"

    delta = [live.balance(w) - b for w, b in zip(everyone, before, strict=True)]
    assert sum(delta) == 0, delta  # nothing created or lost
    assert delta[1] == -(PRINCIPAL + FEE)  # the payer paid once
    assert delta[2] == 2_000  # the client's 20.00, once
    assert delta[3:] == PARTS  # each partner its part, exactly once
    assert delta[0] == settlement["orphan_sats"] == PRINCIPAL - 2_000
