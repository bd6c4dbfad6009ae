"""What a client's balance reserves, and currencies (issue 10, parts 2 and 3).

* Rows the old extension left `pending` or `failed` (no settlement) reserve
  nothing: the admin balance equals what the client extension computes
  (confirmed deposits - confirmed payouts), and the operator can void them.
* A payout that can never succeed (the client deleted their wallet) can be
  cancelled: its fiat is released and its sats join the settlement's orphan;
  or the client gets a new wallet and the retry pays that one, never the old.
* Payouts carry their currency: a USD payout never reduces a GTQ balance.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from api_helpers import fresh_currency, register_client
from test_settlement_flow import _deactivate_all_clients, _setup

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def client_extension_balance(client_id: str, currency: str | None = None):
    """The client extension's own formula, straight from the shared tables."""
    from satmachineadmin.allocation import to_fiat
    from satmachineadmin.crud import db

    deposits = await db.fetchone(
        "SELECT COALESCE(SUM(amount), 0) AS s FROM satoshimachine.dca_deposits "
        "WHERE client_id = :c AND status = 'confirmed'"
        + (" AND currency = :cur" if currency else ""),
        {"c": client_id, "cur": currency},
    )
    paid = await db.fetchone(
        "SELECT COALESCE(SUM(amount_fiat), 0) AS s FROM satoshimachine.dca_payments "
        "WHERE client_id = :c AND status = 'confirmed'"
        + (" AND currency = :cur" if currency else ""),
        {"c": client_id, "cur": currency},
    )
    return to_fiat(deposits["s"]) - to_fiat(paid["s"])


async def admin_balance(env, client_id: str) -> Decimal:
    """The remaining balance the operator sees. In these tests nothing of this
    extension is unfinished, so nothing is reserved and it must equal the
    client's own dashboard."""
    response = await env.api("GET", f"/clients/{client_id}/balance")
    assert response.status_code == 200, response.text
    body = response.json()
    assert Decimal(str(body["reserved_fiat"])) == 0, body
    return Decimal(str(body["remaining_balance"]))


async def _legacy_payout(client_id: str, fiat: str, status: str, currency: str):
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db
    from satmachineadmin.models import DcaPayment, utc_now

    row = DcaPayment(
        id=urlsafe_short_hash(),
        client_id=client_id,
        amount_sats=1000,
        amount_fiat=Decimal(fiat),
        exchange_rate=100.0,
        transaction_type="flow",
        lamassu_transaction_id=f"old-{urlsafe_short_hash()[:6]}",
        status=status,
        created_at=utc_now(),
        currency=currency,
    )
    await db.insert("satoshimachine.dca_payments", row)
    return row


async def _settle(
    env, source, payer, sats: int, fee: int, rate: str, cur: str, tx: str
):
    await env.fund(payer.id, sats)
    payment_hash = await env.pay(
        payer.id,
        source.id,
        sats,
        extra={
            "source": "bitspire",
            "principal_sats": sats - fee,
            "fee_sats": fee,
            "exchange_rate": rate,
            "currency": cur,
            "txid": tx,
        },
    )
    await env.settle()
    response = await env.api("GET", "/settlements", params={"search": payment_hash})
    [row] = response.json()["data"]
    return (await env.api("GET", f"/settlements/{row['id']}")).json()


def _conserved(settlement: dict) -> None:
    paid = sum(
        p["amount_sats"] for p in settlement["payouts"] if p["status"] == "confirmed"
    )
    assert (
        paid + settlement["commission_sats"] + (settlement["orphan_sats"] or 0)
        == settlement["amount_sats"]
    ), settlement


