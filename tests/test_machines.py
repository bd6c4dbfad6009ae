"""Several ATMs and commission partners (#14), end to end on a real LNbits:
two machines paying into two source wallets, per-machine figures, filters and
CSV columns; a commission split three ways to the sat; a partner payout that
fails and is retried; recipients refused with a clear error; the upgrade from
the single commission wallet."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from api_helpers import add_deposit, bitspire_extra, fresh_currency, register_client
from test_settlement_flow import _deactivate_all_clients

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _extra(cur: str, principal: int, fee: int, txid: str, npub: str | None) -> dict:
    more = {"machine_npub": npub} if npub else {}
    return bitspire_extra(principal, fee, txid=txid, currency=cur, **more)


async def _settlement(env, payment_hash: str) -> dict:
    from satmachineadmin import crud

    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement, payment_hash
    response = await env.api("GET", f"/settlements/{settlement.id}")
    assert response.status_code == 200, response.text
    return response.json()


def _conserved(detail: dict) -> None:
    paid = sum(
        p["amount_sats"] for p in detail["payouts"] if p["status"] != "cancelled"
    )
    parts = detail["commission_payouts"]
    assert sum(p["amount_sats"] for p in parts) == detail["commission_sats"]
    assert paid + detail["commission_sats"] + (detail["orphan_sats"] or 0) == (
        detail["amount_sats"]
    )


async def _three_partners(env) -> list:
    wallets = [await env.wallet(f"partner {i}") for i in range(3)]
    response = await env.api(
        "PUT",
        "/commission-recipients",
        json={
            "recipients": [
                {"wallet_id": wallets[0].id, "percent": "60", "label": "operator"},
                {"wallet_id": wallets[1].id, "percent": 30, "label": "host"},
                {"wallet_id": wallets[2].id, "percent": "10.0", "label": "partner"},
            ]
        },
    )
    assert response.status_code == 200, response.text
    assert [r["percent"] for r in response.json()] == ["60", "30", "10"]
    return wallets


async def _reset_recipients(env) -> None:
    response = await env.api("PUT", "/commission-recipients", json={"recipients": []})
    assert response.status_code == 200, response.text


async def test_two_machines_two_source_wallets(env):
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    main_source = await env.wallet("main source")
    second_source = await env.wallet("second source")
    payer = await env.wallet("atm customer")
    await env.fund(payer.id, 100_000)
    response = await env.api(
        "POST", "/config", json={"source_wallet_id": main_source.id}
    )
    assert response.status_code == 201, response.text
    partners = await _three_partners(env)
    client = await register_client(env)
    await add_deposit(env, client["id"], "30", cur, confirm=True)
    npub_one, npub_two = f"npub1one{cur}", f"npub1two{cur}"

    # The second machine is added by hand with a source wallet of its own.
    response = await env.api(
        "POST",
        "/machines",
        json={
            "device_id": npub_two,
            "name": "Mall",
            "location": "Zona 10",
            "source_wallet_id": second_source.id,
        },
    )
    assert response.status_code == 201, response.text
    second = response.json()
    assert second["is_new"] is False
    # A source wallet may not be a commission recipient's or a client's.
    response = await env.api(
        "POST",
        "/machines",
        json={"device_id": "x" + cur, "source_wallet_id": partners[0].id},
    )
    assert response.status_code == 400, response.text

    # Machine one pays into the configured wallet; machine two into its own,
    # and its payment names no machine: the wallet says which it is.
    hash_one = await env.pay(
        payer.id,
        main_source.id,
        10_000,
        extra=_extra(cur, 9_000, 1_000, "m-one", npub_one),
    )
    await env.settle()
    hash_two = await env.pay(
        payer.id,
        second_source.id,
        20_000,
        extra=_extra(cur, 19_000, 1_000, "m-two", None),
    )
    await env.settle()
    one = await _settlement(env, hash_one)
    two = await _settlement(env, hash_two)
    for detail in (one, two):
        assert detail["status"] == "completed", detail["status_detail"]
        _conserved(detail)
        parts = detail["commission_payouts"]
        assert [p["amount_sats"] for p in parts] == [600, 300, 100]
        assert all(p["status"] == "confirmed" for p in parts)
    assert one["device_id"] == npub_one and one["wallet_id"] == main_source.id
    assert two["device_id"] == npub_two and two["wallet_id"] == second_source.id
    assert two["machine_name"] == "Mall"
    # The client's 30.00 all went at machine one (90.00 dispensed there);
    # machine two's 190.00 is all orphan.
    assert [p["amount_sats"] for p in one["payouts"]] == [3_000]
    assert one["orphan_sats"] == 6_000
    assert two["payouts"] == [] and two["orphan_sats"] == 19_000
    # Each settlement paid from the wallet it arrived in.
    assert await env.balance(main_source.id) == 6_000
    assert await env.balance(second_source.id) == 19_000
    assert [await env.balance(w.id) for w in partners] == [1_200, 600, 200]

    # Machine one was seen for the first time: listed as new, to be named.
    machines = (await env.api("GET", "/machines", params={"new": "true"})).json()
    [first] = [m for m in machines if m["device_id"] == npub_one]
    assert first["is_new"] and first["source_wallet_id"] == main_source.id
    response = await env.api(
        "PUT", f"/machines/{first['id']}", json={"name": "Airport", "location": "T1"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["is_new"] is False
    machines = {m["device_id"]: m for m in (await env.api("GET", "/machines")).json()}
    figures = machines[npub_one]["figures"]
    assert figures["settled_sats"] == 10_000 and figures["commission_sats"] == 1_000
    assert figures["distributed_sats"] == 3_000 and figures["waiting"] == 0
    figures = machines[npub_two]["figures"]
    assert figures["settled_sats"] == 20_000
    assert figures["open_orphan_sats"] == two["orphan_sats"]
    summary = (await env.api("GET", "/summary")).json()
    by_device = {m["device_id"]: m for m in summary["machines"]}
    assert by_device[npub_one]["name"] == "Airport"
    assert by_device[npub_two]["distributed_sats"] == two["distributed_sats"]

    # Filters: settlements, payouts, reconciliations of one machine.
    page = (await env.api("GET", "/settlements", params={"device_id": npub_two})).json()
    assert [s["id"] for s in page["data"]] == [two["id"]]
    assert page["data"][0]["machine_name"] == "Mall"
    page = (await env.api("GET", "/payouts", params={"device_id": npub_one})).json()
    assert [p["settlement_id"] for p in page["data"]] == [one["id"]]
    assert all(p["machine_name"] == "Airport" for p in page["data"])
    page = (
        await env.api("GET", "/reconciliations", params={"device_id": npub_two})
    ).json()
    assert [r["settlement_id"] for r in page["data"]] == [two["id"]]
    assert page["data"][0]["device_id"] == npub_two
    # CSV: a machine column everywhere, and the same filter.
    for name, key, detail, machine in (
        ("settlements", "id", two, "Mall"),
        ("payouts", "settlement_id", one, "Airport"),
        ("reconciliations", "settlement_id", two, "Mall"),
    ):
        response = await env.api(
            "GET", f"/export/{name}.csv", params={"device_id": detail["device_id"]}
        )
        assert response.status_code == 200, response.text
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert rows and {r[key] for r in rows} == {detail["id"]}, name
        assert {r["device_id"] for r in rows} == {detail["device_id"]}
        assert {r["machine_name"] for r in rows} == {machine}
    await _reset_recipients(env)


async def test_machine_recipients_override_and_dry_run(env):
    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source = await env.wallet("source")
    payer = await env.wallet("payer")
    await env.fund(payer.id, 50_000)
    host = await env.wallet("host")
    operator = await env.wallet("operator")
    response = await env.api(
        "POST",
        "/config",
        json={"source_wallet_id": source.id, "commission_wallet_id": operator.id},
    )
    assert response.status_code == 201, response.text
    # Upgrade path: the single commission wallet is the 100 % recipient.
    [single] = (await env.api("GET", "/commission-recipients")).json()
    assert single["wallet_id"] == operator.id and single["percent"] == "100"
    npub = f"npub1own{cur}"
    response = await env.api("POST", "/machines", json={"device_id": npub})
    machine = response.json()
    response = await env.api(
        "PUT",
        f"/machines/{machine['id']}/commission-recipients",
        json={
            "recipients": [
                {"wallet_id": operator.id, "percent": "66.6667"},
                {"wallet_id": host.id, "percent": "33.3333"},
            ]
        },
    )
    assert response.status_code == 200, response.text
    # The dry run shows the split of that machine (and the global one).
    dry = {
        "amount_sats": 10_001,
        "fiat_amount": "90",
        "fiat_code": cur,
        "commission_percentage": "0.1",
        "raw_ticker_price": "1000000",
    }
    response = await env.api(
        "POST", "/test-transaction", json={**dry, "device_id": npub}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["sats"] for p in body["commission_parts"]] == [667, 334]
    assert sum(p["sats"] for p in body["commission_parts"]) == body["commission_sats"]
    body = (await env.api("POST", "/test-transaction", json=dry)).json()
    assert [(p["wallet_id"], p["sats"]) for p in body["commission_parts"]] == [
        (operator.id, 1_001)
    ]

    payment_hash = await env.pay(
        payer.id, source.id, 10_001, extra=_extra(cur, 9_000, 1_001, "own", npub)
    )
    await env.settle()
    detail = await _settlement(env, payment_hash)
    assert detail["status"] == "completed", detail["status_detail"]
    assert [
        (p["wallet_id"], p["amount_sats"]) for p in detail["commission_payouts"]
    ] == [
        (operator.id, 667),
        (host.id, 334),
    ]
    assert await env.balance(host.id) == 334
    # Commission parts are never a client's DCA purchase.
    from satmachineadmin.crud import db

    row = await db.fetchone(
        "SELECT COUNT(*) AS n FROM satoshimachine.dca_payments "
        "WHERE settlement_id = :id",
        {"id": detail["id"]},
    )
    assert int(row["n"]) == 0


async def test_partner_payout_fails_and_is_retried(env, monkeypatch):
    from satmachineadmin import transaction_processor

    await _deactivate_all_clients(env)
    cur = fresh_currency()
    source = await env.wallet("source")
    payer = await env.wallet("payer")
    await env.fund(payer.id, 50_000)
    response = await env.api("POST", "/config", json={"source_wallet_id": source.id})
    assert response.status_code == 201, response.text
    partners = await _three_partners(env)
    real_pay = transaction_processor.pay_invoice
    failures = []

    async def flaky_pay(**kw):
        extra = kw.get("extra") or {}
        if extra.get("kind") == "commission" and not failures:
            from satmachineadmin.machines import get_commission_payout

            part = await get_commission_payout(extra["commission_payout_id"])
            if part and part.wallet_id == partners[2].id:
                failures.append(part.id)
                raise RuntimeError("route temporarily unavailable")
        return await real_pay(**kw)

    monkeypatch.setattr(transaction_processor, "pay_invoice", flaky_pay)
    payment_hash = await env.pay(
        payer.id, source.id, 10_000, extra=_extra(cur, 9_000, 1_000, "flaky", None)
    )
    await env.settle()
    detail = await _settlement(env, payment_hash)
    assert detail["status"] == "payout_failed", detail
    assert detail["commission_status"] == "failed"
    parts = detail["commission_payouts"]
    assert [p["status"] for p in parts] == ["confirmed", "confirmed", "failed"]
    assert "temporarily unavailable" in parts[2]["error"]
    assert [await env.balance(w.id) for w in partners] == [600, 300, 0]
    history = (
        await env.api("GET", f"/commission-payouts/{parts[2]['id']}/history")
    ).json()
    assert [h["action"] for h in history] == ["failed"]
    # A confirmed part cannot be retried; the failed one can, once.
    response = await env.api("POST", f"/commission-payouts/{parts[0]['id']}/retry")
    assert response.status_code == 409
    response = await env.api("POST", f"/commission-payouts/{parts[2]['id']}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    detail = await _settlement(env, payment_hash)
    assert all(p["status"] == "confirmed" for p in detail["commission_payouts"])
    assert detail["commission_status"] == "confirmed"
    assert detail["commission_payouts"][2]["attempts"] == 2
    assert [await env.balance(w.id) for w in partners] == [600, 300, 100]
    response = await env.api("POST", f"/commission-payouts/{parts[2]['id']}/retry")
    assert response.status_code == 409
    assert [await env.balance(w.id) for w in partners] == [600, 300, 100]
    _conserved(detail)
    await _reset_recipients(env)


async def test_recipients_are_validated_and_nothing_changes_on_error(env):
    source = await env.wallet("source")
    response = await env.api("POST", "/config", json={"source_wallet_id": source.id})
    assert response.status_code == 201, response.text
    a, b = await env.wallet("a"), await env.wallet("b")
    good = {
        "recipients": [
            {"wallet_id": a.id, "percent": "50.5"},
            {"wallet_id": b.id, "percent": "49.5"},
        ]
    }
    response = await env.api("PUT", "/commission-recipients", json=good)
    assert response.status_code == 200, response.text
    before = (await env.api("GET", "/commission-recipients")).json()
    bad_sets = {
        "not 100": [
            {"wallet_id": a.id, "percent": "60"},
            {"wallet_id": b.id, "percent": "30"},
        ],
        "five places": [
            {"wallet_id": a.id, "percent": "50.00001"},
            {"wallet_id": b.id, "percent": "49.99999"},
        ],
        "unknown wallet": [{"wallet_id": "0" * 32, "percent": "100"}],
        "source wallet": [{"wallet_id": source.id, "percent": "100"}],
        "twice": [
            {"wallet_id": a.id, "percent": "50"},
            {"wallet_id": a.id, "percent": "50"},
        ],
        "negative": [
            {"wallet_id": a.id, "percent": "-10"},
            {"wallet_id": b.id, "percent": "110"},
        ],
        "not a number": [{"wallet_id": a.id, "percent": "all"}],
    }
    for name, recipients in bad_sets.items():
        response = await env.api(
            "PUT", "/commission-recipients", json={"recipients": recipients}
        )
        assert response.status_code == 400, (name, response.text)
        assert response.json()["detail"], name
    response = await env.api(
        "PUT",
        "/commission-recipients",
        json={"recipients": bad_sets["not 100"]},
    )
    assert "90 %" in response.json()["detail"]
    assert (await env.api("GET", "/commission-recipients")).json() == before
    response = await env.api("PUT", "/machines/nope/commission-recipients", json=good)
    assert response.status_code == 404
    await _reset_recipients(env)


async def test_upgrade_turns_the_single_commission_into_a_part(env):
    """A settlement the single-wallet processor planned (commission pending,
    its invoice stored) before the upgrade: m016 makes it a 100 % part that
    keeps that invoice, and the retry pays the part once (with a new invoice:
    a stored one waiting for a retry is made unpayable, never paid; see
    test_a_stored_invoice_lnbits_listed_is_replaced_not_paid)."""
    from lnbits.core.services import create_invoice
    from lnbits.helpers import urlsafe_short_hash
    from satmachineadmin.crud import db
    from satmachineadmin.migrations import m016_machines_and_commission_recipients
    from satmachineadmin.models import Settlement, utc_now
    from satmachineadmin.transaction_processor import _already_paid

    source = await env.wallet("old source")
    commission = await env.wallet("old commission")
    await env.fund(source.id, 700)
    response = await env.api(
        "POST",
        "/config",
        json={"source_wallet_id": source.id, "commission_wallet_id": commission.id},
    )
    assert response.status_code == 201, response.text
    invoice = await create_invoice(
        wallet_id=commission.id,
        amount=700,
        memo="ATM commission",
        internal=True,
        extra={"tag": "satmachineadmin"},
    )
    now = utc_now()
    device = f"old-device-{urlsafe_short_hash()}"
    settlement = Settlement(
        id=urlsafe_short_hash(),
        payment_hash=urlsafe_short_hash(),
        wallet_id=source.id,
        amount_sats=700,
        paid_at=now,
        status="payout_failed",
        fiat_amount=Decimal("0"),
        fiat_code="GTQ",
        principal_sats=0,
        commission_sats=700,
        orphan_sats=0,
        distributed_sats=0,
        device_id=device,
        commission_wallet_id=commission.id,
        commission_status="failed",
        commission_bolt11=invoice.bolt11,
        commission_payment_hash=invoice.payment_hash,
        commission_error="Insufficient balance.",
        created_at=now,
        updated_at=now,
    )
    await db.insert("satoshimachine.settlements", settlement)
    async with db.connect() as conn:
        await m016_machines_and_commission_recipients(conn)
        await m016_machines_and_commission_recipients(conn)  # idempotent
    detail = (await env.api("GET", f"/settlements/{settlement.id}")).json()
    [part] = detail["commission_payouts"]
    assert part["percent"] == "100" and part["amount_sats"] == 700
    assert part["wallet_id"] == commission.id and part["status"] == "failed"
    assert part["payment_hash"] == invoice.payment_hash
    machines = (await env.api("GET", "/machines")).json()
    assert [m for m in machines if m["device_id"] == device]
    response = await env.api("POST", f"/settlements/{settlement.id}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert await env.balance(commission.id) == 700
    detail = (await env.api("GET", f"/settlements/{settlement.id}")).json()
    paid_with = detail["commission_payouts"][0]["payment_hash"]
    assert paid_with != invoice.payment_hash and await _already_paid(paid_with)
    assert not await _already_paid(invoice.payment_hash)
    assert detail["commission_status"] == "confirmed"


async def test_a_source_wallet_is_never_a_client_wallet(env):
    """A machine's own source wallet (or the configured one) is refused as a
    client's wallet, at registration and on a wallet change: payouts to it
    would only move the operator's sats between the operator's wallets."""
    from api_helpers import register_client

    client = await register_client(env)
    # A second wallet of the client's own user becomes a machine's source
    # wallet: the client may not move to it.
    machine_wallet = await env.wallet("machine source", user_id=client["user_id"])
    response = await env.api(
        "POST",
        "/machines",
        json={"device_id": "npub1guard", "source_wallet_id": machine_wallet.id},
    )
    assert response.status_code == 201, response.text
    config = (await env.api("GET", "/config")).json() or {}
    sources = [machine_wallet.id]
    if config.get("source_wallet_id"):
        sources.append(config["source_wallet_id"])
    for wallet_id in sources:
        response = await env.api(
            "POST", "/clients", json={"wallet_id": wallet_id, "username": "x"}
        )
        assert response.status_code == 400, response.text
        assert "source wallet" in response.json()["detail"]
    response = await env.api(
        "PUT", f"/clients/{client['id']}", json={"wallet_id": machine_wallet.id}
    )
    assert response.status_code == 400, response.text
    assert "source wallet" in response.json()["detail"]
    unchanged = (await env.api("GET", f"/clients/{client['id']}")).json()
    assert unchanged["wallet_id"] == client["wallet_id"]
