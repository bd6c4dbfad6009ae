"""Adversarial review of fixed-mode scheduled deliveries (#12): what the
slot does when the rows it relies on changed between the allocation and the
slot. The client extension (or any other program) writes the same
`satoshimachine` rows and is not validated: it may cancel a confirmed
deposit, or store a daily limit that is no number at all.

Decision (README, *Flow and fixed mode*): a payout is paid only while the
client's balance (confirmed deposits - confirmed payouts in its currency,
what the client extension shows) still covers it, checked under the money
lock just before paying. One that is no longer covered is held: failed,
visible, with the reason, its sats in the source wallet and its fiat still
reserved. It is paid by a later retry once the balance covers it again (the
deposit confirmed again, a new deposit), or the operator cancels it into the
settlement's orphan. Never paid beyond the balance, never moved by itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from test_fixed_mode import _by_client, _world

pytestmark = pytest.mark.asyncio(loop_scope="session")
S = "satoshimachine"


def _due_of(detail: dict, client_id: str) -> datetime:
    [row] = [p for p in detail["payouts"] if p["client_id"] == client_id]
    due = datetime.fromisoformat(row["deliver_after"])
    return due if due.tzinfo else due.replace(tzinfo=timezone.utc)


async def _as_other_software(sql: str, values: dict) -> None:
    from satmachineadmin.crud import db

    await db.execute(sql, values)


async def _figures_add_up(env, settlement_id: str) -> None:
    detail = (await env.api("GET", f"/settlements/{settlement_id}")).json()
    paid_or_held = sum(
        p["amount_sats"] for p in detail["payouts"] if p["status"] != "cancelled"
    )
    orphan = detail["orphan_sats"] or 0
    assert paid_or_held == detail["distributed_sats"]
    assert (
        detail["distributed_sats"] + detail["commission_sats"] + orphan
        == detail["amount_sats"]
    )


async def test_a_scheduled_payout_whose_deposit_was_cancelled_is_held(env):
    """B and C (fixed, 100 a day) each had 100.00 confirmed; the split
    reserved 50.00 (5,000 sats) for each, to be delivered at 18:00. Before
    the slot other software cancels both deposits. Before this fix the slot
    paid both: 5,000 sats each to clients whose balance was 0.00 (the client
    extension then shows -50.00). Now the slot holds them (failed, with the
    reason), the sats stay in the source wallet; C's deposit is confirmed
    again and the next retry pays C once; the operator cancels B's payout into
    the orphan; the settlement still adds up to the sat."""
    from satmachineadmin.tasks import run_recovery
    from satmachineadmin.transaction_processor import deliver_scheduled
    from test_fixed_mode import _settle

    source, payer, [(_a, _wa), (b, wb), (c, wc)] = await _world(
        env,
        [("100", None), ("100", "100"), ("100", "100")],
        fixed_delivery="daily",
        fixed_delivery_time="18:00",
    )
    detail = await _settle(env, payer, source, 150, "held-1")
    assert detail["status"] == "scheduled", detail["status_detail"]
    payouts = _by_client(detail)
    assert payouts[b["id"]] == (5_000, Decimal("50.00"), "fixed", "pending")
    assert payouts[c["id"]] == (5_000, Decimal("50.00"), "fixed", "pending")
    due = _due_of(detail, b["id"])
    before = await env.balance(source.id)
    await _as_other_software(
        f"UPDATE {S}.dca_deposits SET status = 'cancelled' "
        "WHERE client_id IN (:b, :c)",
        {"b": b["id"], "c": c["id"]},
    )
    await deliver_scheduled(due + timedelta(seconds=5))
    await run_recovery()
    assert (await env.balance(wb.id), await env.balance(wc.id)) == (0, 0)
    assert await env.balance(source.id) == before
    held = (await env.api("GET", f"/settlements/{detail['id']}")).json()
    assert held["status"] == "payout_failed"
    for client in (b, c):
        [row] = [p for p in held["payouts"] if p["client_id"] == client["id"]]
        assert row["status"] == "failed"
        assert "balance" in row["error"], row["error"]
        summary = (await env.api("GET", f"/clients/{client['id']}")).json()
        [gtq] = [f for f in summary["balances"] if f["currency"] == "GTQ"]
        assert Decimal(str(gtq["distributed_fiat"])) == 0
        assert Decimal(str(gtq["reserved_fiat"])) == 50  # still reserved
        # The headline figures too (every deposit cancelled: the currency of
        # the payouts), and the balance the client extension asks for.
        assert summary["currency"] == "GTQ"
        assert Decimal(str(summary["reserved_fiat"])) == 50
        assert Decimal(str(summary["remaining_balance"])) == -50
    await _figures_add_up(env, detail["id"])

    # C's deposit was cancelled by mistake: confirmed again, C is paid once.
    await _as_other_software(
        f"UPDATE {S}.dca_deposits SET status = 'confirmed' WHERE client_id = :c",
        {"c": c["id"]},
    )
    await run_recovery()
    await run_recovery()
    assert (await env.balance(wb.id), await env.balance(wc.id)) == (0, 5_000)

    # B's is gone for good: the operator cancels the payout into the orphan.
    [row] = [p for p in held["payouts"] if p["client_id"] == b["id"]]
    response = await env.api(
        "POST", f"/payouts/{row['id']}/cancel", json={"reason": "deposit cancelled"}
    )
    assert response.status_code == 200, response.text
    await run_recovery()
    final = (await env.api("GET", f"/settlements/{detail['id']}")).json()
    assert final["status"] == "completed", final["status_detail"]
    assert final["orphan_sats"] == 5_000
    assert await env.balance(wb.id) == 0
    await _figures_add_up(env, detail["id"])
    balance = (await env.api("GET", f"/clients/{b['id']}/balance")).json()
    assert Decimal(str(balance["remaining_balance"])) == 0


# What other software can store as a daily limit: SQLite keeps any text in
# the column; PostgreSQL's NUMERIC(18, 2) takes NaN and negatives only.
_SQLITE_ONLY = ("abc", "1e400", "  ")
BAD_LIMITS = ["NaN", "-5", *_SQLITE_ONLY]


@pytest.mark.parametrize("limit", BAD_LIMITS)
async def test_a_limit_that_is_no_number_stops_nobody_else(env, limit):
    """Another fixed client's row gets a daily limit that is no amount (the
    client extension stores what it is given) between the split and the slot.
    Before this fix reading that row raised (InvalidOperation: 'abc', 1e400
    are no Decimal cents; NaN cannot be compared), so the slot, every later
    split and the clients list failed for everyone. Now that client is left
    out (needs attention: no usable limit) and everybody else is paid."""
    import os

    from satmachineadmin.crud import db
    from satmachineadmin.transaction_processor import deliver_scheduled
    from test_fixed_mode import _settle

    postgres = os.environ.get("SATMACHINE_TEST_DB") == "postgres"
    if postgres and limit in _SQLITE_ONLY:
        pytest.skip("PostgreSQL refuses this value in NUMERIC(18, 2)")
    source, payer, [(a, _wa), (b, wb), (x, wx)] = await _world(
        env,
        [("100", None), ("100", "100"), ("100", "100")],
        fixed_delivery="daily",
        fixed_delivery_time="18:00",
    )
    detail = await _settle(env, payer, source, 150, f"bad-limit-{limit}")
    assert _by_client(detail)[b["id"]][3] == "pending"
    due = _due_of(detail, b["id"])
    await db.execute(
        f"UPDATE {S}.dca_clients SET fixed_mode_daily_limit = :limit " "WHERE id = :id",
        {"limit": limit, "id": x["id"]},
    )
    await deliver_scheduled(due + timedelta(seconds=5))
    assert await env.balance(wb.id) == 5_000  # B's slot delivered
    # X's payout was reserved before its limit broke: delivered too.
    assert await env.balance(wx.id) == 5_000
    response = await env.api("GET", "/clients", params={"limit": 1000})
    assert response.status_code == 200, response.text
    [row] = [c for c in response.json() if c["id"] == x["id"]]
    assert row["attention"], row
    # The next split works; X (no usable limit) takes no part in it.
    second = await _settle(env, payer, source, 10, f"bad-limit-2-{limit}")
    assert second["status"] in ("scheduled", "completed"), second["status_detail"]
    assert x["id"] not in _by_client(second)
    assert a["id"] in _by_client(second)


async def test_five_thousand_payouts_in_one_slot_all_reach_it(env, monkeypatch):
    """5,000 scheduled payouts due at one slot (rows as a settlement's plan
    writes them, for 5,000 clients each with a 1.00 balance; the transfer
    itself is counted, not made: tests/test_batched_payouts.py and the bench
    pay for real). The dashboard lists the first 500 and counts them all; one
    pass releases every one to the slot, checks every balance (10 chunks of
    ids) and reaches every payout; none is left behind."""
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin import transaction_processor
    from satmachineadmin.crud import db, get_delivery_slots, transaction
    from satmachineadmin.models import DcaClient, DcaDeposit, DcaPayment, utc_now
    from satmachineadmin.tasks import run_recovery
    from test_fixed_mode import _settle

    n = 5_000
    source, payer, [(_a, _wa), (b, wb)] = await _world(
        env,
        [("100", None), ("100", "100")],
        fixed_delivery="daily",
        fixed_delivery_time="18:00",
    )
    detail = await _settle(env, payer, source, 100, "five-thousand")
    due = _due_of(detail, b["id"])
    [row] = [p for p in detail["payouts"] if p["client_id"] == b["id"]]
    now = utc_now()
    ids = []
    try:
        async with transaction() as tx:
            for i in range(n):
                client_id = urlsafe_short_hash()
                # Inactive: no later split of this session takes them in.
                await tx.insert(
                    f"{S}.dca_clients",
                    DcaClient(
                        id=client_id,
                        user_id=f"bulk{i}",
                        wallet_id=f"bulk-wallet-{i}",
                        dca_mode="fixed",
                        fixed_mode_daily_limit=Decimal("10"),
                        status="inactive",
                        created_at=now,
                        updated_at=now,
                    ),
                )
                await tx.insert(
                    f"{S}.dca_deposits",
                    DcaDeposit(
                        id=urlsafe_short_hash(),
                        client_id=client_id,
                        amount=Decimal("1.00"),
                        status="confirmed",
                        created_at=now,
                        confirmed_at=now,
                    ),
                )
                payout_id = urlsafe_short_hash()
                ids.append(payout_id)
                await tx.insert(
                    f"{S}.dca_payments",
                    DcaPayment(
                        id=payout_id,
                        client_id=client_id,
                        amount_sats=100,
                        amount_fiat=Decimal("1.00"),
                        currency="GTQ",
                        exchange_rate=100.0,
                        transaction_type="fixed",
                        status="pending",
                        created_at=now,
                        transaction_time=now,
                        settlement_id=detail["id"],
                        updated_at=now,
                        deliver_after=due,
                    ),
                )
        scheduled = (await env.api("GET", "/fixed/scheduled")).json()
        assert len(scheduled["payouts"]) == 500
        assert scheduled["scheduled_count"] >= n + 1

        reached: list[str] = []

        async def counted(settlement, payout, client=None, sources=None):
            reached.append(payout.id)
            return True

        monkeypatch.setattr(transaction_processor, "_pay_payout", counted)
        await transaction_processor.deliver_scheduled(due + timedelta(seconds=5))
        assert set(ids) | {row["id"]} <= set(reached)
        assert len(reached) == len(set(reached))  # each once
        [slot] = [
            s
            for s in await get_delivery_slots()
            if s.due_at.replace(tzinfo=timezone.utc) == due.astimezone(timezone.utc)
        ]
        assert slot.status == "done" and slot.payouts >= n + 1
        left = await db.fetchone(
            f"SELECT COUNT(*) AS n FROM {S}.dca_payments "
            "WHERE settlement_id = :s AND delivery_slot IS NULL "
            "AND deliver_after IS NOT NULL",
            {"s": detail["id"]},
        )
        assert left["n"] == 0
        held = await db.fetchone(
            f"SELECT COUNT(*) AS n FROM {S}.dca_payments "
            "WHERE settlement_id = :s AND status = 'failed'",
            {"s": detail["id"]},
        )
        assert held["n"] == 0  # every balance covered its payout
    finally:
        monkeypatch.undo()
        bulk = f"SELECT id FROM {S}.dca_clients WHERE user_id LIKE 'bulk%'"
        for table in ("dca_payments", "dca_deposits"):
            await db.execute(f"DELETE FROM {S}.{table} WHERE client_id IN ({bulk})")
        await db.execute(f"DELETE FROM {S}.dca_clients WHERE user_id LIKE 'bulk%'")
        # The slot's count as if they had never been (later tests read it).
        await db.execute(
            f"UPDATE {S}.fixed_delivery_slots SET payouts = (SELECT COUNT(*) "
            f"FROM {S}.dca_payments p WHERE p.delivery_slot = "
            f"{S}.fixed_delivery_slots.id)"
        )
    # B's own payout, released to the slot, is paid by the next pass, once.
    await run_recovery()
    assert await env.balance(wb.id) == row["amount_sats"]


async def test_a_client_row_changed_after_the_split_at_the_slot(env):
    """Between the split and the slot the client extension rewrites B's row:
    deactivated, mode 'FLOW', limit 0. B's payout was bought with B's cash at
    that settlement's rate: the slot pays it, once (the limit caps what a
    split allocates, not a reserved payout). C's row is pointed at the source
    wallet: refused at the slot (failed, visible, nothing moves), paid once C
    has a wallet of its own again and the payout is retried."""
    from satmachineadmin.tasks import run_recovery
    from satmachineadmin.transaction_processor import deliver_scheduled
    from test_fixed_mode import _settle

    source, payer, [(_a, _wa), (b, wb), (c, wc)] = await _world(
        env,
        [("100", None), ("100", "100"), ("100", "100")],
        fixed_delivery="daily",
        fixed_delivery_time="18:00",
    )
    detail = await _settle(env, payer, source, 150, "changed-row")
    due = _due_of(detail, b["id"])
    await _as_other_software(
        f"UPDATE {S}.dca_clients SET status = 'inactive', dca_mode = 'FLOW', "
        "fixed_mode_daily_limit = 0 WHERE id = :b",
        {"b": b["id"]},
    )
    await _as_other_software(
        f"UPDATE {S}.dca_clients SET wallet_id = :w WHERE id = :c",
        {"w": source.id, "c": c["id"]},
    )
    await deliver_scheduled(due + timedelta(seconds=5))
    await run_recovery()
    assert (await env.balance(wb.id), await env.balance(wc.id)) == (5_000, 0)
    held = (await env.api("GET", f"/settlements/{detail['id']}")).json()
    [row] = [p for p in held["payouts"] if p["client_id"] == c["id"]]
    assert row["status"] == "failed" and "source wallet" in row["error"]
    await _as_other_software(
        f"UPDATE {S}.dca_clients SET wallet_id = :w WHERE id = :c",
        {"w": wc.id, "c": c["id"]},
    )
    await run_recovery()
    await run_recovery()
    assert (await env.balance(wb.id), await env.balance(wc.id)) == (5_000, 5_000)
    final = (await env.api("GET", f"/settlements/{detail['id']}")).json()
    assert final["status"] == "completed", final["status_detail"]
    await _figures_add_up(env, detail["id"])


async def test_a_deposit_amount_that_is_no_number_stops_nobody_else(env):
    """Other software writes a confirmed deposit whose amount is no finite
    number (PostgreSQL's NUMERIC keeps NaN; SQLite turns the text 1e400 into
    infinity) for client X. Before this fix the balance of X was NaN or
    infinity: comparing it raised (InvalidOperation), so every split in that
    currency and every delivery slot failed for everyone. Now X's balance
    counts as nothing: X takes no part in new splits and a payout reserved for
    X is held, while everybody else is split and paid as before."""
    import os

    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db
    from satmachineadmin.transaction_processor import deliver_scheduled
    from test_fixed_mode import _settle

    postgres = os.environ.get("SATMACHINE_TEST_DB") == "postgres"
    source, payer, [(a, _wa), (b, wb), (x, wx)] = await _world(
        env,
        [("100", None), ("100", "100"), ("100", "100")],
        fixed_delivery="daily",
        fixed_delivery_time="18:00",
    )
    detail = await _settle(env, payer, source, 150, "bad-deposit")
    due = _due_of(detail, b["id"])
    await db.execute(
        f"INSERT INTO {S}.dca_deposits (id, client_id, amount, currency, status, "
        f"created_at, confirmed_at) VALUES (:id, :client, :amount, 'GTQ', "
        f"'confirmed', {db.timestamp_now}, {db.timestamp_now})",
        {
            "id": urlsafe_short_hash(),
            "client": x["id"],
            "amount": "NaN" if postgres else "1e400",
        },
    )
    try:
        await deliver_scheduled(due + timedelta(seconds=5))
        assert await env.balance(wb.id) == 5_000  # B's slot delivered
        assert await env.balance(wx.id) == 0  # X's held: no usable balance
        held = (await env.api("GET", f"/settlements/{detail['id']}")).json()
        [row] = [p for p in held["payouts"] if p["client_id"] == x["id"]]
        assert row["status"] == "failed", row
        second = await _settle(env, payer, source, 10, "bad-deposit-2")
        assert x["id"] not in _by_client(second)
        assert a["id"] in _by_client(second), second["status_detail"]
    finally:  # later tests' clients list reads every deposit
        await db.execute(
            f"DELETE FROM {S}.dca_deposits WHERE client_id = :x", {"x": x["id"]}
        )


async def test_a_lowered_deposit_pays_what_it_covers_in_order(env):
    """Two settlements reserve 50.00 and then 30.00 for B (fixed) at one
    slot; other software then lowers B's confirmed 100.00 deposit to 60.00.
    The slot pays the first (60.00 covers 50.00) and holds the second (10.00
    left does not cover 30.00): B is never paid beyond its balance (the client
    extension shows 10.00 left, not -20.00). Before this fix both were paid."""
    from satmachineadmin.crud import db
    from satmachineadmin.transaction_processor import deliver_scheduled
    from test_fixed_mode import _settle

    source, payer, [(_a, _wa), (b, wb)] = await _world(
        env,
        [("100", None), ("100", "100")],
        fixed_delivery="daily",
        fixed_delivery_time="18:00",
    )
    first = await _settle(env, payer, source, 100, "lowered-1")
    second = await _settle(env, payer, source, 60, "lowered-2")
    assert _by_client(first)[b["id"]][:2] == (5_000, Decimal("50.00"))
    assert _by_client(second)[b["id"]][:2] == (3_000, Decimal("30.00"))
    await _as_other_software(
        f"UPDATE {S}.dca_deposits SET amount = 60 WHERE client_id = :b",
        {"b": b["id"]},
    )
    await deliver_scheduled(_due_of(second, b["id"]) + timedelta(seconds=5))
    assert await env.balance(wb.id) == 5_000
    rows = await db.fetchall(
        f"SELECT settlement_id, status FROM {S}.dca_payments WHERE client_id = :b",
        {"b": b["id"]},
    )
    assert {(r["settlement_id"], r["status"]) for r in rows} == {
        (first["id"], "confirmed"),
        (second["id"], "failed"),
    }
    summary = (await env.api("GET", f"/clients/{b['id']}")).json()
    [gtq] = [f for f in summary["balances"] if f["currency"] == "GTQ"]
    assert Decimal(str(gtq["confirmed_deposits"])) - Decimal(
        str(gtq["distributed_fiat"])
    ) == Decimal("10.00")
    for detail in (first, second):
        await _figures_add_up(env, detail["id"])
