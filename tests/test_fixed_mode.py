"""Fixed mode (#12) through real payments on a real LNbits (FakeWallet).

Fixed-mode clients share every settlement capped at what is left of their
daily limit (the operator's day, in the operator's time zone); what they
cannot take goes to the flow clients; on a daily schedule their payouts wait,
reserved, until the delivery slot pays them, once. The last test SIGKILLs a
real server inside a delivery slot and checks the slot ran once.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from crash_helpers import arm, die_at, live_world, power_back, wait_for_settlement
from live_server import LiveLNbits

S = "satoshimachine"
ZONE = "America/Guatemala"  # UTC-6, no daylight saving
asyncio_test = pytest.mark.asyncio(loop_scope="session")


async def _deactivate_all_clients(env):
    response = await env.api("GET", "/clients", params={"limit": 1000})
    for client in response.json():
        if client["status"] == "active":
            await env.api(
                "PUT", f"/clients/{client['id']}/status", json={"status": "inactive"}
            )


async def _world(env, clients: list[tuple[str, str | None]], **config):
    """Fresh wallets and config; clients as (deposit, daily limit or None for
    flow). Returns (source, payer, [(client, wallet)])."""
    await _deactivate_all_clients(env)
    source = await env.wallet("source")
    commission = await env.wallet("commission")
    payer = await env.wallet("atm customer")
    await env.fund(payer.id, 5_000_000)
    body = {
        "source_wallet_id": source.id,
        "commission_wallet_id": commission.id,
        "max_daily_limit": "500",
        "limit_currency": "GTQ",
        "time_zone": ZONE,
        "fixed_delivery": "on_settlement",
        **config,
    }
    response = await env.api("POST", "/config", json=body)
    assert response.status_code == 201, response.text
    made = []
    for i, (amount, limit) in enumerate(clients):
        _, wallet = await env.user_with_wallet(f"fixed{i}")
        data: dict = {"wallet_id": wallet.id, "username": f"f{i}"}
        if limit is not None:
            data.update(dca_mode="fixed", fixed_mode_daily_limit=limit)
        response = await env.api("POST", "/clients", json=data)
        assert response.status_code == 201, response.text
        client = response.json()
        await _deposit(env, client["id"], amount)
        made.append((client, wallet))
    return source, payer, made


async def _deposit(env, client_id: str, amount: str) -> None:
    response = await env.api(
        "POST", "/deposits", json={"client_id": client_id, "amount": amount}
    )
    assert response.status_code == 201, response.text
    response = await env.api(
        "PUT", f"/deposits/{response.json()['id']}/status", json={"status": "confirmed"}
    )
    assert response.status_code == 200, response.text


async def _settle(env, payer, source, fiat: int, tag: str) -> dict:
    """A bitSpire cash-out of `fiat` GTQ at 1,000,000 GTQ/BTC (100 sats/GTQ),
    1% fee. Returns the settlement detail once processed."""
    principal = fiat * 100
    fee = fiat
    extra = {
        "source": "bitspire",
        "principal_sats": principal,
        "fee_sats": fee,
        "exchange_rate": "1000000",
        "currency": "GTQ",
        "txid": tag,
    }
    payment_hash = await env.pay(payer.id, source.id, principal + fee, extra=extra)
    await env.settle()
    response = await env.api("GET", "/settlements", params={"search": payment_hash})
    [settlement] = [
        s for s in response.json()["data"] if s["payment_hash"] == payment_hash
    ]
    return (await env.api("GET", f"/settlements/{settlement['id']}")).json()


def _by_client(detail: dict) -> dict[str, tuple[int, Decimal, str, str]]:
    return {
        p["client_id"]: (
            p["amount_sats"],
            Decimal(str(p["amount_fiat"])),
            p["transaction_type"],
            p["status"],
        )
        for p in detail["payouts"]
    }


@asyncio_test
async def test_a_day_of_settlements_fixed_client_hits_its_limit(env):
    """Flow A (1000) and fixed B (1000, 100 a day). 100 GTQ: 50 / 50. 200 GTQ:
    B has 50 left of its day, A takes the other 150. 100 GTQ: B is at its
    limit, A takes it all. Never an orphan: A could always take more."""
    source, payer, [(a, wa), (b, wb)] = await _world(
        env, [("1000", None), ("1000", "100")]
    )
    first = _by_client(await _settle(env, payer, source, 100, "fixed-day-1"))
    assert first == {
        a["id"]: (5_000, Decimal("50.00"), "flow", "confirmed"),
        b["id"]: (5_000, Decimal("50.00"), "fixed", "confirmed"),
    }
    second = await _settle(env, payer, source, 200, "fixed-day-2")
    assert _by_client(second) == {
        a["id"]: (15_000, Decimal("150.00"), "flow", "confirmed"),
        b["id"]: (5_000, Decimal("50.00"), "fixed", "confirmed"),
    }
    assert second["reconciliation"] is None and second["status"] == "completed"
    third = await _settle(env, payer, source, 100, "fixed-day-3")
    assert _by_client(third) == {
        a["id"]: (10_000, Decimal("100.00"), "flow", "confirmed")
    }
    assert await env.balance(wb.id) == 10_000
    assert await env.balance(wa.id) == 30_000
    summary = (await env.api("GET", f"/clients/{b['id']}")).json()
    assert Decimal(str(summary["fixed_used_today"])) == 100
    assert Decimal(str(summary["fixed_allowance_left"])) == 0
    assert Decimal(str(summary["remaining_balance"])) == 900
    # The dry run shows B with nothing left today: A would take it all.
    dry = await env.api(
        "POST",
        "/test-transaction",
        json={
            "amount_sats": 10_100,
            "fiat_amount": "100",
            "raw_ticker_price": "1000000",
        },
    )
    assert dry.status_code == 200, dry.text
    [fixed] = dry.json()["fixed_clients"]
    assert fixed["client_id"] == b["id"] and Decimal(str(fixed["allowance_left"])) == 0
    assert [x["client_id"] for x in dry.json()["allocations"]] == [a["id"]]
    # The client extension still reads the maximum.
    limits = await env.http.get("/satmachineadmin/api/v1/dca/client-limits")
    assert limits.json() == {"max_daily_limit_gtq": 500.0, "currency": "GTQ"}


@asyncio_test
async def test_day_boundary_is_the_operators_midnight(env):
    """Fixed payouts count against the operator's day (America/Guatemala,
    UTC-6): one at local midnight counts today, one a second earlier was
    yesterday's."""
    from satmachineadmin.crud import db, exact_times, ts

    source, payer, [(a, _), (b, _wb)] = await _world(
        env, [("1000", None), ("1000", "100")]
    )
    zone = ZoneInfo(ZONE)
    now_local = datetime.now(timezone.utc).astimezone(zone)
    midnight = datetime.combine(now_local.date(), datetime.min.time(), tzinfo=zone)
    earlier = await _settle(env, payer, source, 60, "boundary-earlier")
    payouts = _by_client(earlier)
    assert payouts[b["id"]][1] == Decimal("30.00")
    # Move B's payout of that settlement to just before local midnight, and
    # record one more of 7.00 exactly at midnight.
    [row] = [p for p in earlier["payouts"] if p["client_id"] == b["id"]]
    await db.execute(
        f"UPDATE {S}.dca_payments SET transaction_time = {ts('t')} WHERE id = :id",
        exact_times({"t": midnight - timedelta(seconds=1), "id": row["id"]}),
    )
    from satmachineadmin.models import DcaPayment, utc_now

    now = utc_now()
    at_midnight = DcaPayment(
        id=f"boundary-{now.timestamp()}",
        client_id=b["id"],
        amount_sats=700,
        amount_fiat=Decimal("7.00"),
        exchange_rate=100.0,
        transaction_type="fixed",
        status="confirmed",
        created_at=now,
        transaction_time=midnight.astimezone(timezone.utc),
        currency="GTQ",
    )
    await db.insert(f"{S}.dca_payments", at_midnight)
    summary = (await env.api("GET", f"/clients/{b['id']}")).json()
    assert Decimal(str(summary["fixed_used_today"])) == Decimal("7.00")
    # 1000 GTQ: B takes the 93.00 left of its day, A the rest.
    later = _by_client(await _settle(env, payer, source, 1000, "boundary-later"))
    assert later[b["id"]][:3] == (9_300, Decimal("93.00"), "fixed")
    assert later[a["id"]][:3] == (90_700, Decimal("907.00"), "flow")
    # In UTC the day starts six hours earlier: the moved payout would count
    # (same UTC day as the midnight one whenever local midnight is past).
    config = (await env.api("GET", "/config")).json()
    response = await env.api(
        "PUT", f"/config/{config['id']}", json={"time_zone": "UTC"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["effective_time_zone"] == "UTC"
    summary = (await env.api("GET", f"/clients/{b['id']}")).json()
    utc_day = datetime.now(timezone.utc).date()
    expected = Decimal("93.00")  # today's, in any zone
    for moment, amount in (
        (midnight - timedelta(seconds=1), Decimal("30.00")),
        (midnight, Decimal("7.00")),
    ):
        if moment.astimezone(timezone.utc).date() == utc_day:
            expected += amount
    assert Decimal(str(summary["fixed_used_today"])) == expected


@asyncio_test
async def test_fixed_client_balance_runs_out_mid_day(env):
    """B (fixed, 30.00, 100 a day) and A (flow, 100.00). Two settlements use
    B's whole balance (it lands on 0.00 with 70 of its day left); the third
    goes to nobody but the orphan; after a new deposit B takes what is left
    of its day, 70, and no more."""
    source, payer, [(a, _), (b, wb)] = await _world(env, [("100", None), ("30", "100")])
    first = _by_client(await _settle(env, payer, source, 100, "runs-out-1"))
    assert first[b["id"]][2:] == ("fixed", "confirmed")
    assert first[a["id"]][1] + first[b["id"]][1] == 100
    second = await _settle(env, payer, source, 100, "runs-out-2")
    paid = _by_client(second)
    assert first[b["id"]][1] + paid[b["id"]][1] == 30  # all of B's balance
    assert first[a["id"]][1] + paid[a["id"]][1] == 100
    assert Decimal(str(second["reconciliation"]["orphan_fiat"])) == 70
    summary = (await env.api("GET", f"/clients/{b['id']}")).json()
    assert Decimal(str(summary["remaining_balance"])) == 0
    assert Decimal(str(summary["fixed_allowance_left"])) == 70
    third = await _settle(env, payer, source, 50, "runs-out-3")
    assert third["payouts"] == [] and third["reconciliation"]["orphan_sats"] == 5_000
    await _deposit(env, b["id"], "100")
    fourth = _by_client(await _settle(env, payer, source, 1000, "runs-out-4"))
    assert fourth == {b["id"]: (7_000, Decimal("70.00"), "fixed", "confirmed")}
    assert await env.balance(wb.id) == 10_000  # 100.00 GTQ today, its limit


@asyncio_test
async def test_daily_schedule_holds_then_delivers_once(env):
    """On a daily schedule B's allocation waits (reserved, a pending 'fixed'
    row the client extension shows, the sats in the source wallet); recovery
    never pays it early; its slot pays it once; a second pass does nothing."""
    from satmachineadmin.crud import db, get_delivery_slots
    from satmachineadmin.tasks import run_recovery
    from satmachineadmin.transaction_processor import deliver_scheduled

    source, payer, [(a, _wa), (b, wb)] = await _world(
        env,
        [("1000", None), ("1000", "100")],
        fixed_delivery="daily",
        fixed_delivery_time="18:00",
    )
    detail = await _settle(env, payer, source, 100, "scheduled-1")
    assert detail["status"] == "scheduled", detail["status_detail"]
    payouts = _by_client(detail)
    assert payouts[a["id"]] == (5_000, Decimal("50.00"), "flow", "confirmed")
    assert payouts[b["id"]] == (5_000, Decimal("50.00"), "fixed", "pending")
    [row] = [p for p in detail["payouts"] if p["client_id"] == b["id"]]
    due = datetime.fromisoformat(row["deliver_after"])
    due = due if due.tzinfo else due.replace(tzinfo=timezone.utc)
    local = due.astimezone(ZoneInfo(ZONE))
    assert (local.hour, local.minute) == (18, 0)
    assert await env.balance(wb.id) == 0
    assert await env.balance(source.id) == 5_000  # held for B
    balance = (await env.api("GET", f"/clients/{b['id']}/balance")).json()
    assert Decimal(str(balance["reserved_fiat"])) == 50
    assert Decimal(str(balance["remaining_balance"])) == 950
    scheduled = (await env.api("GET", "/fixed/scheduled")).json()
    assert [p["id"] for p in scheduled["payouts"]] == [row["id"]]
    assert scheduled["scheduled_sats"] == 5_000
    # A second settlement the same day counts the reserved 50 against B's day.
    second = _by_client(await _settle(env, payer, source, 200, "scheduled-2"))
    assert second[b["id"]][:2] == (5_000, Decimal("50.00"))
    # Never early: a recovery pass and a delivery pass before the slot.
    await run_recovery()
    assert await deliver_scheduled(due - timedelta(seconds=1)) == 0
    assert await env.balance(wb.id) == 0
    # The slot comes: both payouts are paid, once. (An earlier test may have
    # used the same slot time: its payouts count in that slot's row too.)
    earlier = sum(
        s.payouts
        for s in await get_delivery_slots()
        if s.due_at.replace(tzinfo=timezone.utc) == due.astimezone(timezone.utc)
    )
    assert await deliver_scheduled(due + timedelta(seconds=5)) == 2
    assert await deliver_scheduled(due + timedelta(seconds=10)) == 0
    await run_recovery()
    assert await env.balance(wb.id) == 10_000
    assert await env.balance(source.id) == 0
    slots = [
        s
        for s in await get_delivery_slots()
        if s.due_at.replace(tzinfo=timezone.utc) == due.astimezone(timezone.utc)
    ]
    assert len(slots) == 1 and slots[0].status == "done"
    assert slots[0].payouts == earlier + 2
    final = (await env.api("GET", f"/settlements/{detail['id']}")).json()
    assert final["status"] == "completed"
    assert {p["status"] for p in final["payouts"]} == {"confirmed"}
    rows = await db.fetchall(
        f"SELECT status, transaction_type FROM {S}.dca_payments "
        "WHERE client_id = :c",
        {"c": b["id"]},
    )
    assert sorted((r["status"], r["transaction_type"]) for r in rows) == [
        ("confirmed", "fixed"),
        ("confirmed", "fixed"),
    ]


@asyncio_test
async def test_mode_and_limit_are_validated(env):
    _source, _payer, [(a, _)] = await _world(env, [("10", None)])
    before = (await env.api("GET", f"/clients/{a['id']}")).json()
    for body, fragment in (
        ({"dca_mode": "fixed", "fixed_mode_daily_limit": "501"}, "at most 500"),
        ({"dca_mode": "fixed"}, "needs a daily limit"),
        ({"fixed_mode_daily_limit": "600"}, "at most 500"),
        ({"dca_mode": "sometimes"}, ""),
        ({"dca_mode": "fixed", "fixed_mode_daily_limit": "-1"}, ""),
    ):
        response = await env.api("PUT", f"/clients/{a['id']}", json=body)
        assert response.status_code == 400, (body, response.text)
        assert fragment in response.text
    after = (await env.api("GET", f"/clients/{a['id']}")).json()
    assert (after["dca_mode"], after["fixed_mode_daily_limit"]) == (
        before["dca_mode"],
        before["fixed_mode_daily_limit"],
    )
    response = await env.api(
        "PUT",
        f"/clients/{a['id']}",
        json={"dca_mode": "fixed", "fixed_mode_daily_limit": "250.50"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["dca_mode"] == "fixed"
    assert Decimal(str(response.json()["fixed_mode_daily_limit"])) == Decimal("250.50")
    # Unknown modes and a fixed client without a limit need attention.
    from satmachineadmin.crud import db

    await db.execute(
        f"UPDATE {S}.dca_clients SET dca_mode = 'FLOW' WHERE id = :id", {"id": a["id"]}
    )
    assert (
        "unknown mode"
        in (await env.api("GET", f"/clients/{a['id']}")).json()["attention"]
    )
    await db.execute(
        f"UPDATE {S}.dca_clients SET dca_mode = 'fixed', "
        "fixed_mode_daily_limit = NULL WHERE id = :id",
        {"id": a["id"]},
    )
    assert (
        "without a daily limit"
        in (await env.api("GET", f"/clients/{a['id']}")).json()["attention"]
    )
    config = (await env.api("GET", "/config")).json()
    for body in (
        {"fixed_delivery": "daily"},
        {"fixed_delivery": "times_per_day"},
        {"fixed_delivery": "weekly"},
        {"fixed_delivery_time": "25:00"},
        {"fixed_delivery_times": 0},
        {"time_zone": "Mars/Olympus"},
        {"fixed_delivery": None},
    ):
        response = await env.api("PUT", f"/config/{config['id']}", json=body)
        assert response.status_code == 400, (body, response.text)
    response = await env.api(
        "PUT",
        f"/config/{config['id']}",
        json={"fixed_delivery": "times_per_day", "fixed_delivery_times": 4},
    )
    assert response.status_code == 200, response.text
    scheduled = (await env.api("GET", "/fixed/scheduled")).json()
    next_local = datetime.fromisoformat(scheduled["next_slot"]).astimezone(
        ZoneInfo(ZONE)
    )
    assert next_local.hour in (0, 6, 12, 18) and next_local.minute == 0


# ------------------------------------------------- a slot across a SIGKILL

# Two points keep CI short: inside the slot (claimed, released, one payout
# paid, the others not) and after it (done, its settlement not finished).
# Every other point (fixed_slot_claimed, fixed_slot_released, payout_*) is
# reached by SATMACHINE_CRASH_AT the same way.
SLOT_CRASHES = [
    "payout_paid:2",  # the slot's second delivery
    "fixed_slot_done",
]
FIXED_CLIENTS = 3


def _live_sql(live: LiveLNbits, query: str) -> None:
    if os.environ.get("SATMACHINE_TEST_DB") == "postgres":
        import conftest

        conftest._pg.psql(query.replace("{S}", S), database="fixed_crash")
        return
    database = sqlite3.connect(live.dir / "data" / "ext_satoshimachine.sqlite3")
    try:
        database.execute(query.replace("{S}.", ""))
        database.commit()
    finally:
        database.close()


@pytest.fixture(scope="module")
def fixed_world():
    with live_world("fixed_crash", GTQ=1_000_000) as live:
        wallets = {
            "source": live.create_wallet("Source"),
            "payer": live.create_wallet("ATM payer"),
        }
        live.credit(wallets["payer"]["id"], 1_000_000)
        response = live.api(
            "POST",
            "/config",
            json={
                "source_wallet_id": wallets["source"]["id"],
                "time_zone": ZONE,
                "fixed_delivery": "daily",
                "fixed_delivery_time": "18:00",
            },
        )
        assert response.status_code == 201, response.text
        clients = []
        for i in range(FIXED_CLIENTS):
            wallet = live.create_user_wallet(f"fixed{i}")
            response = live.api(
                "POST",
                "/clients",
                json={
                    "wallet_id": wallet["id"],
                    "dca_mode": "fixed",
                    "fixed_mode_daily_limit": "1000",
                },
            )
            assert response.status_code == 201, response.text
            clients.append((response.json(), wallet))
        yield live, wallets, clients


@pytest.mark.parametrize("crash_at", SLOT_CRASHES)
def test_sigkill_inside_a_delivery_slot_then_it_runs_once(fixed_world, crash_at):
    live, wallets, clients = fixed_world
    for client, _ in clients:
        response = live.api(
            "POST", "/deposits", json={"client_id": client["id"], "amount": "20"}
        )
        deposit = response.json()["id"]
        live.api("PUT", f"/deposits/{deposit}/status", json={"status": "confirmed"})
    extra = {
        "source": "bitspire",
        "principal_sats": 6_000,
        "fee_sats": 0,
        "exchange_rate": "1000000",
        "currency": "GTQ",
        "txid": f"slot-{crash_at}",
    }
    invoice = live.invoice(wallets["source"], 6_000, extra=extra)
    live.pay_invoice(wallets["payer"], invoice["bolt11"])
    settlement = _wait_for(live, invoice["payment_hash"], "scheduled")
    assert {p["status"] for p in settlement["payouts"]} == {"pending"}
    watched = [wallets["source"]] + [w for _, w in clients]
    before = [live.balance(w) for w in watched]

    # Time passes: the slot is due (the rows are moved a day back).
    live.stop()
    shift = (
        "deliver_after - INTERVAL '1 day'"
        if os.environ.get("SATMACHINE_TEST_DB") == "postgres"
        else "deliver_after - 86400"
    )
    _live_sql(
        live,
        f"UPDATE {{S}}.dca_payments SET deliver_after = {shift} "
        f"WHERE settlement_id = '{settlement['id']}'",
    )
    # The start-up recovery pass delivers the slot and dies inside it.
    arm(live, crash_at, at_start=True)
    die_at(live, crash_at)
    power_back(live)
    final = _wait_for(live, invoice["payment_hash"], "completed")
    after = [live.balance(w) for w in watched]
    delta = [x - y for x, y in zip(after, before, strict=True)]
    assert delta == [-6_000] + [2_000] * FIXED_CLIENTS, delta
    assert {p["status"] for p in final["payouts"]} == {"confirmed"}
    slots = live.api("GET", "/fixed/scheduled").json()["slots"]
    due = {p["deliver_after"] for p in final["payouts"]}
    assert len(due) == 1
    mine = [s for s in slots if s["due_at"][:19] == next(iter(due))[:19]]
    assert len(mine) == 1 and mine[0]["status"] == "done", slots
    live.api("POST", "/manual-poll")
    assert [live.balance(w) for w in watched] == after


def _wait_for(live: LiveLNbits, payment_hash: str, status: str) -> dict:
    detail = wait_for_settlement(live, payment_hash, status) or {}
    if detail.get("status") != status:
        raise AssertionError(
            (status, detail.get("status"), detail.get("status_detail"))
        )
    return detail
