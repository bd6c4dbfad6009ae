"""Adversarial review of the new money paths: cancel_payout, accept, orphan
resolution, the rate check, bitSpire metadata and rows other software writes.

Each bug found has a test marked `xfail(strict=True, reason="bug: ...")`: it
fails now and turns CI red (XPASS) the day it is fixed, so the mark is removed
with the fix. The other tests are attacks that held; they stay as guards.

Invariants checked throughout: sats conserved per settlement (non-cancelled
payouts + commission + orphan == amount), nothing minted, no payout paid twice,
no client balance below zero, an orphan resolved at most once, the admin
balance equal to the client extension's, nothing reserved forever.
"""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal

import pytest
from api_helpers import bitspire_extra, fresh_currency
from test_balances import (
    _client_with_deleted_wallet,
    _conserved,
    _settle,
    admin_balance,
    client_extension_balance,
)
from test_settlement_flow import _deactivate_all_clients, _setup

pytestmark = pytest.mark.asyncio(loop_scope="session")

POSTGRES = os.environ.get("SATMACHINE_TEST_DB") == "postgres"


async def _detail(env, settlement_id: str) -> dict:
    response = await env.api("GET", f"/settlements/{settlement_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def _by_hash(env, payment_hash: str) -> dict:
    from satmachineadmin import crud

    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement
    return await _detail(env, settlement.id)


def _extra(cur: str, principal: int, fee: int, rate: str = "1000000", **kw) -> dict:
    return bitspire_extra(principal, fee, currency=cur, rate=rate, **kw)


def _conserved_live(settlement: dict) -> None:
    """Non-cancelled payouts + commission + orphan == amount (payouts still
    pending or failed count: their sats are still owed to the client)."""
    live = sum(
        p["amount_sats"]
        for p in settlement["payouts"]
        if p["status"] != "cancelled" and p["transaction_type"] != "orphan"
    )
    assert (
        live + settlement["commission_sats"] + (settlement["orphan_sats"] or 0)
        == settlement["amount_sats"]
    ), settlement


async def _underfunded_payout(env, cur: str):
    """A settlement whose only payout failed with its invoice stored (the
    source wallet was emptied before the split). Returns (source, sink,
    client wallet, settlement detail, failed payout)."""
    source, _commission, payer, clients = await _setup(env, ["1000"], currency=cur)
    client, wallet = clients[0]
    await env.fund(payer.id, 20_000)
    payment_hash = await env.pay(payer.id, source.id, 10_000, market=False)
    await env.settle()
    settlement = await _by_hash(env, payment_hash)
    sink = await env.wallet("sink")
    await env.pay(source.id, sink.id, 9_000, memo="drain")
    env.market(cur, 1_000_000)
    response = await env.api(
        "PUT",
        f"/settlements/{settlement['id']}/cash-out",
        json={"fiat_amount": "95.00", "fiat_code": cur, "principal_sats": 9_500},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "payout_failed", response.text
    detail = await _detail(env, settlement["id"])
    [payout] = detail["payouts"]
    assert payout["status"] == "failed" and payout["payment_hash"], payout
    return source, sink, client, wallet, detail, payout


# --------------------------------------------------------------------- bugs


async def test_cancel_after_the_orphan_was_resolved(env):
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _c, payer, _clients = await _setup(env, ["50"], currency=cur)
    _, _, leaver = await _client_with_deleted_wallet(env, cur)
    # 200.00 cash at 100 sats per unit: both balances (50 + 50) are paid in
    # full and 100.00 worth is an orphan.
    settlement = await _settle(env, source, payer, 20_000, 0, "1000000", cur, "res")
    assert settlement["status"] == "payout_failed", settlement["status_detail"]
    rec = settlement["reconciliation"]
    assert rec and rec["status"] == "open"
    [failed] = [p for p in settlement["payouts"] if p["status"] == "failed"]
    assert failed["client_id"] == leaver["id"]

    # The operator deals with the orphan first (the cash is theirs) ...
    response = await env.api(
        "POST",
        f"/reconciliations/{rec['id']}/resolve",
        json={"action": "operator_funds"},
    )
    assert response.status_code == 200, response.text
    # ... then gives up on the payout of the client who left.
    response = await env.api(
        "POST", f"/payouts/{failed['id']}/cancel", json={"reason": "client left"}
    )
    assert response.status_code == 200, response.text
    assert await admin_balance(env, leaver["id"]) == Decimal("50.00")
    detail = await _detail(env, settlement["id"])
    assert detail["status"] == "completed"
    _conserved_live(detail)


async def test_commission_to_a_deleted_wallet_can_be_finished(env):
    from lnbits.core.crud import delete_wallet

    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, commission, payer, clients = await _setup(env, ["100"], currency=cur)
    await delete_wallet(user_id=env.super_user_id, wallet_id=commission.id)
    settlement = await _settle(env, source, payer, 10_000, 500, "1000000", cur, "cw")
    assert settlement["status"] == "payout_failed", settlement
    assert settlement["commission_status"] == "failed"
    assert await env.balance(clients[0][1].id) == 9_500

    # The operator configures a new commission wallet and retries.
    new_commission = await env.wallet("new commission")
    response = await env.api(
        "POST",
        "/config",
        json={"source_wallet_id": source.id, "commission_wallet_id": new_commission.id},
    )
    assert response.status_code == 201, response.text
    response = await env.api("POST", f"/settlements/{settlement['id']}/retry")
    assert response.status_code == 200, response.text
    detail = await _detail(env, settlement["id"])
    assert detail["status"] == "completed", detail["status_detail"]
    assert await env.balance(new_commission.id) == 500


async def _insert_payment(client_id: str, fiat: str, currency, status="confirmed"):
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db

    await db.execute(
        "INSERT INTO satoshimachine.dca_payments (id, client_id, amount_sats, "
        "amount_fiat, exchange_rate, transaction_type, status, currency) VALUES "
        "(:id, :client, 6000, :fiat, 100.0, 'flow', :status, :currency)",
        {
            "id": urlsafe_short_hash(),
            "client": client_id,
            "fiat": Decimal(fiat),
            "status": status,
            "currency": currency,
        },
    )


async def test_confirmed_payout_without_currency_is_never_paid_again(env):
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _c, payer, clients = await _setup(env, ["100"], currency=cur)
    client, wallet = clients[0]
    # Another extension (or a pre-m008 writer) records a paid 60.00.
    await _insert_payment(client["id"], "60", None)
    assert await client_extension_balance(client["id"]) == Decimal("40.00")

    settlement = await _settle(env, source, payer, 20_000, 0, "1000000", cur, "nc")
    _conserved(settlement)
    # The client's own dashboard must never go below zero.
    assert await client_extension_balance(client["id"]) >= 0
    assert await env.balance(wallet.id) <= 4_000


async def test_huge_bills_are_flagged_not_stuck(env):
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _c, payer, clients = await _setup(env, ["100"], currency=cur)
    await env.fund(payer.id, 10_000)
    bills = [{"denomination": 1_000_000_000, "count": 100_000}] * 100
    payment_hash = await env.pay(
        payer.id, source.id, 1_000, extra=_extra(cur, 900, 100, bills=bills)
    )
    await env.settle()
    settlement = await _by_hash(env, payment_hash)
    assert settlement["status"] == "flagged", settlement
    assert settlement["payouts"] == []
    assert await env.balance(clients[0][1].id) == 0


# ------------------------------------------------------------ attacks that held


async def test_cancel_races_retry_and_recovery_pays_at_most_once(env):
    from satmachineadmin.tasks import run_recovery

    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, sink, client, wallet, detail, payout = await _underfunded_payout(env, cur)
    await env.pay(sink.id, source.id, 9_000, memo="refund")  # sats are back
    source_before = await env.balance(source.id)
    body = {"reason": "give up"}
    results = await asyncio.gather(
        env.api("POST", f"/payouts/{payout['id']}/cancel", json=body),
        env.api("POST", f"/settlements/{detail['id']}/retry"),
        run_recovery(),
        env.api("POST", f"/payouts/{payout['id']}/cancel", json=body),
        env.api("POST", f"/settlements/{detail['id']}/retry"),
        run_recovery(),
    )
    codes = [r.status_code for r in results if hasattr(r, "status_code")]
    assert all(code in (200, 409) for code in codes), codes
    await run_recovery()

    final = await _detail(env, detail["id"])
    [row] = final["payouts"]
    received = await env.balance(wallet.id)
    if row["status"] == "confirmed":
        assert received == 9_500
        assert (final["orphan_sats"] or 0) == 0
    else:
        assert row["status"] == "cancelled", row
        assert received == 0
        assert final["orphan_sats"] == 9_500
        assert final["reconciliation"]["orphan_sats"] == 9_500
    assert final["status"] == "completed"
    _conserved_live(final)
    assert await env.balance(source.id) == source_before - received
    assert await admin_balance(env, client["id"]) == await client_extension_balance(
        client["id"]
    )


async def test_invoice_abandoned_then_crash_is_repaid_once(env):
    """cancel_payout abandons the stored invoice first; a crash right after
    leaves a payout whose invoice no one can pay. Recovery replaces it."""
    from satmachineadmin.tasks import run_recovery
    from satmachineadmin.transaction_processor import abandon_invoice

    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, sink, client, wallet, detail, payout = await _underfunded_payout(env, cur)
    assert not await abandon_invoice(payout["payment_hash"])
    await env.pay(sink.id, source.id, 9_000, memo="refund")
    await asyncio.gather(run_recovery(), run_recovery())
    response = await env.api("POST", f"/settlements/{detail['id']}/retry")
    assert response.status_code == 409  # completed already
    final = await _detail(env, detail["id"])
    [row] = final["payouts"]
    assert row["status"] == "confirmed"
    assert row["payment_hash"] != payout["payment_hash"]
    assert await env.balance(wallet.id) == 9_500
    assert await admin_balance(env, client["id"]) == Decimal("905.00")
    assert await client_extension_balance(client["id"]) == Decimal("905.00")


async def test_client_wallet_changed_between_attempts_pays_only_the_new(env):
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, sink, client, old_wallet, detail, payout = await _underfunded_payout(
        env, cur
    )
    new_wallet = await env.wallet("new", client["user_id"])
    response = await env.api(
        "PUT", f"/clients/{client['id']}", json={"wallet_id": new_wallet.id}
    )
    assert response.status_code == 200, response.text
    await env.pay(sink.id, source.id, 9_000, memo="refund")
    results = await asyncio.gather(
        env.api("POST", f"/settlements/{detail['id']}/retry"),
        env.api("POST", f"/settlements/{detail['id']}/retry"),
    )
    assert sorted(r.status_code for r in results) == [200, 409]
    assert await env.balance(old_wallet.id) == 0
    assert await env.balance(new_wallet.id) == 9_500
    # The old invoice can never be paid by anyone any more.
    from lnbits.core.crud.payments import check_internal

    assert await check_internal(payout["payment_hash"]) is None


async def test_accepts_racing_a_typed_cash_out_split_once(env):
    from satmachineadmin.tasks import run_recovery

    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _c, payer, clients = await _setup(env, ["1000"], currency=cur)
    client, wallet = clients[0]
    await env.fund(payer.id, 20_000)
    env.market(cur, 0)  # nothing can confirm the price: flagged
    payment_hash = await env.pay(
        payer.id, source.id, 10_500, extra=_extra(cur, 10_000, 500), market=False
    )
    await env.settle()
    settlement = await _by_hash(env, payment_hash)
    assert settlement["status"] == "flagged", settlement
    sid = settlement["id"]
    typed = {"fiat_amount": "50.00", "fiat_code": cur, "principal_sats": 5_000}
    results = await asyncio.gather(
        env.api("POST", f"/settlements/{sid}/accept", json={"reason": "ok one"}),
        env.api("PUT", f"/settlements/{sid}/cash-out", json=typed),
        env.api("POST", f"/settlements/{sid}/accept", json={"reason": "ok two"}),
        run_recovery(look_up_now=True),
        env.api("PUT", f"/settlements/{sid}/dismiss", json={"reason": "top-up"}),
    )
    codes = [r.status_code for r in results if hasattr(r, "status_code")]
    assert codes.count(200) == 1, codes
    final = await _detail(env, sid)
    assert final["status"] == "completed", final
    assert len(final["payouts"]) == 1
    [row] = final["payouts"]
    assert await env.balance(wallet.id) == row["amount_sats"]
    _conserved(final)
    assert await admin_balance(env, client["id"]) == await client_extension_balance(
        client["id"]
    )


async def test_market_moving_after_the_flag_changes_nothing_by_itself(env):
    """Flagged for its price; the market then agrees (or the tolerance is
    widened): recovery still splits nothing until the operator accepts."""
    from satmachineadmin.tasks import run_recovery

    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, commission, payer, clients = await _setup(env, ["1000"], currency=cur)
    await env.fund(payer.id, 20_000)
    env.market(cur, 1_000_000)
    payment_hash = await env.pay(
        payer.id,
        source.id,
        10_500,
        extra=_extra(cur, 10_000, 500, rate="2000000"),
        market=False,
    )
    await env.settle()
    settlement = await _by_hash(env, payment_hash)
    assert settlement["status"] == "flagged"
    env.market(cur, 2_000_000)
    response = await env.api(
        "POST",
        "/config",
        json={
            "source_wallet_id": source.id,
            "commission_wallet_id": commission.id,
            "rate_tolerance_percent": 100,
        },
    )
    assert response.status_code == 201, response.text
    await run_recovery(look_up_now=True)
    again = await _detail(env, settlement["id"])
    assert again["status"] == "flagged" and again["payouts"] == []
    assert await env.balance(clients[0][1].id) == 0


@pytest.mark.parametrize(
    "change",
    [
        {"principal_sats": "10000"},
        {"principal_sats": -1, "fee_sats": 10_501},
        {"principal_sats": 10_500 + 2**63, "fee_sats": 0},
        {"exchange_rate": "1e999999999"},
        {"exchange_rate": "-1000000"},
        {"exchange_rate": [1_000_000]},
        {"currency": None},
        {"currency": "G1Q"},
        {"bills": [{"denomination": "100", "count": "5"}]},
        {"bills": {"100": 1.5}},
        {"bills": "100x5"},
    ],
)
async def test_strange_bitspire_values_move_nothing(env, change):
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _c, payer, clients = await _setup(env, ["1000"], currency=cur)
    await env.fund(payer.id, 20_000)
    extra = {**_extra(cur, 10_000, 500), **change}
    payment_hash = await env.pay(payer.id, source.id, 10_500, extra=extra)
    await env.settle()
    settlement = await _by_hash(env, payment_hash)
    assert settlement["status"] == "flagged", settlement
    assert settlement["payouts"] == []
    assert await env.balance(clients[0][1].id) == 0
    assert await env.balance(source.id) == 10_500
    assert await admin_balance(env, clients[0][0]["id"]) == Decimal("1000.00")


async def test_rows_other_software_wrote_never_reserve_or_crash(env):
    """Odd payout rows: status 'PENDING', negative amounts, a NULL-currency
    row that is not confirmed. The split still runs and the admin balance is
    the client extension's."""
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _c, payer, clients = await _setup(env, ["100"], currency=cur)
    client, wallet = clients[0]
    await _insert_payment(client["id"], "30", cur, status="PENDING")
    await _insert_payment(client["id"], "-25", cur, status="confirmed")
    await _insert_payment(client["id"], "10", None, status="pending")
    assert await client_extension_balance(client["id"], cur) == Decimal("125.00")
    assert await admin_balance(env, client["id"]) == Decimal("125.00")
    settlement = await _settle(env, source, payer, 20_000, 0, "1000000", cur, "od")
    assert settlement["status"] == "completed", settlement["status_detail"]
    _conserved(settlement)
    assert await env.balance(wallet.id) == 12_500
    assert await client_extension_balance(client["id"], cur) == 0
    assert await admin_balance(env, client["id"]) == 0


async def test_five_thousand_tiny_deposits_sum_to_the_cent(env):
    """5,000 confirmed deposits of 0.07 (the seed incident's crumb), written
    directly: the split debits exactly 350.00 and lands on 0.00."""
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db
    from satmachineadmin.models import utc_now

    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _c, payer, clients = await _setup(env, ["0.07"], currency=cur)
    client, wallet = clients[0]
    now = utc_now().timestamp() - 3600
    rows = [
        {"id": urlsafe_short_hash(), "client": client["id"], "cur": cur, "at": now}
        for _ in range(4_999)
    ]
    async with db.connect() as conn:
        for chunk in range(0, len(rows), 500):
            values = ", ".join(
                f"(:id{i}, :client{i}, 0.07, :cur{i}, 'confirmed', "
                f"{db.timestamp_placeholder(f'at{i}')}, "
                f"{db.timestamp_placeholder(f'at{i}')})"
                for i in range(len(rows[chunk : chunk + 500]))
            )
            params = {}
            for i, row in enumerate(rows[chunk : chunk + 500]):
                params.update({f"{k}{i}": v for k, v in row.items()})
            await conn.execute(
                "INSERT INTO satoshimachine.dca_deposits (id, client_id, amount, "
                f"currency, status, created_at, confirmed_at) VALUES {values}",
                params,
            )
    assert await client_extension_balance(client["id"], cur) == Decimal("350.00")
    settlement = await _settle(env, source, payer, 40_000, 0, "1000000", cur, "5k")
    [payout] = settlement["payouts"]
    assert Decimal(str(payout["amount_fiat"])) == Decimal("350.00")
    assert payout["amount_sats"] == 35_000
    assert await env.balance(wallet.id) == 35_000
    assert await client_extension_balance(client["id"], cur) == 0
    assert await admin_balance(env, client["id"]) == 0
    _conserved(settlement)


async def test_client_row_naming_the_source_wallet_is_never_debited(env):
    """The client extension writes dca_clients unvalidated: a row whose
    wallet_id is not a wallet of its user_id (here: the operator's source
    wallet). _pay_payout pays whatever wallet the row names."""
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db

    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source, _c, payer, clients = await _setup(env, ["100"], currency=cur)
    await env.api(
        "PUT", f"/clients/{clients[0][0]['id']}/status", json={"status": "inactive"}
    )
    account, _own_wallet = await env.user_with_wallet("someone")
    cid = urlsafe_short_hash()
    await db.execute(
        "INSERT INTO satoshimachine.dca_clients (id, user_id, wallet_id, username, "
        "dca_mode, status) VALUES (:id, :u, :w, 'odd', 'flow', 'active')",
        {"id": cid, "u": account.id, "w": source.id},
    )
    response = await env.api(
        "POST", "/deposits", json={"client_id": cid, "amount": "100", "currency": cur}
    )
    deposit = response.json()
    response = await env.api(
        "PUT", f"/deposits/{deposit['id']}/status", json={"status": "confirmed"}
    )
    assert response.status_code == 200, response.text
    settlement = await _settle(env, source, payer, 20_000, 0, "1000000", cur, "sp")
    paid = [p for p in settlement["payouts"] if p["status"] == "confirmed"]
    # Whatever the extension decides (refuse, fail the payout), it must not
    # record 100.00 as paid while the 10,000 sats never left the source.
    sats_out = 20_000 - await env.balance(source.id)
    assert sum(p["amount_sats"] for p in paid) == sats_out, (paid, sats_out)
    assert await client_extension_balance(cid, cur) == Decimal("100.00") - sum(
        (Decimal(str(p["amount_fiat"])) for p in paid), Decimal(0)
    )
