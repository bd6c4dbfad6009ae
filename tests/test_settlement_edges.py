"""Settlement edge cases through real payments: one payout failing does not stop
the rest, an underfunded source wallet, dismissing a non-ATM payment, the dry
run moving nothing, no commission wallet, zero commission."""

from __future__ import annotations

from decimal import Decimal

import pytest
from api_helpers import bitspire_extra
from test_settlement_flow import _deactivate_all_clients, _setup

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _extra(txid: str, principal: int, fee: int, rate: str = "950000") -> dict:
    return bitspire_extra(principal, fee, txid=txid, rate=rate)


async def _settlement(env, payment_hash: str) -> dict:
    from satmachineadmin import crud

    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement
    response = await env.api("GET", f"/settlements/{settlement.id}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_vanished_client_wallet_fails_only_its_payout(env):
    from lnbits.core.crud import delete_wallet

    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["500", "500"])
    gone_client, gone_wallet = clients[1]
    await delete_wallet(user_id=gone_wallet.user, wallet_id=gone_wallet.id)
    await env.fund(payer.id, 20_000)
    payment_hash = await env.pay(
        payer.id, source.id, 10_000, extra=_extra("vanish", 9_500, 500)
    )
    await env.settle()
    detail = await _settlement(env, payment_hash)
    assert detail["status"] == "payout_failed"
    by_client = {p["client_id"]: p for p in detail["payouts"]}
    assert by_client[clients[0][0]["id"]]["status"] == "confirmed"
    failed = by_client[gone_client["id"]]
    assert failed["status"] == "failed" and "not found" in failed["error"]
    # The healthy client and the commission were paid; the failed payout's sats
    # are still in the source wallet, not lost.
    assert await env.balance(clients[0][1].id) == 4_750
    assert await env.balance(commission.id) == 500
    assert await env.balance(source.id) == 4_750
    # Its fiat is reserved, not handed to someone else, until the operator acts.
    balance = (await env.api("GET", f"/clients/{gone_client['id']}/balance")).json()
    assert Decimal(str(balance["remaining_balance"])) == Decimal("500") - Decimal(
        str(failed["amount_fiat"])
    )


