"""Upgrading from the old extension never re-pays its past (issue 10 part 4).

* Payments into the source wallet from before this extension first ran (the
  upgrade line) are recorded as `before_upgrade` by the recovery scan and split
  only if the operator processes them; the operator may dismiss them instead.
* A cash-out whose Lamassu id the old extension recorded (`lamassu_transactions`,
  or `dca_payments` rows without a settlement) is never split again, whether its
  data comes from a lookup or is typed in by the operator.
"""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal

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


async def _set_line(moment: datetime) -> None:
    from satmachineadmin.crud import db

    await db.execute(
        "UPDATE satoshimachine.upgrade_line SET first_run_at = "
        f"{db.timestamp_placeholder('at')} WHERE id = 'line'",
        {"at": moment},
    )


@asynccontextmanager
async def _line_after_now():
    """Pretend this extension first ran just now, i.e. after every payment made
    so far; the real line is put back afterwards."""
    from satmachineadmin.upgrade_line import get_first_run_at

    original = await get_first_run_at()
    moved = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
    await _set_line(moved)
    try:
        yield moved
    finally:
        await _set_line(original)


async def _scan_as_source(env, wallet_id: str) -> None:
    """Make `wallet_id` the source wallet and run the recovery pass (the scan
    looks back over payments made before, as on the first start)."""
    from satmachineadmin import crud

    config = await crud.get_config()
    assert config
    response = await env.api(
        "PUT", f"/config/{config.id}", json={"source_wallet_id": wallet_id}
    )
    assert response.status_code == 200, response.text
    response = await env.api("POST", "/manual-poll")
    assert response.status_code == 200, response.text


async def _insert_old_lamassu_transaction(lamassu_id: str, sats: int) -> None:
    """A cash-out the old extension processed, as it recorded it."""
    from satmachineadmin.crud import db

    t = db.timestamp_placeholder("t")
    await db.execute(
        "INSERT INTO satoshimachine.lamassu_transactions (id, "
        "lamassu_transaction_id, fiat_amount, crypto_amount, "
        "commission_percentage, discount, effective_commission, "
        "commission_amount_sats, base_amount_sats, exchange_rate, crypto_code, "
        "fiat_code, device_id, transaction_time, processed_at, clients_count, "
        "distributions_total_sats) VALUES (:id, :lid, 100, :sats, 0.05, 0, 0.05, "
        f":fee, :base, 1, 'LN', 'GTQ', 'dev1', {t}, {t}, 1, :base)",
        {
            "id": uuid.uuid4().hex,
            "lid": lamassu_id,
            "sats": sats,
            "fee": sats // 20,
            "base": sats - sats // 20,
            "t": datetime.now(timezone.utc),
        },
    )


async def _insert_old_payment(lamassu_id: str, client_id: str) -> None:
    """A payment the old extension made (or tried) for a Lamassu cash-out: no
    settlement. Failed, as in the seed incident, so it takes no balance."""
    from satmachineadmin.crud import db

    t = db.timestamp_placeholder("t")
    await db.execute(
        "INSERT INTO satoshimachine.dca_payments (id, client_id, amount_sats, "
        "amount_fiat, exchange_rate, transaction_type, lamassu_transaction_id, "
        "payment_hash, status, created_at, transaction_time, currency) VALUES "
        f"(:id, :client, 9500, 95, 100, 'flow', :lid, NULL, 'failed', {t}, {t}, "
        "'GTQ')",
        {
            "id": uuid.uuid4().hex,
            "client": client_id,
            "lid": lamassu_id,
            "t": datetime.now(timezone.utc),
        },
    )


