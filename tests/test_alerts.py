"""Alerts through LNbits' own notification channels, received by a real SMTP
server on 127.0.0.1 configured as LNbits' email channel: the operator's (and
a client's) mailbox gets exactly the expected alerts, once each, and never a
secret."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import timedelta

import pytest
import pytest_asyncio
from api_helpers import (
    add_deposit,
    bitspire_extra,
    fresh_currency,
    make_orphan,
    register_client,
)
from smtp_mailbox import OPERATOR, SMTP_PASSWORD, silent_alerts, smtp_server
from test_lamassu import DB_PASSWORD, lamassu_pg  # noqa: F401 (fixture)
from test_settlement_flow import _deactivate_all_clients

pytestmark = pytest.mark.asyncio(loop_scope="session")

CLIENT_MAIL = "dca-client@example.com"
# What this extension mails the operator (LNbits mails its own notices too,
# e.g. when a wallet's balance moves a lot).
OURS = "DCA Admin: "


@pytest_asyncio.fixture(loop_scope="session")
async def mailbox(env):
    from satmachineadmin.alerts import check_alerts
    from satmachineadmin.crud import set_alert_settings
    from satmachineadmin.models import AlertSettings

    with silent_alerts():
        await set_alert_settings(AlertSettings(digest_after=100))
        await check_alerts()
    with smtp_server() as box:
        yield box
    await set_alert_settings(AlertSettings())


async def _alert_settings(env, silent: bool = True, **changes) -> dict:
    """Change the alert settings; what the new settings make hold already
    (left by earlier tests) is opened silently."""
    from satmachineadmin.alerts import check_alerts

    with silent_alerts() if silent else nullcontext():
        response = await env.api("PUT", "/alert-settings", json=changes)
        assert response.status_code == 200, response.text
        if silent:
            await check_alerts()
    return response.json()


def _bitspire(principal: int, fee: int, currency: str, **more) -> dict:
    return bitspire_extra(
        principal,
        fee,
        currency=currency,
        txid=more.pop("txid", f"tx-{principal}-{currency}"),
        machine_npub=more.pop("machine_npub", "npub1alerts"),
        **more,
    )


async def _source(env, commission: bool = False):
    source = await env.wallet("alerts source")
    payer = await env.wallet("alerts payer")
    body = {"source_wallet_id": source.id}
    if commission:
        body["commission_wallet_id"] = (await env.wallet("alerts commission")).id
    response = await env.api("POST", "/config", json=body)
    assert response.status_code == 201, response.text
    return source, payer


async def _settled_as(env, payment_hash: str, status: str):
    """The settlement once the listener has taken it to `status`."""
    import asyncio

    from satmachineadmin import crud

    settlement = None
    for _ in range(200):
        await env.settle()
        settlement = await crud.get_settlement_by_hash(payment_hash)
        if settlement and settlement.status == status:
            return settlement
        await asyncio.sleep(0.1)
    raise AssertionError(settlement)


async def _settled_ago(payment_hash: str, seconds: int) -> None:
    """As if LNbits had marked the invoice paid `seconds` ago."""
    from lnbits.core.db import db as core_db
    from satmachineadmin.models import utc_now

    await core_db.execute(
        "UPDATE apipayments SET updated_at = "
        f"{core_db.timestamp_placeholder('at')} "
        "WHERE payment_hash = :hash AND amount > 0",
        {"at": int(utc_now().timestamp()) - seconds, "hash": payment_hash},
    )


def _titled(mails, title: str) -> list:
    return [m for m in mails if f"{title}:" in m.body]


async def test_new_orphan_mailed_once_with_its_figures(env, mailbox):
    from satmachineadmin.alerts import check_alerts

    await _deactivate_all_clients(env)
    await _alert_settings(env, digest_after=10, drift_orphan_week_threshold="100")
    currency = fresh_currency()
    source, payer = await _source(env)
    client = await register_client(env)
    await add_deposit(env, client["id"], "10", currency, confirm=True)
    await env.fund(payer.id, 50_000)
    payment_hash = await env.pay(
        payer.id, source.id, 20_000, extra=_bitspire(19_000, 1_000, currency)
    )
    await _settled_as(env, payment_hash, "completed")

    mails = await mailbox.wait_for(OPERATOR, 2)
    assert len(mails) == 2, [m.body for m in mails]
    (orphan,) = _titled(mails, "New orphan")
    (week,) = _titled(mails, "Orphan fiat this week")
    from satmachineadmin import crud

    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement
    # 19,000 sats principal = 190 fiat; the client's 10 covered 1,000 sats.
    assert "18,000 sats (180.00 " + currency in orphan.body
    assert settlement.id in orphan.body and "npub1alerts" in orphan.body
    assert "180.00 " + currency in week.body
    assert orphan.subject == "LNbits Notification"

    # Checked again and again: nothing is sent twice.
    await check_alerts()
    await check_alerts()
    assert len(await mailbox.wait_for(OPERATOR, 3, timeout=0)) == 2

    # Listed in the dashboard, acknowledged once.
    response = await env.api("GET", "/alerts", params={"kind": "orphan_new"})
    alert = next(a for a in response.json()["data"] if settlement.id in a["message"])
    assert alert["sent_at"] and not alert["cleared_at"]
    response = await env.api("POST", f"/alerts/{alert['id']}/acknowledge")
    assert response.status_code == 200 and response.json()["acknowledged_at"]
    response = await env.api("POST", f"/alerts/{alert['id']}/acknowledge")
    assert response.status_code == 409

    # Resolved: the condition clears (and nothing is mailed for that).
    rec = await crud.get_reconciliation_by_settlement(settlement.id)
    assert rec
    response = await env.api(
        "POST", f"/reconciliations/{rec.id}/resolve", json={"action": "operator_funds"}
    )
    assert response.status_code == 200, response.text
    await check_alerts()
    cleared = await crud.get_alert(alert["id"])
    assert cleared and cleared.cleared_at
    assert len(await mailbox.wait_for(OPERATOR, 3, timeout=0)) == 2


async def test_many_alerts_at_once_are_one_summary(env, mailbox):
    from satmachineadmin import crud
    from satmachineadmin.alerts import check_alerts

    await _alert_settings(env, orphan_new=False, drift_orphan_week=False)
    settlements = []
    for _ in range(4):
        detail, _rec = await make_orphan(env, sats=2_000)
        settlements.append(detail["id"])
    await env.settle()
    await _alert_settings(env, silent=False, orphan_new=True, digest_after=3)
    await check_alerts()
    mails = await mailbox.wait_for(OPERATOR, 1)
    assert len(mails) == 1, [m.body for m in mails]
    # Every open orphan is new again (the switch was off): ours and any an
    # earlier test left open, in one summary.
    opened = list(await crud.get_open_alerts(["orphan_new"]))
    assert len(opened) >= 4 and all(a.sent_at for a in opened)
    assert f"{len(opened)} new alerts" in mails[0].body
    assert f"- New orphan: {len(opened)}" in mails[0].body
    mentioned = [sid for sid in settlements if sid in mails[0].body]
    assert mentioned or len(opened) > 10  # the first ten are listed


async def test_missed_payment_and_uncovered_payout(env, mailbox):
    from satmachineadmin import crud
    from satmachineadmin.tasks import run_recovery

    await _deactivate_all_clients(env)
    await _alert_settings(env, digest_after=10)
    currency = fresh_currency()
    source, payer = await _source(env)
    client = await register_client(env)
    await add_deposit(env, client["id"], "100", currency, confirm=True)
    config = await crud.get_config()
    assert config
    # The listener does not take it (no active config), and the sats are
    # gone from the source wallet before the recovery scan finds it.
    response = await env.api("PUT", f"/config/{config.id}", json={"is_active": False})
    assert response.status_code == 200
    await env.fund(payer.id, 20_000)
    payment_hash = await env.pay(
        payer.id, source.id, 10_000, extra=_bitspire(9_500, 500, currency)
    )
    await env.settle()
    await env.fund(source.id, -10_000)
    await _settled_ago(payment_hash, 120)  # the scan finds it two minutes late
    response = await env.api("PUT", f"/config/{config.id}", json={"is_active": True})
    assert response.status_code == 200
    await run_recovery()
    await env.settle()

    mails = await mailbox.wait_for(OPERATOR, 2)
    assert len(mails) == 2, [m.body for m in mails]
    (missed,) = _titled(mails, "Payment the listener missed")
    (uncovered,) = _titled(mails, "Payout the source wallet cannot cover")
    assert "10,000 sats" in missed.body
    assert "9,500 sats" in uncovered.body and currency in uncovered.body

    # Funded again: the next pass pays it and the alert clears, silently.
    await env.fund(source.id, 10_000)
    await run_recovery()
    settlement = await crud.get_settlement_by_hash(payment_hash)
    assert settlement and settlement.status == "completed"
    open_kinds = {a.kind for a in await crud.get_open_alerts()}
    assert "payout_uncovered" not in open_kinds
    assert len(await mailbox.wait_for(OPERATOR, 3, timeout=0)) == 2


async def test_a_payment_the_scan_finds_just_settled_is_no_missed_payment(env):
    """With two LNbits processes on one database, one process' scan can record
    a payment a moment before the listener of the process that received it:
    that listener missed nothing. A payment settled within MISSED_ALERT_GRACE
    of the scan is recorded (and paid) without the alert; one the scan finds
    later than that is reported."""
    from satmachineadmin import crud
    from satmachineadmin.tasks import MISSED_ALERT_GRACE, run_recovery

    await _deactivate_all_clients(env)
    await _alert_settings(env, digest_after=10)
    currency = fresh_currency()
    source, payer = await _source(env)
    config = await crud.get_config()
    assert config
    await env.fund(payer.id, 40_000)
    hashes = []
    for principal in (9_000, 9_100):
        # Not taken by the listener here (no active config): the other
        # process' listener would be taking it right now.
        response = await env.api(
            "PUT", f"/config/{config.id}", json={"is_active": False}
        )
        assert response.status_code == 200
        hashes.append(
            await env.pay(
                payer.id,
                source.id,
                principal + 500,
                extra=_bitspire(principal, 500, currency),
            )
        )
        await env.settle()
        if principal == 9_100:  # found later than the grace: a real miss
            await _settled_ago(hashes[-1], int(MISSED_ALERT_GRACE.total_seconds()) + 5)
        response = await env.api(
            "PUT", f"/config/{config.id}", json={"is_active": True}
        )
        assert response.status_code == 200
        await run_recovery()
        await env.settle()
    for payment_hash in hashes:
        assert await crud.get_settlement_by_hash(payment_hash)
    missed = {
        a.subject for a in await crud.get_open_alerts() if a.kind == "missed_payment"
    }
    assert hashes[0] not in missed
    assert hashes[1] in missed


async def test_flagged_and_waiting_settlements(env, mailbox):
    from satmachineadmin import crud
    from satmachineadmin.alerts import check_alerts
    from satmachineadmin.models import utc_now

    await _alert_settings(env, digest_after=10, settlement_waiting_minutes=5)
    currency = fresh_currency()
    source, payer = await _source(env)
    await env.fund(payer.id, 50_000)
    # Principal + fee is not the amount paid: flagged for review.
    flagged_hash = await env.pay(
        payer.id, source.id, 10_000, extra=_bitspire(9_000, 500, currency)
    )
    # No metadata, no Lamassu: waits for cash-out data.
    waiting_hash = await env.pay(payer.id, source.id, 7_000)
    flagged = await _settled_as(env, flagged_hash, "flagged")
    waiting = await _settled_as(env, waiting_hash, "waiting_data")
    mails = await mailbox.wait_for(OPERATOR, 1)
    assert len(mails) == 1, [m.body for m in mails]
    assert "Settlement flagged for review" in mails[0].body
    assert flagged.id in mails[0].body

    await crud.db.execute(
        "UPDATE satoshimachine.settlements SET paid_at = "
        f"{crud.ts('t')} WHERE id = :id",
        crud.exact_times({"t": utc_now() - timedelta(minutes=6), "id": waiting.id}),
    )
    await check_alerts()
    mails = await mailbox.wait_for(OPERATOR, 2)
    assert len(mails) == 2, [m.body for m in mails]
    (late,) = _titled(mails, "Settlement waiting too long")
    assert waiting.id in late.body and "waiting_data" in late.body


async def test_lamassu_unreachable_then_back_never_a_secret(
    env, mailbox, lamassu_pg  # noqa: F811
):
    from satmachineadmin import alerts, crud
    from satmachineadmin.tasks import run_recovery

    alerts.lamassu_health.update(failing_since=None, error=None, ok_at=None)
    await _alert_settings(env, digest_after=10, lamassu_down_minutes=1)
    await _source(env)
    config = await crud.get_config()
    assert config
    wrong = "wrong-Secret-pw-0b1d"
    response = await env.api(
        "PUT",
        f"/config/{config.id}",
        json={
            "host": "127.0.0.1",
            "port": lamassu_pg.port,
            "database_name": "lamassu",
            "username": "reader",
            "password": wrong,
            "ssh_password": "ssh-Secret-never-shown",
        },
    )
    assert response.status_code == 200, response.text
    try:
        await run_recovery()
        assert alerts.lamassu_health["failing_since"] is not None
        assert not await mailbox.wait_for(OPERATOR, 1, timeout=0)
        # ... and a minute later (the test moves the clock of the failure).
        alerts.lamassu_health["failing_since"] -= timedelta(minutes=2)
        await alerts.check_alerts()
        await alerts.check_alerts()
        mails = await mailbox.wait_for(OPERATOR, 1)
        assert len(mails) == 1, [m.body for m in mails]
        assert "Lamassu database unreachable" in mails[0].body
        assert "wrong user or password" in mails[0].body

        response = await env.api(
            "PUT", f"/config/{config.id}", json={"password": DB_PASSWORD}
        )
        assert response.status_code == 200
        await run_recovery()
        mails = await mailbox.wait_for(OPERATOR, 2)
        assert len(mails) == 2, [m.body for m in mails]
        assert "reachable again" in mails[1].body
        for mail in mails:
            for secret in (wrong, DB_PASSWORD, "ssh-Secret-never-shown", SMTP_PASSWORD):
                assert secret not in mail.body
        stored = await crud.get_alerts(crud.StableFilters(limit=1000))
        texts = [a.message for a in stored.data]
        assert not [t for t in texts if wrong in t or DB_PASSWORD in t]
    finally:
        config = await crud.get_config()
        if config:
            config.host = ""
            await crud.update_config(config)


async def test_client_notice_once_per_balance_cycle(env, mailbox):
    from lnbits.core.crud.users import get_account, update_account
    from satmachineadmin.alerts import check_alerts

    await _deactivate_all_clients(env)
    await _alert_settings(env, digest_after=100, client_notices=True)
    currency = fresh_currency()
    source, payer = await _source(env)
    client = await register_client(env)
    response = await env.api(
        "PUT", f"/clients/{client['id']}", json={"notify_balance_empty": True}
    )
    assert response.status_code == 200 and response.json()["notify_balance_empty"]
    account = await get_account(client["user_id"])
    assert account
    account.extra.notifications.email_address = CLIENT_MAIL
    await update_account(account)
    await add_deposit(env, client["id"], "10", currency, confirm=True)
    await env.fund(payer.id, 50_000)

    def notices():
        # LNbits itself also mails the user about each payment received.
        return [m for m in mailbox.to(CLIENT_MAIL) if "fully converted" in m.body]

    await env.pay(payer.id, source.id, 2_100, extra=_bitspire(2_000, 100, currency))
    await env.settle()
    await mailbox.wait_for(CLIENT_MAIL, 1, match="fully converted")
    mails = notices()
    assert len(mails) == 1, [m.body for m in mailbox.to(CLIENT_MAIL)]
    assert mails[0].body.startswith("DCA: Your " + currency)
    assert mails[0].to == [CLIENT_MAIL]
    await check_alerts()
    await mailbox.wait_for(CLIENT_MAIL, 2, timeout=0, match="fully converted")
    assert len(notices()) == 1

    # Switching the notice (or the client) off and on at zero: no second one.
    for body in ({"notify_balance_empty": False}, {"notify_balance_empty": True}):
        response = await env.api("PUT", f"/clients/{client['id']}", json=body)
        assert response.status_code == 200
        await check_alerts()
    for status in ("inactive", "active"):
        response = await env.api(
            "PUT", f"/clients/{client['id']}/status", json={"status": status}
        )
        assert response.status_code == 200
        await check_alerts()
    await mailbox.wait_for(CLIENT_MAIL, 2, timeout=0, match="fully converted")
    assert len(notices()) == 1

    # A top-up starts a new cycle; reaching zero again is told again, once.
    await add_deposit(env, client["id"], "5", currency, confirm=True)
    await check_alerts()
    await env.pay(payer.id, source.id, 2_100, extra=_bitspire(2_000, 100, currency))
    await env.settle()
    await check_alerts()
    await mailbox.wait_for(CLIENT_MAIL, 2, match="fully converted")
    assert len(notices()) == 2
    # The operator's own mail never goes to the client, nor the reverse.
    assert all(CLIENT_MAIL not in m.to for m in mailbox.to(OPERATOR))
    assert not [m for m in mailbox.to(OPERATOR) if "fully converted" in m.body]


async def test_a_broken_alert_check_never_touches_the_money(env, monkeypatch):
    """The money paths only poke the alerts (after their work is committed):
    an alert check that fails is logged, and settlements go on."""
    from satmachineadmin import alerts
    from satmachineadmin.tasks import recovery_status, run_recovery

    async def broken(*_args, **_kw):
        raise RuntimeError("alerts are down")

    monkeypatch.setattr(alerts, "check_alerts", broken)
    await _deactivate_all_clients(env)
    currency = fresh_currency()
    source, payer = await _source(env)
    client = await register_client(env)
    await add_deposit(env, client["id"], "100", currency, confirm=True)
    await env.fund(payer.id, 20_000)
    payment_hash = await env.pay(
        payer.id, source.id, 10_000, extra=_bitspire(9_500, 500, currency)
    )
    await _settled_as(env, payment_hash, "completed")
    await run_recovery()  # does not raise
    assert recovery_status["last_error"] is None


async def test_alerts_in_the_operators_language(env, mailbox):
    """Sent in the language of the alert settings (Spanish here: the
    operator's mail, a summary and the client's notice), stored in English,
    and returned by the Alerts API in the reader's language; a row written
    before alerts kept their messages (m018) stays English."""
    from lnbits.core.crud.users import get_account, update_account
    from satmachineadmin import alerts, crud
    from satmachineadmin.alerts import new_alert, send_pending
    from satmachineadmin.messages import Message
    from satmachineadmin.models import Alert, utc_now

    for wrong in ("fr", "", "ES", 1):
        response = await env.api("PUT", "/alert-settings", json={"language": wrong})
        assert 400 <= response.status_code < 500, (wrong, response.text)
    assert (await env.api("GET", "/alert-settings")).json()["language"] == "en"
    await _deactivate_all_clients(env)
    await _alert_settings(env, digest_after=10, client_notices=True, language="es")
    assert (await env.api("GET", "/alert-settings")).json()["language"] == "es"

    # One cash-out: the client's 10 are used up (her notice) and the rest is
    # an orphan (the operator's alert).
    currency = fresh_currency()
    source, payer = await _source(env)
    client = await register_client(env)
    response = await env.api(
        "PUT", f"/clients/{client['id']}", json={"notify_balance_empty": True}
    )
    assert response.status_code == 200
    account = await get_account(client["user_id"])
    assert account
    account.extra.notifications.email_address = CLIENT_MAIL
    await update_account(account)
    await add_deposit(env, client["id"], "10", currency, confirm=True)
    await env.fund(payer.id, 50_000)
    payment_hash = await env.pay(
        payer.id, source.id, 20_000, extra=_bitspire(19_000, 1_000, currency)
    )
    settlement = await _settled_as(env, payment_hash, "completed")

    (mail,) = await mailbox.wait_for(OPERATOR, 1)
    assert mail.body.startswith("Administración DCA: Huérfano nuevo: "), mail.body
    assert f"18,000 sats (180.00 {currency}) de la liquidación" in mail.body
    assert "no lo cubre ningún saldo de cliente registrado" in mail.body
    assert settlement.id in mail.body and "New orphan" not in mail.body
    (notice,) = await mailbox.wait_for(CLIENT_MAIL, 1, match="Su depósito")
    assert notice.body.startswith(f"DCA: Su depósito en {currency} ya se convirtió")

    # Stored in English; the API answers in the reader's language.
    spanish = {**env.auth, "Accept-Language": "es-GT,es;q=0.9,en;q=0.8"}
    found = {}
    for lang, headers in (("es", spanish), ("en", None)):
        response = await env.api(
            "GET", "/alerts", params={"kind": "orphan_new"}, headers=headers
        )
        assert response.status_code == 200
        found[lang] = next(
            a for a in response.json()["data"] if settlement.id in a["message"]
        )
    assert found["es"]["title"] == "Huérfano nuevo"
    assert found["es"]["message"].startswith("18,000 sats (180.00 ")
    assert "Resuélvalo en Conciliación." in found["es"]["message"]
    assert found["en"]["title"] == "New orphan"
    assert "Resolve it in Reconciliation." in found["en"]["message"]
    stored = await crud.get_alert(found["en"]["id"])
    assert stored and (stored.title, stored.message) == (
        found["en"]["title"],
        found["en"]["message"],
    )

    # A row from before m018 (no messages): English for every reader.
    now = utc_now()
    old = Alert(
        id="old-alert-" + currency,
        kind="missed_payment",
        subject="old-" + currency,
        title="Payment the listener missed",
        message="An old English message.",
        opened_at=now,
        last_seen_at=now,
        sent_at=now,
    )
    assert await crud.insert_alert_if_absent(old)
    response = await env.api(
        "GET", "/alerts", params={"kind": "missed_payment"}, headers=spanish
    )
    (row,) = [a for a in response.json()["data"] if a["id"] == old.id]
    assert (row["title"], row["message"]) == (old.title, old.message)
    response = await env.api("POST", f"/alerts/{old.id}/acknowledge", headers=spanish)
    assert response.json()["message"] == old.message
    response = await env.api("POST", f"/alerts/{old.id}/acknowledge", headers=spanish)
    assert response.status_code == 409
    assert response.json()["detail"] == "La alerta ya fue marcada como vista."

    # More new alerts at once than digest_after: one summary, in Spanish.
    await _alert_settings(env, digest_after=1)
    events = [
        new_alert(
            "missed_payment",
            f"digest-{currency}-{i}",
            Message(
                "alert.missed_payment.message",
                {"sats": "1,000", "paid_at": "2025-01-02 03:04", "settlement": "`x`"},
            ),
            None,
            now,
        )
        for i in range(2)
    ]
    async with alerts._check_lock:  # no background check sends them meanwhile
        for event in events:
            assert await crud.insert_alert_if_absent(event)
        assert await send_pending() == 1
    (digest,) = await mailbox.wait_for(OPERATOR, 2, match="alertas nuevas")
    lines = digest.body.splitlines()
    assert lines[0] == "Administración DCA: 2 alertas nuevas", lines
    assert "- Pago que la escucha no recibió: 2" in lines
    assert lines[-1] == "Vea Administración DCA -> Alertas."
    assert "El escaneo de recuperación, no la escucha, encontró 1,000 sats" in (
        digest.body
    )
    for event in events:
        response = await env.api("POST", f"/alerts/{event.id}/acknowledge")
        assert response.status_code == 200


async def test_failed_commission_part_alerted_once_cleared_when_redirected(
    env, mailbox
):
    """A partner's wallet is deleted while it is still the configured
    recipient: its commission part fails (and stays failed, retried every
    pass). One alert, one mail; more checks and passes add none; once the
    operator names another partner the part is redirected and paid, and the
    alert clears, silently."""
    from lnbits.core.crud import delete_wallet
    from satmachineadmin import crud
    from satmachineadmin.alerts import check_alerts
    from satmachineadmin.machines import get_commission_payouts
    from satmachineadmin.tasks import run_recovery

    await _deactivate_all_clients(env)
    await _alert_settings(
        env, digest_after=10, orphan_new=False, drift_orphan_week=False
    )
    currency = fresh_currency()
    source = await env.wallet("alerts source")
    payer = await env.wallet("alerts payer")
    account, partner = await env.user_with_wallet("alerts leaving partner")
    response = await env.api(
        "POST",
        "/config",
        json={"source_wallet_id": source.id, "commission_wallet_id": partner.id},
    )
    assert response.status_code == 201, response.text
    await delete_wallet(user_id=account.id, wallet_id=partner.id)
    await env.fund(payer.id, 50_000)
    payment_hash = await env.pay(
        payer.id, source.id, 10_000, extra=_bitspire(9_000, 1_000, currency)
    )
    settlement = await _settled_as(env, payment_hash, "payout_failed")
    (part,) = await get_commission_payouts(settlement.id)
    assert part.status == "failed" and part.wallet_id == partner.id

    mails = await mailbox.wait_for(OPERATOR, 1, match=OURS)
    assert len(mails) == 1, [m.body for m in mails]
    (mail,) = _titled(mails, "Commission part failed")
    assert "1,000 sats (100 %)" in mail.body
    assert partner.id in mail.body and settlement.id in mail.body
    assert "npub1alerts" in mail.body

    # Checked again, and retried by a recovery pass (fails again): no more.
    await check_alerts()
    await run_recovery()
    await check_alerts()
    (part,) = await get_commission_payouts(settlement.id)
    assert part.status == "failed"
    opened = [
        a
        for a in await crud.get_open_alerts(["commission_failed"])
        if a.subject == part.id
    ]
    assert len(opened) == 1 and opened[0].sent_at
    assert len(await mailbox.wait_for(OPERATOR, 2, timeout=0, match=OURS)) == 1

    # Another partner: the next pass redirects the part and pays it.
    other = await env.wallet("alerts new partner")
    response = await env.api(
        "PUT",
        "/commission-recipients",
        json={"recipients": [{"wallet_id": other.id, "percent": "100"}]},
    )
    assert response.status_code == 200, response.text
    try:
        await run_recovery()
        await check_alerts()
        (part,) = await get_commission_payouts(settlement.id)
        assert part.status == "confirmed" and part.wallet_id == other.id
        assert await env.balance(other.id) == 1_000
        cleared = await crud.get_alert(opened[0].id)
        assert cleared and cleared.cleared_at
        assert not [
            a
            for a in await crud.get_open_alerts(["commission_failed"])
            if a.subject == part.id
        ]
        assert len(await mailbox.wait_for(OPERATOR, 2, timeout=0, match=OURS)) == 1
    finally:
        response = await env.api(
            "PUT", "/commission-recipients", json={"recipients": []}
        )
        assert response.status_code == 200, response.text


async def test_failed_orphan_send_and_attribution_alerted_once_then_cleared(
    env, mailbox
):
    """An orphan sent to a wallet while the source wallet is empty: the send
    fails and the orphan is open again with the error. One alert, one mail;
    a second check adds none; sent again (funded) and resolved, it clears.
    The same for an attribution whose payment to the client fails (the orphan
    stays resolving): cleared once a pass pays it."""
    from satmachineadmin import crud
    from satmachineadmin.alerts import check_alerts
    from satmachineadmin.orphan_resolution import resume_resolutions

    await _deactivate_all_clients(env)
    await _alert_settings(
        env,
        digest_after=10,
        orphan_new=False,
        drift_orphan_week=False,
        payout_uncovered=False,
    )
    with silent_alerts():
        detail, rec = await make_orphan(env)
        await env.settle()
        await check_alerts()
    source_id = detail["wallet_id"]
    target = await env.wallet("alerts orphan target")
    sink = await env.wallet("alerts sink")
    drained = await env.balance(source_id)
    await env.pay(source_id, sink.id, drained, memo="drain")

    async def resolve(body: dict):
        return await env.api("POST", f"/reconciliations/{rec['id']}/resolve", json=body)

    async def open_for_orphan() -> list:
        return [
            a
            for a in await crud.get_open_alerts(["orphan_failed"])
            if a.subject == rec["id"]
        ]

    response = await resolve({"action": "send_to_wallet", "wallet_id": target.id})
    assert response.status_code == 409, response.text
    await check_alerts()
    mails = await mailbox.wait_for(OPERATOR, 1, match=OURS)
    assert len(mails) == 1, [m.body for m in mails]
    (mail,) = _titled(mails, "Orphan resolution failed")
    assert detail["id"] in mail.body and "sending it to the chosen wallet failed." in (
        mail.body
    )
    await check_alerts()
    (first,) = await open_for_orphan()
    assert len(await mailbox.wait_for(OPERATOR, 2, timeout=0, match=OURS)) == 1

    # Funded again and sent: resolved, the alert clears (no mail for that).
    await env.pay(sink.id, source_id, drained, memo="refund")
    response = await resolve({"action": "send_to_wallet", "wallet_id": target.id})
    assert response.status_code == 200, response.text
    await check_alerts()
    assert not await open_for_orphan()
    cleared = await crud.get_alert(first.id)
    assert cleared and cleared.cleared_at
    assert len(await mailbox.wait_for(OPERATOR, 2, timeout=0, match=OURS)) == 1

    # An attribution whose payment fails: alerted once, cleared when paid.
    detail, rec = await make_orphan(env)
    source_id = detail["wallet_id"]
    client = await register_client(env)
    drained = await env.balance(source_id)
    await env.pay(source_id, sink.id, drained, memo="drain")
    response = await resolve(
        {"action": "attribute_to_client", "client_id": client["id"]}
    )
    assert response.status_code == 409, response.text
    await check_alerts()
    mails = await mailbox.wait_for(OPERATOR, 2, match="Orphan resolution failed")
    assert len(mails) == 2, [m.body for m in mails]
    assert detail["id"] in mails[1].body
    assert "the payment to the client it was attributed to fails." in mails[1].body
    await resume_resolutions()  # fails again: still one alert
    await check_alerts()
    assert len(await open_for_orphan()) == 1
    await env.pay(sink.id, source_id, drained, memo="refund")
    await resume_resolutions()
    assert (await crud.get_reconciliation(rec["id"])).status == "resolved"
    await check_alerts()
    assert not await open_for_orphan()
    assert len(await mailbox.wait_for(OPERATOR, 3, timeout=0, match=OURS)) == 2


async def _poke_done() -> None:
    """Until the alert check a money path scheduled (poke) has run."""
    import asyncio

    from satmachineadmin import alerts

    for _ in range(100):
        task = alerts._poke_task
        if task is None or task.done():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the poked alert check never finished")


async def test_an_alert_another_process_opened_is_not_cleared_by_a_stale_check(
    env, mailbox, monkeypatch
):
    """Two processes check the alerts at once. A computes what holds just
    before a new orphan appears; B (whose settlement made the orphan) opens
    its alert and mails it before A reads the open alerts. A must not take
    B's alert for one whose condition is gone and clear it: the next check
    would open it again and mail the operator a second time."""
    from satmachineadmin import alerts, crud
    from satmachineadmin.alerts import check_alerts

    await _alert_settings(env, orphan_new=False, drift_orphan_week=False)
    detail, rec = await make_orphan(env, sats=2_000)
    await env.settle()
    await _poke_done()
    await _alert_settings(env, silent=False, orphan_new=True, digest_after=100)
    real = alerts.current_conditions

    async def stale_then_b(settings, config, now):
        conditions, managed = await real(settings, config, now)
        ours = [c for c in conditions if c.subject == rec["id"]]
        assert [c.kind for c in ours] == ["orphan_new"]
        # Meanwhile, process B: the orphan is there, its alert opened and sent.
        for c in ours:
            alert = alerts.new_alert(c.kind, c.subject, c.message, config, now)
            assert await crud.insert_alert_if_absent(alert)
        await alerts.send_pending(settings, config)
        # A's view: from before the orphan existed.
        return [c for c in conditions if c.subject != rec["id"]], managed

    monkeypatch.setattr(alerts, "current_conditions", stale_then_b)
    await check_alerts()  # process A
    monkeypatch.setattr(alerts, "current_conditions", real)
    await check_alerts()  # the next pass, either process
    await check_alerts()

    (alert,) = [
        a for a in await crud.get_open_alerts(["orphan_new"]) if a.subject == rec["id"]
    ]
    assert alert.sent_at
    mails = await mailbox.wait_for(OPERATOR, 2, timeout=3, match=detail["id"])
    assert len(mails) == 1, [m.body for m in mails]


async def test_lamassu_back_seen_by_one_process_is_not_reopened_by_the_other(
    env, mailbox
):
    """Two processes poll Lamassu each pass. A's last poll failed; B's, a
    moment later, succeeded: B clears the alert and says "reachable again".
    A's next check (a poke, before its own next poll) must not open it again
    from its older view: that would mail "unreachable" and then "reachable
    again" a second time for one outage."""
    from satmachineadmin import alerts, crud
    from satmachineadmin.models import utc_now

    await _alert_settings(env, digest_after=10, lamassu_down_minutes=10)
    await _source(env)
    config = await crud.get_config()
    assert config
    response = await env.api(
        "PUT",
        f"/config/{config.id}",
        json={
            "host": "127.0.0.1",
            "port": 9,
            "database_name": "lamassu",
            "username": "reader",
            "password": "not-used-here",
        },
    )
    assert response.status_code == 200, response.text
    now = utc_now()
    a = {
        "failing_since": now - timedelta(minutes=30),
        "error": "refused",
        "ok_at": None,
    }
    b = {"failing_since": None, "error": None, "ok_at": now}
    saved = dict(alerts.lamassu_health)
    try:
        alerts.lamassu_health.update(a)
        await alerts.check_alerts()  # A: down for 30 minutes
        mails = await mailbox.wait_for(OPERATOR, 1, match="unreachable")
        assert len(mails) == 1, [m.body for m in mails]

        # B's poll succeeds (it records that in the database, as every poll).
        await crud.set_config_timestamps(config.id, last_successful_poll=utc_now())
        alerts.lamassu_health.update(b)
        await alerts.check_alerts()  # B
        mails = await mailbox.wait_for(OPERATOR, 2, match="Lamassu")
        assert len(mails) == 2 and "reachable again" in mails[1].body

        alerts.lamassu_health.update(a)
        await alerts.check_alerts()  # A again, its last poll the failed one
        await alerts.check_alerts()
        mails = await mailbox.wait_for(OPERATOR, 3, timeout=3, match="Lamassu")
        assert len(mails) == 2, [m.body for m in mails]
        assert not await crud.get_open_alerts(["lamassu_down"])
    finally:
        alerts.lamassu_health.update(saved)
        config = await crud.get_config()
        if config:
            config.host = ""
            await crud.update_config(config)
