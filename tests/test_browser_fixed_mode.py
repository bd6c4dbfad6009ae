"""Fixed mode (#12) on the dashboard, in headless Chromium (helpers and
fixtures from test_browser.py).

The operator turns a client to fixed mode with a daily limit (one above the
configured maximum is refused and changes nothing), a settlement arrives on a
daily delivery schedule: the clients table shows the client's mode, limit and
today's allowance used, the scheduled deliveries list shows its waiting
payout, and the dry run shows the fixed client with its cap. Any console error
fails the test.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from live_server import LiveLNbits
from test_browser import Page, browser, server  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]


def _wait(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("condition never held")


def test_fixed_mode_on_the_dashboard(server: LiveLNbits, browser):  # noqa: F811
    server.market("GTQ", 1_000_000)
    source = server.create_wallet("Fixed source")
    payer = server.create_wallet("Fixed payer")
    server.credit(payer["id"], 100_000)
    response = server.api(
        "POST",
        "/config",
        json={
            "source_wallet_id": source["id"],
            "max_daily_limit": "500",
            "time_zone": "America/Guatemala",
            "fixed_delivery": "daily",
            "fixed_delivery_time": "18:00",
        },
    )
    assert response.status_code == 201, response.text
    ids = {}
    for name in ("Flora", "Fito"):
        wallet = server.create_user_wallet(name)
        client = server.api(
            "POST", "/clients", json={"wallet_id": wallet["id"], "username": name}
        ).json()
        deposit = server.api(
            "POST", "/deposits", json={"client_id": client["id"], "amount": "1000"}
        ).json()
        server.api(
            "PUT", f"/deposits/{deposit['id']}/status", json={"status": "confirmed"}
        )
        ids[name] = client["id"]

    ui = Page(browser, server, 1280, 900)
    try:
        ui.tab("clients")
        fito = ids["Fito"]
        # Above the configured maximum: refused, nothing changes.
        ui.test_id(f"mode-client-{fito}").click()
        ui.pick("mode-select", "fixed")
        ui.test_id("mode-limit").fill("600")
        ui.test_id("mode-save").click()
        ui.page.locator(".q-notification", has_text="at most").first.wait_for()
        assert server.api("GET", f"/clients/{fito}").json()["dca_mode"] == "flow"
        # The browser logs the refused request; that one is expected.
        refused = [e for e in ui.errors if "400" in e and f"/clients/{fito}" in e]
        assert len(refused) == 1, ui.errors
        ui.errors.remove(refused[0])
        ui.test_id("mode-limit").fill("100")
        ui.test_id("mode-save").click()
        ui.notified("Mode saved")
        client = server.api("GET", f"/clients/{fito}").json()
        assert client["dca_mode"] == "fixed"
        assert Decimal(str(client["fixed_mode_daily_limit"])) == 100

        # 100 GTQ dispensed: 50 each; Fito's 50 waits for 18:00.
        server.pay(
            payer,
            source,
            10_100,
            extra={
                "source": "bitspire",
                "principal_sats": 10_000,
                "fee_sats": 100,
                "exchange_rate": "1000000",
                "currency": "GTQ",
                "txid": "browser-fixed",
            },
        )
        _wait(lambda: server.api("GET", "/fixed/scheduled").json()["payouts"] != [])
        api_row = server.api("GET", f"/clients/{fito}").json()
        assert Decimal(str(api_row["fixed_used_today"])) == 50, api_row
        row = ui.test_id("clients-table").locator("tr", has_text="Fito")

        def shows_the_payout() -> bool:
            ui.test_id("refresh").click()
            ui.settle()
            return "50.00 used" in row.inner_text()

        _wait(shows_the_payout)
        text = row.inner_text()
        assert "fixed" in text and "100.00" in text, text
        assert "50.00 used" in text and "50.00 left" in text, text
        scheduled = ui.test_id("scheduled-table")
        scheduled.locator("tr", has_text="Fito").wait_for()
        assert "5,000" in scheduled.inner_text()
        assert "once a day at 18:00" in ui.test_id("scheduled-deliveries").inner_text()

        # The dry run shows the fixed client and what is left of its day.
        ui.tab("settlements")
        ui.test_id("dry-run").click()
        ui.test_id("dry-fixed").wait_for()
        assert "Fito" in ui.test_id("dry-fixed").inner_text()
        assert "50.00 left today" in ui.test_id("dry-fixed").inner_text()
        ui.tab("config")
        assert ui.test_id("config-fixed-time").input_value() == "18:00"
        assert not ui.errors, ui.errors
    except Exception:
        ui.screenshot("failure-fixed-mode")
        raise
    finally:
        ui.close()
