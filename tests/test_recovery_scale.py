"""Recovery that never starves and work that never waits forever (issue 10,
part 5).

* 600 settlements waiting for data used to fill the recovery pass's 500-row
  window, so a newer interrupted settlement was never resumed.
* Waiting settlements were looked up every minute forever, one Lamassu (and
  SSH) connection each.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from test_settlement_flow import _deactivate_all_clients, _setup

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _settlement(wallet_id: str, status: str, paid_at, **fields):
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.models import Settlement, utc_now

    now = utc_now()
    return Settlement(
        id=urlsafe_short_hash(),
        payment_hash=urlsafe_short_hash() + urlsafe_short_hash(),
        wallet_id=wallet_id,
        amount_sats=fields.pop("amount_sats", 1000),
        paid_at=paid_at,
        status=status,
        cash_out_data='{"payment_extra": {}}',
        created_at=now,
        updated_at=now,
        **fields,
    )


async def _insert(settlement) -> None:
    from satmachineadmin.crud import insert_settlement_if_new

    assert await insert_settlement_if_new(settlement)


async def _retire(ids: list[str]) -> None:
    """Keep later tests' recovery passes from working on them."""
    from satmachineadmin.crud import db

    for settlement_id in ids:
        await db.execute(
            "UPDATE satoshimachine.settlements SET status = 'dismissed' "
            "WHERE id = :id",
            {"id": settlement_id},
        )


async def test_many_waiting_settlements_never_starve_an_interrupted_one(env):
    from satmachineadmin import crud, tasks
    from satmachineadmin.models import utc_now

    await _deactivate_all_clients(env)
    source, commission, _payer, clients = await _setup(env, ["60", "40"])
    now = utc_now()
    waiting = [
        _settlement(
            source.id,
            "waiting_data",
            now - timedelta(hours=2) + timedelta(seconds=i),
            lookup_attempts=1,
            last_lookup_at=now,
        )
        for i in range(600)
    ]
    for settlement in waiting:
        await _insert(settlement)
    # Interrupted after its cash-out data was known, before the split: newer
    # than every waiting one. Its sats are in the source wallet.
    await env.fund(source.id, 10_000)
    ready = _settlement(
        source.id,
        "ready",
        utc_now(),  # after the clients' deposits: their balances count
        amount_sats=10_000,
        fiat_amount=Decimal("100.00"),
        fiat_code="GTQ",
        principal_sats=9_500,
        commission_sats=500,
        data_source="manual",
    )
    await _insert(ready)
    try:
        await tasks.run_recovery()
        done = await crud.get_settlement(ready.id)
        assert done and done.status == "completed", done and done.status_detail
        assert [await env.balance(w.id) for _, w in clients] == [5_700, 3_800]
        assert await env.balance(commission.id) == 500
        # Not due yet (looked up a moment ago): left alone, not looked up.
        first = await crud.get_settlement(waiting[0].id)
        assert first and first.lookup_attempts == 1
    finally:
        await _retire([s.id for s in waiting])


