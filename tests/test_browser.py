"""The dashboard in a real headless Chromium (Debian's), driven by Playwright,
against a real LNbits server process with this extension.

The operator's day: log in as super user, configure the wallets, register
clients, add and confirm deposits, a settlement arrives (the seed incident: more
cash dispensed than the balances cover), its split and orphan show up, the
orphan is resolved, tables are exported as CSV. Any console error fails the
test. Screenshots of every tab, desktop and phone width, land in
test-artifacts/screenshots/ for a reviewer (not committed).
"""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from live_server import SUPER_PASSWORD, SUPER_USERNAME, LiveLNbits

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]

CHROMIUM = os.environ.get("SATMACHINE_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
TABS = [
    "overview",
    "clients",
    "deposits",
    "settlements",
    "machines",
    "reconciliation",
    "alerts",
    "config",
]
BALANCES = {"Ana": "690", "Beto": "7.54", "Carla": "2.38", "Dora": "0.07"}
SEED_EXTRA = {
    "source": "bitspire",
    "principal_sats": 300_226,
    "fee_sats": 17_474,
    "exchange_rate": "666164.22",
    "currency": "GTQ",
    "txid": "browser-seed",
}


@pytest.fixture(scope="module")
def server():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    live = LiveLNbits()
    live.market("GTQ", 666_164.22)  # the market agrees with the ATM (rate_check.py)
    try:
        live.start()
        live.first_install()
        yield live
    finally:
        live.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


class Page:
    """The dashboard page with console errors collected."""

    def __init__(
        self,
        browser,
        server: LiveLNbits,
        width: int,
        height: int,
        lang: str = "en",
        title: str = "DCA Admin",
    ):
        self.context = browser.new_context(
            viewport={"width": width, "height": height}, accept_downloads=True
        )
        if lang != "en":
            # LNbits' language selector keeps its choice in localStorage
            # (Quasar's encoding); the credentials notice is taken as seen.
            self.context.add_init_script(
                f"localStorage.setItem('lnbits.lang', '__q_strn|{lang}');"
                "localStorage.setItem('lnbits.disclaimerShown', '__q_bool|1');"
            )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on(
            "pageerror", lambda exc: self.errors.append(f"pageerror {exc} {exc.stack}")
        )
        # A real login: the session cookie lands in the browser context.
        response = self.context.request.post(
            server.url + "/api/v1/auth",
            data={"username": SUPER_USERNAME, "password": SUPER_PASSWORD},
        )
        assert response.ok, response.text()
        self.page.goto(server.url + "/satmachineadmin/")
        self.page.locator(".satmachine-admin h5", has_text=title).wait_for()
        self.settle()
        # LNbits' one-time "save your credentials" notice.
        understand = self.page.locator(".q-dialog .q-btn", has_text="I understand")
        if understand.count():
            understand.click()
            understand.wait_for(state="detached")

    def _console(self, message) -> None:
        if message.type != "error":
            return
        self.errors.append(f"console {message.text} at {message.location}")

    def settle(self) -> None:
        self.page.wait_for_load_state("networkidle")

    def tab(self, name: str, labels: dict | None = None) -> None:
        label = (labels or _TAB_LABELS)[name]
        self.page.locator(".q-tab", has_text=label).first.click()
        self.settle()

    def test_id(self, value: str):
        return self.page.locator(f'[data-test="{value}"]')

    def pick(self, select_test_id: str, option_text: str) -> None:
        select = self.test_id(select_test_id)
        select.click()
        typing = (
            select
            if select.evaluate("e => e.tagName === 'INPUT' && !e.readOnly")
            else select.locator("input:not([readonly])")
        )
        if typing.count():
            # A picker that searches the server: type, wait for the answer to
            # that search (the list shown on opening may hold the name too, and
            # is replaced under the click when the search answers), then take
            # the match.
            from urllib.parse import parse_qs, urlparse

            def searched(response) -> bool:
                query = parse_qs(urlparse(response.url).query)
                return "/clients" in response.url and query.get("search") == [
                    option_text
                ]

            with self.page.expect_response(searched):
                typing.first.fill(option_text)
            self.page.wait_for_timeout(100)  # the menu renders the answer
        menu = self.page.locator(".q-menu")
        menu.locator(".q-item", has_text=option_text).first.click()
        if not typing.count():
            menu.wait_for(state="detached")
            return
        # A searching picker keeps the focus, and its menu can open again
        # after the choice (a known glitch, see the closing note): move on,
        # as a person would, until it stays closed.
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        self.page.keyboard.press("Tab")
        for _ in range(10):
            try:
                menu.wait_for(state="detached", timeout=2_000)
                return
            except PlaywrightTimeout:
                self.page.keyboard.press("Escape")
        menu.wait_for(state="detached")

    def dialog_ok(self) -> None:
        self.page.locator(".q-dialog .q-btn", has_text="OK").click()
        self.settle()

    def notified(self, text: str) -> None:
        self.page.locator(".q-notification", has_text=text).first.wait_for()

    def screenshot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.wait_for_timeout(500)  # the tab transition and notifications
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


_TAB_LABELS = {
    "overview": "Overview",
    "clients": "Clients",
    "deposits": "Deposits",
    "settlements": "Settlements",
    "machines": "Machines",
    "reconciliation": "Reconciliation",
    "alerts": "Alerts",
    "config": "Configuration",
}


def test_operator_day_in_the_browser(server, browser):
    shutil.rmtree(SHOTS, ignore_errors=True)
    source = server.create_wallet("Source")
    commission = server.create_wallet("Commission")
    payer = server.create_wallet("ATM payer")
    server.credit(payer["id"], 400_000)
    client_wallets = {name: server.create_user_wallet(name) for name in BALANCES}

    ui = Page(browser, server, 1280, 800)
    try:
        ui.test_id("no-config").wait_for()
        # Every dashboard export formats its cells through csvSafe (exportTable).
        for text in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
            assert ui.page.evaluate("t => satmachineCsvSafe(t)", text) == "'" + text
        assert ui.page.evaluate("satmachineCsvSafe('plain')") == "plain"

        # Configuration: source and commission wallets.
        ui.tab("config")
        ui.pick("source-wallet", "Source (")
        ui.pick("commission-wallet", "Commission (")
        ui.test_id("save-config").click()
        ui.notified("Configuration saved")
        config = server.api("GET", "/config").json()
        assert config["source_wallet_id"] == source["id"]
        assert config["commission_wallet_id"] == commission["id"]

        # Clients: registered for their existing wallets.
        ui.tab("clients")
        for name, wallet in client_wallets.items():
            ui.test_id("register-client").click()
            ui.test_id("client-wallet").fill(wallet["id"])
            ui.test_id("client-name").fill(name)
            ui.test_id("client-save").click()
            ui.notified("Client registered")
            ui.settle()
        for name in BALANCES:
            ui.test_id("clients-table").get_by_text(name).first.wait_for()

        # Deposits: quick add, then confirm each through the dialog.
        ui.tab("deposits")
        for count, (name, amount) in enumerate(BALANCES.items(), start=1):
            ui.pick("deposit-client", name)
            ui.test_id("deposit-amount").fill(amount)
            ui.test_id("deposit-add").click()
            ui.notified("Deposit added")
            _wait_for(lambda n=count: len(server.api("GET", "/deposits").json()) == n)
            ui.settle()
        deposits = server.api("GET", "/deposits", params={"limit": 100}).json()
        assert sorted(Decimal(str(d["amount"])) for d in deposits) == sorted(
            Decimal(v) for v in BALANCES.values()
        )
        for deposit in deposits:
            ui.test_id(f"confirm-deposit-{deposit['id']}").click()
            ui.dialog_ok()
            ui.test_id(f"confirm-deposit-{deposit['id']}").wait_for(state="detached")
        clients = server.api("GET", "/clients").json()
        assert {
            c["username"]: Decimal(str(c["remaining_balance"])) for c in clients
        } == {name: Decimal(v) for name, v in BALANCES.items()}

        # The seed incident arrives: 317,700 sats for 2000 GTQ.
        server.pay(payer, source, 317_700, extra=SEED_EXTRA)
        settlement = _wait_for_settlement(server)
        assert settlement["status"] == "completed", settlement
        ui.test_id("refresh").click()
        ui.settle()

        ui.tab("settlements")
        ui.test_id(f"expand-{settlement['id']}").click()
        detail = ui.test_id(f"detail-{settlement['id']}")
        detail.wait_for()
        assert (
            "17,474" in detail.locator('[data-test="detail-commission"]').inner_text()
        )
        orphan_text = detail.locator('[data-test="detail-orphan"]').inner_text()
        assert f"{settlement['orphan_sats']:,}" in orphan_text
        assert "1,300.01" in orphan_text
        payouts = detail.locator('[data-test="payouts-table"] tbody tr')
        assert payouts.count() == 4
        for name in BALANCES:
            assert name in detail.inner_text()
        with ui.page.expect_download() as download_info:
            ui.test_id("export-settlements").click()
        csv_path = download_info.value.path()
        csv_text = Path(csv_path).read_text()
        assert "317,700 sats" in csv_text and "completed" in csv_text

        # Every balance is used up; the orphan is open on the reconciliation tab.
        for client in server.api("GET", "/clients").json():
            assert Decimal(str(client["remaining_balance"])) == 0

        ui.tab("reconciliation")
        recon = server.api("GET", "/reconciliations", params={"status": "open"}).json()
        assert recon["total"] == 1
        orphan = recon["data"][0]
        ui.test_id(f"resolve-{orphan['id']}").click()
        ui.test_id("resolve-note").fill("untracked cash, ours")
        ui.test_id("resolve-save").click()
        ui.notified("Orphan resolved")
        ui.test_id(f"resolve-{orphan['id']}").wait_for(state="detached")
        resolved = server.api("GET", f"/reconciliations/{orphan['id']}").json()
        assert resolved["status"] == "resolved"
        assert resolved["resolution"] == "operator_funds"
        assert resolved["note"] == "untracked cash, ours"
        ui.page.locator(
            '[data-test="recon-filter"] .q-btn', has_text="Resolved"
        ).click()
        ui.settle()
        ui.test_id(f"history-{orphan['id']}").click()
        history = ui.test_id("history-list")
        history.get_by_text("Resolved as operator funds by").first.wait_for()
        assert "note: untracked cash, ours" in history.inner_text()
        ui.page.keyboard.press("Escape")
        with ui.page.expect_download() as download_info:
            ui.test_id("export-reconciliations").click()
        assert "operator_funds" in Path(download_info.value.path()).read_text()

        # Sats are all accounted for: clients + commission + source = settlement.
        total = sum(server.balance(w) for w in client_wallets.values())
        total += server.balance(commission) + server.balance(source)
        assert total == 317_700

        # The dry run moves nothing.
        source_before = server.balance(source)
        ui.tab("settlements")
        ui.test_id("dry-run").click()
        ui.test_id("dry-result").wait_for()
        assert server.balance(source) == source_before

        ui.test_id("refresh").click()
        ui.settle()
        for name in TABS:
            ui.tab(name)
            ui.screenshot(f"desktop-{name}")
        assert not ui.errors, ui.errors
    except Exception:
        ui.screenshot("failure-desktop")
        raise
    finally:
        ui.close()

    phone = Page(browser, server, 390, 844)
    try:
        for name in TABS:
            phone.tab(name)
            phone.screenshot(f"phone-{name}")
        # Nothing wider than the screen on a phone.
        overflow = phone.page.evaluate(
            "document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 1, overflow
        assert not phone.errors, phone.errors
    finally:
        phone.close()


def _wait_for_settlement(server: LiveLNbits) -> dict:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = server.api("GET", "/settlements", params={"limit": 1}).json()
        if page["data"] and page["data"][0]["status"] in ("completed", "payout_failed"):
            return page["data"][0]
        time.sleep(0.2)
    raise AssertionError(f"settlement not processed: {page}")


def _wait_for(condition, timeout: float = 15) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _typing_target(locator):
    """Quasar puts a field's attributes on its native input, or on its root."""
    if locator.evaluate("e => e.tagName") == "INPUT":
        return locator
    return locator.locator("input")


def test_the_dashboard_at_real_size(server, browser):
    """5,000 clients (issue 11, part 5): the tables page, sort and search on the
    server, and the client picker searches as the operator types, so the last
    client of 5,000 is found and given a deposit."""
    import sqlite3
    import uuid

    last_wallet = server.create_user_wallet("zzlast")
    response = server.api(
        "POST",
        "/clients",
        json={"wallet_id": last_wallet["id"], "username": "zz-last-client"},
    )
    assert response.status_code == 201, response.text
    last = response.json()
    # 5,000 more rows as the client extension writes them (straight into the
    # shared tables), older than the last one.
    database = sqlite3.connect(server.dir / "data" / "ext_satoshimachine.sqlite3")
    with database:
        database.executemany(
            "INSERT INTO dca_clients (id, user_id, wallet_id, username, dca_mode, "
            "status, created_at, updated_at, reviewed_at) "
            "VALUES (?, ?, ?, ?, 'flow', 'active', 1, 1, 1)",
            [
                (uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex, f"bulk-{i:04d}")
                for i in range(5_000)
            ],
        )
        # 1,200 settlements (dismissed): more than the 1000 a request returns.
        database.executemany(
            "INSERT INTO settlements (id, payment_hash, wallet_id, amount_sats, "
            "paid_at, status, created_at, updated_at) "
            "VALUES (?, ?, 'bulk-wallet', 777, 1, 'dismissed', 1, 1)",
            [(uuid.uuid4().hex, uuid.uuid4().hex) for _ in range(1_200)],
        )
    database.close()

    ui = Page(browser, server, 1280, 800)
    try:
        ui.tab("clients")
        table = ui.test_id("clients-table")
        table.get_by_text("of 5,0").first.wait_for()  # "1-20 of 5,0xx"
        assert "bulk-4999" not in table.inner_text()
        # The CSV buttons export every row, a page of 1000 at a time.
        with ui.page.expect_download() as download_info:
            ui.test_id("export-clients").click()
        exported = Path(download_info.value.path()).read_text().splitlines()
        assert sum("bulk-" in line for line in exported) == 5_000
        ui.tab("settlements")
        with ui.page.expect_download() as download_info:
            ui.test_id("export-settlements").click()
        exported = Path(download_info.value.path()).read_text().splitlines()
        assert sum("777 sats" in line for line in exported) == 1_200
        ui.tab("clients")
        _typing_target(ui.test_id("clients-search")).fill("zz-last")
        table.get_by_text("zz-last-client").first.wait_for()

        ui.tab("deposits")
        picker = ui.test_id("deposit-client")
        picker.click()
        _typing_target(picker).fill("zz-last")
        menu = ui.page.locator(".q-menu")
        menu.locator(".q-item", has_text="zz-last-client").first.click()
        ui.test_id("deposit-amount").fill("12.34")
        ui.test_id("deposit-add").click()
        ui.notified("Deposit added")
        deposits = server.api(
            "GET", "/deposits", params={"client_id": last["id"], "limit": 10}
        ).json()
        assert [Decimal(str(d["amount"])) for d in deposits] == [Decimal("12.34")]
        assert not ui.errors, ui.errors
    except Exception:
        ui.screenshot("failure-scale")
        raise
    finally:
        ui.close()


def test_the_dashboard_in_spanish(server, browser):
    """LNbits' language set to Spanish (issue 15): every tab, a dialog and a
    confirmation show none of the extension's English strings (static/i18n/en.js,
    and the texts the server writes, messages.py, minus the words written the
    same in Spanish), money is written as in Guatemala (Q1,234.56), and each
    tab is photographed in Spanish (test-artifacts/screenshots/es-*.png). A
    flagged settlement's detail, a split one's and a resolved orphan's history
    are read in Spanish too."""
    import re

    from test_i18n import SAME_IN_BOTH, tables
    from test_messages import CATALOG

    en, es = tables()["en"], tables()["es"]
    # The server's texts (status details, history) are checked like the page's.
    # Alerts' phrases come from _alert_phrases (more than one word: an alert
    # quotes data, e.g. a payment's own error).
    server_texts = {
        code: t
        for code, t in CATALOG.items()
        if not code.startswith(("alert.", "drift."))
    }
    en.update({f"server.{code}": t["en"] for code, t in server_texts.items()})
    es.update({f"server.{code}": t["es"] for code, t in CATALOG.items()})
    english = _english_phrases(en, es, SAME_IN_BOTH)
    flagged, split, orphan = _spanish_world(server)
    english.update(_alert_phrases(es, SAME_IN_BOTH))
    labels = {name: es[f"satmachineadmin.tabs.{name}"] for name in TABS}
    wallet = server.create_user_wallet("Quetzal")
    client = server.api(
        "POST", "/clients", json={"wallet_id": wallet["id"], "username": "Quetzal"}
    ).json()
    deposit = server.api(
        "POST",
        "/deposits",
        json={"client_id": client["id"], "amount": "1234.56", "currency": "GTQ"},
    ).json()

    _an_open_alert(server)  # the Alerts tab lists one, checked in Spanish

    ui = Page(
        browser, server, 1280, 800, lang="es", title=es["satmachineadmin.header.title"]
    )
    try:
        assert ui.page.evaluate("window.i18n.global.locale") == "es"

        def check(where: str, locator) -> None:
            # What the extension wrote: labels, texts, chips, buttons (the
            # values typed or chosen in fields are data, not checked, and so
            # are the texts marked as the server's, data-server-text).
            text = locator.evaluate("""root => {
                  const copy = root.cloneNode(true)
                  copy.querySelectorAll(
                      '.q-field__native, input, textarea, [data-server-text]')
                    .forEach(e => e.remove())
                  return copy.innerText
                }""")
            found = sorted({p for p, rx in english.items() if rx.search(text)})
            assert not found, f"English on {where}: {found}"

        for name in TABS:
            ui.tab(name, labels)
            ui.screenshot(f"es-{name}")
            check(f"the {name} tab", ui.page.locator(".satmachine-admin"))

        # Money as in Guatemala, in the table and in the confirmation.
        ui.tab("deposits", labels)
        row = ui.test_id("deposits-table").locator("tr", has_text="Quetzal").first
        assert re.search(r"Q1,234\.56", row.inner_text()), row.inner_text()
        ui.test_id(f"confirm-deposit-{deposit['id']}").click()
        confirm = ui.page.locator(".q-dialog").last
        confirm.wait_for()
        assert "¿Confirmar" in confirm.inner_text()
        check("the confirmation", confirm)
        ui.page.keyboard.press("Escape")
        confirm.wait_for(state="detached")

        ui.tab("clients", labels)
        ui.test_id("register-client").click()
        dialog = ui.page.locator(".q-dialog").last
        dialog.wait_for()
        ui.screenshot("es-register-client")
        check("the register dialog", dialog)
        ui.page.keyboard.press("Escape")
        dialog.wait_for(state="detached")

        # Fixed mode (#12): the mode and daily limit dialog.
        ui.test_id(f"mode-client-{client['id']}").click()
        ui.pick("mode-select", es["satmachineadmin.status.fixed"])
        ui.test_id("mode-limit").wait_for()
        dialog = ui.page.locator(".q-dialog").last
        ui.screenshot("es-mode-dialog")
        check("the mode dialog", dialog)
        ui.page.keyboard.press("Escape")
        dialog.wait_for(state="detached")

        # What the server wrote: a flagged settlement's and a split one's
        # detail, and the history of the orphan resolved as operator funds.
        ui.tab("settlements", labels)
        for settlement, words in (
            (flagged, "el tipo de cambio de LNbits"),
            (split, "clientes recibieron"),
        ):
            ui.test_id(f"expand-{settlement['id']}").click()
            detail = ui.test_id(f"detail-{settlement['id']}")
            detail.get_by_text(words).first.wait_for()
            check(f"the {settlement['status']} settlement's detail", detail)
        ui.screenshot("es-settlement-details")
        ui.tab("reconciliation", labels)
        ui.page.locator(
            '[data-test="recon-filter"] .q-btn',
            has_text=es["satmachineadmin.reconciliation.filter_resolved"],
        ).click()
        ui.settle()
        ui.test_id(f"history-{orphan['id']}").click()
        history = ui.test_id("history-list")
        history.get_by_text("Resuelto como fondos del operador por").first.wait_for()
        assert "nota: efectivo nuestro" in history.inner_text()
        ui.screenshot("es-history")
        check("the orphan's history", ui.page.locator(".q-dialog").last)
        ui.page.keyboard.press("Escape")
        assert not ui.errors, ui.errors
    except Exception:
        ui.screenshot("failure-spanish")
        raise
    finally:
        ui.close()


def _spanish_world(server: LiveLNbits) -> tuple[dict, dict, dict]:
    """A settlement flagged for its price, one split into an orphan (no
    confirmed balance covers it), and that orphan resolved as operator funds,
    each paid into a new source wallet."""
    import time

    source = server.create_wallet("Fuente")
    payer = server.create_wallet("Pagador")
    server.credit(payer["id"], 700_000)
    response = server.api("POST", "/config", json={"source_wallet_id": source["id"]})
    assert response.status_code == 201, response.text

    def settled(extra: dict, sats: int) -> dict:
        payment_hash = server.pay(payer, source, sats, extra=extra)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = server.api(
                "GET", "/settlements", params={"search": payment_hash}
            ).json()["data"]
            if found and found[0]["status"] in ("flagged", "completed"):
                return found[0]
            time.sleep(0.3)
        raise AssertionError(f"settlement not processed: {payment_hash}")

    flagged = settled(
        {**SEED_EXTRA, "exchange_rate": "66616422", "txid": "es-flagged"}, 317_700
    )
    assert flagged["status"] == "flagged", flagged
    split = settled({**SEED_EXTRA, "txid": "es-split"}, 317_700)
    assert split["status"] == "completed" and split["orphan_sats"], split
    orphan = server.api("GET", f"/settlements/{split['id']}").json()["reconciliation"]
    response = server.api(
        "POST",
        f"/reconciliations/{orphan['id']}/resolve",
        json={"action": "operator_funds", "note": "efectivo nuestro"},
    )
    assert response.status_code == 200, response.text
    return flagged, split, orphan


def _alert_phrases(es: dict, same: set) -> dict:
    """The English of the alerts the server writes (messages.py: alert.*,
    drift.*), as _english_phrases finds the page's; phrases of more than one
    word (a lone "failed" may be a payment's own error, data)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parent.parent / "messages.py"
    spec = importlib.util.spec_from_file_location("satmachine_messages", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    catalog = {
        code: texts
        for code, texts in module.CATALOG.items()
        if code.startswith(("alert.", "drift."))
    }
    alert_en = {code: texts["en"] for code, texts in catalog.items()}
    alert_es = {code: texts["es"] for code, texts in catalog.items()}
    phrases = _english_phrases(alert_en, {**es, **alert_es}, same)
    return {phrase: rx for phrase, rx in phrases.items() if " " in phrase}


def _an_open_alert(server) -> None:
    """At least one open alert (the operator's day leaves this week's orphan
    fiat; run alone, an orphan of its own)."""
    server.api("POST", "/alerts/check")
    if server.api("GET", "/alerts", params={"state": "open"}).json()["total"]:
        return
    source = server.create_wallet("Fuente")
    payer = server.create_wallet("Cajero")
    server.credit(payer["id"], 30_000)
    body = {"source_wallet_id": source["id"]}
    assert server.api("POST", "/config", json=body).status_code == 201
    extra = {**SEED_EXTRA, "principal_sats": 19_000, "fee_sats": 1_000}
    server.pay(payer, source, 20_000, extra={**extra, "txid": "browser-es"})
    _wait_for_settlement(server)
    server.api("POST", "/alerts/check")
    assert server.api("GET", "/alerts", params={"state": "open"}).json()["total"]


def _english_phrases(en: dict, es: dict, same: set) -> dict:
    """Each English text of the extension (split at its placeholders) that must
    not show on the Spanish page, as a whole-word pattern. Left out: texts
    written the same in both languages, and phrases a Spanish text contains."""
    import re

    def pattern(phrase: str):
        return re.compile(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)")

    spanish = list(es.values())
    phrases = {}
    for key, text in en.items():
        if text in same or text == es[key]:
            continue
        # A plural text's forms are split at " | " (static/index.js tn()).
        for part in re.split(r"\{\w+\}| \| ", text):
            phrase = part.strip(" ·:;,.()*?")
            if len(phrase) < 4 and " " not in phrase:
                continue
            rx = pattern(phrase)
            if phrase not in same and not any(rx.search(s) for s in spanish):
                phrases[phrase] = rx
    return phrases