async def test_underfunded_source_fails_then_retry_pays_once(env):
    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["1000"])
    await env.fund(payer.id, 20_000)
    # A payment without cash-out data waits; meanwhile the operator spends the
    # source wallet's sats elsewhere.
    payment_hash = await env.pay(payer.id, source.id, 10_000)
    await env.settle()
    settlement_id = (await _settlement(env, payment_hash))["id"]
    sink = await env.wallet("sink")
    await env.pay(source.id, sink.id, 9_000)
    assert await env.balance(source.id) == 1_000

    response = await env.api(
        "PUT",
        f"/settlements/{settlement_id}/cash-out",
        json={"fiat_amount": "90.25", "fiat_code": "GTQ", "principal_sats": 9_500},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "payout_failed"
    detail = await _settlement(env, payment_hash)
    [payout] = detail["payouts"]
    assert payout["status"] == "failed" and payout["error"]
    assert await env.balance(clients[0][1].id) == 0
    # The commission (500) still fit in what was left.
    assert await env.balance(commission.id) == 500

    # The sats come back (here: the sink pays them back); retry pays once.
    await env.pay(sink.id, source.id, 9_000)
    response = await env.api("POST", f"/settlements/{settlement_id}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert await env.balance(clients[0][1].id) == 9_500
    again = await env.api("POST", f"/settlements/{settlement_id}/retry")
    assert again.status_code == 409
    assert await env.balance(clients[0][1].id) == 9_500
    assert await env.balance(source.id) == 0


async def test_dismissing_a_top_up(env):
    await _deactivate_all_clients(env)
    source, _, payer, clients = await _setup(env, ["50"])
    await env.fund(payer.id, 10_000)
    payment_hash = await env.pay(payer.id, source.id, 2_000, memo="top-up")
    await env.settle()
    detail = await _settlement(env, payment_hash)
    settlement_id = detail["id"]
    assert detail["status"] == "waiting_data"
    response = await env.api(
        "PUT", f"/settlements/{settlement_id}/dismiss", json={"reason": ""}
    )
    assert response.status_code == 400  # a reason is required
    response = await env.api(
        "PUT",
        f"/settlements/{settlement_id}/dismiss",
        json={"reason": "operator top-up, not an ATM sale"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "dismissed"
    again = await env.api(
        "PUT", f"/settlements/{settlement_id}/dismiss", json={"reason": "again"}
    )
    assert again.status_code == 409
    # Dismissed: nobody was paid, the sats stay in the source wallet.
    assert await env.balance(clients[0][1].id) == 0
    assert await env.balance(source.id) == 2_000
    detail = await _settlement(env, payment_hash)
    assert "top-up" in detail["review_note"]
    assert detail["reviewed_by"]  # who dismissed it


async def test_dry_run_moves_nothing(env):
    await _deactivate_all_clients(env)
    source, commission, _, clients = await _setup(env, ["690", "7.54"])
    settlements_before = (await env.api("GET", "/settlements")).json()["total"]
    payouts_before = (await env.api("GET", "/payouts")).json()["total"]
    response = await env.api(
        "POST",
        "/test-transaction",
        json={"amount_sats": 317_700, "fiat_amount": "2000", "fiat_code": "GTQ"},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["moved_money"] is False
    assert result["capped"] is True
    shares = sum(a["sats"] for a in result["allocations"])
    assert shares + result["commission_sats"] + result["orphan_sats"] == 317_700
    assert [Decimal(str(a["fiat"])) for a in result["allocations"]] == [
        Decimal("690"),
        Decimal("7.54"),
    ]
    assert (await env.api("GET", "/settlements")).json()["total"] == settlements_before
    assert (await env.api("GET", "/payouts")).json()["total"] == payouts_before
    for _, wallet in clients:
        assert await env.balance(wallet.id) == 0
    assert await env.balance(source.id) == 0
    assert await env.balance(commission.id) == 0


async def _bulk_clients(count: int, currency: str) -> dict[str, str]:
    """`count` active flow clients (as the client extension writes them,
    straight into the table), each with 1.00 `currency` confirmed. Returns
    {client id: username}."""
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db

    names = {urlsafe_short_hash(): f"bulk-{i:05d}" for i in range(count)}
    rows = list(names.items())
    now = db.timestamp_now
    for start in range(0, len(rows), 100):
        chunk = rows[start : start + 100]
        values: dict = {"cur": currency}
        clients, deposits = [], []
        for i, (client_id, name) in enumerate(chunk):
            values |= {f"i{i}": client_id, f"n{i}": name, f"d{i}": f"dep-{client_id}"}
            clients.append(
                f"(:i{i}, :n{i}, :n{i}, :n{i}, 'flow', 'active', {now}, {now})"
            )
            deposits.append(f"(:d{i}, :i{i}, 1, :cur, 'confirmed', {now})")
        await db.execute(
            "INSERT INTO satoshimachine.dca_clients (id, user_id, wallet_id, "
            "username, dca_mode, status, created_at, updated_at) VALUES "
            + ", ".join(clients),
            values,
        )
        await db.execute(
            "INSERT INTO satoshimachine.dca_deposits (id, client_id, amount, "
            "currency, status, created_at) VALUES " + ", ".join(deposits),
            values,
        )
    return names


async def _drop_clients(client_ids) -> None:
    from satmachineadmin.crud import db

    ids = list(client_ids)
    for start in range(0, len(ids), 500):
        values = {f"i{i}": cid for i, cid in enumerate(ids[start : start + 500])}
        marks = ", ".join(f":{key}" for key in values)
        for table, column in (("dca_deposits", "client_id"), ("dca_clients", "id")):
            await db.execute(
                f"DELETE FROM satoshimachine.{table} WHERE {column} IN ({marks})",
                values,
            )


async def test_dry_run_with_5000_clients_names_every_one(env, monkeypatch):
    """The dry run reads the names of the clients it shows in a few queries
    (chunks of crud.IDS_PER_QUERY ids, within SQLite's parameter limit), not
    one per client, and names every one right."""
    from api_helpers import fresh_currency
    from satmachineadmin import crud, views_api

    currency = fresh_currency()
    names = await _bulk_clients(5_000, currency)
    unknown = "no-such-client"

    def one_by_one(*_args, **_kw):
        raise AssertionError("the dry run looked clients up one by one")

    monkeypatch.setattr(views_api, "get_client", one_by_one)
    monkeypatch.setattr(crud, "get_client", one_by_one)
    try:
        found = await crud.get_clients_by_ids([*names, unknown, *list(names)[:3]])
        assert {cid: c.username for cid, c in found.items()} == names
        assert await crud.get_clients_by_ids([]) == {}
        response = await env.api(
            "POST",
            "/test-transaction",
            json={
                "amount_sats": 5_000_000,
                "fiat_amount": "2500",
                "fiat_code": currency,
            },
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["moved_money"] is False
        allocations = result["allocations"]
        assert len(allocations) == 5_000
        assert {a["client_id"]: a["username"] for a in allocations} == names
        assert all(Decimal(str(a["fiat"])) == Decimal("0.5") for a in allocations)
        shares = sum(a["sats"] for a in allocations)
        assert shares + result["commission_sats"] + result["orphan_sats"] == 5_000_000
    finally:
        await _drop_clients(names)


async def test_without_commission_wallet_the_commission_stays(env):
    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["100"])
    response = await env.api("GET", "/config")
    config_id = response.json()["id"]
    response = await env.api(
        "PUT", f"/config/{config_id}", json={"commission_wallet_id": None}
    )
    assert response.status_code == 200, response.text
    await env.fund(payer.id, 20_000)
    payment_hash = await env.pay(
        payer.id, source.id, 10_000, extra=_extra("nocomm", 9_500, 500)
    )
    await env.settle()
    detail = await _settlement(env, payment_hash)
    assert detail["status"] == "completed"
    assert await env.balance(clients[0][1].id) == 9_500
    assert await env.balance(commission.id) == 0
    assert await env.balance(source.id) == 500  # kept in the source wallet


async def test_zero_commission(env):
    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["100"])
    await env.fund(payer.id, 20_000)
    payment_hash = await env.pay(
        payer.id, source.id, 9_500, extra=_extra("zero", 9_500, 0)
    )
    await env.settle()
    detail = await _settlement(env, payment_hash)
    assert detail["status"] == "completed"
    assert await env.balance(clients[0][1].id) == 9_500
    assert await env.balance(commission.id) == 0
    assert await env.balance(source.id) == 0