async def test_waiting_settlements_back_off_then_go_stale(env):
    from satmachineadmin import crud, tasks
    from satmachineadmin.models import utc_now

    source = await env.wallet("stale source")
    response = await env.api("POST", "/config", json={"source_wallet_id": source.id})
    assert response.status_code == 201, response.text
    now = utc_now()
    resting = _settlement(
        source.id,
        "waiting_data",
        now - timedelta(hours=1),
        lookup_attempts=3,
        last_lookup_at=now - timedelta(minutes=3),
    )
    due = _settlement(
        source.id,
        "waiting_data",
        now - timedelta(hours=1),
        lookup_attempts=3,
        last_lookup_at=now - timedelta(minutes=5),
    )
    old = _settlement(source.id, "waiting_data", now - timedelta(hours=25))
    for settlement in (resting, due, old):
        await _insert(settlement)
    try:
        await tasks.run_recovery()
        # 3 lookups so far: the next one after 4 minutes.
        assert (await crud.get_settlement(resting.id)).lookup_attempts == 3
        assert (await crud.get_settlement(due.id)).lookup_attempts == 4
        stale = await crud.get_settlement(old.id)
        assert stale and stale.status == "stale", stale
        assert "24 h" in (stale.status_detail or "")
        attempts = stale.lookup_attempts
        await tasks.run_recovery()
        stale = await crud.get_settlement(old.id)
        assert stale and stale.status == "stale"
        assert stale.lookup_attempts == attempts  # never looked up by itself

        # The operator decides: look once more, then dismiss.
        response = await env.api("POST", f"/settlements/{old.id}/retry")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "waiting_data"
        await tasks.run_recovery()
        assert (await crud.get_settlement(old.id)).status == "stale"
        response = await env.api(
            "PUT", f"/settlements/{old.id}/dismiss", json={"reason": "test top-up"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "dismissed"
    finally:
        await _retire([resting.id, due.id, old.id])


async def test_one_lamassu_connection_per_recovery_pass(env, monkeypatch):
    from satmachineadmin import crud, tasks
    from satmachineadmin.lamassu import LamassuClient
    from satmachineadmin.models import utc_now

    source = await env.wallet("lamassu source")
    response = await env.api(
        "POST",
        "/config",
        json={
            "source_wallet_id": source.id,
            # Nothing listens on port 9: every connection attempt is refused.
            "host": "127.0.0.1",
            "port": 9,
            "database_name": "lamassu",
            "username": "reader",
        },
    )
    assert response.status_code == 201, response.text
    attempts = []
    real_connect = LamassuClient.connect

    async def counting_connect(self):
        attempts.append(self.settings.host)
        return await real_connect(self)

    monkeypatch.setattr(LamassuClient, "connect", counting_connect)
    now = utc_now()
    waiting = [
        _settlement(source.id, "pending", now - timedelta(minutes=10)) for _ in range(5)
    ]
    for settlement in waiting:
        await _insert(settlement)
    try:
        await tasks.run_recovery()
        assert len(attempts) == 1, attempts
        for settlement in waiting:
            current = await crud.get_settlement(settlement.id)
            assert current and current.status == "waiting_dispense", current
            assert "unavailable" in (current.status_detail or "")
    finally:
        await _retire([s.id for s in waiting])
        response = await env.api(
            "POST", "/config", json={"source_wallet_id": source.id}
        )
        assert response.status_code == 201, response.text


async def test_going_stale_never_writes_back_a_row_changed_since_it_was_listed(env):
    """The recovery pass lists the waiting settlements, then marks the old ones
    stale one by one under the money lock. A row another request changed in
    between (a lookup that counted an attempt; an operator who dismissed it)
    is read again under the lock: its bookkeeping stays as that request left
    it, and a row no longer waiting is never made stale."""
    from satmachineadmin import crud
    from satmachineadmin.models import utc_now
    from satmachineadmin.transaction_processor import _mark_stale

    source = await env.wallet("stale reread source")
    response = await env.api("POST", "/config", json={"source_wallet_id": source.id})
    assert response.status_code == 201, response.text
    now = utc_now()
    old = _settlement(source.id, "waiting_data", now - timedelta(hours=25))
    other = _settlement(source.id, "waiting_data", now - timedelta(hours=25))
    for settlement in (old, other):
        await _insert(settlement)
    try:
        listed = await crud.get_settlement(old.id)
        listed_other = await crud.get_settlement(other.id)
        assert listed and listed_other
        # Meanwhile: a lookup counted an attempt on one row, the operator
        # dismissed the other.
        changed = await crud.get_settlement(old.id)
        changed.lookup_attempts = 7
        changed.last_lookup_at = utc_now()
        assert await crud.update_settlement(changed, expected_status="waiting_data")
        moved = await crud.get_settlement(other.id)
        moved.status = "dismissed"
        assert await crud.update_settlement(moved, expected_status="waiting_data")

        await _mark_stale(listed, timedelta(hours=24))
        await _mark_stale(listed_other, timedelta(hours=24))

        now_old = await crud.get_settlement(old.id)
        assert now_old and now_old.status == "stale"
        assert now_old.lookup_attempts == 7  # not the listed row's 0
        assert "24 h" in (now_old.status_detail or "")
        now_other = await crud.get_settlement(other.id)
        assert now_other and now_other.status == "dismissed"
    finally:
        await _retire([old.id, other.id])