async def test_legacy_unfinished_rows_reserve_nothing_and_can_be_voided(env):
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _c, payer, clients = await _setup(env, ["600"], currency=cur)
    client = clients[0][0]
    await _legacy_payout(client["id"], "8.00", "confirmed", cur)
    pending = await _legacy_payout(client["id"], "19.00", "pending", cur)
    await _legacy_payout(client["id"], "3.00", "failed", cur)

    # 600 - 8 confirmed: what the client's dashboard shows, and the admin too.
    assert await client_extension_balance(client["id"]) == Decimal("592.00")
    assert await admin_balance(env, client["id"]) == Decimal("592.00")
    summary = (await env.api("GET", "/summary")).json()
    assert summary["legacy_unfinished_payouts"] >= 2

    # A settlement bigger than the balance takes all 592.00, not 573.00.
    settlement = await _settle(env, source, payer, 100_000, 0, "10000000", cur, "lg")
    [payout] = [p for p in settlement["payouts"] if p["client_id"] == client["id"]]
    assert Decimal(str(payout["amount_fiat"])) == Decimal("592.00")
    assert await client_extension_balance(client["id"]) == 0
    assert await admin_balance(env, client["id"]) == 0
    _conserved(settlement)

    body = {"reason": "old extension leftover"}
    response = await env.api("POST", f"/payouts/{pending.id}/cancel", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    again = await env.api("POST", f"/payouts/{pending.id}/cancel", json=body)
    assert again.status_code == 409
    assert await admin_balance(env, client["id"]) == 0


async def _client_with_deleted_wallet(env, cur: str):
    from lnbits.core.crud import delete_wallet

    account, wallet = await env.user_with_wallet("leaver")
    response = await env.api(
        "POST", "/clients", json={"wallet_id": wallet.id, "username": "leaver"}
    )
    client = response.json()
    deposit = (
        await env.api(
            "POST",
            "/deposits",
            json={"client_id": client["id"], "amount": "50", "currency": cur},
        )
    ).json()
    await env.api(
        "PUT", f"/deposits/{deposit['id']}/status", json={"status": "confirmed"}
    )
    await delete_wallet(user_id=account.id, wallet_id=wallet.id)
    return account, wallet, client


async def test_cancelled_payout_releases_the_balance_and_becomes_orphan(env):
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _c, payer, _clients = await _setup(env, ["50"], currency=cur)
    _, _, leaver = await _client_with_deleted_wallet(env, cur)
    # 100.00 cash at 100 sats per unit: both balances (50 + 50) are covered.
    settlement = await _settle(env, source, payer, 10_000, 0, "1000000", cur, "del")
    assert settlement["status"] == "payout_failed", settlement["status_detail"]
    [failed] = [p for p in settlement["payouts"] if p["status"] != "confirmed"]
    assert failed["client_id"] == leaver["id"]
    source_before = await env.balance(source.id)

    body = {"reason": "client deleted their wallet"}
    response = await env.api("POST", f"/payouts/{failed['id']}/cancel", json=body)
    assert response.status_code == 200, response.text
    again = await env.api("POST", f"/payouts/{failed['id']}/cancel", json=body)
    assert again.status_code == 409

    detail = (await env.api("GET", f"/settlements/{settlement['id']}")).json()
    assert detail["status"] == "completed"
    assert detail["orphan_sats"] == failed["amount_sats"]
    assert detail["reconciliation"]["orphan_sats"] == failed["amount_sats"]
    assert Decimal(str(detail["reconciliation"]["orphan_fiat"])) == Decimal(
        str(failed["amount_fiat"])
    )
    _conserved(detail)
    # The fiat is released, nothing moved, and a retry pays nobody.
    assert await admin_balance(env, leaver["id"]) == Decimal("50.00")
    assert await client_extension_balance(leaver["id"]) == Decimal("50.00")
    assert await env.balance(source.id) == source_before
    assert (
        await env.api("POST", f"/settlements/{settlement['id']}/retry")
    ).status_code == 409


async def test_client_with_a_new_wallet_is_paid_there_never_at_the_old(env):
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _c, payer, _clients = await _setup(env, ["50"], currency=cur)
    account, _old_wallet, leaver = await _client_with_deleted_wallet(env, cur)
    settlement = await _settle(env, source, payer, 10_000, 0, "1000000", cur, "new")
    assert settlement["status"] == "payout_failed"
    stranger = await register_client(env)

    response = await env.api(
        "PUT", f"/clients/{leaver['id']}", json={"wallet_id": stranger["wallet_id"]}
    )
    assert response.status_code == 400, response.text  # not this user's wallet
    new_wallet = await env.wallet("new", account.id)
    response = await env.api(
        "PUT", f"/clients/{leaver['id']}", json={"wallet_id": new_wallet.id}
    )
    assert response.status_code == 200, response.text
    response = await env.api("POST", f"/settlements/{settlement['id']}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert await env.balance(new_wallet.id) == 5_000
    assert await admin_balance(env, leaver["id"]) == 0
    assert await client_extension_balance(leaver["id"]) == 0


async def test_a_client_is_never_moved_onto_a_wallet_another_client_has(env):
    """One client per wallet, on edit as at registration: the client extension
    finds a client by its wallet, so two clients on one wallet would share one
    dashboard. The refusal changes nothing; keeping its own wallet is fine."""
    account, first_wallet = await env.user_with_wallet("two-clients")
    second_wallet = await env.wallet("second", account.id)
    clients = []
    for wallet in (first_wallet, second_wallet):
        response = await env.api("POST", "/clients", json={"wallet_id": wallet.id})
        assert response.status_code == 201, response.text
        clients.append(response.json())

    response = await env.api(
        "PUT", f"/clients/{clients[1]['id']}", json={"wallet_id": first_wallet.id}
    )
    assert response.status_code == 409, response.text
    kept = (await env.api("GET", f"/clients/{clients[1]['id']}")).json()
    assert kept["wallet_id"] == second_wallet.id
    response = await env.api(
        "PUT",
        f"/clients/{clients[1]['id']}",
        json={"wallet_id": second_wallet.id, "username": "renamed"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["username"] == "renamed"


async def test_a_payout_in_one_currency_never_reduces_another(env):
    await _deactivate_all_clients(env)
    gtq, usd = fresh_currency(), fresh_currency()
    source, _c, payer, clients = await _setup(env, ["100"], currency=gtq)
    client, wallet = clients[0]
    deposit = (
        await env.api(
            "POST",
            "/deposits",
            json={"client_id": client["id"], "amount": "100", "currency": usd},
        )
    ).json()
    await env.api(
        "PUT", f"/deposits/{deposit['id']}/status", json={"status": "confirmed"}
    )

    usd_settlement = await _settle(env, source, payer, 10_000, 0, "1000000", usd, "u")
    assert usd_settlement["payouts"][0]["currency"] == usd
    gtq_settlement = await _settle(env, source, payer, 10_000, 0, "1000000", gtq, "g")
    [gtq_payout] = gtq_settlement["payouts"]
    assert Decimal(str(gtq_payout["amount_fiat"])) == Decimal("100.00")
    assert gtq_payout["currency"] == gtq
    assert await env.balance(wallet.id) == 20_000

    summary = (await env.api("GET", f"/clients/{client['id']}")).json()
    by_currency = {b["currency"]: b for b in summary["balances"]}
    assert set(by_currency) == {gtq, usd}
    for code in (gtq, usd):
        assert Decimal(str(by_currency[code]["remaining_balance"])) == 0
        assert Decimal(str(by_currency[code]["distributed_fiat"])) == Decimal("100")
        assert await client_extension_balance(client["id"], code) == 0
