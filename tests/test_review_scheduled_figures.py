"""Adversarial review: a settlement whose fixed-mode payouts wait for their
delivery slot is in status `scheduled`. Its split is decided (commission
paid, flow clients paid, sats reserved for the fixed client), so it must
count in every "planned" figure, like crud.get_totals and
get_distributed_per_day count it. The per-machine figures (machines.PLANNED)
forget `scheduled`: the machine's settled, commission and distributed sats
vanish while the payout waits, and come back at delivery."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_fixed_mode import _by_client, _world

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _machine_figures(env, device_id: str) -> dict:
    response = await env.api("GET", "/machines")
    assert response.status_code == 200, response.text
    [machine] = [m for m in response.json() if m["device_id"] == device_id]
    return machine["figures"]


async def _settle_at_machine(env, payer, source, fiat: int, tag: str, npub: str):
    from satmachineadmin import crud

    extra = {
        "source": "bitspire",
        "principal_sats": fiat * 100,
        "fee_sats": fiat,
        "exchange_rate": "1000000",
        "currency": "GTQ",
        "txid": tag,
        "machine_npub": npub,
    }
    payment_hash = await env.pay(payer.id, source.id, fiat * 101, extra=extra)
    await env.settle()
    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement
    return (await env.api("GET", f"/settlements/{settlement.id}")).json()


async def test_scheduled_settlement_counts_in_its_machines_figures(env):
    from satmachineadmin.transaction_processor import deliver_scheduled

    npub = "npub1reviewscheduled"
    source, payer, [(_a, _wa), (b, _wb)] = await _world(
        env,
        [("1000", None), ("1000", "100")],
        fixed_delivery="daily",
        fixed_delivery_time="18:00",
    )
    detail = await _settle_at_machine(env, payer, source, 100, "rev-sched-1", npub)
    assert detail["status"] == "scheduled", detail["status_detail"]
    assert _by_client(detail)[b["id"]][3] == "pending"
    # Commission already paid, flow client already paid: the split is decided.
    assert detail["commission_sats"] == 100
    figures = await _machine_figures(env, npub)
    # The figures after delivery are what they should have been all along.
    [row] = [p for p in detail["payouts"] if p["client_id"] == b["id"]]
    from datetime import datetime, timezone

    due = datetime.fromisoformat(row["deliver_after"])
    due = due if due.tzinfo else due.replace(tzinfo=timezone.utc)
    assert await deliver_scheduled(due + timedelta(seconds=1)) == 1
    after = await _machine_figures(env, npub)
    assert after["settlements"] == 1 and after["settled_sats"] == 10_100
    assert (figures["settlements"], figures["settled_sats"]) == (
        1,
        10_100,
    ), f"while scheduled: {figures}; after delivery: {after}"
    assert figures["commission_sats"] == 100
    assert figures["distributed_sats"] == 10_000


async def test_cancelling_a_scheduled_payout_reserves_nothing_and_pays_nothing(env):
    """Cancel a fixed payout while it waits for its slot: its sats become the
    settlement's orphan (conserved), it no longer reserves the client's
    balance, and the slot pays nothing for it."""
    from datetime import datetime, timezone
    from decimal import Decimal

    from satmachineadmin.transaction_processor import deliver_scheduled

    source, payer, [(_a, _wa), (b, wb)] = await _world(
        env,
        [("1000", None), ("1000", "100")],
        fixed_delivery="daily",
        fixed_delivery_time="18:00",
    )
    detail = await _settle_at_machine(env, payer, source, 100, "rev-cancel", "npubX")
    [row] = [p for p in detail["payouts"] if p["client_id"] == b["id"]]
    response = await env.api(
        "POST", f"/payouts/{row['id']}/cancel", json={"reason": "review"}
    )
    assert response.status_code == 200, response.text
    after = (await env.api("GET", f"/settlements/{detail['id']}")).json()
    assert after["status"] == "completed", after["status_detail"]
    paid = sum(p["amount_sats"] for p in after["payouts"] if p["status"] != "cancelled")
    assert paid + after["commission_sats"] + after["orphan_sats"] == 10_100
    balance = (await env.api("GET", f"/clients/{b['id']}/balance")).json()
    assert Decimal(str(balance["reserved_fiat"])) == 0
    assert Decimal(str(balance["remaining_balance"])) == 1000
    due = datetime.fromisoformat(row["deliver_after"])
    due = due if due.tzinfo else due.replace(tzinfo=timezone.utc)
    assert await deliver_scheduled(due + timedelta(seconds=1)) == 0
    assert await env.balance(wb.id) == 0
    assert await env.balance(source.id) == 5_000  # the orphan, for the operator