async def test_payments_before_the_line_wait_for_the_operator(env):
    from satmachineadmin import crud
    from satmachineadmin import transaction_processor as tp

    await _deactivate_all_clients(env)
    _source, commission, payer, clients = await _setup(env, ["100"])
    client_wallet = clients[0][1]
    old_source = await env.wallet("the old extension's source")
    await env.fund(payer.id, 40_000)
    hashes = [
        await env.pay(
            payer.id, old_source.id, 10_000, extra={**EXTRA, "txid": f"old-{i}"}
        )
        for i in range(2)
    ]
    await env.settle()
    summary_before = (await env.api("GET", "/summary")).json()

    async with _line_after_now() as line:
        await _scan_as_source(env, old_source.id)
        # Found by the scan, recorded, and not split: no sat moved.
        settlements = [await crud.get_settlement_by_hash(h) for h in hashes]
        assert all(s and s.status == "before_upgrade" for s in settlements), [
            s and (s.status, s.status_detail) for s in settlements
        ]
        assert await env.balance(old_source.id) == 20_000
        assert await env.balance(client_wallet.id) == 0
        assert await env.balance(commission.id) == 0

        # The operator's list: the line, and what was paid before it.
        response = await env.api("GET", "/upgrade-line")
        assert response.status_code == 200, response.text
        body = response.json()
        assert datetime.fromisoformat(body["first_run_at"]) == line
        listed = {s["payment_hash"]: s for s in body["data"]}
        assert set(hashes) <= set(listed)
        assert body["total"] >= 2
        assert all(s["status"] == "before_upgrade" for s in body["data"])

    # Nothing in the processing or recovery path advances them.
    first, second = (s.id for s in settlements if s)
    await tp.process_open_settlements()
    await env.api("POST", "/manual-poll")
    for settlement_id in (first, second):
        response = await env.api("POST", f"/settlements/{settlement_id}/retry")
        assert response.status_code == 409, response.text
        response = await env.api(
            "PUT",
            f"/settlements/{settlement_id}/cash-out",
            json={"fiat_amount": "95", "principal_sats": 9_500},
        )
        assert response.status_code == 409, response.text
        settlement = await crud.get_settlement(settlement_id)
        assert settlement and settlement.status == "before_upgrade"
    assert await env.balance(old_source.id) == 20_000
    assert await env.balance(client_wallet.id) == 0
    summary = (await env.api("GET", "/summary")).json()
    assert summary["settled_sats"] == summary_before["settled_sats"]
    assert summary["commission_sats"] == summary_before["commission_sats"]
    assert summary["settlements_by_status"]["before_upgrade"] >= 2

    # Process one: it is split once, like a new settlement.
    response = await env.api("POST", f"/upgrade-line/{first}/process")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed", response.json()
    assert await env.balance(client_wallet.id) == 9_500
    assert await env.balance(commission.id) == 500
    again = await env.api("POST", f"/upgrade-line/{first}/process")
    assert again.status_code == 409, again.text
    dismiss = await env.api(
        "POST", f"/upgrade-line/{first}/dismiss", json={"reason": "too late"}
    )
    assert dismiss.status_code == 409, dismiss.text

    # Dismiss the other: never split, its sats stay in the source wallet.
    response = await env.api(
        "POST", f"/upgrade-line/{second}/dismiss", json={"reason": ""}
    )
    assert response.status_code == 400  # a reason is required
    response = await env.api(
        "POST",
        f"/upgrade-line/{second}/dismiss",
        json={"reason": "the old extension split it"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "dismissed"
    again = await env.api(
        "POST", f"/upgrade-line/{second}/dismiss", json={"reason": "again"}
    )
    assert again.status_code == 409, again.text
    again = await env.api("POST", f"/upgrade-line/{second}/process")
    assert again.status_code == 409, again.text

    await tp.process_open_settlements()
    assert await env.balance(client_wallet.id) == 9_500
    assert await env.balance(commission.id) == 500
    assert await env.balance(old_source.id) == 10_000
    listed = (await env.api("GET", "/upgrade-line")).json()["data"]
    assert not {s["id"] for s in listed} & {first, second}
    detail = (await env.api("GET", f"/settlements/{second}")).json()
    assert detail["review_note"] == "the old extension split it"
    assert detail["reviewed_by"] == env.super_user_id
    actions = {
        sid: [entry.action for entry in await crud.get_audit("settlement", sid)]
        for sid in (first, second)
    }
    assert actions == {
        first: ["process_before_upgrade"],
        second: ["dismissed_before_upgrade"],
    }
    response = await env.api("POST", "/upgrade-line/no-such-settlement/process")
    assert response.status_code == 404


async def test_payments_after_the_line_are_split_as_usual(env):
    """The line holds back only the past: a payment after it is split."""
    from satmachineadmin import crud
    from satmachineadmin.upgrade_line import get_first_run_at

    await _deactivate_all_clients(env)
    source, _commission, payer, clients = await _setup(env, ["100"])
    assert await get_first_run_at() <= datetime.now(timezone.utc)
    await env.fund(payer.id, 20_000)
    payment_hash = await env.pay(
        payer.id, source.id, 10_000, extra={**EXTRA, "txid": "after-line"}
    )
    await env.settle()
    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement and settlement.status == "completed", settlement
    assert await env.balance(clients[0][1].id) == 9_500


@pytest.mark.parametrize("old_table", ["lamassu_transactions", "dca_payments"])
async def test_typed_cash_out_with_an_old_lamassu_id_is_never_split(env, old_table):
    from satmachineadmin import crud

    await _deactivate_all_clients(env)
    source, commission, payer, clients = await _setup(env, ["100"])
    await env.fund(payer.id, 20_000)
    # A plain invoice, as legacy lamassu-server makes: nothing explains it.
    payment_hash = await env.pay(payer.id, source.id, 10_000)
    await env.settle()
    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement and settlement.status == "waiting_data", settlement

    lamassu_id = str(uuid.uuid4())
    if old_table == "lamassu_transactions":
        await _insert_old_lamassu_transaction(lamassu_id, 10_000)
    else:
        await _insert_old_payment(lamassu_id, clients[0][0]["id"])
    response = await env.api(
        "PUT",
        f"/settlements/{settlement.id}/cash-out",
        json={
            "fiat_amount": "95",
            "principal_sats": 9_500,
            "lamassu_transaction_id": lamassu_id.upper(),  # case does not matter
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "dismissed", body
    assert "old extension" in body["status_detail"] and old_table in (
        body["status_detail"]
    )
    assert await env.balance(clients[0][1].id) == 0
    assert await env.balance(commission.id) == 0
    assert await env.balance(source.id) == 10_000
    assert (await env.api("GET", f"/settlements/{settlement.id}")).json()[
        "payouts"
    ] == []

    # Asking again changes nothing: the settlement is final.
    for method, path, payload in (
        ("POST", f"/settlements/{settlement.id}/retry", None),
        (
            "PUT",
            f"/settlements/{settlement.id}/cash-out",
            {"fiat_amount": "95", "principal_sats": 9_500},
        ),
        ("POST", f"/upgrade-line/{settlement.id}/process", None),
    ):
        response = await env.api(method, path, json=payload)
        assert response.status_code == 409, (path, response.text)
    assert await env.balance(clients[0][1].id) == 0
    assert await env.balance(source.id) == 10_000
    audit = await crud.get_audit("settlement", settlement.id)
    assert sorted(entry.action for entry in audit) == [
        "cash_out_entered",
        "dismissed_old_lamassu_id",
    ]


async def test_processing_a_cash_out_the_old_extension_split_is_refused(env):
    """The issue's case: a 10,500-sat Lamassu sale the old extension split,
    found again by the first scan. The operator processes it; the Lamassu
    lookup names the old cash-out, and it is not split a second time."""
    from satmachineadmin import crud
    from satmachineadmin import transaction_processor as tp
    from satmachineadmin.lamassu import LamassuCashOut
    from satmachineadmin.lamassu_source import cash_out_to_lookup

    await _deactivate_all_clients(env)
    _source, commission, payer, clients = await _setup(env, ["100"])
    old_source = await env.wallet("the old extension's source, again")
    await env.fund(payer.id, 20_000)
    payment_hash = await env.pay(payer.id, old_source.id, 10_500)
    await env.settle()
    lamassu_id = str(uuid.uuid4())
    await _insert_old_lamassu_transaction(lamassu_id, 10_500)

    class OldCashOutSource:
        """Lamassu's `cash_out_txs` row for this payment (dispensed)."""

        name = "lamassu-test"

        async def lookup(self, settlement, payment_extra, config):
            if settlement.payment_hash != payment_hash:
                return None
            row = LamassuCashOut(
                id=lamassu_id,
                device_id="atm-1",
                to_address=settlement.bolt11,
                crypto_atoms=10_500,
                crypto_code="LN",
                fiat=Decimal("100"),
                fiat_code="GTQ",
                status="confirmed",
                dispense=True,
                dispense_confirmed=True,
                error=None,
                commission_percentage=Decimal("0.05"),
                raw_ticker_price=None,
                discount=Decimal("0"),
                fixed_fee=None,
                created=datetime.now(timezone.utc),
                confirmed_at=None,
            )
            return cash_out_to_lookup(settlement, row)

    async with _line_after_now():
        await _scan_as_source(env, old_source.id)
    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement and settlement.status == "before_upgrade", settlement

    source = OldCashOutSource()
    tp.cash_out_sources.append(source)
    try:
        response = await env.api("POST", f"/upgrade-line/{settlement.id}/process")
    finally:
        tp.cash_out_sources.remove(source)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "dismissed", body
    assert body["lamassu_transaction_id"] == lamassu_id
    assert "never split again" in body["status_detail"]
    await tp.process_open_settlements()
    assert await env.balance(clients[0][1].id) == 0
    assert await env.balance(commission.id) == 0
    assert await env.balance(old_source.id) == 10_500
