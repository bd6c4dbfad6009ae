"""Settlements end to end, through real payments on a real LNbits (FakeWallet)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _setup(env, balances: list[str], currency: str = "GTQ"):
    """Fresh source/commission wallets, a config, and clients with confirmed
    deposits. Returns (source, commission, payer, clients)."""
    source = await env.wallet("source")
    commission = await env.wallet("commission")
    payer = await env.wallet("atm customer")
    response = await env.api(
        "POST",
        "/config",
        json={"source_wallet_id": source.id, "commission_wallet_id": commission.id},
    )
    assert response.status_code == 201, response.text
    clients = []
    for i, amount in enumerate(balances):
        _, wallet = await env.user_with_wallet(f"client{i}")
        response = await env.api(
            "POST", "/clients", json={"wallet_id": wallet.id, "username": f"c{i}"}
        )
        assert response.status_code == 201, response.text
        client = response.json()
        response = await env.api(
            "POST",
            "/deposits",
            json={"client_id": client["id"], "amount": amount, "currency": currency},
        )
        assert response.status_code == 201, response.text
        deposit = response.json()
        response = await env.api(
            "PUT", f"/deposits/{deposit['id']}/status", json={"status": "confirmed"}
        )
        assert response.status_code == 200, response.text
        clients.append((client, wallet))
    return source, commission, payer, clients


async def _deactivate_all_clients(env):
    """Every active client (a page of 1000 at a time: a test may leave more)."""
    active = []
    for offset in range(0, 10**9, 1000):
        response = await env.api(
            "GET",
            "/clients",
            params={"limit": 1000, "offset": offset, "status": "active"},
        )
        page = response.json()
        active.extend(page)
        if len(page) < 1000:
            break
    for client in active:
        if client["status"] == "active":
            await env.api(
                "PUT", f"/clients/{client['id']}/status", json={"status": "inactive"}
            )


async def test_seed_incident_capped_allocation(env):
    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(
        env, ["690", "7.54", "2.38", "0.07"]
    )
    await env.fund(payer.id, 400_000)
    extra = {
        "source": "bitspire",
        "principal_sats": 300_226,
        "fee_sats": 17_474,
        "exchange_rate": "666164.22",
        "currency": "GTQ",
        "bills": [{"denomination": 100, "count": 20}],
        "txid": "seed-incident",
        "machine_npub": "npub1test",
    }
    payment_hash = await env.pay(payer.id, source.id, 317_700, extra=extra)
    await env.settle()

    response = await env.api("GET", "/settlements")
    settlement = next(
        s for s in response.json()["data"] if s["payment_hash"] == payment_hash
    )
    assert settlement["status"] == "completed", settlement
    detail = (await env.api("GET", f"/settlements/{settlement['id']}")).json()
    payouts = detail["payouts"]
    assert len(payouts) == 4
    assert all(p["status"] == "confirmed" for p in payouts)

    assert Decimal(str(settlement["fiat_amount"])) == 2000
    rate = Decimal(300_226) / 2000
    paid_total = 0
    for (client, wallet), expected in zip(
        clients, ["690", "7.54", "2.38", "0.07"], strict=True
    ):
        received = await env.balance(wallet.id)
        assert received == int(Decimal(expected) * rate), (expected, received)
        paid_total += received
        balance = (await env.api("GET", f"/clients/{client['id']}/balance")).json()
        assert Decimal(str(balance["remaining_balance"])) == 0

    commission_sats = await env.balance(commission.id)
    assert commission_sats == 17_474
    orphan = detail["reconciliation"]
    assert orphan and orphan["status"] == "open"
    assert paid_total + commission_sats + orphan["orphan_sats"] == 317_700
    # The orphan's sats are still in the source wallet: nothing lost, none minted.
    assert await env.balance(source.id) == orphan["orphan_sats"]

    # Delivering the same payment again (a duplicate notification) changes nothing.
    from lnbits.core.crud import get_standalone_payment
    from satmachineadmin.tasks import on_invoice_paid

    payment = await get_standalone_payment(payment_hash, incoming=True)
    await on_invoice_paid(payment)
    await env.settle()
    assert await env.balance(commission.id) == 17_474
    assert await env.balance(source.id) == orphan["orphan_sats"]


async def test_covered_settlement_is_proportional_without_orphan(env):
    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["600", "300", "100"])
    await env.fund(payer.id, 20_000)
    extra = {
        "source": "bitspire",
        "principal_sats": 9_500,
        "fee_sats": 500,
        "exchange_rate": "950000",
        "currency": "GTQ",
        "txid": "small",
    }
    await env.pay(payer.id, source.id, 10_000, extra=extra)
    await env.settle()
    received = [await env.balance(w.id) for _, w in clients]
    assert sum(received) == 9_500
    assert received == [5_700, 2_850, 950]
    assert await env.balance(commission.id) == 500
    assert await env.balance(source.id) == 0
    response = await env.api("GET", "/reconciliations", params={"status": "open"})
    assert all(
        r["settlement_id"] not in {c["id"] for c, _ in clients}
        for r in response.json()["data"]
    )
    await _assert_client_figures_agree(env, {c["id"] for c, _ in clients})
    await _assert_csv_exports_hold_every_row_once(env)


async def _assert_client_figures_agree(env, paid: set[str]):
    """The clients list sums payouts for the page's clients only, unless it is
    sorted by a figure (then for everyone): both, and GET /clients/{id}, must
    give every client the same figures."""
    response = await env.api(
        "GET", "/clients", params={"limit": 1000, "sortby": "remaining_balance"}
    )
    everyone = {c["id"]: c for c in response.json()}
    assert paid <= set(everyone)
    assert all(Decimal(str(everyone[i]["distributed_fiat"])) > 0 for i in paid)
    paged: dict[str, dict] = {}
    for offset in range(0, len(everyone) + 3, 3):
        page = await env.api(
            "GET",
            "/clients",
            params={"limit": 3, "offset": offset, "sortby": "username"},
        )
        if page.json():  # (LNbits' fetch_page answers total 0 past the end)
            assert int(page.headers["X-Total-Count"]) == len(everyone)
        paged.update((c["id"], c) for c in page.json())
    assert paged == everyone
    for client_id in paid:
        single = await env.api("GET", f"/clients/{client_id}")
        assert single.json() == everyone[client_id]


async def test_other_wallets_and_admin_credits_are_ignored(env):
    await _deactivate_all_clients(env)
    source, _, payer, _ = await _setup(env, ["100"])
    before = (await env.api("GET", "/settlements", params={"limit": 1000})).json()
    await env.fund(source.id, 5_000)  # an admin credit into the source wallet
    other = await env.wallet("unrelated")
    await env.fund(payer.id, 5_000)
    await env.pay(payer.id, other.id, 1_000)  # a payment to another wallet
    await env.settle()
    after = (await env.api("GET", "/settlements", params={"limit": 1000})).json()
    assert after["total"] == before["total"]


async def test_unexplained_payment_waits_then_manual_data_distributes(env):
    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["50"])
    await env.fund(payer.id, 10_000)
    payment_hash = await env.pay(payer.id, source.id, 5_000)
    await env.settle()
    settlements = (await env.api("GET", "/settlements")).json()["data"]
    settlement = next(s for s in settlements if s["payment_hash"] == payment_hash)
    assert settlement["status"] == "waiting_data"
    assert await env.balance(clients[0][1].id) == 0

    bad = await env.api(
        "PUT",
        f"/settlements/{settlement['id']}/cash-out",
        json={"fiat_amount": "-5", "fiat_code": "GTQ", "principal_sats": 10},
    )
    assert bad.status_code == 400
    env.market("GTQ", 842_105.26)  # the typed price agrees with the market
    response = await env.api(
        "PUT",
        f"/settlements/{settlement['id']}/cash-out",
        json={"fiat_amount": "40", "fiat_code": "GTQ", "principal_sats": 4_750},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert await env.balance(clients[0][1].id) == 4_750
    assert await env.balance(commission.id) == 250
    again = await env.api(
        "PUT",
        f"/settlements/{settlement['id']}/cash-out",
        json={"fiat_amount": "40", "fiat_code": "GTQ", "principal_sats": 4_750},
    )
    assert again.status_code == 409


async def test_parity_transactions_show_settlements_in_the_old_shape(env):
    await _deactivate_all_clients(env)
    source, _, payer, clients = await _setup(env, ["100"])
    await env.fund(payer.id, 20_000)
    extra = {
        "source": "bitspire",
        "principal_sats": 9_500,
        "fee_sats": 500,
        "exchange_rate": "950000",
        "currency": "GTQ",
        "txid": "parity",
    }
    await env.pay(payer.id, source.id, 10_000, extra=extra)
    await env.settle()
    response = await env.api("GET", "/transactions", params={"limit": 5})
    assert response.status_code == 200, response.text
    assert int(response.headers["X-Total-Count"]) >= 1
    row = response.json()[0]  # newest first
    assert row["lamassu_transaction_id"] == "parity"
    assert row["crypto_amount"] == 10_000
    assert row["base_amount_sats"] == 9_500
    assert row["commission_amount_sats"] == 500
    assert row["clients_count"] == 1
    assert row["distributions_total_sats"] == 9_500
    assert row["source"] == "settlement"
    response = await env.api("GET", f"/transactions/{row['id']}/distributions")
    assert response.status_code == 200, response.text
    [distribution] = response.json()
    assert distribution["client_id"] == clients[0][0]["id"]
    assert distribution["amount_sats"] == 9_500
    assert (await env.api("GET", "/transactions/nope")).status_code == 404


async def _assert_csv_exports_hold_every_row_once(env):
    for path, listing in (
        ("/export/payouts.csv", "/payouts"),
        ("/export/settlements.csv", "/settlements"),
    ):
        response = await env.api("GET", path)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        ids = [row["id"] for row in csv.DictReader(io.StringIO(response.text))]
        total = (await env.api("GET", listing, params={"limit": 1})).json()["total"]
        assert total > 0
        assert len(ids) == len(set(ids)) == total, path
