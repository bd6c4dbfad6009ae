"""Alerts and the drift alarm in the dashboard, in headless Chromium against a
real LNbits process (the fixtures of test_browser.py): the overview shows the
drift per currency and the weekly orphan chart, the Alerts tab lists alerts
and acknowledges one, Configuration saves the alert switches and the language
of what is sent, and a client is opted in to its notice. Any console error
fails the test."""

from __future__ import annotations

import pytest
from test_browser import (  # noqa: F401 (fixtures)
    Page,
    _wait_for,
    _wait_for_settlement,
    browser,
    server,
)

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]


def test_alerts_and_drift_in_the_browser(server, browser):  # noqa: F811
    source = server.create_wallet("Source")
    payer = server.create_wallet("ATM payer")
    server.credit(payer["id"], 100_000)
    response = server.api("POST", "/config", json={"source_wallet_id": source["id"]})
    assert response.status_code == 201, response.text
    wallet = server.create_user_wallet("Eve")
    client = server.api(
        "POST", "/clients", json={"wallet_id": wallet["id"], "username": "Eve"}
    ).json()
    deposit = server.api(
        "POST", "/deposits", json={"client_id": client["id"], "amount": "50"}
    ).json()
    server.api("PUT", f"/deposits/{deposit['id']}/status", json={"status": "confirmed"})
    response = server.api(
        "PUT", "/alert-settings", json={"drift_untracked_threshold": "100"}
    )
    assert response.status_code == 200, response.text
    server.pay(
        payer,
        source,
        20_000,
        extra={
            "source": "bitspire",
            "principal_sats": 19_000,
            "fee_sats": 1_000,
            "exchange_rate": "666164.22",
            "currency": "GTQ",
            "txid": "browser-alerts",
            "machine_npub": "npub1browser",
            "cassettes": [{"denomination": 100, "count": 3}],
        },
    )
    settlement = _wait_for_settlement(server)
    assert settlement["status"] == "completed", settlement
    server.api("POST", "/alerts/check")
    alerts = server.api("GET", "/alerts", params={"state": "open"}).json()["data"]
    orphan = next(a for a in alerts if a["kind"] == "orphan_new")
    assert any(a["kind"] == "drift_untracked" for a in alerts)

    ui = Page(browser, server, 1280, 800)
    try:
        # Overview: 300 GTQ in the machine, no tracked balance left.
        drift = ui.test_id("drift-table")
        drift.get_by_text("GTQ").first.wait_for()
        assert "300.00" in drift.inner_text()
        ui.test_id("drift-card").get_by_text("npub1").first.wait_for()
        assert not ui.test_id("orphan-chart-empty").count()

        # Alerts: listed, acknowledged.
        ui.test_id("alerts-badge").wait_for()
        ui.tab("alerts")
        table = ui.test_id("alerts-table")
        table.get_by_text("New orphan").first.wait_for()
        table.get_by_text("Untracked cash in the machines").first.wait_for()
        ui.test_id(f"ack-{orphan['id']}").click()
        ui.test_id(f"ack-{orphan['id']}").wait_for(state="detached")
        acknowledged = server.api("GET", "/alerts").json()["data"]
        assert next(a for a in acknowledged if a["id"] == orphan["id"])[
            "acknowledged_at"
        ]

        # Configuration: a switch and the language of what is sent, saved.
        ui.tab("config")
        ui.test_id("alert-toggle-missed_payment").click()
        ui.pick("alert-language", "Spanish")
        ui.test_id("save-alerts").click()
        ui.notified("Alert settings saved")
        saved = server.api("GET", "/alert-settings").json()
        assert saved["missed_payment"] is False and saved["language"] == "es"

        # Clients: Eve opts in to her notice.
        ui.tab("clients")
        ui.test_id(f"notice-client-{client['id']}").click()
        _wait_for(
            lambda: server.api("GET", f"/clients/{client['id']}").json()[
                "notify_balance_empty"
            ]
        )
        assert not ui.errors, ui.errors
    except Exception:
        ui.screenshot("failure-alerts")
        raise
    finally:
        ui.close()
