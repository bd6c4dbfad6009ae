"""The drift alarm: cash in the machines against tracked client balances, per
currency; from a Lamassu-shaped PostgreSQL with cassette counts, and from
bitSpire settlement metadata (`cassettes`, untrusted), plus the weekly orphan
trend and the alerts on both."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from api_helpers import add_deposit, fresh_currency, register_client
from smtp_mailbox import OPERATOR, silent_alerts, smtp_server
from test_lamassu import DB_PASSWORD, lamassu_pg  # noqa: F401 (fixture)
from test_settlement_flow import _deactivate_all_clients

ASYNC = pytest.mark.asyncio(loop_scope="session")


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def _completed(env, payment_hashes: list[str]) -> None:
    """Wait until every one of these settlements is split and paid."""
    import asyncio

    from satmachineadmin import crud

    for _ in range(200):
        await env.settle()
        settlements = [await crud.get_settlement_by_hash(h) for h in payment_hashes]
        if all(s and s.status == "completed" for s in settlements):
            return
        await asyncio.sleep(0.1)
    raise AssertionError([s and s.status for s in settlements])


def _row(report: dict, currency: str) -> dict:
    return next(r for r in report["currencies"] if r["currency"] == currency)


# ------------------------------------------------------------ strict parsing


def test_bitspire_cassettes_are_parsed_strictly():
    from satmachineadmin.drift import parse_cassettes

    good = parse_cassettes(
        [{"denomination": 100, "count": 7}, {"denomination": "0.50", "count": 0}]
    )
    assert good == [
        {"denomination": Decimal(100), "count": 7},
        {"denomination": Decimal("0.50"), "count": 0},
    ]
    bad = [
        None,
        {},
        [],
        "100x7",
        [{"denomination": 100}],
        [{"denomination": 100, "count": "7"}],
        [{"denomination": 100, "count": 7.0}],
        [{"denomination": 100, "count": True}],
        [{"denomination": 100, "count": -1}],
        [{"denomination": 100, "count": 10**9}],
        [{"denomination": 0, "count": 1}],
        [{"denomination": -5, "count": 1}],
        [{"denomination": "NaN", "count": 1}],
        [{"denomination": "1e400", "count": 1}],
        [{"denomination": True, "count": 1}],
        [{"denomination": 0.001, "count": 1}],
        [{"denomination": 100, "count": 1}] * 17,
        [["100", 7]],
    ]
    for raw in bad:
        with pytest.raises(ValueError):
            parse_cassettes(raw)


def test_lamassu_machines_from_devices_and_config():
    from satmachineadmin.drift import lamassu_machines

    devices = [
        {
            "device_id": "a",
            "name": "Lobby",
            "cassette1": 10,
            "cassette2": 4,
            "cassette3": 99,  # beyond number_of_cassettes: not fitted
            "cassette4": 0,
            "number_of_cassettes": 2,
            "recycler1": 3,
            "number_of_recyclers": 1,
        },
        {"device_id": "b", "cassette1": 2, "cassette2": 0},
        {"device_id": "c", "cassette1": 5},
    ]
    config = {
        "locale_fiatCurrency": "GTQ",
        "locale_overrides": [{"machine": "b", "fiatCurrency": "USD"}],
        "cashOut_a_cassette1": 100,
        "cashOut_a_cassette2": "50",
        "cashOut_a_cassette3": 20,
        "cashOut_a_recycler1": 200,
        "cashOut_b_cassette1": 20,
        # c: a count without a denomination is not guessed.
    }
    a, b, c = lamassu_machines(devices, config)
    assert (a["currency"], a["total"]) == ("GTQ", Decimal("1800.00"))
    assert [u["unit"] for u in a["cassettes"]] == [
        "cassette1",
        "cassette2",
        "recycler1",
    ]
    assert (b["currency"], b["total"]) == ("USD", Decimal("40.00"))
    assert c["total"] is None and "no denomination" in c["error"]


# ------------------------------------------------------------------ Lamassu


@ASYNC
async def test_lamassu_cassettes_against_tracked_balances(
    env, lamassu_pg  # noqa: F811
):
    from satmachineadmin import crud
    from satmachineadmin.alerts import check_alerts
    from satmachineadmin.crud import set_alert_settings
    from satmachineadmin.models import AlertSettings

    await _deactivate_all_clients(env)
    with silent_alerts():  # what earlier tests left holding is not our mail
        await set_alert_settings(
            AlertSettings(digest_after=10, drift_untracked_threshold=Decimal("200"))
        )
        await check_alerts()
    currency = fresh_currency()
    source = await env.wallet("drift source")
    response = await env.api("POST", "/config", json={"source_wallet_id": source.id})
    assert response.status_code == 201
    client = await register_client(env)
    await add_deposit(env, client["id"], "1000", currency, confirm=True)
    device = f"drift-{currency.lower()}"
    lamassu_pg.psql(
        "INSERT INTO devices (device_id, name, cassette1, cassette2, cassette3, "
        f"number_of_cassettes) VALUES ({_sql_text(device)}, 'Lobby', 10, 5, 7, 2)",
        "lamassu",
    )
    old = {"config": {"locale_fiatCurrency": "XXX"}}
    new = {
        "config": {
            "locale_fiatCurrency": currency,
            f"cashOut_{device}_cassette1": 100,
            f"cashOut_{device}_cassette2": 50,
            f"cashOut_{device}_cassette3": 20,
        }
    }
    accounts = {"accounts": {"secret": "lamassu-account-Secret"}}
    for kind, data in (("config", old), ("accounts", accounts), ("config", new)):
        lamassu_pg.psql(
            "INSERT INTO user_config (type, data, valid, schema_version) VALUES "
            f"('{kind}', {_sql_text(json.dumps(data))}, true, 2)",
            "lamassu",
        )
    config = await crud.get_config()
    assert config
    response = await env.api(
        "PUT",
        f"/config/{config.id}",
        json={
            "host": "127.0.0.1",
            "port": lamassu_pg.port,
            "database_name": "lamassu",
            "username": "reader",
            "password": DB_PASSWORD,
        },
    )
    assert response.status_code == 200, response.text
    try:
        with smtp_server() as mailbox:
            response = await env.api("GET", "/drift", params={"refresh": "true"})
            assert response.status_code == 200, response.text
            report = response.json()
            assert report["lamassu_error"] is None
            row = _row(report, currency)
            # 10 x 100 + 5 x 50 (the third cassette is not fitted) = 1250.
            assert Decimal(str(row["machine_cash"])) == Decimal("1250.00")
            assert Decimal(str(row["tracked"])) == Decimal("1000.00")
            assert Decimal(str(row["untracked"])) == Decimal("250.00")
            (machine,) = [m for m in report["machines"] if m["machine"] == device]
            assert machine["source"] == "lamassu" and machine["name"] == "Lobby"
            assert "lamassu-account-Secret" not in response.text

            await check_alerts()
            mails = await mailbox.wait_for(
                OPERATOR, 1, match="Untracked cash in the machines"
            )
            assert len(mails) == 1
            assert f"250.00 {currency}" in mails[0].body

            # A second process (or this one, just restarted) that has not read
            # the machines' cash yet: the drift is unknown there, not gone. Its
            # check must not clear the alert, or the next check of a process
            # that has read the cash opens it and mails it again.
            from satmachineadmin import drift

            read = dict(drift.lamassu_cash)
            drift.lamassu_cash.update(machines=None, read_at=None, error=None)
            try:
                await check_alerts()
            finally:
                drift.lamassu_cash.update(read)
            assert [
                a
                for a in await crud.get_open_alerts(["drift_untracked"])
                if a.subject == currency
            ]
            await check_alerts()
            mails = await mailbox.wait_for(
                OPERATOR, 2, timeout=2, match="Untracked cash in the machines"
            )
            assert len(mails) == 1, [m.body for m in mails]

            # The missing deposit is recorded: the drift is under the threshold.
            await add_deposit(env, client["id"], "100", currency, confirm=True)
            await check_alerts()
            open_alerts = await crud.get_open_alerts(["drift_untracked"])
            assert not [a for a in open_alerts if a.subject == currency]
            await check_alerts()
            await mailbox.wait_for(OPERATOR, 2, timeout=0)
            assert (
                len([m for m in mailbox.to(OPERATOR) if "Untracked cash" in m.body])
                == 1
            )
    finally:
        await set_alert_settings(AlertSettings())
        config = await crud.get_config()
        if config:
            config.host = ""
            await crud.update_config(config)
        from satmachineadmin.drift import refresh_lamassu_cash

        await refresh_lamassu_cash(config, force=True)


# ------------------------------------------------------------------ bitSpire


@ASYNC
async def test_bitspire_cassettes_and_weekly_orphans(env):
    from satmachineadmin.models import utc_now

    await _deactivate_all_clients(env)
    currency = fresh_currency()
    source = await env.wallet("bitspire drift source")
    payer = await env.wallet("bitspire drift payer")
    response = await env.api("POST", "/config", json={"source_wallet_id": source.id})
    assert response.status_code == 201
    client = await register_client(env)
    await add_deposit(env, client["id"], "300", currency, confirm=True)
    await env.fund(payer.id, 100_000)

    def extra(txid: str, cassettes, npub: str = "npub1drift") -> dict:
        return {
            "source": "bitspire",
            "principal_sats": 9_500,
            "fee_sats": 500,
            "exchange_rate": "1000000",  # 9,500 sats = 95.00
            "currency": currency,
            "txid": txid,
            "machine_npub": npub,
            "cassettes": cassettes,
        }

    # An unreadable report, then a good one: the newest report counts.
    hashes = [
        await env.pay(
            payer.id, source.id, 10_000, extra=extra("d1", [{"denomination": 100}])
        )
    ]
    await _completed(env, hashes)
    report = (await env.api("GET", "/drift")).json()
    (machine,) = [m for m in report["machines"] if m["machine"] == "npub1drift"]
    assert machine["total"] is None and "unreadable cassettes" in machine["error"]
    assert machine["error"] == (
        "unreadable cassettes: count must be a whole number 0..100000"
    )
    spanish = {**env.auth, "Accept-Language": "es"}
    report_es = (await env.api("GET", "/drift", headers=spanish)).json()
    (machine,) = [m for m in report_es["machines"] if m["machine"] == "npub1drift"]
    assert machine["error"] == (
        "casetes ilegibles: la cantidad debe ser un número entero de 0 a 100000"
    )
    assert _row(report, currency)["machine_cash"] is None

    cassettes = [{"denomination": 100, "count": 4}, {"denomination": 20, "count": 5}]
    hashes.append(
        await env.pay(payer.id, source.id, 10_000, extra=extra("d2", cassettes))
    )
    # Another machine in the same currency, and a report without cassettes
    # (which does not hide the machine's earlier one).
    hashes.append(
        await env.pay(
            payer.id,
            source.id,
            10_000,
            extra=extra("d3", [{"denomination": 50, "count": 1}], npub="npub1other"),
        )
    )
    no_cassettes = extra("d4", None)
    del no_cassettes["cassettes"]
    hashes.append(await env.pay(payer.id, source.id, 10_000, extra=no_cassettes))
    await _completed(env, hashes)

    report = (await env.api("GET", "/drift")).json()
    row = _row(report, currency)
    # Four cash-outs of 95.00 against a balance of 300: the client is paid
    # 95 + 95 + 95 + 15, and 80.00 is orphan fiat this week.
    assert Decimal(str(row["tracked"])) == Decimal("0.00")
    assert Decimal(str(row["machine_cash"])) == Decimal("550.00")  # 500 + 50
    assert Decimal(str(row["untracked"])) == Decimal("550.00")
    assert Decimal(str(row["orphan_fiat_7d"])) == Decimal("80.00")
    week = [w for w in report["weekly_orphans"] if w["currency"] == currency]
    assert len(week) == 1 and Decimal(str(week[0]["fiat"])) == Decimal("80.00")
    monday = utc_now().date().toordinal() - utc_now().weekday()
    assert week[0]["week"] == type(utc_now().date()).fromordinal(monday).isoformat()
