"""Nothing stops at a fixed number of rows where every row counts: the recovery
scan, the alert checks, the scheduled totals, the drift's bitSpire reports and
the paged lists the CSV exports walk through see every row, past 1000 (and
past LNbits' own default page of 10). Rows are bulk-inserted (one statement
for many rows) so each test takes seconds. The Lamassu poll's test is in
test_lamassu.py (it needs that file's Lamassu database)."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")
S = "satoshimachine"


async def _bulk_insert(database, table: str, models: list) -> None:
    """Many rows in one executemany and one commit."""
    from lnbits.db import insert_query, model_to_dict
    from sqlalchemy import text

    async with database.connect() as conn:
        await conn.conn.execute(
            text(insert_query(table, models[0])), [model_to_dict(m) for m in models]
        )
        await conn.conn.commit()


def _hash() -> str:
    from lnbits.helpers import urlsafe_short_hash

    return (urlsafe_short_hash() * 4)[:64]


def _payments(wallet_id: str, count: int, at) -> list:
    """`count` settled incoming payments into the wallet, all at one time (ties
    on the sort key)."""
    from lnbits.core.models import Payment

    payments = []
    for i in range(count):
        payment_hash = _hash()
        payments.append(
            Payment(
                checking_id=payment_hash,
                payment_hash=payment_hash,
                wallet_id=wallet_id,
                amount=1_000_000,
                fee=0,
                bolt11=f"lnbc-missed-{i}",
                status="success",
                memo=f"missed {i}",
                time=at,
                created_at=at,
                updated_at=at,
            )
        )
    return payments


async def _source_wallet(env, name: str):
    """A fresh wallet as the source wallet (the config is created if none)."""
    wallet = await env.wallet(name)
    response = await env.api("POST", "/config", json={"source_wallet_id": wallet.id})
    assert response.status_code == 201, response.text
    return wallet


async def test_the_scan_reads_every_page_of_lnbits_payments(env, monkeypatch):
    """5,000 settled payments in the source wallet, all with the same time:
    the scan hands every one to record_payment, once. It used to read a single
    page of LNbits' get_payments: 10 rows (LNbits' default), never the rest."""
    from lnbits.core.db import db as core_db
    from satmachineadmin import tasks

    source = await _source_wallet(env, "scan source 5000")
    payments = _payments(source.id, 5_000, tasks.utc_now() - timedelta(hours=1))
    await _bulk_insert(core_db, "apipayments", payments)
    seen: list[str] = []

    async def record(payment):
        if payment.wallet_id == source.id:
            seen.append(payment.payment_hash)
        return None

    monkeypatch.setattr(tasks, "record_payment", record)
    await tasks.scan_source_wallet()
    assert len(seen) == 5_000
    assert set(seen) == {p.payment_hash for p in payments}


async def test_the_scan_records_every_missed_payment(env, monkeypatch):
    """End to end, with small pages (SCAN_PAGE 25) so the test stays quick: 80
    missed payments (more than LNbits' default page of 10, over four pages)
    each become a settlement, once; a second scan finds none."""
    from lnbits.core.db import db as core_db
    from satmachineadmin import tasks
    from satmachineadmin.crud import db

    async def no_alerts(settlements) -> None:
        return None

    monkeypatch.setattr(tasks, "note_missed_payments", no_alerts)
    monkeypatch.setattr(tasks, "SCAN_PAGE", 25)
    source = await _source_wallet(env, "scan source 80")
    payments = _payments(source.id, 80, tasks.utc_now() - timedelta(hours=1))
    await _bulk_insert(core_db, "apipayments", payments)
    try:
        assert await tasks.scan_source_wallet() == 80
        row = await db.fetchone(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT payment_hash) AS hashes "
            "FROM satoshimachine.settlements WHERE wallet_id = :w",
            {"w": source.id},
        )
        assert (row["n"], row["hashes"]) == (80, 80)
        assert await tasks.scan_source_wallet() == 0
    finally:
        await db.execute(
            "UPDATE satoshimachine.settlements SET status = 'dismissed' "
            "WHERE wallet_id = :w",
            {"w": source.id},
        )


def _settlement(device_id: str, at, **fields):
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.models import Settlement

    return Settlement(
        id=urlsafe_short_hash(),
        payment_hash=_hash(),
        wallet_id=fields.pop("wallet_id", "row-limits-wallet"),
        amount_sats=1000,
        paid_at=at,
        status=fields.pop("status", "dismissed"),
        cash_out_data=fields.pop("cash_out_data", '{"payment_extra": {}}'),
        device_id=device_id,
        created_at=at,
        updated_at=at,
        **fields,
    )


async def _delete_settlements(device_ids: list[str]) -> None:
    from satmachineadmin.crud import db

    for device in device_ids:
        await db.execute(
            "DELETE FROM satoshimachine.settlements WHERE device_id = :d",
            {"d": device},
        )


async def test_paging_a_list_sees_every_row_once(env):
    """The contract the page's CSV exports rely on: 2,500 settlements with the
    same paid_at and created_at, read 1000 at a time by offset (as
    exportSettlements and exportAll do), come back each exactly once, in
    either direction and by either date (the server breaks ties on the id);
    2,500 clients created in the same second likewise (exportAll('/clients'))."""
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db
    from satmachineadmin.models import DcaClient, utc_now

    device = "row-limits-paging"
    at = utc_now() - timedelta(days=400)
    settlements = [_settlement(device, at) for _ in range(2_500)]
    await _bulk_insert(db, "satoshimachine.settlements", settlements)
    clients = [
        DcaClient(
            id=urlsafe_short_hash(),
            user_id=urlsafe_short_hash(),
            wallet_id=urlsafe_short_hash(),
            username=f"paging-{i:04d}",
            status="inactive",
            created_at=at,
            updated_at=at,
        )
        for i in range(2_500)
    ]
    await _bulk_insert(db, "satoshimachine.dca_clients", clients)

    async def every(path: str, sortby: str, direction: str, **params) -> list[str]:
        ids: list[str] = []
        for offset in range(0, 10**6, 1000):
            response = await env.api(
                "GET",
                path,
                params={
                    "limit": 1000,
                    "offset": offset,
                    "sortby": sortby,
                    "direction": direction,
                    **params,
                },
            )
            assert response.status_code == 200, response.text
            body = response.json()
            page = body["data"] if isinstance(body, dict) else body
            ids.extend(row["id"] for row in page)
            if len(page) < 1000:
                return ids
        raise AssertionError("never ended")

    try:
        expected = sorted(s.id for s in settlements)
        for sortby in ("paid_at", "created_at"):
            for direction in ("asc", "desc"):
                ids = await every("/settlements", sortby, direction, device_id=device)
                assert len(ids) == 2_500 and sorted(ids) == expected
        response = await env.api(
            "GET", "/export/settlements.csv", params={"device_id": device}
        )
        assert response.status_code == 200
        assert len(response.text.strip().splitlines()) == 1 + 2_500
        wanted = {c.id for c in clients}
        ids = [i for i in await every("/clients", "created_at", "asc") if i in wanted]
        assert len(ids) == 2_500 and set(ids) == wanted
    finally:
        await _delete_settlements([device])
        await db.execute(
            "DELETE FROM satoshimachine.dca_clients WHERE username LIKE :name",
            {"name": "paging-%"},
        )


async def test_alert_conditions_cover_every_row(env):
    """1,500 open orphans each hold an orphan_new condition, and 1,200 clients
    who asked for it, each with an empty balance, each hold a client notice.
    The checks used to read the first 1000 rows: the rest never alerted, and
    an open alert whose row fell past the 1000th was cleared as if fixed."""
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.alerts import current_conditions
    from satmachineadmin.crud import db
    from satmachineadmin.models import (
        AlertSettings,
        DcaClient,
        DcaDeposit,
        DcaPayment,
        Reconciliation,
        utc_now,
    )

    now = utc_now()
    orphans = [
        Reconciliation(
            id=urlsafe_short_hash(),
            settlement_id=urlsafe_short_hash(),
            orphan_sats=10,
            orphan_fiat=Decimal("0.01"),
            fiat_code="GTQ",
            exchange_rate=1.0,
            note="row-limits",
            created_at=now,
            updated_at=now,
        )
        for _ in range(1_500)
    ]
    clients = [
        DcaClient(
            id=urlsafe_short_hash(),
            user_id=urlsafe_short_hash(),
            wallet_id=urlsafe_short_hash(),
            username=f"empty-{i:04d}",
            notify_balance_empty=True,
            created_at=now,
            updated_at=now,
        )
        for i in range(1_200)
    ]
    deposits = [
        DcaDeposit(
            id=urlsafe_short_hash(),
            client_id=c.id,
            amount=Decimal("10.00"),
            status="confirmed",
            created_at=now,
            confirmed_at=now,
        )
        for c in clients
    ]
    payouts = [
        DcaPayment(
            id=urlsafe_short_hash(),
            client_id=c.id,
            amount_sats=1000,
            amount_fiat=Decimal("10.00"),
            exchange_rate=1.0,
            transaction_type="flow",
            status="confirmed",
            currency="GTQ",
            created_at=now,
        )
        for c in clients
    ]
    await _bulk_insert(db, "satoshimachine.reconciliations", orphans)
    await _bulk_insert(db, "satoshimachine.dca_clients", clients)
    await _bulk_insert(db, "satoshimachine.dca_deposits", deposits)
    await _bulk_insert(db, "satoshimachine.dca_payments", payouts)
    try:
        conditions, _ = await current_conditions(AlertSettings(), None, now)
        held = {(c.kind, c.subject) for c in conditions}
        assert {("orphan_new", o.id) for o in orphans} <= held
        assert {("client_balance_empty", f"{c.id}:GTQ") for c in clients} <= held
    finally:
        await db.execute(
            "DELETE FROM satoshimachine.reconciliations WHERE note = :note",
            {"note": "row-limits"},
        )
        # Nothing left behind: other tests list the clients 1000 at a time.
        mine = f"SELECT id FROM {S}.dca_clients WHERE username LIKE :name"
        for table in ("dca_deposits", "dca_payments"):
            await db.execute(
                f"DELETE FROM {S}.{table} WHERE client_id IN ({mine})",
                {"name": "empty-%"},
            )
        await db.execute(
            f"DELETE FROM {S}.dca_clients WHERE username LIKE :name",
            {"name": "empty-%"},
        )


async def test_scheduled_totals_count_every_waiting_payout(env):
    """700 fixed-mode payouts waiting for their slot: the totals are all 700's
    (they used to be the first 500's), the list shows the first 500."""
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db
    from satmachineadmin.models import DcaPayment, utc_now

    now = utc_now()
    client_id = "row-limits-" + urlsafe_short_hash()
    payouts = [
        DcaPayment(
            id=urlsafe_short_hash(),
            client_id=client_id,
            amount_sats=1_000,
            amount_fiat=Decimal("1.25"),
            exchange_rate=1.0,
            transaction_type="fixed",
            status="pending",
            currency="GTQ",
            settlement_id=urlsafe_short_hash(),
            deliver_after=now + timedelta(days=3650),
            created_at=now,
        )
        for _ in range(700)
    ]
    before = (await env.api("GET", "/fixed/scheduled")).json()
    await _bulk_insert(db, "satoshimachine.dca_payments", payouts)
    try:
        response = await env.api("GET", "/fixed/scheduled")
        assert response.status_code == 200, response.text
        after = response.json()
        assert after["scheduled_sats"] - before["scheduled_sats"] == 700_000
        fiat = Decimal(str(after["scheduled_fiat"])) - Decimal(
            str(before["scheduled_fiat"])
        )
        assert fiat == Decimal("875.00")
        assert after["scheduled_count"] - before["scheduled_count"] == 700
        assert len(after["payouts"]) == 500
    finally:
        await db.execute(
            "DELETE FROM satoshimachine.dca_payments WHERE client_id = :c",
            {"c": client_id},
        )


async def test_drift_finds_a_quiet_machines_cassettes(env):
    """A busy bitSpire machine's 600 newest reports used to hide a quiet
    machine's older one (only the newest 500 were read): its cash went
    missing from the drift."""
    from satmachineadmin.crud import db
    from satmachineadmin.drift import bitspire_machines
    from satmachineadmin.models import utc_now

    now = utc_now()
    extra = json.dumps(
        {
            "payment_extra": {
                "cassettes": [{"denomination": 100, "count": 3, "currency": "GTQ"}]
            }
        }
    )
    quiet = _settlement(
        "row-limits-quiet",
        now - timedelta(days=2),
        data_source="bitspire",
        cash_out_data=extra,
        fiat_code="GTQ",
    )
    busy = [
        _settlement(
            "row-limits-busy",
            now - timedelta(minutes=i),
            data_source="bitspire",
            cash_out_data=extra,
            fiat_code="GTQ",
        )
        for i in range(600)
    ]
    await _bulk_insert(db, "satoshimachine.settlements", [quiet, *busy])
    try:
        devices = {m["machine"] for m in await bitspire_machines()}
        assert {"row-limits-quiet", "row-limits-busy"} <= devices
    finally:
        await _delete_settlements(["row-limits-quiet", "row-limits-busy"])


async def test_alerts_past_a_sending_batch_go_out_on_the_next_pass(env, monkeypatch):
    """Sending takes at most 500 unsent alerts per pass (get_unsent_alerts): a
    deliberate batch, each alert claimed before it goes. The next pass (every
    recovery pass sends) takes the rest: 600 alerts are all sent in two
    passes, none twice."""
    from satmachineadmin import alerts
    from satmachineadmin.crud import db
    from satmachineadmin.messages import Message
    from satmachineadmin.models import AlertSettings, utc_now

    now = utc_now()
    batch = [
        alerts.new_alert(
            "missed_payment",
            f"row-limits-{i:04d}",
            Message(
                "alert.missed_payment.message",
                {"sats": "1", "paid_at": "2026-01-01 00:00", "settlement": "x"},
            ),
            None,
            now - timedelta(minutes=1),
        )
        for i in range(600)
    ]
    await _bulk_insert(db, "satoshimachine.alerts", batch)
    sent: list[str] = []

    async def send_admin(text: str) -> None:
        sent.append(text)

    monkeypatch.setattr(alerts, "_send_admin", send_admin)

    async def unsent() -> int:
        row = await db.fetchone(
            "SELECT COUNT(*) AS n FROM satoshimachine.alerts "
            "WHERE subject LIKE :s AND sent_at IS NULL",
            {"s": "row-limits-%"},
        )
        return int(row["n"])

    settings = AlertSettings(digest_after=100)
    try:
        await alerts.send_pending(settings)
        assert await unsent() == 100  # the first pass: a batch of 500
        assert len(sent) == 1 and "500 new alerts" in sent[0]  # one summary
        await alerts.send_pending(settings)
        assert await unsent() == 0  # the next pass: the rest (100: one each)
        assert len(sent) == 101
        await alerts.send_pending(settings)
        assert len(sent) == 101  # nothing sent twice
    finally:
        await db.execute(
            "DELETE FROM satoshimachine.alerts WHERE subject LIKE :s",
            {"s": "row-limits-%"},
        )


async def test_statements_hold_every_purchase_and_every_client(env):
    """A client with 1,500 purchases in the year gets all 1,500 in the
    statement (CSV), and the 'all clients' zip has a file for each of 1,100
    clients: the statements read without a cap."""
    import io
    import zipfile

    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db
    from satmachineadmin.models import DcaClient, DcaPayment, utc_now

    now = utc_now()
    at = now - timedelta(days=1)
    clients = [
        DcaClient(
            id=urlsafe_short_hash(),
            user_id=urlsafe_short_hash(),
            wallet_id=urlsafe_short_hash(),
            username=f"statement-{i:04d}",
            status="inactive",
            created_at=at,
            updated_at=at,
        )
        for i in range(1_100)
    ]
    buyer = clients[0]
    purchases = [
        DcaPayment(
            id=urlsafe_short_hash(),
            client_id=buyer.id,
            amount_sats=1_000 + i,
            amount_fiat=Decimal("1.00"),
            exchange_rate=1.0,
            transaction_type="flow",
            status="confirmed",
            currency="GTQ",
            created_at=at,
        )
        for i in range(1_500)
    ]
    await _bulk_insert(db, "satoshimachine.dca_clients", clients)
    await _bulk_insert(db, "satoshimachine.dca_payments", purchases)
    day = at.date().isoformat()
    try:
        response = await env.api(
            "GET", f"/statements/{buyer.id}", params={"from": day, "to": day}
        )
        assert response.status_code == 200, response.text
        lines = response.text.splitlines()
        for purchase in purchases:  # each purchase's line: its sats are unique
            assert sum(f'"{purchase.amount_sats:,}"' in line for line in lines) == 1
        assert 'Total spent,"Q1,500.00"' in response.text
        response = await env.api("GET", "/statements", params={"from": day, "to": day})
        assert response.status_code == 200, response.text
        names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
        assert all(any(c.id in n for n in names) for c in clients)
    finally:
        await db.execute(
            "DELETE FROM satoshimachine.dca_payments WHERE client_id = :c",
            {"c": buyer.id},
        )
        await db.execute(
            "DELETE FROM satoshimachine.dca_clients WHERE username LIKE :name",
            {"name": "statement-%"},
        )


async def test_the_chart_sums_every_settlement_of_a_day(env):
    """The overview chart's figures are summed on the server over every
    settlement in the window: 1,500 split settlements on one day count."""
    from satmachineadmin.crud import db
    from satmachineadmin.models import utc_now

    day = (utc_now() - timedelta(days=5)).replace(hour=12, minute=0, second=0)
    device = "row-limits-chart"

    async def sats_that_day() -> int:
        response = await env.api("GET", "/stats/distributed-per-day?days=90")
        assert response.status_code == 200, response.text
        per_day = {row["day"]: row["sats"] for row in response.json()}
        return per_day.get(day.date().isoformat(), 0)

    before = await sats_that_day()
    settlements = [
        _settlement(device, day, status="completed", distributed_sats=10)
        for _ in range(1_500)
    ]
    await _bulk_insert(db, "satoshimachine.settlements", settlements)
    try:
        assert await sats_that_day() - before == 15_000
    finally:
        await _delete_settlements([device])
