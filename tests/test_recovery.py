"""Interrupted distributions resume without paying anyone twice, and orphans
are resolved once."""

from __future__ import annotations

import asyncio

import pytest
from test_settlement_flow import _deactivate_all_clients, _setup

pytestmark = pytest.mark.asyncio(loop_scope="session")

EXTRA = {
    "source": "bitspire",
    "principal_sats": 9_500,
    "fee_sats": 500,
    "exchange_rate": "950000",
    "currency": "GTQ",
}


async def test_resume_after_interrupted_payouts_pays_nobody_twice(env):
    from satmachineadmin import crud
    from satmachineadmin import transaction_processor as tp
    from satmachineadmin.models import SettlementStatus

    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["600", "300", "100"])
    await env.fund(payer.id, 20_000)

    # Hold the processor: the listener records the settlement and waits.
    await tp.processing_lock.acquire()
    try:
        payment_hash = await env.pay(
            payer.id, source.id, 10_000, extra={**EXTRA, "txid": "resume"}
        )
        for _ in range(50):
            settlement = await crud.get_settlement_by_hash(payment_hash)
            if settlement:
                break
            await asyncio.sleep(0.05)
        assert settlement and settlement.status == SettlementStatus.pending.value
        # Simulate a crash mid-distribution: look up and plan, pay only the
        # first payout, and leave the second with its invoice stored but unpaid.
        settlement = await tp._lookup(settlement, await crud.get_config())
        settlement = await tp._plan(settlement, await crud.get_config())
        payouts = await crud.get_settlement_payouts(settlement.id)
        assert len(payouts) == 3
        assert await tp._pay_payout(settlement, payouts[0])
        # Second payout: paid, but the crash came before its row was confirmed.
        assert await tp._pay_payout(settlement, payouts[1])
        await crud.set_payout_status(
            payouts[1].id, tp.PayoutStatus.pending, expected=("confirmed",)
        )
    finally:
        tp.processing_lock.release()
    await env.settle()

    # Recovery (what runs at start-up) finishes the job.
    await tp.process_open_settlements()
    settlement = await crud.get_settlement(settlement.id)
    assert settlement and settlement.status == SettlementStatus.completed.value
    received = [await env.balance(w.id) for _, w in clients]
    assert received == [5_700, 2_850, 950]
    assert await env.balance(commission.id) == 500
    assert await env.balance(source.id) == 0
    payouts = await crud.get_settlement_payouts(settlement.id)
    assert [p.status for p in payouts] == ["confirmed"] * 3

    # Running recovery again changes nothing.
    await tp.process_open_settlements()
    assert [await env.balance(w.id) for _, w in clients] == received


async def test_failed_payout_is_recorded_and_retried(env):
    from satmachineadmin import crud

    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["100"])
    # Point the commission at a wallet that will be gone: payouts still work,
    # the commission fails and is retryable.
    await env.fund(payer.id, 20_000)
    config = await crud.get_config()
    assert config
    config.commission_wallet_id = "0" * 32
    await crud.update_config(config)
    payment_hash = await env.pay(
        payer.id, source.id, 10_000, extra={**EXTRA, "txid": "retry"}
    )
    await env.settle()
    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement and settlement.status == "payout_failed", settlement
    assert settlement.commission_status == "failed"
    assert await env.balance(clients[0][1].id) == 9_500
    # Fix the config and retry through the API: the commission is paid once.
    config.commission_wallet_id = commission.id
    await crud.update_config(config)
    settlement.commission_wallet_id = commission.id
    await crud.update_settlement(settlement)
    response = await env.api("POST", f"/settlements/{settlement.id}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert await env.balance(commission.id) == 500
    response = await env.api("POST", f"/settlements/{settlement.id}/retry")
    assert response.status_code == 409
    assert await env.balance(commission.id) == 500


@pytest.mark.parametrize("action", ["operator_funds", "send_to_wallet", "attribute"])
async def test_orphan_resolutions_apply_once(env, action):
    from decimal import Decimal

    await _deactivate_all_clients(env)
    source, _commission, payer, clients = await _setup(env, ["10"])
    await env.fund(payer.id, 20_000)
    # 100 GTQ dispensed, 10 GTQ tracked: 90 GTQ worth of sats is an orphan.
    payment_hash = await env.pay(
        payer.id,
        source.id,
        10_000,
        extra={
            **EXTRA,
            "exchange_rate": "1052631.58",
            "bills": [{"denomination": 100, "count": 1}],
            "txid": action,
        },
    )
    await env.settle()
    settlements = (await env.api("GET", "/settlements")).json()["data"]
    settlement = next(s for s in settlements if s["payment_hash"] == payment_hash)
    detail = (await env.api("GET", f"/settlements/{settlement['id']}")).json()
    rec = detail["reconciliation"]
    assert rec and rec["status"] == "open", detail["status_detail"]
    orphan_sats = rec["orphan_sats"]
    assert await env.balance(clients[0][1].id) + orphan_sats + 500 == 10_000
    assert await env.balance(source.id) == orphan_sats

    target = await env.wallet("orphan target")
    body: dict = {"action": action, "note": "test"}
    if action == "send_to_wallet":
        body["wallet_id"] = target.id
    if action == "attribute":
        body = {
            "action": "attribute_to_client",
            "client_id": clients[0][0]["id"],
        }
    response = await env.api("POST", f"/reconciliations/{rec['id']}/resolve", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "resolved"
    again = await env.api("POST", f"/reconciliations/{rec['id']}/resolve", json=body)
    assert again.status_code == 409

    if action == "operator_funds":
        assert await env.balance(source.id) == orphan_sats
    elif action == "send_to_wallet":
        assert await env.balance(target.id) == orphan_sats
        assert await env.balance(source.id) == 0
    else:
        client_id = clients[0][0]["id"]
        balance = (await env.api("GET", f"/clients/{client_id}/balance")).json()
        assert Decimal(str(balance["remaining_balance"])) == 0
        assert await env.balance(source.id) == 0
        assert await env.balance(clients[0][1].id) == 10_000 - 500
    history = (await env.api("GET", f"/reconciliations/{rec['id']}/history")).json()
    assert len(history) == 1


async def test_missed_payment_is_found_by_the_scan(env):
    """A payment the listener never handed over (here: it arrived before the
    wallet was the source wallet) is found by the recovery scan, once."""
    from satmachineadmin import crud

    await _deactivate_all_clients(env)
    _source, commission, payer, clients = await _setup(env, ["100"])
    missed_into = await env.wallet("becomes source")
    await env.fund(payer.id, 20_000)
    payment_hash = await env.pay(
        payer.id, missed_into.id, 10_000, extra={**EXTRA, "txid": "missed"}
    )
    await env.settle()
    assert await crud.get_settlement_by_hash(payment_hash) is None

    config = await crud.get_config()
    assert config
    response = await env.api(
        "PUT", f"/config/{config.id}", json={"source_wallet_id": missed_into.id}
    )
    assert response.status_code == 200, response.text
    response = await env.api("POST", "/manual-poll")
    assert response.status_code == 200, response.text
    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement and settlement.status == "completed", settlement
    assert await env.balance(clients[0][1].id) == 9_500
    assert await env.balance(commission.id) == 500
    # A second scan finds nothing new and pays nobody again.
    response = await env.api("POST", "/manual-poll")
    assert response.status_code == 200, response.text
    assert await env.balance(clients[0][1].id) == 9_500
