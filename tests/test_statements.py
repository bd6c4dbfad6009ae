"""Client statements (issue 15, part 3): deposits, DCA purchases, totals,
average cost and the balance at the start and end of a period, as CSV and PDF,
in English and Spanish, for one client or all of them (zip).

The figures are checked against the API's balance, the client extension's own
formula and the sats the client's wallet really received; the PDF's text
(pdftotext, from poppler-utils) against the CSV's."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from api_helpers import add_deposit, fresh_currency, register_client, snapshot
from test_balances import client_extension_balance
from test_settlement_flow import _deactivate_all_clients

# The pure module has no LNbits imports: load it straight from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from statements import (
    MAX_PERIOD_DAYS,
    Carried,
    Deposit,
    Period,
    Purchase,
    StatementInputError,
    build_statement,
    check_choice,
    parse_period,
)

ASYNC = pytest.mark.asyncio(loop_scope="session")
UTC = timezone.utc


# ------------------------------------------------------------ statements.py


def _at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def test_statement_math_balances_totals_and_cost_basis():

    period = Period(date(2026, 11, 1), date(2026, 11, 30))
    deposits = [
        Deposit(_at("2026-10-20"), Decimal("1000.00"), "GTQ", "d0"),  # before
        Deposit(_at("2026-11-03"), Decimal("500.50"), "GTQ", "d1"),
        # The last instant of the period is in it; midnight after is not.
        Deposit(_at("2026-11-30", 23).replace(minute=59), Decimal("7.54"), "GTQ"),
        Deposit(_at("2026-12-01", 0), Decimal("999.00"), "GTQ", "after"),
        Deposit(_at("2026-11-10"), Decimal("20.00"), "USD", "u1"),
    ]
    purchases = [
        Purchase(_at("2026-10-25"), 12_500, Decimal("100.00"), "GTQ"),  # before
        Purchase(_at("2026-11-05"), 50_000, Decimal("400.00"), "GTQ", "npub1a", "p1"),
        # A naive timestamp (PostgreSQL, the client extension) is UTC.
        Purchase(datetime(2026, 11, 6, 8), 30_000, Decimal("243.70"), "GTQ", None),
        Purchase(_at("2026-12-02"), 1, Decimal("1.00"), "GTQ"),  # after
    ]
    carried = [Carried("GTQ", Decimal("10.00"), Decimal("2.00"), 250)]
    statement = build_statement("c1", "Ana", period, deposits, purchases, carried)

    [gtq, usd] = statement.currencies
    assert gtq.currency == "GTQ" and usd.currency == "USD"
    # 10 - 2 carried, + 1000 - 100 from rows before the period.
    assert gtq.opening_balance == Decimal("908.00")
    assert [d.amount for d in gtq.deposits] == [Decimal("500.50"), Decimal("7.54")]
    assert gtq.total_deposited == Decimal("508.04")
    assert [p.sats for p in gtq.purchases] == [50_000, 30_000]
    assert gtq.purchases[0].machine == "npub1a"
    assert gtq.purchases[0].price == Decimal("800000.00")
    # 243.70 / 30,000 sats * 1e8 = 812,333.33 per BTC
    assert gtq.purchases[1].price == Decimal("812333.33")
    assert gtq.total_sats == 80_000
    assert gtq.total_fiat == Decimal("643.70")
    # 643.70 / 80,000 * 1e8 = 804,625.00 per BTC
    assert gtq.average_cost == Decimal("804625.00")
    assert gtq.closing_balance == Decimal("908.00") + Decimal("508.04") - Decimal(
        "643.70"
    )
    assert gtq.closing_balance == Decimal("772.34")
    assert usd.opening_balance == 0 and usd.closing_balance == Decimal("20.00")
    assert usd.total_sats == 0 and usd.average_cost is None


def test_statement_math_empty_period_and_no_history():
    period = Period(date(2026, 1, 1), date(2026, 1, 31))
    empty = build_statement("c", None, period, [], [])
    assert empty.currencies == [] and empty.total_sats == 0

    # Nothing happens in the period: the balance carried in is both ends.
    quiet = build_statement(
        "c",
        None,
        period,
        [Deposit(_at("2025-12-01"), Decimal("50"), "GTQ")],
        [Purchase(_at("2025-12-02"), 6_250, Decimal("50"), "GTQ")],
    )
    # The balance carried in is zero: a currency with nothing to show is left out.
    assert quiet.currencies == []
    held = build_statement(
        "c", None, period, [Deposit(_at("2025-12-01"), Decimal("7.54"), "GTQ")], []
    )
    [gtq] = held.currencies
    assert gtq.opening_balance == gtq.closing_balance == Decimal("7.54")
    assert gtq.deposits == [] and gtq.purchases == []
    assert gtq.total_sats == 0 and gtq.average_cost is None


def test_statement_periods_and_their_validation():

    today = date(2026, 11, 15)
    november = parse_period("2026-11", None, None, today)
    assert (november.start, november.end) == (date(2026, 11, 1), date(2026, 11, 30))
    december = parse_period("2026-12", None, None, today)
    assert december.end == date(2026, 12, 31)
    assert parse_period("2028-02", None, None, today).end == date(2028, 2, 29)
    year = parse_period("2026", None, None, today)
    assert (year.start, year.end) == (date(2026, 1, 1), date(2026, 12, 31))
    custom = parse_period(None, "2026-11-03", "2026-11-03", today)
    assert custom.starts_at == datetime(2026, 11, 3, tzinfo=UTC)
    assert custom.ends_at == datetime(2026, 11, 4, tzinfo=UTC)
    assert parse_period(None, "2026-11-01", None, today).end == today
    default = parse_period(None, None, None, today)  # this month so far
    assert (default.start, default.end) == (date(2026, 11, 1), today)

    bad = [
        ("2026-13", None, None, "no month 13"),
        ("2026-1", None, None, "YYYY-MM"),
        ("1999", None, None, "between"),
        ("2026-11", "2026-11-01", None, "not both"),
        (None, None, "2026-11-30", "needs 'from'"),
        (None, "2026-11-31", "2026-12-01", "not a real date"),
        (None, "01/11/2026", "2026-12-01", "YYYY-MM-DD"),
        (None, "2026-12-01", "2026-11-01", "after"),
        (None, "2010-01-01", "2026-01-01", f"at most {MAX_PERIOD_DAYS} days"),
        (None, "2026-01-01", "9999-12-31", "between"),
    ]
    for period, start, end, message in bad:
        with pytest.raises(StatementInputError, match=re.escape(message)):
            parse_period(period, start, end, today)
    assert check_choice(None, ("csv", "pdf"), "format") == "csv"
    assert check_choice("PDF", ("csv", "pdf"), "format") == "pdf"
    with pytest.raises(StatementInputError, match="csv, pdf"):
        check_choice("xls", ("csv", "pdf"), "format")


@ASYNC
async def test_csv_cells_are_neutralized_and_amounts_formatted(env):
    from satmachineadmin.statements import Deposit as PackageDeposit
    from satmachineadmin.statements import Period as PackagePeriod
    from satmachineadmin.statements import build_statement as package_build
    from satmachineadmin.statements_render import money, render_csv

    assert money(Decimal("1234.56"), "GTQ", "es") == "Q1,234.56"
    assert money(Decimal("-5"), "GTQ", "en") == "-Q5.00"
    assert money(Decimal("1234.5"), "MXN", "es") == "MXN 1,234.50"
    period = PackagePeriod(date(2026, 11, 1), date(2026, 11, 30))
    statement = package_build(
        "c1",
        "=HYPERLINK(1)",
        period,
        [PackageDeposit(_at("2026-11-02"), Decimal("5"), "GTQ")],
        [],
    )
    rows = list(
        csv.reader(io.StringIO(render_csv(statement, "en").decode("utf-8-sig")))
    )
    cells = [cell for row in rows for cell in row]
    assert "'=HYPERLINK(1)" in cells and "=HYPERLINK(1)" not in cells


# -------------------------------------------------------------- through the API


def _amount(text: str) -> Decimal:
    cleaned = re.sub(r"[^0-9.\-]", "", text.lstrip("'"))
    return Decimal(cleaned)


def parse_statement_csv(content: bytes) -> dict:
    """{"head": {label: value}, currency: {"figures": {label: value},
    "deposits": [[...]], "purchases": [[...]]}} from a statement CSV."""
    text = content.decode("utf-8-sig")
    result: dict = {"head": {}}
    section: dict | None = None
    table = None
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        first = row[0]
        if re.match(r"^(Currency|Moneda): [A-Z]{3}$", first):
            section = {"figures": {}, "deposits": [], "purchases": []}
            result[first.split(": ")[1]] = section
            table = None
        elif section is None:
            if len(row) == 2:
                result["head"][first] = row[1]
        elif first in ("Deposits", "Depósitos"):
            table = "deposits"
        elif first in ("Bitcoin purchases", "Compras de bitcoin"):
            table = "purchases"
        elif first in ("Date", "Fecha"):
            continue
        elif re.match(r"^\d{4}-\d{2}-\d{2}", first) and table:
            section[table].append(row)
        elif len(row) == 2:
            section["figures"][first] = row[1]
    return result


def _figure(section: dict, prefix: str) -> str:
    [value] = [v for k, v in section["figures"].items() if k.startswith(prefix)]
    return value


async def _settle_bitspire(env, source, payer, principal: int, fee: int, rate: str):
    await env.fund(payer.id, principal + fee)
    payment_hash = await env.pay(
        payer.id,
        source.id,
        principal + fee,
        extra={
            "source": "bitspire",
            "principal_sats": principal,
            "fee_sats": fee,
            "exchange_rate": rate,
            "currency": "GTQ",
            "txid": f"statement-{principal}",
            "machine_npub": "npub1statementmachine",
        },
    )
    await env.settle()
    response = await env.api("GET", "/settlements", params={"search": payment_hash})
    [settlement] = response.json()["data"]
    assert settlement["status"] == "completed", settlement
    return settlement


async def _backdate_deposit(deposit_id: str, days: int) -> None:
    from satmachineadmin.crud import db, exact_times

    moment = datetime.now(UTC) - timedelta(days=days)
    await db.execute(
        "UPDATE satoshimachine.dca_deposits SET created_at = "
        f"{db.timestamp_placeholder('t')}, confirmed_at = "
        f"{db.timestamp_placeholder('t')} WHERE id = :id",
        exact_times({"t": moment, "id": deposit_id}),
    )


@pytest.fixture(scope="module")
def scenario_cache() -> dict:
    return {}


async def _scenario(env, cache: dict) -> dict:
    """A GTQ client with a deposit from ten days ago, one from today, a pending
    one (never counted), a second currency, and two real bitSpire settlements
    (the only active GTQ flow client, so it takes both principals)."""
    if cache:
        return cache
    await _deactivate_all_clients(env)
    source = await env.wallet("statement source")
    commission = await env.wallet("statement commission")
    payer = await env.wallet("statement atm customer")
    response = await env.api(
        "POST",
        "/config",
        json={"source_wallet_id": source.id, "commission_wallet_id": commission.id},
    )
    assert response.status_code == 201, response.text
    _, wallet = await env.user_with_wallet("statement client")
    response = await env.api(
        "POST", "/clients", json={"wallet_id": wallet.id, "username": "Ana Pérez"}
    )
    assert response.status_code == 201, response.text
    client = response.json()
    old = await add_deposit(env, client["id"], "1000", confirm=True)
    await _backdate_deposit(old["id"], 10)
    await add_deposit(env, client["id"], "250.50", confirm=True)
    await add_deposit(env, client["id"], "99")  # pending: not on a statement
    other = fresh_currency()
    await add_deposit(env, client["id"], "20", currency=other, confirm=True)
    await _settle_bitspire(env, source, payer, 50_000, 2_500, "800000")
    await _settle_bitspire(env, source, payer, 30_000, 1_500, "812345.67")
    cache.update(client=client, wallet=wallet, other=other)
    return cache


def _today() -> date:
    return datetime.now(UTC).date()


async def _statement(env, path: str, **params):
    response = await env.api("GET", path, params=params)
    assert response.status_code == 200, response.text
    return response


def pdf_text(content: bytes) -> str:
    assert content.startswith(b"%PDF-")
    if not shutil.which("pdftotext"):
        pytest.fail("pdftotext missing: install poppler-utils (scripts/system-deps.sh)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "statement.pdf"
        path.write_bytes(content)
        result = subprocess.run(
            ["pdftotext", "-layout", "-enc", "UTF-8", str(path), "-"],
            capture_output=True,
            check=True,
            timeout=60,
        )
    return result.stdout.decode("utf-8")


@ASYNC
async def test_csv_statement_matches_the_balances_and_the_wallet(env, scenario_cache):
    s = await _scenario(env, scenario_cache)
    client, wallet, other = s["client"], s["wallet"], s["other"]
    today = _today().isoformat()
    response = await _statement(
        env, f"/statements/{client['id']}", **{"from": today, "to": today}
    )
    assert response.headers["content-type"].startswith("text/csv")
    assert ".csv" in response.headers["content-disposition"]
    parsed = parse_statement_csv(response.content)
    assert parsed["head"]["Client"] == "Ana Pérez"
    assert parsed["head"]["Client ID"] == client["id"]

    gtq = parsed["GTQ"]
    # The deposit from ten days ago is the opening balance; today's is listed.
    assert _amount(_figure(gtq, "Balance at start")) == Decimal("1000.00")
    assert [_amount(row[1]) for row in gtq["deposits"]] == [Decimal("250.50")]
    assert _amount(_figure(gtq, "Total deposited")) == Decimal("250.50")

    # Every confirmed payout of the client, as the API lists them.
    response = await env.api(
        "GET", "/payouts", params={"client_id": client["id"], "status": "confirmed"}
    )
    payouts = response.json()["data"]
    assert len(payouts) == 2 == len(gtq["purchases"])
    assert sorted(int(row[1].replace(",", "")) for row in gtq["purchases"]) == sorted(
        p["amount_sats"] for p in payouts
    )
    assert sorted(_amount(row[2]) for row in gtq["purchases"]) == sorted(
        Decimal(str(p["amount_fiat"])) for p in payouts
    )
    assert {row[4] for row in gtq["purchases"]} == {"npub1statementmachine"}
    total_sats = int(_figure(gtq, "Total sats").replace(",", ""))
    assert total_sats == 80_000 == await env.balance(wallet.id)
    total_fiat = _amount(_figure(gtq, "Total spent"))
    assert total_fiat == Decimal("400.00") + Decimal("243.70")
    for row in gtq["purchases"]:
        sats, fiat = int(row[1].replace(",", "")), _amount(row[2])
        assert _amount(row[3]) == (fiat * 100_000_000 / sats).quantize(Decimal("0.01"))
    assert _amount(_figure(gtq, "Average cost")) == (
        total_fiat * 100_000_000 / total_sats
    ).quantize(Decimal("0.01"))

    # The closing balance is the API's and the client extension's, per currency.
    closing = _amount(_figure(gtq, "Balance at end"))
    assert closing == Decimal("1000.00") + Decimal("250.50") - total_fiat
    detail = (await env.api("GET", f"/clients/{client['id']}")).json()
    api_balances = {
        b["currency"]: Decimal(str(b["remaining_balance"])) for b in detail["balances"]
    }
    assert closing == api_balances["GTQ"]
    assert closing == await client_extension_balance(client["id"], "GTQ")
    assert _amount(_figure(parsed[other], "Balance at end")) == api_balances[other]
    assert api_balances[other] == await client_extension_balance(client["id"], other)

    # A later period: nothing happens in it, the balance carries over.
    tomorrow = (_today() + timedelta(days=1)).isoformat()
    response = await _statement(
        env, f"/statements/{client['id']}", **{"from": tomorrow, "to": tomorrow}
    )
    later = parse_statement_csv(response.content)["GTQ"]
    assert _amount(_figure(later, "Balance at start")) == closing
    assert _amount(_figure(later, "Balance at end")) == closing
    assert later["purchases"] == [] and later["deposits"] == []
    assert _figure(later, "Average cost") == "n/a"

    # The month and year shortcuts cover today too; so does no period at all
    # (this month so far).
    month, year = _today().strftime("%Y-%m"), str(_today().year)
    for params in ({"period": month}, {"period": year}, {}):
        response = await _statement(env, f"/statements/{client['id']}", **params)
        shortcut = parse_statement_csv(response.content)["GTQ"]
        assert _amount(_figure(shortcut, "Balance at end")) == closing
        assert len(shortcut["purchases"]) == 2


@ASYNC
async def test_pdf_statement_holds_the_csv_figures(env, scenario_cache):
    s = await _scenario(env, scenario_cache)
    client = s["client"]
    month = _today().strftime("%Y-%m")
    csv_response = await _statement(env, f"/statements/{client['id']}", period=month)
    pdf_response = await _statement(
        env, f"/statements/{client['id']}", period=month, format="pdf"
    )
    assert pdf_response.headers["content-type"] == "application/pdf"
    assert ".pdf" in pdf_response.headers["content-disposition"]
    text = pdf_text(pdf_response.content)
    parsed = parse_statement_csv(csv_response.content)
    assert "DCA account statement" in text and client["id"] in text
    assert "Ana Pérez" in text
    figures = []
    for currency in ("GTQ", s["other"]):
        section = parsed[currency]
        figures += list(section["figures"].values())
        figures += [cell for row in section["deposits"] for cell in row[:2]]
        figures += [cell for row in section["purchases"] for cell in row[:4]]
    assert len(figures) > 15
    missing = [f for f in figures if f not in text]
    assert not missing, (missing, text)
    assert "Q1,000.00" in text  # the opening balance, grouped


@ASYNC
async def test_spanish_statement_has_spanish_labels_and_quetzales(env, scenario_cache):
    s = await _scenario(env, scenario_cache)
    client = s["client"]
    # The last five days: the deposit from ten days ago is the opening balance.
    first = (_today() - timedelta(days=5)).isoformat()
    days = {"from": first, "to": _today().isoformat()}
    response = await _statement(env, f"/statements/{client['id']}", lang="es", **days)
    content = response.content.decode("utf-8-sig")
    for label in ("Estado de cuenta DCA", "Saldo al inicio del", "Depósitos"):
        assert label in content
    assert "Compras de bitcoin" in content and "Costo promedio por BTC" in content
    assert "Balance" not in content
    parsed = parse_statement_csv(response.content)
    assert parsed["GTQ"]["figures"]["Saldo al inicio del " + first] == "Q1,000.00"
    closing = _figure(parsed["GTQ"], "Saldo al cierre del")
    assert re.fullmatch(r"Q\d{1,3}(,\d{3})*\.\d{2}", closing), closing

    pdf = await _statement(
        env, f"/statements/{client['id']}", lang="es", format="pdf", **days
    )
    text = pdf_text(pdf.content)
    for label in ("Estado de cuenta DCA", "Depósitos", "Precio por BTC", "Cajero"):
        assert label in text, label
    assert "Q1,000.00" in text and closing in text


@ASYNC
async def test_all_clients_zip_has_one_file_per_client(env, scenario_cache):
    s = await _scenario(env, scenario_cache)
    second = await register_client(env, "Second client")
    await add_deposit(env, second["id"], "12.34", confirm=True)
    clients = (await env.api("GET", "/clients", params={"limit": 1000})).json()
    today = _today().isoformat()
    for fmt in ("csv", "pdf"):
        response = await _statement(
            env, "/statements", **{"from": today, "to": today, "format": fmt}
        )
        assert response.headers["content-type"] == "application/zip"
        archive = zipfile.ZipFile(io.BytesIO(response.content))
        names = archive.namelist()
        assert len(names) == len(set(names)) == len(clients)
        assert all(name.endswith("." + fmt) for name in names)
        for client in clients:
            assert sum(client["id"] in name for name in names) == 1, client["id"]
        [mine] = [n for n in names if s["client"]["id"] in n]
        [theirs] = [n for n in names if second["id"] in n]
        if fmt == "csv":
            parsed = parse_statement_csv(archive.read(mine))
            assert _amount(_figure(parsed["GTQ"], "Balance at start")) == 1000
            other = parse_statement_csv(archive.read(theirs))
            assert _figure(other["GTQ"], "Balance at end") == "Q12.34"
        else:
            assert "Q12.34" in pdf_text(archive.read(theirs))


@ASYNC
async def test_bad_requests_answer_400_or_404_and_change_nothing(
    env, app, scenario_cache
):
    s = await _scenario(env, scenario_cache)
    client_id = s["client"]["id"]
    before = await snapshot(env)
    bad = [
        {"from": "2026-11-30", "to": "2026-11-01"},
        {"from": "2026-02-30", "to": "2026-03-01"},
        {"from": "30/11/2026", "to": "2026-12-01"},
        {"from": "2010-01-01", "to": "2026-01-01"},
        {"period": "2026-13"},
        {"period": "2026-11", "from": "2026-11-01"},
        {"to": "2026-11-01"},
        {"period": "2026-11", "format": "xls"},
        {"period": "2026-11", "lang": "fr"},
    ]
    for params in bad:
        for path in (f"/statements/{client_id}", "/statements"):
            response = await env.api("GET", path, params=params)
            assert response.status_code == 400, (path, params, response.text)
            assert isinstance(response.json()["detail"], str)
    response = await env.api(
        "GET", "/statements/no-such-client", params={"period": "2026"}
    )
    assert response.status_code == 404, response.text
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as bare:
        response = await bare.get(
            f"/satmachineadmin/api/v1/dca/statements/{client_id}",
            params={"period": "2026"},
        )
    assert response.status_code == 401
    assert await snapshot(env) == before


@ASYNC
async def test_pdf_without_fpdf2_names_the_package_and_csv_still_works(
    env, scenario_cache, monkeypatch
):
    s = await _scenario(env, scenario_cache)
    client_id = s["client"]["id"]
    monkeypatch.setitem(sys.modules, "fpdf", None)  # import fpdf -> ImportError
    for path in (f"/statements/{client_id}", "/statements"):
        response = await env.api(
            "GET", path, params={"period": "2026", "format": "pdf"}
        )
        assert response.status_code == 424, response.text
        detail = response.json()["detail"]
        assert "fpdf2" in detail and "pip install fpdf2" in detail
        assert "format=csv" in detail
    response = await env.api(
        "GET", f"/statements/{client_id}", params={"period": "2026"}
    )
    assert response.status_code == 200
