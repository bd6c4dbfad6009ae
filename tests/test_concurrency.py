"""Duplicates and concurrency, in-process on the real LNbits app (SQLite, and
PostgreSQL with SATMACHINE_TEST_DB=postgres): the same payment notified many
times, many settlements arriving at once, a deposit confirmed while a
settlement is being split. Balances never go negative, nobody receives more
than its balance, nothing is paid twice, every sat is accounted for.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from api_helpers import bitspire_extra
from test_settlement_flow import _deactivate_all_clients, _setup


async def _client_state(env, client_id: str) -> dict:
    response = await env.api("GET", f"/clients/{client_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def _settlement(env, payment_hash: str) -> dict:
    from satmachineadmin import crud

    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement
    response = await env.api("GET", f"/settlements/{settlement.id}")
    return response.json()


async def test_same_payment_notified_many_times_pays_once(env):
    from lnbits.core.crud import get_standalone_payment
    from satmachineadmin import crud
    from satmachineadmin.tasks import on_invoice_paid, run_recovery
    from satmachineadmin.transaction_processor import process_settlement

    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["30", "20", "10"])
    await env.fund(payer.id, 10_000)
    payment_hash = await env.pay(
        payer.id, source.id, 5_500, extra=bitspire_extra(5_000, 500, txid="dup-many")
    )
    payment = await get_standalone_payment(payment_hash, incoming=True)
    assert payment
    # While the listener is still on it: twenty more notifications, direct
    # processing calls and a recovery pass, all at once.
    settlement = None
    for _ in range(50):
        settlement = await crud.get_settlement_by_hash(payment_hash)
        if settlement:
            break
        await asyncio.sleep(0.02)
    assert settlement
    await asyncio.gather(
        *(on_invoice_paid(payment) for _ in range(20)),
        *(process_settlement(settlement.id) for _ in range(5)),
        run_recovery(),
    )
    await env.settle()

    detail = await _settlement(env, payment_hash)
    assert detail["status"] == "completed"
    assert len(detail["payouts"]) == 3
    received = [await env.balance(w.id) for _, w in clients]
    assert sum(received) == 5_000
    by_wallet = {p["wallet_id"]: p["amount_sats"] for p in detail["payouts"]}
    for _, wallet in clients:
        assert await env.balance(wallet.id) == by_wallet[wallet.id]
    assert await env.balance(commission.id) == 500
    assert await env.balance(source.id) == 0
    from lnbits.core.crud import get_payments

    settled = await get_payments(wallet_id=source.id, incoming=True, complete=True)
    assert len([p for p in settled if p.payment_hash == payment_hash]) == 1


async def test_many_settlements_at_once_never_overpay(env):
    """Eight settlements of 100 GTQ arrive together for four clients holding
    100 GTQ each: the first ones use the balances up, the rest are orphans. No
    client is paid past its balance, whatever the interleaving."""
    await _deactivate_all_clients(env)
    source, commission, _, clients = await _setup(env, ["100"] * 4)
    payers = [await env.wallet(f"atm customer {i}") for i in range(8)]
    for payer in payers:
        await env.fund(payer.id, 20_000)
    hashes = await asyncio.gather(
        *(
            env.pay(
                payer.id,
                source.id,
                10_500,
                extra=bitspire_extra(10_000, 500, txid=f"burst-{i}"),
            )
            for i, payer in enumerate(payers)
        )
    )
    await env.settle(timeout=30)

    details = [await _settlement(env, h) for h in hashes]
    assert all(d["status"] == "completed" for d in details), [
        (d["status"], d["status_detail"]) for d in details
    ]
    paid_sats = sum(d["distributed_sats"] or 0 for d in details)
    orphan_sats = sum(d["orphan_sats"] or 0 for d in details)
    commission_sats = sum(d["commission_sats"] or 0 for d in details)
    assert paid_sats + orphan_sats + commission_sats == 8 * 10_500
    assert commission_sats == 8 * 500
    for client, wallet in clients:
        state = await _client_state(env, client["id"])
        assert Decimal(str(state["remaining_balance"])) == 0
        assert Decimal(str(state["distributed_fiat"])) == Decimal("100")
        # 100 GTQ at 100 sats per GTQ, received once and no more.
        assert await env.balance(wallet.id) == 10_000
    assert paid_sats == 40_000
    assert await env.balance(commission.id) == commission_sats
    assert await env.balance(source.id) == orphan_sats


async def test_deposit_confirmed_during_a_split(env):
    """A deposit confirmed while settlements are split counts either for this
    one or for the next, never twice and never before it is confirmed."""
    await _deactivate_all_clients(env)
    source, _, payer, clients = await _setup(env, ["50", "50"])
    await env.fund(payer.id, 200_000)
    (first, first_wallet), _ = clients
    total_sent = 0
    confirmed = Decimal("50")
    for round_ in range(4):
        response = await env.api(
            "POST", "/deposits", json={"client_id": first["id"], "amount": "25"}
        )
        deposit = response.json()
        sats = 6_000 + 100 * round_
        total_sent += sats

        async def confirm_later(delay: float, deposit_id: str = deposit["id"]):
            await asyncio.sleep(delay)
            response = await env.api(
                "PUT", f"/deposits/{deposit_id}/status", json={"status": "confirmed"}
            )
            assert response.status_code == 200, response.text

        await asyncio.gather(
            env.pay(
                payer.id,
                source.id,
                sats,
                extra=bitspire_extra(sats, 0, txid=f"mid-{round_}"),
            ),
            confirm_later(0.01 * round_),
        )
        confirmed += Decimal("25")
        await env.settle()
        state = await _client_state(env, first["id"])
        # Never more than what was confirmed, never below zero.
        assert Decimal(str(state["distributed_fiat"])) <= confirmed
        assert Decimal(str(state["remaining_balance"])) >= 0
        other = await _client_state(env, clients[1][0]["id"])
        assert Decimal(str(other["distributed_fiat"])) <= Decimal("50")
        assert Decimal(str(other["remaining_balance"])) >= 0

    received = sum([await env.balance(w.id) for _, w in clients])
    assert received + await env.balance(source.id) == total_sent
    assert await env.balance(first_wallet.id) <= int(confirmed * 100)
